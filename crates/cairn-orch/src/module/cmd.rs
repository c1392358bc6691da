//! `cmd`: run a shell command (Ansible's `shell`, Salt's `cmd.run`).
//!
//! A command is opaque, so it is always `changed` when it runs; `creates`,
//! `unless` and `onlyif` are how a state makes it idempotent. They are read
//! in one probe, and the command itself is the apply step.

use async_trait::async_trait;

use super::args::{ArgReader, Args};
use super::contract::{Module, RunContext};
use super::error::ModuleError;
use super::host::{self, kv};
use super::outcome::Outcome;
use crate::remote::{Output, Remote, quote};

#[derive(Debug, Clone, PartialEq)]
pub struct Cmd {
    pub cmd: String,
    pub creates: Option<String>,
    pub unless: Option<String>,
    pub onlyif: Option<String>,
    pub chdir: Option<String>,
    pub env: Vec<(String, String)>,
}

/// What the probe found about the guards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    pub creates_exists: bool,
    /// `unless`'s exit status.
    pub unless_rc: Option<i32>,
    pub onlyif_rc: Option<i32>,
}

impl Cmd {
    pub fn new(args: &Args) -> Result<Cmd, ModuleError> {
        let mut r = ArgReader::new("cmd", args);
        let cmd = Cmd {
            cmd: r.required(&["cmd", "name", "_raw_params"])?,
            creates: r.str(&["creates"])?,
            unless: r.str(&["unless"])?,
            onlyif: r.str(&["onlyif"])?,
            chdir: r.str(&["chdir", "cwd"])?,
            env: r.map(&["env", "environment"])?,
        };
        for (k, _) in &cmd.env {
            if k.is_empty()
                || k.starts_with(|c: char| c.is_ascii_digit())
                || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(r.bad(format!("`{k}` is not an environment variable name")));
            }
        }
        r.finish()?;
        Ok(cmd)
    }

    fn has_guards(&self) -> bool {
        self.creates.is_some() || self.unless.is_some() || self.onlyif.is_some()
    }

    /// `cd` and exports every script of this command starts with, so the
    /// guards see what the command will see.
    fn prelude(&self) -> String {
        let mut s = String::new();
        if let Some(dir) = &self.chdir {
            s.push_str(&format!("cd {} || exit 1\n", quote(dir)));
        }
        for (k, v) in &self.env {
            s.push_str(&format!("{k}={}; export {k}\n", quote(v)));
        }
        s
    }

    pub fn probe_script(&self) -> String {
        let mut s = self.prelude();
        if let Some(p) = &self.creates {
            s.push_str(&format!(
                "if [ -e {} ]; then echo creates=1; fi\n",
                quote(p)
            ));
        }
        for (key, guard) in [("unless", &self.unless), ("onlyif", &self.onlyif)] {
            if let Some(g) = guard {
                s.push_str(&format!(
                    "sh -c {} </dev/null >/dev/null 2>&1; echo {key}=$?\n",
                    quote(g)
                ));
            }
        }
        s
    }

    pub fn parse(stdout: &str) -> Reading {
        let m = kv(stdout);
        Reading {
            creates_exists: m.get("creates").is_some_and(|v| v == "1"),
            unless_rc: m.get("unless").and_then(|v| v.parse().ok()),
            onlyif_rc: m.get("onlyif").and_then(|v| v.parse().ok()),
        }
    }

    /// Why the command need not run, if it need not. A fired watch runs it
    /// regardless (Salt's `mod_watch` for `cmd.run`).
    pub fn skip_reason(&self, reading: &Reading, watch_fired: bool) -> Option<String> {
        if watch_fired {
            return None;
        }
        if reading.creates_exists {
            return Some(format!(
                "skipped: {} exists",
                self.creates.as_deref().unwrap_or("")
            ));
        }
        if reading.unless_rc == Some(0) {
            return Some("skipped: `unless` succeeded".into());
        }
        if self.onlyif.is_some() && reading.onlyif_rc != Some(0) {
            return Some("skipped: `onlyif` failed".into());
        }
        None
    }

    pub fn apply_script(&self) -> String {
        format!("{}{}\n", self.prelude(), self.cmd)
    }
}

