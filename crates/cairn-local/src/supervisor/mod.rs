//! Servers as supervised processes. Each server has a sandbox directory and
//! its own loopback address; its `user_data` runs as its init process, in a
//! process group of its own, with `CAIRN_ADDRESS` set and `cairn` on its
//! PATH. When the process dies it is restarted with backoff, and every start,
//! exit and restart is recorded as an event (self-healing you can see).

mod user_data;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::process::Command;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use user_data::{Prepared, prepare};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSpec {
    pub name: String,
    pub address: Ipv4Addr,
    pub sandbox: PathBuf,
    pub user_data: String,
    /// Directories put first on the server's PATH (where `cairn` is).
    pub path: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        at: u64,
        pid: u32,
    },
    Exited {
        at: u64,
        code: Option<i32>,
        signal: Option<i32>,
    },
    Restarting {
        at: u64,
        attempt: u32,
        after_ms: u64,
    },
    Stopped {
        at: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    /// Waiting to restart after an exit.
    Backoff,
    Stopped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerStatus {
    pub name: String,
    pub address: Ipv4Addr,
    pub state: State,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// The last events, oldest first.
    pub events: Vec<Event>,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(
        "server {name} did not become ready: its user_data exited ({exit}); last lines of its log:\n{log}"
    )]
    NotReady {
        name: String,
        exit: String,
        log: String,
    },
    #[error("server {0} is not known to the supervisor")]
    Unknown(String),
    #[error("server {name}: {message}")]
    Setup { name: String, message: String },
}

const EVENTS_KEPT: usize = 50;

