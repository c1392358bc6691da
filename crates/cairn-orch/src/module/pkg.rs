//! `pkg`: Debian packages through apt (Ansible's `apt`, Salt's `pkg.*`).
//!
//! The probe asks dpkg what is installed and apt's cache what it would
//! install, for every package at once; the plan installs, upgrades or
//! removes only what differs. `apt-get update` runs only when a package to
//! install is unknown to the cache: refreshing every time is slow and makes
//! a second run do network work for nothing.

use async_trait::async_trait;
use serde_json::json;

use super::args::{ArgReader, Args};
use super::contract::{Module, RunContext};
use super::error::ModuleError;
use super::host;
use super::outcome::{Diff, Outcome};
use crate::remote::{Remote, quote};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Installed,
    Latest,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkg {
    pub names: Vec<String>,
    pub state: State,
    /// Refresh the cache before anything else (Salt's `refresh`).
    pub update_cache: bool,
}

/// One package as the host sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub name: String,
    /// The installed version, if installed.
    pub installed: Option<String>,
    /// What `apt-get install` would install; `None`: unknown to the cache.
    pub candidate: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub install: Vec<String>,
    pub remove: Vec<String>,
    pub update_first: bool,
    pub diff: Vec<Diff>,
}

impl Pkg {
    pub fn new(args: &Args) -> Result<Pkg, ModuleError> {
        let mut r = ArgReader::new("pkg", args);
        let names = match (r.list(&["names", "pkgs"])?, r.list(&["name", "pkg"])?) {
            (Some(_), Some(_)) => return Err(r.bad("give `name` or `names`, not both")),
            (Some(n), None) | (None, Some(n)) => n,
            (None, None) => Vec::new(),
        };
        if names.is_empty() {
            return Err(r.bad("`name` or `names` is required"));
        }
        for n in &names {
            // Debian policy's package names, plus an optional `=version`.
            let base = n.split_once('=').map_or(n.as_str(), |(b, _)| b);
            if base.is_empty()
                || !base
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.:".contains(&b))
            {
                return Err(r.bad(format!("`{n}` is not a Debian package name")));
            }
        }
        let state = match r.choice(
            &["state"],
            &[
                &["installed", "present"],
                &["latest"],
                &["removed", "absent", "purged"],
            ],
        )? {
            Some("latest") => State::Latest,
            Some("removed") => State::Removed,
            _ => State::Installed,
        };
        let update_cache = r.bool(&["update_cache", "refresh"])?.unwrap_or(false);
        r.finish()?;
        Ok(Pkg {
            names,
            state,
            update_cache,
        })
    }

    fn bases(&self) -> Vec<&str> {
        self.names
            .iter()
            .map(|n| n.split_once('=').map_or(n.as_str(), |(b, _)| b))
            .collect()
    }

