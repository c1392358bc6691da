//! `git`: a checkout at the latest commit of a ref (Ansible's `git`,
//! Salt's `git.latest`).
//!
//! The probe asks the checkout for its commit and the remote (`git
//! ls-remote`, from the host) which commit the ref names now, so deciding
//! costs no fetch; only a checkout that is behind is fetched. Changed only
//! when the checked-out commit changes; the outcome's data holds both.

use async_trait::async_trait;
use serde_json::json;

use super::args::{ArgReader, Args};
use super::contract::{Module, RunContext};
use super::error::ModuleError;
use super::host::{self, kv};
use super::outcome::{Diff, Outcome};
use crate::remote::{Remote, quote};

const REMOTE_MARK: &str = "--cairn-remote--\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Git {
    pub repo: String,
    pub dest: String,
    /// A branch, a tag, a commit, or `HEAD` (the remote's default branch).
    pub rev: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    /// The checkout's commit; `None`: no checkout at `dest`.
    pub head: Option<String>,
    /// Something other than a checkout is at `dest`.
    pub occupied: bool,
    /// `git ls-remote`'s lines: (commit, ref).
    pub refs: Vec<(String, String)>,
    /// The branch the remote's HEAD points at.
    pub default_branch: Option<String>,
}

/// The commit wanted, and the branch to have checked out (none for a tag
/// or commit: a detached head, as Ansible does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub commit: String,
    pub branch: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Nothing,
    Clone,
    Update,
}