#[async_trait]
impl Module for Cmd {
    fn name(&self) -> &str {
        "cmd"
    }

    async fn run(&self, host: &dyn Remote, ctx: &RunContext) -> Result<Outcome, ModuleError> {
        if self.has_guards() && !ctx.watch_fired {
            let probed = host::run(host, ctx, self.probe_script(), None, None).await?;
            if let Some(skipped) = self.judge(&probed)? {
                return Ok(skipped);
            }
        }
        self.apply(host, ctx).await
    }

    /// Only `creates`, a test of a path: `unless` and `onlyif` are the
    /// user's commands, and run only when the state does, at its turn.
    fn probe(&self) -> Option<String> {
        (self.creates.is_some() && self.unless.is_none() && self.onlyif.is_none())
            .then(|| self.probe_script())
    }

    async fn run_probed(
        &self,
        host: &dyn Remote,
        ctx: &RunContext,
        probed: Output,
    ) -> Result<Outcome, ModuleError> {
        if self.has_guards()
            && !ctx.watch_fired
            && let Some(skipped) = self.judge(&probed)?
        {
            return Ok(skipped);
        }
        self.apply(host, ctx).await
    }
}

impl Cmd {
    /// What the guards' probe says: skip (with why), or run.
    fn judge(&self, probed: &Output) -> Result<Option<Outcome>, ModuleError> {
        if !probed.success() {
            return Err(host::failed(
                "cmd",
                "checking creates/unless/onlyif",
                probed,
            ));
        }
        Ok(self
            .skip_reason(&Cmd::parse(&probed.stdout_str()), false)
            .map(|reason| Outcome {
                summary: reason,
                ..Outcome::default()
            }))
    }

