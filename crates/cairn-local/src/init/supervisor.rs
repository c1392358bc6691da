//! The services' state machine: start, stop (ExecStop or TERM, KILL after
//! TimeoutStopSec), restart, reload (ExecReload or HUP), what happens when
//! a main process exits (Restart= after RestartSec, at most
//! [`START_LIMIT`] starts in [`START_WINDOW`] as systemd's defaults), and
//! enable/disable as `systemctl enable` does it (a symlink in
//! `TARGET.wants/`).
//!
//! It owns no task and no clock: the init's loop calls it with the time
//! and the exits it reaped, and asks it for its next deadline. Answers to
//! requests that take time (a stop waits for the process to go) are kept
//! and sent when the job ends.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::control::{Reply, Request, Response, ServiceError, ServiceStatus, service_name};
use super::install;
use super::unit::{Exec, Exit, Unit};

/// At most this many starts in [`START_WINDOW`] (systemd's
/// StartLimitBurst and StartLimitIntervalSec defaults); one more and the
/// service is failed until it is started by hand.
pub const START_LIMIT: usize = 5;
pub const START_WINDOW: Duration = Duration::from_secs(10);

/// Where the supervisor finds and keeps things.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Unit files are looked up here, first match wins
    /// (`/etc/systemd/system`, `/lib/systemd/system`).
    pub unit_dirs: Vec<PathBuf>,
    /// Where `TARGET.wants/` symlinks are made (`/etc/systemd/system`).
    pub config_dir: PathBuf,
    /// `NAME.log` per service (`/var/log/cairn`).
    pub log_dir: PathBuf,
    /// The state changes, as JSON lines (`/run/cairn/events.jsonl`).
    pub events: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Inactive,
    Active,
    /// Asked to stop; KILL at `kill_at` if it has not gone.
    Stopping {
        kill_at: Instant,
        killed: bool,
    },
    /// Exited on its own; started again at `at`.
    AutoRestart {
        at: Instant,
    },
    Failed,
}

#[derive(Debug)]
struct Service {
    unit: Option<Unit>,
    state: State,
    pid: Option<u32>,
    since: Option<String>,
    restarts: u32,
    starts: VecDeque<Instant>,
    last_exit: Option<Exit>,
    error: Option<String>,
    /// Answered when the current stop (or restart) is done.
    waiters: Vec<Reply>,
    /// A restart: start again once stopped.
    then_start: bool,
}

impl Service {
    fn new() -> Service {
        Service {
            unit: None,
            state: State::Inactive,
            pid: None,
            since: None,
            restarts: 0,
            starts: VecDeque::new(),
            last_exit: None,
            error: None,
            waiters: Vec::new(),
            then_start: false,
        }
    }
}

#[derive(Debug)]
enum HelperKind {
    /// An ExecStop command; the rest run after it.
    Stop(Vec<Exec>),
    /// An ExecReload command; the rest run after it, then the answer.
    Reload(Vec<Exec>, Option<Reply>),
}

/// A process run for a service that is not its main process.
#[derive(Debug)]
struct Helper {
    service: String,
    kind: HelperKind,
    ignore_failure: bool,
}

/// The services of one init.
pub struct Supervisor {
    paths: Paths,
    env: BTreeMap<String, String>,
    builtin: BTreeMap<String, Unit>,
    services: BTreeMap<String, Service>,
    helpers: HashMap<u32, Helper>,
    /// Names in the order they last started (stopped in reverse).
    order: Vec<String>,
    /// Shutting down: these stop one after another; nothing starts.
    shutdown: Option<VecDeque<String>>,
}

