//! `service`: a service running or stopped, enabled at boot or not
//! (Ansible's `service`, Salt's `service.running`/`service.dead`).
//!
//! cairn's own init when the host is a local server running it (its
//! control socket `/run/cairn/init.sock` exists; checked first), through
//! `cairn service` on the host; systemd when the host booted with it
//! (`/run/systemd/system` exists, the test systemd itself uses); otherwise
//! the host's `service` command and `/etc/init.d` scripts, enabled through
//! `update-rc.d` or `chkconfig`. Both cairn's init and systemd read the
//! same unit files and `enabled` is the same symlink, so one state file
//! serves both.

use async_trait::async_trait;

use super::args::{ArgReader, Args};
use super::contract::{Module, RunContext};
use super::error::ModuleError;
use super::host::{self, kv};
use super::outcome::{Diff, Outcome};
use crate::remote::{Remote, quote};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Stopped,
    /// Restarted every run (so always changed).
    Restarted,
    /// Reloaded every run, or started if it was not running.
    Reloaded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub state: Option<State>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// `cairn init` (a local server's PID 1), driven with `cairn service`.
    Cairn,
    Systemd,
    SysV,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub init: Init,
    pub exists: bool,
    pub active: bool,
    pub enabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
    Reload,
    Enable,
    Disable,
}

impl Service {
    pub fn new(args: &Args) -> Result<Service, ModuleError> {
        let mut r = ArgReader::new("service", args);
        let name = r.required(&["name", "service"])?;
        if name.starts_with('-') || name.contains(['/', ' ', '\'', '"']) {
            return Err(r.bad(format!("`{name}` is not a service name")));
        }
        let state = r
            .choice(
                &["state"],
                &[
                    &["running", "started"],
                    &["stopped", "dead"],
                    &["restarted"],
                    &["reloaded"],
                ],
            )?
            .map(|s| match s {
                "running" => State::Running,
                "stopped" => State::Stopped,
                "restarted" => State::Restarted,
                _ => State::Reloaded,
            });
        let enabled = r.bool(&["enabled", "enable"])?;
        r.finish()?;
        if state.is_none() && enabled.is_none() {
            return Err(r.bad("give `state` or `enabled` (or both)"));
        }
        Ok(Service {
            name,
            state,
            enabled,
        })
    }

    pub fn probe_script(&self) -> String {
        format!(
            r#"n={n}
if [ -S /run/cairn/init.sock ]; then
  echo init=cairn
  c=$(command -v cairn || echo /usr/local/bin/cairn)
  err=$("$c" service "$n" status -o none 2>&1 >/dev/null)
  case $? in
    0) echo exists=1; echo active=1;;
    3) echo exists=1; echo active=0;;
    4) echo exists=0; echo active=0;;
    *) echo "$err" >&2; exit 1;;
  esac
  if "$c" service "$n" is-enabled -o none 2>/dev/null; then echo enabled=1; else echo enabled=0; fi
elif [ -d /run/systemd/system ]; then
  echo init=systemd
  case "$(systemctl show -p LoadState --value "$n" 2>/dev/null)" in not-found|'') echo exists=0;; *) echo exists=1;; esac
  if systemctl is-active -q "$n"; then echo active=1; else echo active=0; fi
  if systemctl is-enabled -q "$n" 2>/dev/null; then echo enabled=1; else echo enabled=0; fi
else
  echo init=sysv
  if [ -x "/etc/init.d/$n" ]; then echo exists=1; else echo exists=0; fi
  if service "$n" status >/dev/null 2>&1; then echo active=1; else echo active=0; fi
  if ls /etc/rc[2345].d/S[0-9][0-9]"$n" >/dev/null 2>&1; then echo enabled=1; else echo enabled=0; fi