fn looks_like_commit(rev: &str) -> bool {
    (7..=40).contains(&rev.len()) && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Git {
    pub fn new(args: &Args) -> Result<Git, ModuleError> {
        let mut r = ArgReader::new("git", args);
        let g = Git {
            repo: r.required(&["repo", "name"])?,
            dest: r.required(&["dest", "target"])?,
            rev: r
                .str(&["rev", "version", "branch"])?
                .unwrap_or_else(|| "HEAD".into()),
        };
        r.finish()?;
        if g.rev.is_empty() || g.rev.starts_with('-') || g.rev.contains(char::is_whitespace) {
            return Err(r.bad(format!("`{}` is not a git revision", g.rev)));
        }
        Ok(g)
    }

    pub fn probe_script(&self) -> String {
        let patterns = if self.rev == "HEAD" {
            "--symref {repo} HEAD".to_string()
        } else if looks_like_commit(&self.rev) {
            // A commit need not be asked for; its refs are listed only in
            // case the hex word is a branch name after all.
            format!("{{repo}} {}", quote(&self.rev))
        } else {
            format!(
                "{{repo}} {} {}",
                quote(&self.rev),
                quote(&format!("{}^{{}}", self.rev))
            )
        };
        format!(
            r#"command -v git >/dev/null || {{ echo 'git is not installed' >&2; exit 127; }}
d={dest}
if [ -e "$d/.git" ]; then echo "head=$(git -C "$d" rev-parse HEAD 2>/dev/null)"
elif [ -n "$(ls -A "$d" 2>/dev/null)" ]; then echo occupied=1; fi
printf '%s' {mark}
GIT_TERMINAL_PROMPT=0 git ls-remote {patterns}
"#,
            dest = quote(&self.dest),
            mark = quote(REMOTE_MARK),
            patterns = patterns.replace("{repo}", &quote(&self.repo)),
        )
    }

    pub fn parse(stdout: &str) -> Reading {
        let (head, remote) = stdout.split_once(REMOTE_MARK).unwrap_or((stdout, ""));
        let m = kv(head);
        let mut r = Reading {
            head: m.get("head").cloned().filter(|h| !h.is_empty()),
            occupied: m.contains_key("occupied"),
            ..Reading::default()
        };
        for line in remote.lines() {
            if let Some(sym) = line.strip_prefix("ref: ") {
                let target = sym.split('\t').next().unwrap_or("");
                r.default_branch = target.strip_prefix("refs/heads/").map(str::to_string);
            } else if let Some((commit, name)) = line.split_once('\t') {
                r.refs.push((commit.to_string(), name.to_string()));
            }
        }
        r
    }

    /// Which commit `rev` names, from `ls-remote`'s answer.
    pub fn want(&self, r: &Reading) -> Result<Want, String> {
        let find = |name: &str| {
            r.refs
                .iter()
                .find(|(_, n)| n == name)
                .map(|(c, _)| c.clone())
        };
        if self.rev == "HEAD" {
            let commit = find("HEAD")
                .ok_or_else(|| format!("{} has no HEAD (an empty repository?)", self.repo))?;
            return Ok(Want {
                commit,
                branch: r.default_branch.clone(),
            });
        }
        let rev = self.rev.strip_prefix("refs/heads/").unwrap_or(&self.rev);
        if let Some(commit) = find(&format!("refs/heads/{rev}")) {
            return Ok(Want {
                commit,
                branch: Some(rev.to_string()),
            });
        }
        let tag = self.rev.strip_prefix("refs/tags/").unwrap_or(&self.rev);
        // An annotated tag's own object is not a commit; `^{}` is.
        if let Some(commit) =
            find(&format!("refs/tags/{tag}^{{}}")).or_else(|| find(&format!("refs/tags/{tag}")))
        {
            return Ok(Want {
                commit,
                branch: None,
            });
        }
        if looks_like_commit(&self.rev) {
            return Ok(Want {
                commit: self.rev.to_lowercase(),
                branch: None,
            });
        }
        Err(format!("{} has no branch or tag `{}`", self.repo, self.rev))
    }

    pub fn plan(&self, r: &Reading, want: &Want) -> Result<Step, String> {
        match &r.head {
            None if r.occupied => Err(format!("{} exists and is not a git checkout", self.dest)),
            None => Ok(Step::Clone),
            // A short commit given: the checkout's full one starts with it.
            Some(h) if h.starts_with(&want.commit) => Ok(Step::Nothing),
            Some(_) => Ok(Step::Update),
        }
    }

    pub fn apply_script(&self, step: Step, want: &Want) -> String {
        let mut s = format!(
            "set -e\nd={}\nGIT_TERMINAL_PROMPT=0; export GIT_TERMINAL_PROMPT\n",
            quote(&self.dest)
        );
        match step {
            Step::Nothing => return s,
            Step::Clone => s.push_str(&format!("git clone -q {} \"$d\"\ncd \"$d\"\n", quote(&self.repo))),
            Step::Update => s.push_str(concat!(
                "cd \"$d\"\n",
                // Local edits would be lost by a checkout: refuse, as Ansible
                // does without force.
                "if ! git diff --quiet HEAD --; then echo \"local changes in $d; not updating\" >&2; exit 3; fi\n",
                "git fetch -q --tags origin '+refs/heads/*:refs/remotes/origin/*'\n",
            )),
        }
        match &want.branch {
            Some(b) => s.push_str(&format!(
                "git checkout -q -B {b} {c}\ngit branch -q --set-upstream-to=origin/{b} {b} 2>/dev/null || true\n",
                b = quote(b),
                c = quote(&want.commit)
            )),
            None => s.push_str(&format!("git checkout -q --detach {}\n", quote(&want.commit))),
        }
        s.push_str("echo \"after=$(git rev-parse HEAD)\"\n");
        s
    }
}

#[async_trait]
impl Module for Git {
    fn name(&self) -> &str {
        "git"
    }

    async fn run(&self, host: &dyn Remote, ctx: &RunContext) -> Result<Outcome, ModuleError> {
        let fail = |message: String| ModuleError::refused("git", message);
        let out = host::must(
            "git",
            &format!("asking {} for {}", self.repo, self.rev),
            host,
            ctx,
            self.probe_script(),
            None,
        )
        .await?;
        let reading = Git::parse(&out.stdout_str());
        let want = self.want(&reading).map_err(fail)?;
        let step = self.plan(&reading, &want).map_err(fail)?;
        let before = reading.head.clone();
        let after = if step == Step::Nothing || ctx.check {
            if step == Step::Nothing {
                before.clone()
            } else {
                Some(want.commit.clone())
            }
        } else {
            let done = host::must(
                "git",
                &format!("updating {}", self.dest),
                host,
                ctx,
                self.apply_script(step, &want),
                None,
            )
            .await?;
            kv(&done.stdout_str()).get("after").cloned()
        };
        let changed = before != after;
        let short = |c: &Option<String>| {
            c.as_deref()
                .map(|c| c.chars().take(12).collect::<String>())
                .unwrap_or_else(|| "(none)".into())
        };
        let summary = match (changed, ctx.check) {
            (false, _) => format!("{} at {} ({})", self.dest, short(&before), self.rev),
            (true, true) => format!(
                "would move {} from {} to {}",
                self.dest,
                short(&before),
                short(&after)
            ),
            (true, false) => format!(
                "{} moved from {} to {}",
                self.dest,
                short(&before),
                short(&after)
            ),
        };
        Ok(Outcome {
            changed,
            summary,
            diff: if changed {
                vec![Diff {
                    what: format!("{}:commit", self.dest),
                    before: before.clone(),
                    after: after.clone(),
                }]
            } else {
                Vec::new()
            },
            data: json!({ "before": before, "after": after }),
            ..Outcome::default()
        })
    }
}

#[cfg(test)]
mod tests;
