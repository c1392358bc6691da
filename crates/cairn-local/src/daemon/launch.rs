//! Starting and stopping the daemon from outside it: what `cairn local
//! start|stop` and every `up` on the local target do. The caller says how
//! the daemon is invoked (its program, arguments and environment: the CLI's
//! business); this module runs it in the background, detached from the
//! terminal, logging to the cloud's `daemon.log`, and waits until it answers
//! or says why it did not.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::client::LocalClient;
use super::published::{Published, published_path};
use crate::cloud::{Isolation, IsolationError, LocalDirs};

/// How long a new daemon may take to answer.
const START_LIMIT: Duration = Duration::from_secs(15);
const START_POLL: Duration = Duration::from_millis(50);
/// How long `stop` waits for the daemon to exit after TERM (it stops
/// every server first, each within its own grace).
const STOP_LIMIT: Duration = Duration::from_secs(30);
/// Lines of `daemon.log` quoted when a new daemon exits at start.
const LOG_TAIL: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("`runc` isolation: {0}")]
    Preflight(String),
    #[error(transparent)]
    Mismatch(#[from] IsolationError),
    #[error("the running local cloud does not answer its status: {0}")]
    Status(String),
    #[error("cannot start the local cloud in {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the local cloud exited at start ({status}); its log says:\n{tail}")]
    ExitedAtStart { status: String, tail: String },
    #[error(
        "the local cloud did not start within {} s (see daemon.log in {dir})",
        START_LIMIT.as_secs()
    )]
    Timeout { dir: String },
}

/// Connects to the running daemon, else starts one with `daemon` and waits
/// until it answers. A running daemon must run the isolation asked for, if
/// one was; a `runc` one is checked for what it needs before it is started,
/// so the reason shows here rather than only in its log.
pub async fn ensure_started(
    dirs: &LocalDirs,
    isolation: Option<Isolation>,
    daemon: Command,
) -> Result<LocalClient, LaunchError> {
    if isolation == Some(Isolation::Runc) {
        crate::host::preflight().map_err(|e| LaunchError::Preflight(e.to_string()))?;
    }
    if let Ok(client) = LocalClient::connect(dirs).await {
        if let Some(asked) = isolation {
            check_isolation(dirs, &client, asked).await?;
        }
        return Ok(client);
    }
    let mut child = spawn(dirs, daemon).map_err(|source| LaunchError::Io {
        dir: dirs.root.display().to_string(),
        source,
    })?;
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    while tokio::time::Instant::now() < deadline {
        if let Ok(client) = LocalClient::connect(dirs).await {
            return Ok(client);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LaunchError::ExitedAtStart {
                status: status.to_string(),
                tail: log_tail(&dirs.root.join("daemon.log")),
            });
        }
        tokio::time::sleep(START_POLL).await;
    }
    Err(LaunchError::Timeout {
        dir: dirs.root.display().to_string(),
    })
}

async fn check_isolation(
    dirs: &LocalDirs,
    client: &LocalClient,
    asked: Isolation,
) -> Result<(), LaunchError> {
    let status = client.status().await.map_err(LaunchError::Status)?;
    let made: Isolation = status["isolation"].as_str().unwrap_or("process").parse()?;
    if made != asked {
        return Err(IsolationError::Mismatch {
            dir: dirs.root.display().to_string(),
            made,
            asked,
        }
        .into());
    }
    Ok(())
}

/// Runs `daemon` in the background: stdin closed, stdout and stderr
/// appended to `daemon.log`, in its own process group so that a Ctrl-C at
/// the terminal that started it does not reach it.
fn spawn(dirs: &LocalDirs, mut daemon: Command) -> std::io::Result<std::process::Child> {
    std::fs::create_dir_all(&dirs.root)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dirs.root.join("daemon.log"))?;
    daemon
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut daemon, 0);
    daemon.spawn()
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(LOG_TAIL).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Stops the running daemon (TERM, then waits until it is gone); the pid
/// it had, or `None` when none was running.
pub fn stop(dirs: &LocalDirs) -> Option<u32> {
    let published: Published = std::fs::read_to_string(published_path(dirs))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())?;
    let pid = nix::unistd::Pid::from_raw(published.pid as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = std::time::Instant::now() + STOP_LIMIT;
    while std::time::Instant::now() < deadline {
        if !published_path(dirs).exists() || nix::sys::signal::kill(pid, None).is_err() {
            break;
        }
        std::thread::sleep(START_POLL);
    }
    Some(published.pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> (tempfile::TempDir, LocalDirs) {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = LocalDirs::new(tmp.path().join("cloud"));
        (tmp, dirs)
    }

    #[tokio::test]
    async fn a_daemon_that_exits_at_start_is_reported_with_its_log() {
        let (_tmp, dirs) = dirs();
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo 'cannot bind 127.0.0.1:8053: in use' >&2; exit 3",
        ]);
        let err = ensure_started(&dirs, None, cmd).await.err().unwrap();
        let text = err.to_string();
        assert!(matches!(err, LaunchError::ExitedAtStart { .. }), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(
            text.contains("cannot bind 127.0.0.1:8053: in use"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_daemon_that_cannot_be_run_is_an_error_naming_the_directory() {
        let (_tmp, dirs) = dirs();
        let cmd = Command::new("/nonexistent/cairn");
        let err = ensure_started(&dirs, None, cmd).await.err().unwrap();
        assert!(matches!(err, LaunchError::Io { .. }), "{err}");
        assert!(err.to_string().contains("cloud"), "{err}");
    }

    #[test]
    fn stopping_a_cloud_that_is_not_running_says_so() {
        let (_tmp, dirs) = dirs();
        assert_eq!(stop(&dirs), None);
    }

    #[test]
    fn stopping_waits_for_the_daemon_to_exit() {
        let (_tmp, dirs) = dirs();
        std::fs::create_dir_all(&dirs.root).unwrap();
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let published = Published {
            pid: child.id(),
            api: "127.0.0.1:1".parse().unwrap(),
            dns: "127.0.0.1:2".parse().unwrap(),
            problems: vec![],
        };
        std::fs::write(
            published_path(&dirs),
            serde_json::to_string(&published).unwrap(),
        )
        .unwrap();
        // `sleep` leaves no daemon.json behind, so stop waits on the pid:
        // reap it in a thread as the daemon's parent would be gone.
        let reaper = std::thread::spawn(move || child.wait().unwrap());
        assert_eq!(stop(&dirs), Some(published.pid));
        let status = reaper.join().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc_sigterm()));
    }

    fn libc_sigterm() -> i32 {
        nix::sys::signal::Signal::SIGTERM as i32
    }
}