fi
"#,
            n = quote(&self.name)
        )
    }

    pub fn parse(stdout: &str) -> Reading {
        let m = kv(stdout);
        let yes = |k: &str| m.get(k).is_some_and(|v| v == "1");
        Reading {
            init: match m.get("init").map(String::as_str) {
                Some("cairn") => Init::Cairn,
                Some("systemd") => Init::Systemd,
                _ => Init::SysV,
            },
            exists: yes("exists"),
            active: yes("active"),
            enabled: yes("enabled"),
        }
    }

    /// What to do; `watch_fired` restarts a service that should run and
    /// does (Salt's `mod_watch`).
    pub fn plan(&self, now: &Reading, watch_fired: bool) -> Result<Vec<Action>, String> {
        if !now.exists {
            return Err(format!("no service named {}", self.name));
        }
        let mut plan = Vec::new();
        match self.state {
            Some(State::Running) if !now.active => plan.push(Action::Start),
            Some(State::Running) if watch_fired => plan.push(Action::Restart),
            Some(State::Stopped) if now.active => plan.push(Action::Stop),
            Some(State::Restarted) => plan.push(Action::Restart),
            Some(State::Reloaded) if now.active => plan.push(Action::Reload),
            Some(State::Reloaded) => plan.push(Action::Start),
            _ => {}
        }
        match self.enabled {
            Some(true) if !now.enabled => plan.push(Action::Enable),
            Some(false) if now.enabled => plan.push(Action::Disable),
            _ => {}
        }
        Ok(plan)
    }

    pub fn apply_script(&self, init: Init, plan: &[Action]) -> String {
        let mut s = format!("set -e\nn={}\n", quote(&self.name));
        if init == Init::Cairn {
            s.push_str("c=$(command -v cairn || echo /usr/local/bin/cairn)\n");
        }
        for a in plan {
            let line = match (init, a) {
                (Init::Cairn, Action::Start) => "\"$c\" service \"$n\" start -o none",
                (Init::Cairn, Action::Stop) => "\"$c\" service \"$n\" stop -o none",
                (Init::Cairn, Action::Restart) => "\"$c\" service \"$n\" restart -o none",
                (Init::Cairn, Action::Reload) => "\"$c\" service \"$n\" reload -o none",
                (Init::Cairn, Action::Enable) => "\"$c\" service \"$n\" enable -o none",
                (Init::Cairn, Action::Disable) => "\"$c\" service \"$n\" disable -o none",
                (Init::Systemd, Action::Start) => "systemctl start \"$n\"",
                (Init::Systemd, Action::Stop) => "systemctl stop \"$n\"",
                (Init::Systemd, Action::Restart) => "systemctl restart \"$n\"",
                (Init::Systemd, Action::Reload) => "systemctl reload \"$n\"",
                (Init::Systemd, Action::Enable) => "systemctl enable -q \"$n\"",
                (Init::Systemd, Action::Disable) => "systemctl disable -q \"$n\"",
                (Init::SysV, Action::Start) => "service \"$n\" start",
                (Init::SysV, Action::Stop) => "service \"$n\" stop",
                (Init::SysV, Action::Restart) => "service \"$n\" restart",
                (Init::SysV, Action::Reload) => "service \"$n\" reload",
                (Init::SysV, Action::Enable) => {
                    "if command -v update-rc.d >/dev/null; then update-rc.d \"$n\" defaults >/dev/null; update-rc.d \"$n\" enable; \
                     elif command -v chkconfig >/dev/null; then chkconfig \"$n\" on; \
                     else echo 'no update-rc.d or chkconfig to enable it' >&2; exit 1; fi"
                }
                (Init::SysV, Action::Disable) => {
                    "if command -v update-rc.d >/dev/null; then update-rc.d \"$n\" disable; \
                     elif command -v chkconfig >/dev/null; then chkconfig \"$n\" off; \
                     else echo 'no update-rc.d or chkconfig to disable it' >&2; exit 1; fi"
                }
            };
            s.push_str(line);
            s.push('\n');
        }
        s
    }
}

fn word(a: Action) -> &'static str {
    match a {
        Action::Start => "started",
        Action::Stop => "stopped",
        Action::Restart => "restarted",
        Action::Reload => "reloaded",
        Action::Enable => "enabled",
        Action::Disable => "disabled",
    }
}

#[async_trait]
impl Module for Service {
    fn name(&self) -> &str {
        "service"
    }

