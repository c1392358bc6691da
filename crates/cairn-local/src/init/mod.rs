//! `cairn init`: PID 1 of a local server (`runc` isolation). It runs the
//! server's `user_data` once (its log and a done-marker with its exit
//! code), runs sshd when the server has a key pair, supervises services
//! written as systemd unit files, answers `cairn service` on a unix socket,
//! records every service state change as a JSON line, reaps every orphan,
//! and on TERM/INT stops the services (last started first), TERMs what is
//! left, waits for it with a deadline and exits 0.
//!
//! The paths are configuration ([`Config`]), so the same loop runs as an
//! ordinary child process in tests; only as PID 1 does it reap with
//! `waitpid(-1)` and signal every process (`kill(-1)`).
//!
//! Never: starts a service without a request or the boot's enabled list;
//! signals a process outside its own services unless it is PID 1.

pub mod control;
pub mod install;
pub mod supervisor;
pub mod unit;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::host::runtime::{SSH_MARKER, USER_DATA_PATH};
pub use supervisor::{Paths, Supervisor};
use unit::{Exit, Unit};

/// The control socket inside a server.
pub const SOCKET: &str = "/run/cairn/init.sock";
/// The service state changes inside a server, one JSON object a line.
pub const EVENTS: &str = "/run/cairn/events.jsonl";
/// Written with `user_data`'s exit code once it has run; it never runs
/// again while this exists (the server's layer keeps it across restarts).
pub const USER_DATA_DONE: &str = "/var/lib/cairn/user_data.done";
/// `user_data`'s output.
pub const USER_DATA_LOG: &str = "/var/log/cairn-user-data.log";

/// The init's own sshd, run when the server has a key pair (the image's
/// ssh.service is not used: it needs ExecStartPre and RuntimeDirectory).
const SSHD_UNIT: &str = "[Unit]\nDescription=OpenSSH server (the server has a key pair)\n\
[Service]\nExecStart=/usr/sbin/sshd -D -e\nRestart=always\nRestartSec=1\n";

/// The server's agent, run when the cloud enrolled it (its key is in
/// `/var/lib/cairn/agent`) and told it where the master is (the
/// environment the daemon gives every server at each start).
const AGENT_UNIT: &str = "[Unit]\nDescription=cairn's agent (enrolled by the local cloud)\n\
[Service]\nExecStart=/usr/local/bin/cairn agent --master ${CAIRN_MASTER} \
--master-fingerprint ${CAIRN_MASTER_FINGERPRINT} --id ${CAIRN_SERVER} --dir /var/lib/cairn/agent\n\
Restart=always\nRestartSec=1\n";

/// A `user_data` script to run once.
#[derive(Debug, Clone)]
pub struct UserData {
    pub script: PathBuf,
    pub done: PathBuf,
    pub log: PathBuf,
}

/// What an init runs and where.
#[derive(Debug, Clone)]
pub struct Config {
    pub paths: Paths,
    pub socket: PathBuf,
    pub user_data: Option<UserData>,
    /// Run sshd as the built-in service `sshd`.
    pub sshd: bool,
    /// Run the agent as the built-in service `cairn-agent`.
    pub agent: bool,
    /// PID 1: reap every process, signal every process at shutdown.
    pub pid1: bool,
    /// How long what is left after the services gets after TERM.
    pub grace: Duration,
}

impl Config {
    /// The paths inside a server; sshd when the server has a key pair
    /// (the marker) and a host key, and the image has sshd.
    pub fn server() -> Config {
        let sshd = Path::new(SSH_MARKER).is_file()
            && Path::new("/etc/ssh/ssh_host_ed25519_key").is_file()
            && Path::new("/usr/sbin/sshd").is_file();
        Config {
            paths: Paths {
                unit_dirs: [
                    "/etc/systemd/system",
                    "/lib/systemd/system",
                    "/usr/lib/systemd/system",
                ]
                .iter()
                .map(PathBuf::from)
                .collect(),
                config_dir: "/etc/systemd/system".into(),
                log_dir: "/var/log/cairn".into(),
                events: EVENTS.into(),
            },
            socket: SOCKET.into(),
            user_data: Some(UserData {
                script: USER_DATA_PATH.into(),
                done: USER_DATA_DONE.into(),
                log: USER_DATA_LOG.into(),
            }),
            sshd,
            agent: std::env::var_os("CAIRN_MASTER").is_some()
                && std::env::var_os("CAIRN_MASTER_FINGERPRINT").is_some()
                && Path::new("/var/lib/cairn/agent/agent.key").is_file(),
            pid1: std::process::id() == 1,
            grace: Duration::from_secs(3),
        }
    }
}

/// Starts `user_data` unless it has run; its pid. A script that cannot
/// start is done with 127, like a shell's command not found.
fn start_user_data(u: &UserData) -> Option<u32> {
    if !u.script.is_file() || u.done.exists() {
        return None;
    }
    let spawned = (|| {
        if let Some(dir) = u.done.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if let Some(dir) = u.log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = File::create(&u.log)?;
        let err = log.try_clone()?;
        // An executable with a `#!` line runs with its interpreter, as
        // cloud-init runs user scripts; anything else is a shell script.
        let head = std::fs::read(&u.script)?;
        let executable = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(&u.script)?.permissions().mode() & 0o111 != 0
        };
        let mut cmd = if head.starts_with(b"#!") && executable {
            Command::new(&u.script)
        } else {
            let mut sh = Command::new("/bin/sh");
            sh.arg(&u.script);
            sh
        };
        cmd.current_dir("/")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
    })();
    match spawned {
        Ok(child) => Some(child.id()),
        Err(e) => {
            tracing::warn!("user_data {}: {e}", u.script.display());
            let _ = std::fs::write(&u.done, "127\n");
            None
        }
    }
}

