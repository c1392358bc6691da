//! `file`: a file's content, mode and owner; a directory; a symlink; or
//! nothing at a path (Ansible's `file`/`copy`/`template`, Salt's `file.*`).
//!
//! The probe reports what is at the path (one `stat`) and a small file's
//! content, which is hashed here and kept for the diff when it is text; a
//! large file is compared by its sha256, taken on the host, and never sent
//! back. Each process the probe starts costs the host about a millisecond,
//! so it starts few. A write is atomic: the content
//! goes through stdin into a temporary file in the same directory (so the
//! rename stays on one filesystem), gets its mode and owner, then `mv -f`
//! replaces the old file in one step.

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::args::{ArgReader, Args};
use super::contract::{Module, RunContext};
use super::error::ModuleError;
use super::host::{self, kv};
use super::outcome::{Diff, Outcome};
use crate::remote::{Output, Remote, quote};

/// Content larger than this is compared by hash only, and shown in a diff
/// as its size and hash.
pub const DIFF_LIMIT: u64 = 64 * 1024;

const CONTENT_MARK: &str = "--cairn-content--\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The content, mode and owner given.
    Managed,
    /// Must exist already; mode and owner are fixed.
    File,
    Absent,
    Directory,
    Symlink,
    /// Created empty if absent. An existing file is left alone (not even its
    /// mtime), so a second run reports no change.
    Touch,
}

#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub path: String,
    pub state: State,
    pub content: Option<Vec<u8>>,
    /// Octal permission bits.
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub target: Option<String>,
    pub makedirs: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Absent,
    File,
    Dir,
    Link,
    /// A device, socket or fifo.
    Other,
}

/// What the probe saw at the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub kind: Kind,
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub link_target: Option<String>,
    /// The content, when small text.
    pub content: Option<Vec<u8>>,
    pub parent_exists: bool,
}

impl Reading {
    pub fn absent() -> Reading {
        Reading {
            kind: Kind::Absent,
            mode: None,
            owner: None,
            group: None,
            size: None,
            sha256: None,
            link_target: None,
            content: None,
            parent_exists: true,
        }
    }
}

/// One change to make, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Atomically replace the path with the wanted content.
    Write,
    Mkdir,
    Remove,
    Symlink,
    Touch,
    Chmod(u32),
    Chown,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub diff: Vec<Diff>,
    pub notes: Vec<String>,
}

pub fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

fn show_mode(m: u32) -> String {
    format!("{m:04o}")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Content as a diff shows it: the text, or its size and hash.
fn shown(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(t) if (bytes.len() as u64) < DIFF_LIMIT && !t.contains('\0') => t.to_string(),
        _ => format!("({} bytes, sha256 {})", bytes.len(), sha256_hex(bytes)),
    }
}

fn parent(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) => "/".into(),
        Some((dir, _)) => dir.into(),
        None => ".".into(),
    }
}