    async fn run(&self, host: &dyn Remote, ctx: &RunContext) -> Result<Outcome, ModuleError> {
        let out = host::must(
            "service",
            "reading the service",
            host,
            ctx,
            self.probe_script(),
            None,
        )
        .await?;
        let now = Service::parse(&out.stdout_str());
        let plan = self
            .plan(&now, ctx.watch_fired)
            .map_err(|message| ModuleError::refused("service", message))?;
        let mut diff = Vec::new();
        let onoff = |b: bool, yes: &str, no: &str| Some(if b { yes } else { no }.to_string());
        if plan
            .iter()
            .any(|a| matches!(a, Action::Start | Action::Stop))
        {
            diff.push(Diff {
                what: format!("service:{}", self.name),
                before: onoff(now.active, "running", "stopped"),
                after: onoff(!now.active, "running", "stopped"),
            });
        }
        if plan
            .iter()
            .any(|a| matches!(a, Action::Enable | Action::Disable))
        {
            diff.push(Diff {
                what: format!("service:{}:enabled", self.name),
                before: onoff(now.enabled, "enabled", "disabled"),
                after: onoff(!now.enabled, "enabled", "disabled"),
            });
        }
        let done: Vec<_> = plan.iter().map(|a| word(*a)).collect();
        let summary = match (plan.is_empty(), ctx.check) {
            (true, _) => format!("{} as wanted", self.name),
            (false, true) => format!("would have {} {}", done.join(", "), self.name),
            (false, false) => format!("{} {}", done.join(", "), self.name),
        };
        if !plan.is_empty() && !ctx.check {
            host::must(
                "service",
                &format!("{} {}", done.join(", "), self.name),
                host,
                ctx,
                self.apply_script(now.init, &plan),
                None,
            )
            .await?;
        }
        Ok(Outcome {
            changed: !plan.is_empty(),
            summary,
            diff,
            ..Outcome::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::testkit::{Fake, args, assert_sh, check};

    fn svc(pairs: &[(&str, &str)]) -> Service {
        Service::new(&args(pairs)).unwrap()
    }

    const STOPPED: &str = "init=systemd\nexists=1\nactive=0\nenabled=0\n";
    const RUNNING: &str = "init=systemd\nexists=1\nactive=1\nenabled=1\n";

    #[test]
    fn plans_from_made_up_readings() {
        let s = svc(&[("name", "nginx"), ("state", "running"), ("enabled", "yes")]);
        let stopped = Service::parse(STOPPED);
        assert_eq!(
            s.plan(&stopped, false).unwrap(),
            vec![Action::Start, Action::Enable]
        );
        let running = Service::parse(RUNNING);
        assert!(s.plan(&running, false).unwrap().is_empty());
        assert_eq!(
            s.plan(&running, true).unwrap(),
            vec![Action::Restart],
            "a fired watch restarts"
        );
        let dead = svc(&[("name", "nginx"), ("state", "dead"), ("enabled", "no")]);
        assert_eq!(
            dead.plan(&running, false).unwrap(),
            vec![Action::Stop, Action::Disable]
        );
        let r = svc(&[("name", "nginx"), ("state", "restarted")]);
        assert_eq!(r.plan(&running, false).unwrap(), vec![Action::Restart]);
        let missing = Reading {
            exists: false,
            ..running
        };
        assert!(s.plan(&missing, false).unwrap_err().contains("no service"));
        assert!(Service::new(&args(&[("name", "x")])).is_err());
        assert!(Service::new(&args(&[("name", "x"), ("state", "up")])).is_err());
    }

    #[tokio::test]
    async fn systemd_start_then_nothing() {
        let s = svc(&[("name", "nginx"), ("state", "running"), ("enabled", "true")]);
        let host = Fake::new(&[(0, STOPPED), (0, "")]);
        let o = s.run(&host, &RunContext::default()).await.unwrap();
        assert!(o.changed);
        assert_eq!(o.diff[0].render(), "service:nginx: stopped -> running");
        let scripts = host.scripts();
        assert!(scripts[0].contains("/run/systemd/system"));
        assert_eq!(
            scripts[1],
            "set -e\nn=nginx\nsystemctl start \"$n\"\nsystemctl enable -q \"$n\"\n"
        );
        assert_sh(&scripts[0]);
        assert_sh(&scripts[1]);

        let host = Fake::new(&[(0, RUNNING)]);
        assert!(!s.run(&host, &RunContext::default()).await.unwrap().changed);
        assert_eq!(host.scripts().len(), 1);

        let host = Fake::new(&[(0, STOPPED)]);
        assert!(s.run(&host, &check()).await.unwrap().changed);
        assert_eq!(host.scripts().len(), 1, "check runs no apply script");
    }

    const CAIRN_STOPPED: &str = "init=cairn\nexists=1\nactive=0\nenabled=0\n";
    const CAIRN_RUNNING: &str = "init=cairn\nexists=1\nactive=1\nenabled=1\n";

    #[tokio::test]
    async fn cairn_init_hosts_use_cairn_service() {
        let s = svc(&[("name", "web"), ("state", "running"), ("enabled", "yes")]);
        assert_eq!(Service::parse(CAIRN_STOPPED).init, Init::Cairn);
        // The socket is checked before systemd's directory.
        let probe = s.probe_script();
        let cairn = probe.find("/run/cairn/init.sock").unwrap();
        assert!(
            cairn < probe.find("/run/systemd/system").unwrap(),
            "{probe}"
        );
        assert_sh(&probe);

        let host = Fake::new(&[(0, CAIRN_STOPPED), (0, "")]);
        let o = s.run(&host, &RunContext::default()).await.unwrap();
        assert!(o.changed);
        assert_eq!(o.summary, "started, enabled web");
        assert_eq!(o.diff[0].render(), "service:web: stopped -> running");
        assert_eq!(
            o.diff[1].render(),
            "service:web:enabled: disabled -> enabled"
        );
        let apply = &host.scripts()[1];
        assert_eq!(
            apply,
            "set -e\nn=web\nc=$(command -v cairn || echo /usr/local/bin/cairn)\n\
             \"$c\" service \"$n\" start -o none\n\"$c\" service \"$n\" enable -o none\n"
        );
        assert_sh(apply);

        // Running and enabled: nothing to do, unless a watch fired.
        let host = Fake::new(&[(0, CAIRN_RUNNING)]);
        let o = s.run(&host, &RunContext::default()).await.unwrap();
        assert!(!o.changed);
        assert_eq!(host.scripts().len(), 1);
        let host = Fake::new(&[(0, CAIRN_RUNNING), (0, "")]);
        let ctx = RunContext {
            watch_fired: true,
            ..RunContext::default()
        };
        assert!(s.run(&host, &ctx).await.unwrap().changed);
        assert!(host.scripts()[1].ends_with("\"$c\" service \"$n\" restart -o none\n"));

        // --check: reported, not done.
        let host = Fake::new(&[(0, CAIRN_STOPPED)]);
        let o = s.run(&host, &check()).await.unwrap();
        assert!(o.changed);
        assert_eq!(o.summary, "would have started, enabled web");
        assert_eq!(host.scripts().len(), 1, "check runs no apply script");

        // No unit file: refused with the name.
        let host = Fake::new(&[(0, "init=cairn\nexists=0\nactive=0\nenabled=0\n")]);
        let err = s.run(&host, &RunContext::default()).await.unwrap_err();
        assert!(err.to_string().contains("no service named web"), "{err}");

        let off = svc(&[("name", "web"), ("state", "stopped"), ("enabled", "no")]);
        let script = off.apply_script(
            Init::Cairn,
            &[Action::Stop, Action::Disable, Action::Reload],
        );
        assert!(script.contains("\"$c\" service \"$n\" stop -o none\n"));
        assert!(script.contains("\"$c\" service \"$n\" disable -o none\n"));
        assert_sh(&script);
    }

    #[tokio::test]
    async fn sysv_hosts_use_service_and_update_rc_d() {
        let s = crate::module::load(
            "service.running",
            &args(&[("name", "ssh"), ("enabled", "yes")]),
        )
        .unwrap();
        let host = Fake::new(&[(0, "init=sysv\nexists=1\nactive=0\nenabled=0\n"), (0, "")]);
        let ctx = RunContext {
            watch_fired: true,
            ..RunContext::default()
        };
        assert!(s.run(&host, &ctx).await.unwrap().changed);
        let apply = &host.scripts()[1];
        assert!(apply.contains("service \"$n\" start"), "{apply}");
        assert!(apply.contains("update-rc.d \"$n\" defaults"), "{apply}");
        assert_sh(apply);
        let off = svc(&[("name", "ssh"), ("state", "stopped"), ("enabled", "no")]);
        assert_sh(&off.apply_script(Init::SysV, &[Action::Stop, Action::Disable]));
    }
}