    pub fn probe_script(&self) -> String {
        let names: Vec<_> = self.bases().into_iter().map(quote).collect();
        format!(
            r#"command -v dpkg-query >/dev/null || {{ echo 'no dpkg-query: pkg handles Debian hosts (apt)' >&2; exit 3; }}
for p in {}; do
  s=$(dpkg-query -W -f='${{db:Status-Abbrev}} ${{Version}}' "$p" 2>/dev/null) || s=
  c=$(apt-cache policy "$p" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
  printf 'pkg\t%s\t%s\t%s\n' "$p" "$s" "$c"
done
"#,
            names.join(" ")
        )
    }

    pub fn parse(stdout: &str) -> Vec<Seen> {
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix("pkg\t"))
            .map(|l| {
                let mut f = l.split('\t');
                let name = f.next().unwrap_or("").to_string();
                let status = f.next().unwrap_or("");
                let candidate = f.next().unwrap_or("").trim();
                // `ii 1.2-3`: wanted install, installed; `rc`: removed, config
                // files left, which is not installed.
                let installed = status
                    .strip_prefix("ii")
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty());
                Seen {
                    name,
                    installed,
                    candidate: Some(candidate.to_string())
                        .filter(|c| !c.is_empty() && c != "(none)"),
                }
            })
            .collect()
    }

    pub fn plan(&self, seen: &[Seen]) -> Plan {
        let mut plan = Plan {
            update_first: self.update_cache,
            ..Plan::default()
        };
        for (want, base) in self.names.iter().zip(self.bases()) {
            let s = seen
                .iter()
                .find(|s| s.name == base)
                .cloned()
                .unwrap_or_default();
            let pinned = want.split_once('=').map(|(_, v)| v.to_string());
            let (act, after) = match self.state {
                State::Removed => (s.installed.is_some(), None),
                State::Installed => match &pinned {
                    Some(v) => (s.installed.as_ref() != Some(v), Some(v.clone())),
                    None => (
                        s.installed.is_none(),
                        s.candidate.clone().or(Some("(latest)".into())),
                    ),
                },
                State::Latest => (
                    s.installed.is_none() || (s.candidate.is_some() && s.installed != s.candidate),
                    s.candidate.clone().or(Some("(latest)".into())),
                ),
            };
            if !act {
                continue;
            }
            if self.state == State::Removed {
                plan.remove.push(base.to_string());
            } else {
                plan.install.push(want.clone());
                if s.candidate.is_none() {
                    plan.update_first = true;
                }
            }
            plan.diff.push(Diff {
                what: format!("pkg:{base}"),
                before: s.installed.clone(),
                after,
            });
        }
        plan
    }

    pub fn apply_script(&self, plan: &Plan) -> String {
        let mut s =
            String::from("set -e\nDEBIAN_FRONTEND=noninteractive; export DEBIAN_FRONTEND\n");
        if plan.update_first {
            s.push_str("apt-get update -q\n");
        }
        let words = |v: &[String]| v.iter().map(|n| quote(n)).collect::<Vec<_>>().join(" ");
        if !plan.install.is_empty() {
            // confold: a config file the admin changed is kept, never a prompt.
            s.push_str(&format!(
                "apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold {}\n",
                words(&plan.install)
            ));
        }
        if !plan.remove.is_empty() {
            s.push_str(&format!("apt-get remove -y -q {}\n", words(&plan.remove)));
        }
        s
    }
}

#[async_trait]
impl Module for Pkg {
    fn name(&self) -> &str {
        "pkg"
    }

