//! This machine as a host: every script is `sh -c` in a child process
//! (started straight, not through a shell that reads a command line), or,
//! when it is one plain command, that command alone
//! ([`Exec::direct_argv`]).

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

use super::shell::{Chunk, Pipe, Shell};
use crate::remote::{Exec, Output, Remote, TransportError};

/// Runs scripts on this machine.
#[derive(Debug, Clone)]
pub struct LocalHost {
    name: String,
    timeout: Duration,
}

impl LocalHost {
    pub fn new(name: impl Into<String>) -> LocalHost {
        LocalHost {
            name: name.into(),
            timeout: Duration::from_secs(300),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> LocalHost {
        self.timeout = timeout;
        self
    }
}

#[async_trait]
impl Remote for LocalHost {
    fn name(&self) -> &str {
        &self.name
    }

    async fn exec(&self, exec: Exec) -> Result<Output, TransportError> {
        let other = |reason: String| TransportError::Other {
            host: self.name.clone(),
            reason,
        };
        // No input: /dev/null, not a pipe and a task to close it (a
        // process start is most of what a job costs an agent).
        let piped = exec.stdin.is_some();
        let start = |argv: &[String]| {
            tokio::process::Command::new(&argv[0])
                .args(&argv[1..])
                // The host's name as the inventory knows it (an agent's id; many
                // agents may share a machine in a bench).
                .env("CAIRN_HOST", &self.name)
                .stdin(if piped { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
        };
        // A plain command starts without `sh`; one that does not start
        // (not found, not executable, a script without `#!`) is left to
        // `sh`, whose messages and exit status (127, 126) it then gets.
        let direct = exec.direct_argv().and_then(|argv| start(&argv).ok());
        let mut child = match direct {
            Some(child) => child,
            None => {
                let argv = exec.argv();
                start(&argv).map_err(|e| other(format!("cannot start {}: {e}", argv[0])))?
            }
        };
        let stdin = child.stdin.take();
        let input = exec.stdin.unwrap_or_default();
        // Written beside the wait, so a script that fills its stdout pipe
        // before reading all its stdin cannot deadlock us.
        let feed = async move {
            // A script that exits without reading its stdin closes the pipe:
            // not our error.
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&input).await;
            }
        };
        let after = exec.timeout.unwrap_or(self.timeout);
        let run = async {
            let ((), out) = tokio::join!(feed, child.wait_with_output());
            out
        };
        let out = tokio::time::timeout(after, run)
            .await
            .map_err(|_| TransportError::CommandTimeout {
                host: self.name.clone(),
                after,
            })?
            .map_err(|e| other(e.to_string()))?;
        Ok(Output {
            status: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    async fn shell(&self, become_user: Option<String>) -> Result<Option<Shell>, TransportError> {
        let argv = Shell::argv(become_user.as_deref());
        let mut child = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env("CAIRN_HOST", &self.name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TransportError::Other {
                host: self.name.clone(),
                reason: format!("cannot start {}: {e}", argv[0]),
            })?;
        let pipe = LocalPipe {
            host: self.name.clone(),
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
        };
        Shell::start(self.name.clone(), Box::new(pipe), become_user, self.timeout).await
    }
}

/// `sh -s` as a child of this process.
struct LocalPipe {
    host: String,
    child: Child,
    stdin: Option<ChildStdin>,
    /// `None` once it reached its end.
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
}

#[async_trait]
impl Pipe for LocalPipe {
    async fn write(&mut self, bytes: Bytes) -> Result<(), TransportError> {
        let lost = |e: String| TransportError::Dropped {
            host: self.host.clone(),
            reason: format!("writing to the shell: {e}"),
        };
        let stdin = self.stdin.as_mut().ok_or_else(|| lost("closed".into()))?;
        stdin
            .write_all(&bytes)
            .await
            .map_err(|e| lost(e.to_string()))
    }

    async fn read(&mut self) -> Result<Chunk, TransportError> {
        let (mut o, mut e) = (
            BytesMut::with_capacity(16 * 1024),
            BytesMut::with_capacity(4096),
        );
        loop {
            let got = match (&mut self.stdout, &mut self.stderr) {
                (None, None) => return Ok(Chunk::Closed),
                (Some(out), None) => (true, out.read_buf(&mut o).await),
                (None, Some(err)) => (false, err.read_buf(&mut e).await),
                (Some(out), Some(err)) => tokio::select! {
                    r = out.read_buf(&mut o) => (true, r),
                    r = err.read_buf(&mut e) => (false, r),
                },
            };
            match got {
                (true, Ok(n)) if n > 0 => return Ok(Chunk::Stdout(o.freeze())),
                (false, Ok(n)) if n > 0 => return Ok(Chunk::Stderr(e.freeze())),
                // At its end (or unreadable, which ends it too).
                (true, _) => self.stdout = None,
                (false, _) => self.stderr = None,
            }
        }
    }

    async fn close(&mut self, kill: bool) {
        self.stdin = None;
        if kill {
            let _ = self.child.start_kill();
        }
        let _ = self.child.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_a_script_with_stdin() {
        let h = LocalHost::new("here");
        let out = h
            .exec(Exec::new("read x; echo \"got $x\"; echo err >&2; exit 3").stdin("hi\n"))
            .await
            .unwrap();
        assert_eq!(out.status, Some(3));
        assert_eq!(out.stdout_str(), "got hi\n");
        assert_eq!(out.stderr_str(), "err\n");
    }

    /// A plain command runs without `sh`: its parent is this process (under
    /// `sh -c`, `dash` forks it); one that is not found or not executable
    /// gets `sh`'s message and status, as before.
    #[tokio::test]
    async fn a_plain_command_starts_without_a_shell_and_a_missing_one_as_sh_says() {
        let h = LocalHost::new("here");
        let out = h.exec(Exec::new("cat /proc/self/stat\n")).await.unwrap();
        let ppid: u32 = out.stdout_str().split(' ').nth(3).unwrap().parse().unwrap();
        assert_eq!(ppid, std::process::id(), "{}", out.stdout_str());
        let out = h
            .exec(Exec::new("no-such-program-here --x\n"))
            .await
            .unwrap();
        assert_eq!(out.status, Some(127));
        assert!(
            out.stderr_str().contains("not found"),
            "{}",
            out.stderr_str()
        );
        // Not executable: `sh`'s 126. Executable without `#!`: `sh` runs
        // it as a script, as it always did.
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        std::fs::write(&script, "echo from-a-script\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        let run = Exec::new(format!("{}\n", script.display()));
        let out = h.exec(run.clone()).await.unwrap();
        assert_eq!(out.status, Some(126), "{out:?}");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = h.exec(run).await.unwrap();
        assert_eq!(out.status, Some(0), "{out:?}");
        assert_eq!(out.stdout_str(), "from-a-script\n");
    }

    #[tokio::test]
    async fn without_input_a_script_reads_an_empty_stdin() {
        let h = LocalHost::new("here");
        let out = h.exec(Exec::new("wc -c; echo done")).await.unwrap();
        assert_eq!(
            out.stdout_str().split_whitespace().collect::<Vec<_>>(),
            ["0", "done"]
        );
    }

    #[tokio::test]
    async fn a_script_that_hangs_times_out() {
        let h = LocalHost::new("here").with_timeout(Duration::from_millis(200));
        let err = h.exec(Exec::new("sleep 30")).await.unwrap_err();
        assert!(
            matches!(err, TransportError::CommandTimeout { .. }),
            "{err}"
        );
    }
}