    async fn apply(&self, host: &dyn Remote, ctx: &RunContext) -> Result<Outcome, ModuleError> {
        if ctx.check {
            return Ok(Outcome {
                changed: true,
                summary: format!("would run: {}", self.cmd),
                ..Outcome::default()
            });
        }
        let out = host::run(host, ctx, self.apply_script(), None, None).await?;
        if !out.success() {
            return Err(host::failed("cmd", &format!("`{}`", self.cmd), &out));
        }
        Ok(Outcome {
            changed: true,
            summary: format!("ran: {}", self.cmd),
            stdout: out.stdout_str(),
            stderr: out.stderr_str(),
            rc: out.status,
            ..Outcome::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::testkit::{Scratch, args, assert_sh, check, run};

    fn cmd(pairs: &[(&str, &str)]) -> Cmd {
        Cmd::new(&args(pairs)).unwrap()
    }

    #[test]
    fn guards_decide_without_a_host() {
        let c = cmd(&[("cmd", "x"), ("creates", "/a"), ("onlyif", "true")]);
        let ran = Reading {
            creates_exists: false,
            unless_rc: None,
            onlyif_rc: Some(0),
        };
        assert_eq!(c.skip_reason(&ran, false), None);
        let made = Reading {
            creates_exists: true,
            ..ran.clone()
        };
        assert!(c.skip_reason(&made, false).unwrap().contains("/a exists"));
        assert_eq!(
            c.skip_reason(&made, true),
            None,
            "a fired watch runs it anyway"
        );
        let not = Reading {
            onlyif_rc: Some(1),
            ..ran
        };
        assert!(c.skip_reason(&not, false).is_some());
        let u = cmd(&[("cmd", "x"), ("unless", "test -f /x")]);
        assert!(
            u.skip_reason(
                &Reading {
                    unless_rc: Some(0),
                    ..Reading::default()
                },
                false
            )
            .is_some()
        );
        assert!(
            u.skip_reason(
                &Reading {
                    unless_rc: Some(1),
                    ..Reading::default()
                },
                false
            )
            .is_none()
        );
    }

    #[test]
    fn scripts_are_valid_sh_and_env_names_are_checked() {
        let c = cmd(&[
            ("cmd", "echo $A"),
            ("creates", "/a b"),
            ("unless", "false"),
            ("chdir", "/tmp"),
            ("env", "A=1 B=x'y"),
        ]);
        assert_sh(&c.probe_script());
        assert_sh(&c.apply_script());
        assert_eq!(
            c.env,
            vec![("A".into(), "1".into()), ("B".into(), "x'y".into())]
        );
        assert!(Cmd::new(&args(&[("cmd", "x"), ("env", "1A=2")])).is_err());
        assert!(Cmd::new(&args(&[("creates", "/x")])).is_err());
    }

    #[tokio::test]
    async fn runs_in_chdir_with_env_and_reports_output() {
        let d = Scratch::new();
        let o = run(
            "cmd",
            &[
                ("cmd", "echo \"$GREETING\" > out; cat out; pwd"),
                ("chdir", &d.s("")),
                ("env", "GREETING=hello"),
            ],
            &Default::default(),
        )
        .await
        .unwrap();
        assert!(o.changed);
        assert_eq!(o.rc, Some(0));
        assert!(o.stdout.starts_with("hello\n"), "{}", o.stdout);
        assert_eq!(std::fs::read_to_string(d.path("out")).unwrap(), "hello\n");
    }

    #[tokio::test]
    async fn creates_makes_it_idempotent() {
        let d = Scratch::new();
        let a = [
            ("cmd", "echo ran >> log; touch marker"),
            ("chdir", &d.s("")[..]),
            ("creates", "marker"),
        ];
        assert!(run("cmd", &a, &Default::default()).await.unwrap().changed);
        let second = run("cmd", &a, &Default::default()).await.unwrap();
        assert!(!second.changed, "{second:?}");
        assert_eq!(std::fs::read_to_string(d.path("log")).unwrap(), "ran\n");
        let watched = RunContext {
            watch_fired: true,
            ..RunContext::default()
        };
        assert!(run("cmd", &a, &watched).await.unwrap().changed);
        assert_eq!(
            std::fs::read_to_string(d.path("log")).unwrap(),
            "ran\nran\n"
        );
    }

    #[tokio::test]
    async fn unless_and_onlyif_and_check() {
        let d = Scratch::new();
        let log = d.s("log");
        let body = format!("echo x >> {log}");
        let o = run(
            "cmd",
            &[("cmd", &body), ("unless", "true")],
            &Default::default(),
        )
        .await
        .unwrap();
        assert!(!o.changed);
        let o = run(
            "cmd",
            &[("cmd", &body), ("onlyif", "false")],
            &Default::default(),
        )
        .await
        .unwrap();
        assert!(!o.changed);
        let o = run("cmd", &[("cmd", &body), ("unless", "false")], &check())
            .await
            .unwrap();
        assert!(o.changed && o.summary.starts_with("would run"));
        assert!(!d.path("log").exists(), "check mode ran nothing");
        let o = run(
            "cmd.run",
            &[("name", &body), ("onlyif", "true")],
            &Default::default(),
        )
        .await
        .unwrap();
        assert!(o.changed);
        assert!(d.path("log").exists());
    }

    #[tokio::test]
    async fn a_failing_command_is_failed_with_its_output() {
        let err = run(
            "cmd",
            &[("cmd", "echo out; echo bad >&2; exit 4")],
            &Default::default(),
        )
        .await
        .unwrap_err();
        match err {
            ModuleError::Failed {
                rc,
                stdout,
                stderr,
                message,
                ..
            } => {
                assert_eq!(rc, Some(4));
                assert_eq!(stdout, "out\n");
                assert_eq!(stderr, "bad\n");
                assert!(message.contains("exit 4"), "{message}");
            }
            e => panic!("{e:?}"),
        }
    }
}
