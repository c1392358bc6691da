//! Running the distribution's tools: one place that turns a failed command
//! into a [`HostError`] naming the command line and its stderr.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::{Output, Stdio};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::error::HostError;

/// A command line to run: program, arguments, optional stdin.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
}

impl Cmd {
    /// A command running `program` (looked up on PATH).
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            stdin: None,
        }
    }

    /// The same command run inside network namespace `netns`
    /// (`ip netns exec NETNS ...`).
    pub fn in_netns(netns: &str, program: impl AsRef<OsStr>) -> Cmd {
        Cmd::new("ip").args(["netns", "exec", netns]).arg(program)
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Bytes to write to the command's stdin.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    /// The command line as a shell would show it (for messages).
    pub fn line(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| {
                let s = a.to_string_lossy();
                if s.is_empty() || s.contains([' ', '\'', '"', '{', '}']) {
                    format!("'{}'", s.replace('\'', r"'\''"))
                } else {
                    s.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the command to its end, whatever its exit status.
    pub async fn output(&self) -> Result<Output, HostError> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawn_error = |source| HostError::Spawn {
            command: self.line(),
            source,
        };
        let started = std::time::Instant::now();
        let mut child = command.spawn().map_err(spawn_error)?;
        if let (Some(bytes), Some(mut pipe)) = (&self.stdin, child.stdin.take()) {
            pipe.write_all(bytes).await.map_err(spawn_error)?;
            drop(pipe);
        }
        let out = child.wait_with_output().await.map_err(spawn_error);
        // Where the time of a hundred servers made at once goes.
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            program = %self.program.to_string_lossy(),
            "{}",
            self.line()
        );
        out
    }

    /// Runs the command; a non-zero exit is an error with its stderr.
    /// Returns stdout.
    pub async fn run(&self) -> Result<String, HostError> {
        let output = self.output().await?;
        self.check(&output)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The error for `output` if the command failed.
    pub fn check(&self, output: &Output) -> Result<(), HostError> {
        if output.status.success() {
            return Ok(());
        }
        Err(HostError::Command {
            command: self.line(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Where `program` is on PATH, if anywhere (also the sbin directories,
/// which a non-login root shell may lack).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_quotes_what_a_shell_would_split() {
        let cmd = Cmd::in_netns("cairn-x", "nft").args(["-f", "-", "a b", ""]);
        assert_eq!(cmd.line(), "ip netns exec cairn-x nft -f - 'a b' ''");
    }

    #[tokio::test]
    async fn a_failed_command_names_itself_and_its_stderr() {
        let err = Cmd::new("sh")
            .args(["-c", "echo oops >&2; exit 3"])
            .run()
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`sh -c 'echo oops >&2; exit 3'` failed"),
            "{msg}"
        );
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.ends_with(": oops"), "{msg}");
    }

    #[tokio::test]
    async fn stdin_reaches_the_command() {
        let out = Cmd::new("cat").stdin("hello").run().await.unwrap();
        assert_eq!(out, "hello");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let err = Cmd::new("cairn-no-such-tool").run().await.unwrap_err();
        assert!(matches!(err, HostError::Spawn { .. }), "{err}");
    }
}