fn now_text() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn signal(pid: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

/// Signals the service's process group (its pgid is its main pid).
fn signal_group(pid: u32, sig: Signal) {
    let _ = killpg(Pid::from_raw(pid as i32), sig);
}

impl Supervisor {
    /// A supervisor with `env` as the base of every service's environment.
    pub fn new(paths: Paths, env: BTreeMap<String, String>) -> Supervisor {
        Supervisor {
            paths,
            env,
            builtin: BTreeMap::new(),
            services: BTreeMap::new(),
            helpers: HashMap::new(),
            order: Vec::new(),
            shutdown: None,
        }
    }

    /// A unit that is the init's own rather than a file's.
    pub fn add_builtin(&mut self, unit: Unit) {
        self.builtin.insert(unit.name.clone(), unit);
    }

    fn unit_path(&self, name: &str) -> Option<PathBuf> {
        self.paths
            .unit_dirs
            .iter()
            .map(|d| d.join(format!("{name}.service")))
            .find(|p| p.exists())
    }

    /// Reads the unit anew (a changed file takes effect at the next start,
    /// no daemon-reload needed).
    fn load(&self, name: &str) -> Result<Unit, ServiceError> {
        if let Some(u) = self.builtin.get(name) {
            return Ok(u.clone());
        }
        let path = self.unit_path(name).ok_or_else(|| {
            ServiceError::Unknown(format!(
                "no service `{name}`: no {name}.service in {}",
                self.paths
                    .unit_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))
        })?;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ServiceError::Invalid(format!("{name}: reading {}: {e}", path.display()))
        })?;
        Unit::parse(name, &path, &text).map_err(|e| {
            ServiceError::Invalid(format!("{name}: the unit file cannot be used: {e}"))
        })
    }

    fn event(&self, name: &str, what: &str, pid: Option<u32>, exit: Option<Exit>, msg: &str) {
        let line = serde_json::json!({
            "tag": format!("cairn/service/{name}/{what}"),
            "time": now_text(),
            "service": name,
            "pid": pid,
            "exit": exit.map(|e| e.to_string()),
            "message": msg,
        });
        tracing::info!(
            "{name}: {what}{}",
            if msg.is_empty() {
                String::new()
            } else {
                format!(": {msg}")
            }
        );
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.paths.events)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            tracing::warn!("events {}: {e}", self.paths.events.display());
        }
    }

    fn log_file(&self, name: &str) -> Result<File, String> {
        std::fs::create_dir_all(&self.paths.log_dir)
            .and_then(|_| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.paths.log_dir.join(format!("{name}.log")))
            })
            .map_err(|e| format!("log {}/{name}.log: {e}", self.paths.log_dir.display()))
    }

    /// Starts `exec` of `unit` in a process group of its own, its output
    /// appended to the service's log.
    fn spawn(&self, unit: &Unit, exec: &Exec, main_pid: Option<u32>) -> Result<u32, String> {
        let mut env = unit.env(&self.env).map_err(|e| e.to_string())?;
        if let Some(pid) = main_pid {
            env.insert("MAINPID".into(), pid.to_string());
        }
        let mut cmd;
        let mut home = None;
        if let Some(user) = &unit.user {
            let u = nix::unistd::User::from_name(user)
                .ok()
                .flatten()
                .ok_or_else(|| format!("User={user}: no such user"))?;
            home = Some(u.dir.clone());
            env.insert("USER".into(), u.name.clone());
            env.insert("LOGNAME".into(), u.name.clone());
            env.insert("HOME".into(), u.dir.display().to_string());
            env.insert("SHELL".into(), u.shell.display().to_string());
            let gid = match &unit.group {
                Some(g) => group(g)?,
                None => u.gid.as_raw(),
            };
            let exec = exec.expand(&env);
            cmd = command(&exec);
            cmd.uid(u.uid.as_raw()).gid(gid);
        } else {
            let exec = exec.expand(&env);
            cmd = command(&exec);
            if let Some(g) = &unit.group {
                cmd.gid(group(g)?);
            }
        }
        let dir = match &unit.working_directory {
            Some((d, _)) if d.as_os_str() == "~" => home.unwrap_or_else(|| PathBuf::from("/")),
            Some((d, true)) if !d.is_dir() => PathBuf::from("/"),
            Some((d, _)) => d.clone(),
            None => PathBuf::from("/"),
        };
        let mut log = self.log_file(&unit.name)?;
        let _ = writeln!(log, "-- cairn init {}: {}", now_text(), exec.line());
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .env_clear()
            .envs(&env)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("`{}` did not start: {e}", exec.line()))?;
        // Reaped by the init's loop (waitpid), never through `child`.
        Ok(child.id())
    }

    /// Handles a request; the answer goes to `reply` now or when done.
    pub fn handle(&mut self, request: Request, reply: Reply, now: Instant) {
        let name = match &request {
            Request::List => {
                let _ = reply.send(Response::Services {
                    services: self.list(),
                });
                return;
            }
            Request::Start { name }
            | Request::Stop { name }
            | Request::Restart { name }
            | Request::Reload { name }
            | Request::Status { name }
            | Request::Enable { name }
            | Request::Disable { name } => match service_name(name) {
                Ok(n) => n,
                Err(error) => {
                    let _ = reply.send(Response::Error { error });
                    return;
                }
            },
        };
        if self.shutdown.is_some() && !matches!(request, Request::Status { .. }) {
            let _ = reply.send(Response::Error {
                error: ServiceError::Refused("the server is shutting down".into()),
            });
            return;
        }
        let result = match request {
            Request::Start { .. } => self.start(&name, now, false).map(|_| self.status(&name)),
            Request::Stop { .. } => return self.stop(&name, Some(reply), now),
            Request::Restart { .. } => return self.restart(&name, reply, now),
            Request::Reload { .. } => return self.reload(&name, reply),
            Request::Status { .. } => self.status_known(&name),
            Request::Enable { .. } => self.enable(&name).map(|_| self.status(&name)),
            Request::Disable { .. } => self.disable(&name).map(|_| self.status(&name)),
            Request::List => unreachable!("answered above"),
        };
        let _ = reply.send(result.into());
    }

    /// Starts a service unless it runs. `auto`: a restart after it exited.
    pub fn start(&mut self, name: &str, now: Instant, auto: bool) -> Result<(), ServiceError> {
        if let Some(s) = self.services.get_mut(name) {
            match s.state {
                State::Active => return Ok(()),
                State::Stopping { .. } => {
                    s.then_start = true;
                    return Ok(());
                }
                _ => {}
            }
        }
        let unit = self.load(name)?;
        for w in &unit.warnings {
            tracing::warn!("{name}: {w}");
        }
        let spawned = self.spawn(&unit, &unit.exec_start, None);
        let s = self
            .services
            .entry(name.to_string())
            .or_insert_with(Service::new);
        if !auto {
            s.starts.clear();
        }
        s.starts.push_back(now);
        while s.starts.len() > START_LIMIT {
            s.starts.pop_front();
        }
        s.unit = Some(unit);
        s.since = Some(now_text());
        match spawned {
            Ok(pid) => {
                s.state = State::Active;
                s.pid = Some(pid);
                s.error = None;
                if auto {
                    s.restarts += 1;
                }
                self.order.retain(|n| n != name);
                self.order.push(name.to_string());
                let what = if auto { "restarted" } else { "started" };
                self.event(name, what, Some(pid), None, "");
                Ok(())
            }
            Err(e) => {
                s.state = State::Failed;
                s.pid = None;
                s.error = Some(e.clone());
                self.event(name, "failed", None, None, &e);
                Err(ServiceError::Failed(format!("{name}: {e}")))
            }
        }
    }

    /// Stops a service: ExecStop or TERM to its group, KILL after its
    /// TimeoutStopSec; `reply` is answered once it has gone.
    pub fn stop(&mut self, name: &str, reply: Option<Reply>, now: Instant) {
        let Some(s) = self.services.get_mut(name) else {
            let r = self.status_known(name);
            if let Some(reply) = reply {
                let _ = reply.send(r.into());
            }
            return;
        };
        s.then_start = false;
        match s.state {
            State::Active => {}
            State::Stopping { .. } => {
                s.waiters.extend(reply);
                return;
            }
            State::AutoRestart { .. } | State::Failed | State::Inactive => {
                if matches!(s.state, State::AutoRestart { .. }) {
                    s.state = State::Inactive;
                }
                let status = self.status(name);
                if let Some(reply) = reply {
                    let _ = reply.send(Response::Service { service: status });
                }
                return;
            }
        }
        let (pid, unit) = (s.pid.unwrap_or(0), s.unit.clone());
        s.waiters.extend(reply);
        let timeout = unit
            .as_ref()
            .map_or(Duration::from_secs(10), |u| u.timeout_stop);
        s.state = State::Stopping {
            kill_at: now + timeout,
            killed: false,
        };
        let mut stops = unit
            .as_ref()
            .map(|u| u.exec_stop.clone())
            .unwrap_or_default();
        if stops.is_empty() {
            signal_group(pid, Signal::SIGTERM);
        } else {
            let first = stops.remove(0);
            self.helper(name, &first, HelperKind::Stop(stops), pid);
        }
    }

    /// Runs an ExecStop/ExecReload command; if it cannot start, what
    /// follows it happens at once.
    fn helper(&mut self, name: &str, exec: &Exec, kind: HelperKind, main: u32) {
        let unit = match self.services.get(name).and_then(|s| s.unit.clone()) {
            Some(u) => u,
            None => return,
        };
        match self.spawn(&unit, exec, Some(main)) {
            Ok(pid) => {
                self.helpers.insert(
                    pid,
                    Helper {
                        service: name.to_string(),
                        kind,
                        ignore_failure: exec.ignore_failure,
                    },
                );
            }
            Err(e) => {
                tracing::warn!("{name}: {e}");
                self.helper_done(name, kind, Err(e));
            }
        }
    }

    fn helper_done(&mut self, name: &str, kind: HelperKind, result: Result<(), String>) {
        let main = self.services.get(name).and_then(|s| s.pid).unwrap_or(0);
        match kind {
            HelperKind::Stop(mut rest) => {
                if !rest.is_empty() {
                    let next = rest.remove(0);
                    return self.helper(name, &next, HelperKind::Stop(rest), main);
                }
                // What ExecStop left running gets TERM, as systemd does.
                if matches!(
                    self.services.get(name).map(|s| s.state),
                    Some(State::Stopping { .. })
                ) {
                    signal_group(main, Signal::SIGTERM);
                }
            }
            HelperKind::Reload(mut rest, reply) => {
                if result.is_ok() && !rest.is_empty() {
                    let next = rest.remove(0);
                    return self.helper(name, &next, HelperKind::Reload(rest, reply), main);
                }
                let answer = match result {
                    Ok(()) => {
                        self.event(name, "reloaded", Some(main), None, "");
                        Ok(self.status(name))
                    }
                    Err(e) => Err(ServiceError::Failed(format!("{name}: reload failed: {e}"))),
                };
                if let Some(reply) = reply {
                    let _ = reply.send(answer.into());
                }
            }
        }
    }

    fn restart(&mut self, name: &str, reply: Reply, now: Instant) {
        let active = self
            .services
            .get(name)
            .is_some_and(|s| matches!(s.state, State::Active | State::Stopping { .. }));
        if !active {
            let r = self.start(name, now, false).map(|_| self.status(name));
            let _ = reply.send(r.into());
            return;
        }
        // The unit must still be usable, or the restart would only stop it.
        if let Err(error) = self.load(name) {
            let _ = reply.send(Response::Error { error });
            return;
        }
        self.stop(name, Some(reply), now);
        if let Some(s) = self.services.get_mut(name) {
            s.then_start = true;
        }
    }

    fn reload(&mut self, name: &str, reply: Reply) {
        let active = self.services.get(name).filter(|s| s.state == State::Active);
        let Some(s) = active else {
            let r = self.status_known(name).and_then(|st| {
                Err(ServiceError::Failed(format!(
                    "{name} is {}, it cannot be reloaded",
                    st.state
                )))
            });
            let _ = reply.send(r.into());
            return;
        };
        let pid = s.pid.unwrap_or(0);
        let mut reloads = s
            .unit
            .as_ref()
            .map(|u| u.exec_reload.clone())
            .unwrap_or_default();
        if reloads.is_empty() {
            signal(pid, Signal::SIGHUP);
            self.event(name, "reloaded", Some(pid), None, "HUP");
            let _ = reply.send(Response::Service {
                service: self.status(name),
            });
        } else {
            let first = reloads.remove(0);
            self.helper(name, &first, HelperKind::Reload(reloads, Some(reply)), pid);
        }
    }

    /// The pids the supervisor waits for (main processes and helpers).
    pub fn pids(&self) -> Vec<u32> {
        let mains = self.services.values().filter_map(|s| s.pid);
        mains.chain(self.helpers.keys().copied()).collect()
    }

    /// A process ended; `false` if it was none of the supervisor's.
    pub fn exited(&mut self, pid: u32, exit: Exit, now: Instant) -> bool {
        if let Some(h) = self.helpers.remove(&pid) {
            let result = if exit == Exit::Code(0) || h.ignore_failure {
                Ok(())
            } else {
                Err(exit.to_string())
            };
            self.helper_done(&h.service, h.kind, result);
            return true;
        }
        let Some(name) = self
            .services
            .iter()
            .find(|(_, s)| s.pid == Some(pid))
            .map(|(n, _)| n.clone())
        else {
            return false;
        };
        // What the main process left in its group goes with it.
        signal_group(pid, Signal::SIGKILL);
        let shutting = self.shutdown.is_some();
        let s = self.services.get_mut(&name).expect("found above");
        s.pid = None;
        s.last_exit = Some(exit);
        s.since = Some(now_text());
        let unit = s.unit.clone();
        let ignore = unit.as_ref().is_some_and(|u| u.exec_start.ignore_failure);
        if let State::Stopping { .. } = s.state {
            s.state = State::Inactive;
            let again = s.then_start && !shutting;
            s.then_start = false;
            let waiters = std::mem::take(&mut s.waiters);
            self.event(&name, "stopped", Some(pid), Some(exit), "");
            let answer = if again {
                self.start(&name, now, false).map(|_| self.status(&name))
            } else {
                Ok(self.status(&name))
            };
            for w in waiters {
                let _ = w.send(answer.clone().into());
            }
            self.next_shutdown_stop(now);
            return true;
        }
        let clean = exit.is_clean() || ignore;
        let restart = !shutting
            && unit
                .as_ref()
                .is_some_and(|u| u.restart.restarts_after(exit));
        let limited = s.starts.len() >= START_LIMIT
            && s.starts
                .front()
                .is_some_and(|t| now.duration_since(*t) < START_WINDOW);
        let what = if clean { "stopped" } else { "failed" };
        if restart && limited {
            s.state = State::Failed;
            let why = format!(
                "started {START_LIMIT} times within {}s, not restarted again; \
                 fix it and start it by hand",
                START_WINDOW.as_secs()
            );
            s.error = Some(why.clone());
            self.event(&name, "failed", Some(pid), Some(exit), &why);
        } else if restart {
            let delay = unit.as_ref().map_or(Duration::ZERO, |u| u.restart_sec);
            s.state = State::AutoRestart { at: now + delay };
            self.event(&name, what, Some(pid), Some(exit), "restarting");
        } else {
            s.state = if clean {
                State::Inactive
            } else {
                State::Failed
            };
            if !clean {
                s.error = Some(format!("its main process {exit}"));
            }
            self.event(&name, what, Some(pid), Some(exit), "");
        }
        true
    }

    /// Does what is due at `now`: restarts, KILLs after a stop's timeout.
    pub fn tick(&mut self, now: Instant) {
        let due: Vec<(String, State, Option<u32>)> = self
            .services
            .iter()
            .filter(|(_, s)| match s.state {
                State::AutoRestart { at } => at <= now,
                State::Stopping { kill_at, killed } => !killed && kill_at <= now,
                _ => false,
            })
            .map(|(n, s)| (n.clone(), s.state, s.pid))
            .collect();
        for (name, state, pid) in due {
            match state {
                State::AutoRestart { .. } => {
                    if let Err(e) = self.start(&name, now, true) {
                        tracing::warn!("{e}");
                    }
                }
                State::Stopping { kill_at, .. } => {
                    tracing::warn!("{name}: still running after its stop timeout, KILL");
                    signal_group(pid.unwrap_or(0), Signal::SIGKILL);
                    if let Some(s) = self.services.get_mut(&name) {
                        s.state = State::Stopping {
                            kill_at,
                            killed: true,
                        };
                    }
                }
                _ => {}
            }
        }
    }

    /// When [`tick`](Self::tick) has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.services
            .values()
            .filter_map(|s| match s.state {
                State::AutoRestart { at } => Some(at),
                State::Stopping {
                    kill_at,
                    killed: false,
                } => Some(kill_at),
                _ => None,
            })
            .min()
    }

    /// The services enabled for boot, by name.
    pub fn enabled_at_boot(&self) -> Vec<String> {
        install::enabled_at_boot(&self.paths.config_dir)
    }

    fn is_enabled(&self, name: &str) -> bool {
        !install::wants_links(&self.paths.config_dir, name).is_empty()
    }

    /// `systemctl enable` (see [`install::enable`]).
    pub fn enable(&mut self, name: &str) -> Result<(), ServiceError> {
        let unit = self.load(name)?;
        install::enable(&self.paths.config_dir, &unit)
    }

    /// `systemctl disable`: every wants symlink of the service goes.
    pub fn disable(&mut self, name: &str) -> Result<(), ServiceError> {
        if !self.builtin.contains_key(name) && self.unit_path(name).is_none() {
            self.load(name)?;
        }
        install::disable(&self.paths.config_dir, name)
    }

    /// A service's status; an error if the init has never run it and no
    /// unit file has its name.
    pub fn status_known(&self, name: &str) -> Result<ServiceStatus, ServiceError> {
        if !self.services.contains_key(name) {
            // A broken unit still has a status (inactive).
            if let Err(ServiceError::Unknown(m)) = self.load(name) {
                return Err(ServiceError::Unknown(m));
            }
        }
        Ok(self.status(name))
    }

    fn status(&self, name: &str) -> ServiceStatus {
        let s = self.services.get(name);
        let state = match s.map(|s| s.state) {
            None | Some(State::Inactive) => "inactive",
            Some(State::Active) => "active",
            Some(State::Stopping { .. }) => "deactivating",
            Some(State::AutoRestart { .. }) => "activating",
            Some(State::Failed) => "failed",
        };
        let unit = s
            .and_then(|s| s.unit.as_ref())
            .map(|u| u.path.clone())
            .or_else(|| self.unit_path(name));
        ServiceStatus {
            name: name.to_string(),
            state: state.to_string(),
            enabled: self.is_enabled(name),
            pid: s.and_then(|s| s.pid),
            since: s.and_then(|s| s.since.clone()),
            restarts: s.map_or(0, |s| s.restarts),
            last_exit: s.and_then(|s| s.last_exit).map(|e| e.to_string()),
            error: s.and_then(|s| s.error.clone()),
            unit: unit.map(|p| p.display().to_string()),
            description: s
                .and_then(|s| s.unit.as_ref())
                .and_then(|u| u.description.clone()),
        }
    }

    /// Every service the init has run, every enabled one, and every unit
    /// file in the first unit directory (the admin's own).
    pub fn list(&self) -> Vec<ServiceStatus> {
        let mut names: Vec<String> = self.services.keys().cloned().collect();
        names.extend(self.builtin.keys().cloned());
        names.extend(self.enabled_at_boot());
        if let Some(dir) = self.paths.unit_dirs.first() {
            names.extend(
                std::fs::read_dir(dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.path().is_file())
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.strip_suffix(".service").map(String::from)
                    }),
            );
        }
        names.sort();
        names.dedup();
        names.iter().map(|n| self.status(n)).collect()
    }

    /// Stops every service, the last started first, one at a time; nothing
    /// starts or restarts any more.
    pub fn begin_shutdown(&mut self, now: Instant) {
        let mut queue: VecDeque<String> = self.order.iter().rev().cloned().collect();
        for (name, s) in self.services.iter_mut() {
            if matches!(s.state, State::AutoRestart { .. }) {
                s.state = State::Inactive;
            }
            if !queue.contains(name) {
                queue.push_back(name.clone());
            }
        }
        self.shutdown = Some(queue);
        self.next_shutdown_stop(now);
    }

    fn next_shutdown_stop(&mut self, now: Instant) {
        loop {
            let Some(name) = self.shutdown.as_mut().and_then(|q| q.pop_front()) else {
                return;
            };
            let active = self
                .services
                .get(&name)
                .is_some_and(|s| matches!(s.state, State::Active));
            if active {
                self.stop(&name, None, now);
                return;
            }
        }
    }

    /// Shutting down and every service has gone.
    pub fn is_down(&self) -> bool {
        self.shutdown.as_ref().is_some_and(|q| q.is_empty())
            && self
                .services
                .values()
                .all(|s| s.pid.is_none() && !matches!(s.state, State::Stopping { .. }))
    }
}

fn group(name: &str) -> Result<u32, String> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
        .ok_or_else(|| format!("Group={name}: no such group"))
}

fn command(exec: &Exec) -> Command {
    let mut cmd = Command::new(&exec.program);
    if let Some(a0) = &exec.argv0 {
        cmd.arg0(a0);
    }
    cmd.args(&exec.args);
    cmd
}

/// The unit path as shown for a built-in service.
pub fn builtin_path(name: &str) -> PathBuf {
    Path::new("(cairn init)").join(format!("{name}.service"))
}