impl File {
    pub fn new(args: &Args) -> Result<File, ModuleError> {
        let mut r = ArgReader::new("file", args);
        let path = r.required(&["path", "name", "dest"])?;
        let state = r.choice(
            &["state"],
            &[
                &["managed", "present"],
                &["file"],
                &["absent"],
                &["directory"],
                &["symlink", "link"],
                &["touch"],
            ],
        )?;
        let content = r.str(&["content", "contents"])?;
        let source = r.str(&["source", "src"])?;
        let template = r.str(&["template"])?;
        let vars = r.value(&["vars", "context", "defaults"])?;
        let mode = match r.str(&["mode"])? {
            None => None,
            Some(m) => Some(
                parse_mode(&m)
                    .ok_or_else(|| r.bad(format!("`mode` must be octal like 0644, not `{m}`")))?,
            ),
        };
        let owner = r.str(&["owner", "user"])?;
        let group = r.str(&["group"])?;
        let target = r.str(&["target"])?;
        let makedirs = r.bool(&["makedirs"])?.unwrap_or(false);
        r.finish()?;

        let given = [content.is_some(), source.is_some(), template.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(r.bad("give one of `content`, `source`, `template`"));
        }
        if vars.is_some() && template.is_none() {
            return Err(r.bad("`vars` are for a `template`"));
        }
        let content = if let Some(c) = content {
            Some(c.into_bytes())
        } else if let Some(src) = source {
            // Read where the module is loaded (the controller), as Ansible's
            // `copy src=` reads a file beside the playbook.
            Some(std::fs::read(&src).map_err(|e| r.bad(format!("cannot read source {src}: {e}")))?)
        } else if let Some(t) = template {
            Some(
                render(&t, vars)
                    .map_err(|e| r.bad(format!("template: {e}")))?
                    .into_bytes(),
            )
        } else {
            None
        };
        let state = match state {
            Some("managed") => State::Managed,
            Some("file") => State::File,
            Some("absent") => State::Absent,
            Some("directory") => State::Directory,
            Some("symlink") => State::Symlink,
            Some("touch") => State::Touch,
            _ if content.is_some() => State::Managed,
            _ if target.is_some() => State::Symlink,
            _ => State::File,
        };
        if state == State::Managed && content.is_none() {
            return Err(r.bad("state=managed needs `content`, `source` or `template`"));
        }
        if state != State::Managed && content.is_some() {
            return Err(r.bad("content is only for state=managed"));
        }
        if (state == State::Symlink) != target.is_some() {
            return Err(r.bad("`target` goes with state=symlink, and state=symlink needs it"));
        }
        if state == State::Absent && (mode.is_some() || owner.is_some() || group.is_some()) {
            return Err(r.bad("state=absent takes no mode, owner or group"));
        }
        Ok(File {
            path,
            state,
            content,
            mode,
            owner,
            group,
            target,
            makedirs,
        })
    }