struct Entry {
    spec: ServerSpec,
    status: Arc<Mutex<ServerStatus>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Supervises every server of the local cloud.
#[derive(Default)]
pub struct Supervisor {
    servers: Mutex<HashMap<String, Entry>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn record(status: &Mutex<ServerStatus>, f: impl FnOnce(&mut ServerStatus) -> Event) {
    let mut s = status.lock().expect("status lock");
    let e = f(&mut s);
    s.events.push(e);
    let extra = s.events.len().saturating_sub(EVENTS_KEPT);
    s.events.drain(..extra);
}

/// The delay before restart `attempt` (1, 2, ...): 100 ms doubling to 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.saturating_sub(1).min(6)))
        .min(Duration::from_secs(5))
}

pub fn log_path(sandbox: &Path) -> PathBuf {
    sandbox.join("console.log")
}

/// The last `n` lines of a server's log.
pub fn log_tail(sandbox: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log_path(sandbox)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Supervisor {
    pub fn new() -> Supervisor {
        Supervisor::default()
    }

    /// Prepares the sandbox and starts supervising. Starting a server that
    /// runs with the same spec is a no-op; with another spec, it is replaced.
    pub fn start(&self, spec: ServerSpec) -> Result<(), SupervisorError> {
        let mut servers = self.servers.lock().expect("servers lock");
        if let Some(e) = servers.get(&spec.name)
            && e.spec == spec
            && !e.task.is_finished()
        {
            return Ok(());
        }
        if let Some(old) = servers.remove(&spec.name) {
            old.stop.cancel();
        }
        let prepared =
            prepare(&spec.sandbox, &spec.user_data).map_err(|message| SupervisorError::Setup {
                name: spec.name.clone(),
                message,
            })?;
        let status = Arc::new(Mutex::new(ServerStatus {
            name: spec.name.clone(),
            address: spec.address,
            state: State::Backoff,
            pid: None,
            restarts: 0,
            events: Vec::new(),
        }));
        let stop = CancellationToken::new();
        let task = tokio::spawn(supervise(
            spec.clone(),
            prepared,
            status.clone(),
            stop.clone(),
        ));
        servers.insert(
            spec.name.clone(),
            Entry {
                spec,
                status,
                stop,
                task,
            },
        );
        Ok(())
    }

    /// Waits until the server's process has stayed up for `settle`; an init
    /// that exits at once is reported with its log.
    pub async fn wait_ready(
        &self,
        name: &str,
        settle: Duration,
        timeout: Duration,
    ) -> Result<(), SupervisorError> {
        let (status, sandbox) = {
            let servers = self.servers.lock().expect("servers lock");
            let e = servers
                .get(name)
                .ok_or_else(|| SupervisorError::Unknown(name.to_string()))?;
            (e.status.clone(), e.spec.sandbox.clone())
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut up_since: Option<(tokio::time::Instant, u32)> = None;
        loop {
            let (state, pid, last_exit) = {
                let s = status.lock().expect("status lock");
                let last_exit = s.events.iter().rev().find_map(|e| match e {
                    Event::Exited { code, signal, .. } => Some(match (code, signal) {
                        (Some(c), _) => format!("exit code {c}"),
                        (_, Some(sig)) => format!("signal {sig}"),
                        _ => "unknown".to_string(),
                    }),
                    _ => None,
                });
                (s.state, s.pid, last_exit)
            };
            let now = tokio::time::Instant::now();
            match (state, pid) {
                (State::Running, Some(pid)) => match up_since {
                    Some((since, p)) if p == pid && now - since >= settle => return Ok(()),
                    Some((_, p)) if p == pid => {}
                    _ => up_since = Some((now, pid)),
                },
                _ => {
                    if let Some(exit) =
                        last_exit.filter(|_| up_since.is_none() || state != State::Running)
                    {
                        // It exited before settling: not ready.
                        return Err(SupervisorError::NotReady {
                            name: name.to_string(),
                            exit,
                            log: log_tail(&sandbox, 20),
                        });
                    }
                }
            }
            if now >= deadline {
                return Err(SupervisorError::NotReady {
                    name: name.to_string(),
                    exit: "did not start in time".into(),
                    log: log_tail(&sandbox, 20),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops a server: SIGTERM to its process group, SIGKILL after `grace`.
    pub async fn stop(&self, name: &str, grace: Duration) -> Result<(), SupervisorError> {
        let entry = self
            .servers
            .lock()
            .expect("servers lock")
            .remove(name)
            .ok_or_else(|| SupervisorError::Unknown(name.to_string()))?;
        entry.stop.cancel();
        let abort = entry.task.abort_handle();
        if tokio::time::timeout(grace + Duration::from_secs(2), entry.task)
            .await
            .is_err()
        {
            abort.abort();
        }
        Ok(())
    }

    pub async fn stop_all(&self, grace: Duration) {
        let names: Vec<String> = self
            .servers
            .lock()
            .expect("servers lock")
            .keys()
            .cloned()
            .collect();
        for n in names {
            let _ = self.stop(&n, grace).await;
        }
    }

    pub fn status(&self) -> Vec<ServerStatus> {
        let servers = self.servers.lock().expect("servers lock");
        let mut v: Vec<ServerStatus> = servers
            .values()
            .map(|e| e.status.lock().expect("status lock").clone())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

fn kill_group(pid: u32, signal: Signal) {
    // The init runs in its own process group (pgid = its pid), so this
    // reaches everything it started too.
    let _ = killpg(Pid::from_raw(pid as i32), signal);
}

/// Starts the init. A script written a moment ago can be busy (ETXTBSY):
/// a process another thread forks at that moment holds the script's write
/// descriptor until it execs. That clears within milliseconds, so a few
/// quick retries, rather than a failed server (seen at 200 parallel creates).
async fn spawn(cmd: &mut Command) -> std::io::Result<tokio::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32) && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

async fn supervise(
    spec: ServerSpec,
    prepared: Prepared,
    status: Arc<Mutex<ServerStatus>>,
    stop: CancellationToken,
) {
    let mut attempt = 0u32;
    loop {
        let log = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path(&spec.sandbox))
        {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("server {}: cannot open its log: {e}", spec.name);
                return;
            }
        };
        let err_log = log.try_clone();
        let mut path = spec.path.clone();
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        let mut cmd = Command::new(&prepared.program);
        cmd.args(&prepared.args)
            .current_dir(&spec.sandbox)
            .env("CAIRN_ADDRESS", spec.address.to_string())
            .env("CAIRN_SERVER", &spec.name)
            .env("HOME", &spec.sandbox)
            .env("PATH", std::env::join_paths(path).unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log.map(Stdio::from).unwrap_or(Stdio::null()))
            .process_group(0)
            .kill_on_drop(false);
        let started = tokio::time::Instant::now();
        let mut child = match spawn(&mut cmd).await {
            Ok(c) => c,
            Err(e) => {
                let why = format!("cannot start {}: {e}", prepared.program.display());
                tracing::error!("server {}: {why}", spec.name);
                // In its console log too, where `wait_ready` and
                // `cairn local logs` look for why it is not up.
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .append(true)
                    .open(log_path(&spec.sandbox))
                {
                    use std::io::Write;
                    let _ = writeln!(f, "cairn: {why}");
                }
                record(&status, |s| {
                    s.state = State::Backoff;
                    Event::Exited {
                        at: now(),
                        code: Some(127),
                        signal: None,
                    }
                });
                attempt += 1;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff(attempt)) => continue,
                }
            }
        };
        let pid = child.id().unwrap_or(0);
        record(&status, |s| {
            s.state = State::Running;
            s.pid = Some(pid);
            Event::Started { at: now(), pid }
        });
        let exit = tokio::select! {
            exit = child.wait() => exit,
            _ = stop.cancelled() => {
                kill_group(pid, Signal::SIGTERM);
                let exited = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                if exited.is_err() {
                    kill_group(pid, Signal::SIGKILL);
                    let _ = child.wait().await;
                }
                // Whatever the init left behind in its group goes too.
                kill_group(pid, Signal::SIGKILL);
                record(&status, |s| {
                    s.state = State::Stopped;
                    s.pid = None;
                    Event::Stopped { at: now() }
                });
                return;
            }
        };
        // The init died: take its whole group down before starting again,
        // so a restart never finds its own old children on its port.
        kill_group(pid, Signal::SIGKILL);
        let (code, signal) = match &exit {
            Ok(s) => {
                use std::os::unix::process::ExitStatusExt;
                (s.code(), s.signal())
            }
            Err(_) => (None, None),
        };
        if started.elapsed() > Duration::from_secs(10) {
            attempt = 0;
        }
        attempt += 1;
        let delay = backoff(attempt);
        record(&status, |s| {
            s.state = State::Backoff;
            s.pid = None;
            Event::Exited {
                at: now(),
                code,
                signal,
            }
        });
        record(&status, |s| {
            s.restarts += 1;
            Event::Restarting {
                at: now(),
                attempt,
                after_ms: delay.as_millis() as u64,
            }
        });
        tracing::warn!(
            "server {} exited ({code:?}/{signal:?}); restarting in {delay:?}",
            spec.name
        );
        tokio::select! {
            _ = stop.cancelled() => {
                record(&status, |s| {
                    s.state = State::Stopped;
                    Event::Stopped { at: now() }
                });
                return;
            }
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests;