fn exit_of(status: WaitStatus) -> Option<(u32, Exit)> {
    match status {
        WaitStatus::Exited(p, c) => Some((p.as_raw() as u32, Exit::Code(c))),
        WaitStatus::Signaled(p, s, _) => Some((p.as_raw() as u32, Exit::Signal(s as i32))),
        _ => None,
    }
}

/// Everything an init's loop owns.
struct Init {
    config: Config,
    sup: Supervisor,
    user_data: Option<u32>,
}

impl Init {
    /// Reaps what has ended: as PID 1 every child (orphans included),
    /// otherwise only the processes this init started.
    fn reap(&mut self) {
        let now = Instant::now();
        let flags = Some(WaitPidFlag::WNOHANG);
        let mut ended = Vec::new();
        if self.config.pid1 {
            while let Ok(status) = waitpid(None::<Pid>, flags) {
                match exit_of(status) {
                    Some(e) => ended.push(e),
                    None if status == WaitStatus::StillAlive => break,
                    None => {}
                }
            }
        } else {
            let mut pids = self.sup.pids();
            pids.extend(self.user_data);
            for pid in pids {
                if let Ok(status) = waitpid(Pid::from_raw(pid as i32), flags)
                    && let Some(e) = exit_of(status)
                {
                    ended.push(e);
                }
            }
        }
        for (pid, exit) in ended {
            if self.user_data == Some(pid) {
                self.user_data = None;
                let code = match exit {
                    Exit::Code(c) => c,
                    Exit::Signal(s) => 128 + s,
                };
                if let Some(u) = &self.config.user_data
                    && let Err(e) = std::fs::write(&u.done, format!("{code}\n"))
                {
                    tracing::warn!("{}: {e}", u.done.display());
                }
            } else {
                self.sup.exited(pid, exit, now);
            }
        }
    }

    /// PID 1's last step: TERM to every process left, up to the grace for
    /// them to go, then KILL.
    async fn terminate_all(&mut self, sigchld: &mut tokio::signal::unix::Signal) {
        let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
        let deadline = Instant::now() + self.config.grace;
        let mut killed = false;
        // Bounded: after KILL, at most another grace.
        let end = deadline + self.config.grace;
        while Instant::now() < end {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Err(nix::errno::Errno::ECHILD) => return,
                Ok(WaitStatus::StillAlive) => {
                    if !killed && Instant::now() >= deadline {
                        tracing::warn!("processes left after TERM: KILL");
                        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
                        killed = true;
                    }
                    let wait = if killed { end } else { deadline };
                    let _ = tokio::time::timeout_at(wait.into(), sigchld.recv()).await;
                }
                _ => {}
            }
        }
    }
}

/// Runs an init until `shutdown` is cancelled and everything it started
/// has stopped.
pub async fn run(config: Config, shutdown: CancellationToken) -> std::io::Result<()> {
    // Before any child exists, so that no exit goes unnoticed.
    let mut sigchld = signal(SignalKind::child())?;
    for dir in [
        config.paths.events.parent(),
        config.paths.log_dir.to_str().map(Path::new),
    ]
    .into_iter()
    .flatten()
    {
        std::fs::create_dir_all(dir)?;
    }
    let listener = control::bind(&config.socket)?;
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut init = Init {
        sup: Supervisor::new(config.paths.clone(), env),
        user_data: config.user_data.as_ref().and_then(start_user_data),
        config,
    };
    if init.config.sshd {
        let path = supervisor::builtin_path("sshd");
        match Unit::parse("sshd", &path, SSHD_UNIT) {
            Ok(u) => init.sup.add_builtin(u),
            Err(e) => tracing::warn!("{e}"),
        }
        let _ = std::fs::create_dir_all("/run/sshd");
        if let Err(e) = init.sup.start("sshd", Instant::now(), false) {
            tracing::warn!("{e}");
        }
    }
    if init.config.agent {
        let path = supervisor::builtin_path("cairn-agent");
        match Unit::parse("cairn-agent", &path, AGENT_UNIT) {
            Ok(u) => init.sup.add_builtin(u),
            Err(e) => tracing::warn!("{e}"),
        }
        if let Err(e) = init.sup.start("cairn-agent", Instant::now(), false) {
            tracing::warn!("{e}");
        }
    }
    for name in init.sup.enabled_at_boot() {
        if let Err(e) = init.sup.start(&name, Instant::now(), false) {
            tracing::warn!("at boot: {e}");
        }
    }
    let (jobs, mut requests) = mpsc::channel(64);
    let mut connections = JoinSet::new();
    let mut stopping = false;
    let far = Duration::from_secs(3600);
    loop {
        init.reap();
        init.sup.tick(Instant::now());
        if stopping && init.sup.is_down() {
            break;
        }
        let next = init.sup.next_deadline().unwrap_or(Instant::now() + far);
        tokio::select! {
            _ = sigchld.recv() => {}
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                init.sup.begin_shutdown(Instant::now());
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(control::serve_connection(stream, jobs.clone()));
                }
                Err(e) => tracing::warn!("control socket: {e}"),
            },
            Some((request, reply)) = requests.recv() => {
                init.sup.handle(request, reply, Instant::now());
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = tokio::time::sleep_until(next.into()) => {}
        }
    }
    connections.abort_all();
    let _ = std::fs::remove_file(&init.config.socket);
    if init.config.pid1 {
        init.terminate_all(&mut sigchld).await;
    }
    Ok(())
}