    /// What is at the path (shell tests, no process), whether its
    /// directory exists, a link's target; the `stat` and the content only
    /// for what the plan reads: a managed file's content, size, mode and
    /// owner (a rewrite keeps the old mode and owner), and the mode and
    /// owner of any path when they are given. Each process costs the host
    /// about as much as an exec's own overhead, so a directory or a link
    /// with nothing else asked of it costs none but `readlink`.
    pub fn probe_script(&self) -> String {
        let mut s = format!(
            r#"p={p}
if [ -L "$p" ]; then echo kind=link; printf 'target=%s\n' "$(readlink "$p")"
elif [ -d "$p" ]; then echo kind=dir
elif [ -f "$p" ]; then echo kind=file
elif [ -e "$p" ]; then echo kind=other
else echo kind=absent; fi
if [ -d {parent} ]; then echo parent=1; fi
"#,
            p = quote(&self.path),
            parent = quote(&parent(&self.path)),
        );
        let managed = self.state == State::Managed;
        if managed || self.mode.is_some() || self.owner.is_some() || self.group.is_some() {
            s.push_str(
                r#"if [ -e "$p" ] || [ -L "$p" ]; then
  i=$(stat -c 'size=%s
mode=%a
owner=%U
group=%G' "$p")
  printf '%s\n' "$i"
fi
"#,
            );
        }
        if managed {
            s.push_str(&format!(
                r#"if [ -f "$p" ] && [ ! -L "$p" ]; then
  size=${{i#size=}}
  size=${{size%%[!0-9]*}}
  if [ "$size" -lt {limit} ]; then
    printf '%s' {mark}
    cat "$p"
  else
    echo "sha256=$(sha256sum < "$p" | cut -d' ' -f1)"
  fi
fi
"#,
                limit = DIFF_LIMIT,
                mark = quote(CONTENT_MARK),
            ));
        }
        s
    }

    pub fn parse(stdout: &[u8]) -> Reading {
        let (head, content) = match find(stdout, CONTENT_MARK.as_bytes()) {
            Some(at) => (
                &stdout[..at],
                Some(stdout[at + CONTENT_MARK.len()..].to_vec()),
            ),
            None => (stdout, None),
        };
        let m = kv(&String::from_utf8_lossy(head));
        let kind = match m.get("kind").map(String::as_str) {
            Some("file") => Kind::File,
            Some("dir") => Kind::Dir,
            Some("link") => Kind::Link,
            Some("other") => Kind::Other,
            _ => Kind::Absent,
        };
        // A small file comes back whole (one `cat` on the host instead of
        // sha256sum and a text test): hashed here, and kept for the diff
        // only when it is text.
        let sha256 = match &content {
            Some(c) => Some(sha256_hex(c)),
            None => m.get("sha256").cloned(),
        };
        let content = content.filter(|c| !c.contains(&0));
        Reading {
            kind,
            mode: m.get("mode").and_then(|s| parse_mode(s)),
            owner: m.get("owner").cloned(),
            group: m.get("group").cloned(),
            size: m
                .get("size")
                .filter(|_| kind == Kind::File)
                .and_then(|s| s.parse().ok()),
            sha256,
            link_target: m.get("target").cloned(),
            content,
            parent_exists: m.contains_key("parent"),
        }
    }

    /// What to change, from what the probe saw; an error when the wanted
    /// state cannot be reached from there (a directory where a file should
    /// go).
    pub fn plan(&self, now: &Reading) -> Result<Plan, String> {
        let mut plan = Plan::default();
        let p = &self.path;
        let creating = now.kind == Kind::Absent;
        let need_parent = || {
            if now.parent_exists || self.makedirs {
                Ok(())
            } else {
                Err(format!(
                    "{}: directory {} does not exist (makedirs=true creates it)",
                    p,
                    parent(p)
                ))
            }
        };
        match self.state {
            State::Absent => {
                if !creating {
                    plan.steps.push(Step::Remove);
                    plan.diff.push(Diff {
                        what: p.clone(),
                        before: Some(kind_word(now.kind).into()),
                        after: None,
                    });
                    plan.notes.push(format!("removed {p}"));
                }
                return Ok(plan);
            }
            State::File if creating => return Err(format!("{p} does not exist")),
            State::File | State::Touch | State::Directory | State::Managed
                if now.kind == Kind::Dir && self.state != State::Directory =>
            {
                return Err(format!("{p} is a directory"));
            }
            State::Directory if !matches!(now.kind, Kind::Dir | Kind::Absent) => {
                return Err(format!(
                    "{p} exists and is a {}, not a directory",
                    kind_word(now.kind)
                ));
            }
            State::Symlink if !matches!(now.kind, Kind::Link | Kind::Absent) => {
                return Err(format!(
                    "{p} exists and is a {}; remove it first (state=absent)",
                    kind_word(now.kind)
                ));
            }
            _ => {}
        }
        match self.state {
            State::Directory if creating => {
                plan.steps.push(Step::Mkdir);
                plan.diff.push(Diff {
                    what: p.clone(),
                    before: None,
                    after: Some("directory".into()),
                });
                plan.notes.push(format!("created directory {p}"));
            }
            State::Symlink => {
                let target = self.target.clone().unwrap_or_default();
                if now.link_target.as_deref() != Some(target.as_str()) {
                    need_parent()?;
                    plan.steps.push(Step::Symlink);
                    plan.diff.push(Diff {
                        what: p.clone(),
                        before: now.link_target.as_ref().map(|t| format!("-> {t}")),
                        after: Some(format!("-> {target}")),
                    });
                    plan.notes.push(format!("linked {p} -> {target}"));
                }
                // A link's own mode means nothing; only its owner is fixed.
                self.plan_owner(now, &mut plan);
                return Ok(plan);
            }
            State::Touch if creating => {
                need_parent()?;
                plan.steps.push(Step::Touch);
                plan.diff.push(Diff {
                    what: p.clone(),
                    before: None,
                    after: Some("file".into()),
                });
                plan.notes.push(format!("created {p}"));
            }
            State::Managed => {
                let want = self.content.as_deref().unwrap_or_default();
                let same = now.kind == Kind::File
                    && now.sha256.as_deref() == Some(sha256_hex(want).as_str());
                if !same {
                    need_parent()?;
                    plan.steps.push(Step::Write);
                    let before = match (now.kind, &now.content) {
                        (Kind::Absent, _) => None,
                        (Kind::File, Some(c)) => Some(shown(c)),
                        (Kind::File, None) => Some(format!(
                            "({} bytes, sha256 {})",
                            now.size.unwrap_or(0),
                            now.sha256.as_deref().unwrap_or("?")
                        )),
                        (k, _) => Some(format!("({})", kind_word(k))),
                    };
                    plan.diff.push(Diff {
                        what: p.clone(),
                        before,
                        after: Some(shown(want)),
                    });
                    plan.notes.push(format!("wrote {p} ({} bytes)", want.len()));
                    // The write sets mode and owner on the new file; the
                    // diff still says what they were.
                    if !creating {
                        self.attr_diffs(now, &mut plan);
                    }
                    return Ok(plan);
                }
            }
            _ => {}
        }
        if creating {
            // Made just now: mode and owner are set right after.
            if let Some(m) = self.mode {
                plan.steps.push(Step::Chmod(m));
            }
            if self.owner.is_some() || self.group.is_some() {
                plan.steps.push(Step::Chown);
            }
            return Ok(plan);
        }
        let before = plan.steps.len();
        self.attr_diffs(now, &mut plan);
        if let Some(m) = self.mode.filter(|m| now.mode != Some(*m)) {
            plan.steps.push(Step::Chmod(m));
        }
        self.plan_owner(now, &mut plan);
        if plan.steps.len() > before {
            plan.notes.push(format!("fixed mode/owner of {p}"));
        }
        Ok(plan)
    }

    fn owner_differs(&self, now: &Reading) -> bool {
        (self.owner.is_some() && self.owner != now.owner)
            || (self.group.is_some() && self.group != now.group)
    }

    /// A path made by this plan gets the owner given; an existing one only
    /// when its owner differs.
    fn plan_owner(&self, now: &Reading, plan: &mut Plan) {
        let given = self.owner.is_some() || self.group.is_some();
        if given && (now.kind == Kind::Absent || self.owner_differs(now)) {
            plan.steps.push(Step::Chown);
        }
    }

    fn attr_diffs(&self, now: &Reading, plan: &mut Plan) {
        let p = &self.path;
        if let Some(m) = self.mode.filter(|m| now.mode != Some(*m)) {
            plan.diff.push(Diff {
                what: format!("{p}:mode"),
                before: now.mode.map(show_mode),
                after: Some(show_mode(m)),
            });
        }
        if self.owner.is_some() && self.owner != now.owner {
            plan.diff.push(Diff {
                what: format!("{p}:owner"),
                before: now.owner.clone(),
                after: self.owner.clone(),
            });
        }
        if self.group.is_some() && self.group != now.group {
            plan.diff.push(Diff {
                what: format!("{p}:group"),
                before: now.group.clone(),
                after: self.group.clone(),
            });
        }
    }

    fn chown_args(&self) -> String {
        match (&self.owner, &self.group) {
            (Some(o), Some(g)) => quote(&format!("{o}:{g}")),
            (Some(o), None) => quote(o),
            (None, Some(g)) => quote(&format!(":{g}")),
            (None, None) => String::new(),
        }
    }

    /// The script making `plan`'s changes; a `Write` reads the content on
    /// stdin.
    pub fn apply_script(&self, plan: &Plan, now: &Reading) -> String {
        let mut s = format!("set -e\np={}\n", quote(&self.path));
        let dir = quote(&parent(&self.path));
        let mkparent = if self.makedirs {
            format!("mkdir -p {dir}\n")
        } else {
            String::new()
        };
        for step in &plan.steps {
            match step {
                Step::Remove => s.push_str("rm -rf \"$p\"\n"),
                Step::Mkdir => s.push_str("mkdir -p \"$p\"\n"),
                Step::Touch => {
                    s.push_str(&mkparent);
                    s.push_str(": >> \"$p\"\n");
                }
                Step::Symlink => {
                    s.push_str(&mkparent);
                    s.push_str(&format!(
                        "ln -sfn {} \"$p\"\n",
                        quote(self.target.as_deref().unwrap_or(""))
                    ));
                }
                Step::Chmod(m) => s.push_str(&format!("chmod {} \"$p\"\n", show_mode(*m))),
                Step::Chown if self.state == State::Symlink => {
                    s.push_str(&format!("chown -h {} \"$p\"\n", self.chown_args()));
                }
                Step::Chown => s.push_str(&format!("chown {} \"$p\"\n", self.chown_args())),
                Step::Write => {
                    s.push_str(&mkparent);
                    let mode = self
                        .mode
                        .or(now.mode.filter(|_| now.kind == Kind::File))
                        .unwrap_or(0o644);
                    s.push_str(&format!(
                        "t=$(mktemp {dir}/.cairn-XXXXXX)\ntrap 'rm -f \"$t\"' EXIT\ncat > \"$t\"\nchmod {} \"$t\"\n",
                        show_mode(mode)
                    ));
                    if self.owner.is_some() || self.group.is_some() {
                        s.push_str(&format!("chown {} \"$t\"\n", self.chown_args()));
                    } else if let (Kind::File, Some(o), Some(g)) =
                        (now.kind, &now.owner, &now.group)
                    {
                        // Keep the replaced file's owner; only root may, and
                        // a user replacing their own file needs not.
                        s.push_str(&format!(
                            "chown {} \"$t\" 2>/dev/null || true\n",
                            quote(&format!("{o}:{g}"))
                        ));
                    }
                    s.push_str("mv -f \"$t\" \"$p\"\ntrap - EXIT\n");
                }
            }
        }
        s
    }
}

fn kind_word(k: Kind) -> &'static str {
    match k {
        Kind::Absent => "nothing",
        Kind::File => "file",
        Kind::Dir => "directory",
        Kind::Link => "symlink",
        Kind::Other => "special file",
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn render(template: &str, vars: Option<serde_json::Value>) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    // A misspelt variable is an error, not an empty string in a config file.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // A config file's last newline is part of it (Jinja drops it by default).
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()?,
    );
    let ctx = minijinja::Value::from(minijinja::value::Serde(
        vars.unwrap_or(serde_json::Value::Object(Default::default())),
    ));
    env.render_str(template, ctx)
}

#[async_trait]
impl Module for File {
    fn name(&self) -> &str {
        "file"
    }

    async fn run(&self, host: &dyn Remote, ctx: &RunContext) -> Result<Outcome, ModuleError> {
        let probed = host::run(host, ctx, self.probe_script(), None, None).await?;
        self.run_probed(host, ctx, probed).await
    }

    fn probe(&self) -> Option<String> {
        Some(self.probe_script())
    }

    async fn run_probed(
        &self,
        host: &dyn Remote,
        ctx: &RunContext,
        probed: Output,
    ) -> Result<Outcome, ModuleError> {
        if !probed.success() {
            return Err(host::failed("file", "reading the path", &probed));
        }
        let out = probed;
        let now = File::parse(&out.stdout);
        let plan = self
            .plan(&now)
            .map_err(|message| ModuleError::refused("file", message))?;
        let changed = !plan.steps.is_empty();
        let summary = if !changed {
            format!("{} is as wanted", self.path)
        } else if ctx.check {
            format!("would have: {}", plan.notes.join(", "))
        } else {
            plan.notes.join(", ")
        };
        if changed && !ctx.check {
            let stdin = plan
                .steps
                .contains(&Step::Write)
                .then(|| Bytes::from(self.content.clone().unwrap_or_default()));
            host::must(
                "file",
                &format!("changing {}", self.path),
                host,
                ctx,
                self.apply_script(&plan, &now),
                stdin,
            )
            .await?;
        }
        Ok(Outcome {
            changed,
            summary,
            diff: plan.diff,
            ..Outcome::default()
        })
    }
}

#[cfg(test)]
mod tests;