    async fn run(&self, host: &dyn Remote, ctx: &RunContext) -> Result<Outcome, ModuleError> {
        let out = host::must(
            "pkg",
            "reading packages",
            host,
            ctx,
            self.probe_script(),
            None,
        )
        .await?;
        let plan = self.plan(&Pkg::parse(&out.stdout_str()));
        let changed = !(plan.install.is_empty() && plan.remove.is_empty());
        let list = |v: &[String]| v.join(", ");
        let summary = match (changed, ctx.check) {
            (false, _) => format!("{} as wanted", list(&self.names)),
            (true, check) => {
                let mut parts = Vec::new();
                if !plan.install.is_empty() {
                    parts.push(format!("installed {}", list(&plan.install)));
                }
                if !plan.remove.is_empty() {
                    parts.push(format!("removed {}", list(&plan.remove)));
                }
                let done = parts.join("; ");
                if check {
                    format!("would have {done}")
                } else {
                    done
                }
            }
        };
        let mut outcome = Outcome {
            changed,
            summary,
            diff: plan.diff.clone(),
            data: json!({ "install": plan.install, "remove": plan.remove }),
            ..Outcome::default()
        };
        if changed && !ctx.check {
            let done =
                host::must("pkg", "apt-get", host, ctx, self.apply_script(&plan), None).await?;
            outcome.stdout = done.stdout_str();
            outcome.stderr = done.stderr_str();
            outcome.rc = done.status;
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::testkit::{Fake, args, assert_sh, check};

    fn pkg(pairs: &[(&str, &str)]) -> Pkg {
        Pkg::new(&args(pairs)).unwrap()
    }

    const NGINX_ONLY: &str = "pkg\tnginx\tii  1.22-1\t1.22-1\npkg\tcurl\t\t7.88-1\n";

    #[test]
    fn reading_dpkg_and_apt_cache() {
        let seen = Pkg::parse(
            "pkg\tnginx\tii  1.22-1\t1.24-1\npkg\tgone\trc  2.0\t2.0\npkg\tnope\t\t(none)\n",
        );
        assert_eq!(seen[0].installed.as_deref(), Some("1.22-1"));
        assert_eq!(seen[0].candidate.as_deref(), Some("1.24-1"));
        assert_eq!(
            seen[1].installed, None,
            "config files left is not installed"
        );
        assert_eq!(seen[2].candidate, None);
    }

    #[test]
    fn plans_install_latest_remove() {
        let seen =
            Pkg::parse("pkg\tnginx\tii  1.22-1\t1.24-1\npkg\tcurl\t\t7.88-1\npkg\tnew\t\t\n");
        let p = pkg(&[("names", "nginx,curl")]).plan(&seen);
        assert_eq!(p.install, vec!["curl"]);
        assert!(!p.update_first, "curl is known to the cache");
        assert_eq!(p.diff[0].render(), "pkg:curl: (absent) -> 7.88-1");
        let p = pkg(&[("name", "nginx"), ("state", "latest")]).plan(&seen);
        assert_eq!(p.install, vec!["nginx"]);
        assert_eq!(p.diff[0].render(), "pkg:nginx: 1.22-1 -> 1.24-1");
        let p = pkg(&[("name", "new")]).plan(&seen);
        assert!(p.update_first, "unknown to the cache: update first");
        let p = pkg(&[("names", "nginx,curl"), ("state", "absent")]).plan(&seen);
        assert_eq!(p.remove, vec!["nginx"]);
        let p = pkg(&[("name", "nginx=1.22-1")]).plan(&seen);
        assert!(p.install.is_empty());
        assert!(Pkg::new(&args(&[("name", "Bad Name")])).is_err());
        assert!(Pkg::new(&args(&[("state", "installed")])).is_err());
    }

    #[tokio::test]
    async fn installs_once_then_nothing() {
        let m = pkg(&[("names", "nginx,curl")]);
        let host = Fake::new(&[(0, NGINX_ONLY), (0, "Setting up curl\n")]);
        let root = RunContext {
            become_user: Some("root".into()),
            ..RunContext::default()
        };
        let o = m.run(&host, &root).await.unwrap();
        assert!(o.changed);
        assert!(
            host.seen
                .lock()
                .unwrap()
                .iter()
                .all(|e| e.become_user.as_deref() == Some("root")),
            "probe and apply both run as the context's user"
        );
        let scripts = host.scripts();
        assert_eq!(scripts.len(), 2);
        assert!(scripts[0].contains("dpkg-query -W"));
        assert!(
            scripts[1].contains("apt-get install -y -q"),
            "{}",
            scripts[1]
        );
        assert!(
            scripts[1].ends_with(" curl\n"),
            "only what is missing: {}",
            scripts[1]
        );
        assert!(!scripts[1].contains("apt-get update"));
        assert!(scripts[1].contains("DEBIAN_FRONTEND=noninteractive"));
        for s in &scripts {
            assert_sh(s);
        }

        let after = "pkg\tnginx\tii  1.22-1\t1.22-1\npkg\tcurl\tii  7.88-1\t7.88-1\n";
        let host = Fake::new(&[(0, after)]);
        let o = m.run(&host, &RunContext::default()).await.unwrap();
        assert!(!o.changed, "{o:?}");
        assert_eq!(host.scripts().len(), 1, "no apply script");
    }

    #[tokio::test]
    async fn check_mode_and_salt_names() {
        let m = crate::module::load("pkg.removed", &args(&[("name", "nginx")])).unwrap();
        let host = Fake::new(&[(0, NGINX_ONLY)]);
        let o = m.run(&host, &check()).await.unwrap();
        assert!(o.changed && o.summary.starts_with("would have removed nginx"));
        assert_eq!(host.scripts().len(), 1);
        let p = pkg(&[("name", "nginx"), ("state", "removed")]);
        let script = p.apply_script(&p.plan(&Pkg::parse(NGINX_ONLY)));
        assert!(script.contains("apt-get remove -y -q nginx"));
        assert_sh(&script);
    }

    #[tokio::test]
    async fn a_failed_apt_get_is_failed() {
        let host = Fake::new(&[(0, "pkg\tx\t\t\n"), (100, "")]);
        let err = pkg(&[("name", "x")])
            .run(&host, &RunContext::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ModuleError::Failed { rc: Some(100), .. }),
            "{err:?}"
        );
        assert!(host.scripts()[1].contains("apt-get update -q"));
    }
}
