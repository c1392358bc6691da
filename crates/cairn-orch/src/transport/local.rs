//! This machine as a host: every script is `sh -c` in a child process
//! (started straight, not through a shell that reads a command line).

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

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
        let argv = exec.argv();
        let mut child = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            // The host's name as the inventory knows it (an agent's id; many
            // agents may share a machine in a bench).
            .env("CAIRN_HOST", &self.name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| other(format!("cannot start {}: {e}", argv[0])))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let input = exec.stdin.unwrap_or_default();
        // Written beside the wait, so a script that fills its stdout pipe
        // before reading all its stdin cannot deadlock us.
        let feed = async move {
            // A script that exits without reading its stdin closes the pipe:
            // not our error.
            let _ = stdin.write_all(&input).await;
            drop(stdin);
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
