//! A shell kept open on a host, running scripts one after another: one
//! exec (one channel, one session process, one login shell) for all the
//! scripts of a host's states, where each script as an exec of its own
//! costs the host a session and a login shell (README, "Orchestration":
//! a few ms of CPU each) and the network a channel's round trips.
//!
//! The host runs `sh -s`, which reads its commands from stdin as they
//! come. Each request is one script, run as `( eval SCRIPT )`, a subshell
//! of that shell, with /dev/null for stdin, or exactly the script's input
//! (kept in a temporary file first: the requests come on the same stdin);
//! then the shell prints a frame line on stdout, `\n<nonce> end
//! <status>\n`, and one on stderr, `\n<nonce> end\n`, so each script's
//! output, errors and exit status come back apart and byte-exact. The
//! nonce is 128 random bits drawn for this shell, sent on stdin (never on
//! a command line `ps` shows) and unset in the script's subshell, so no
//! script ends its request early unless it guesses it; output that does
//! not end in exactly one frame breaks the shell, and the caller goes on
//! with execs of their own.
//!
//! Input is sent once the shell asks for it (`\n<nonce> data\n` on
//! stdout, after it has read the request): `sh` reads its commands in
//! blocks, and would otherwise take the input for commands.
//!
//! What differs from an exec of its own: the script's `sh` is a subshell
//! of one that has run the scripts before it (none of their variables,
//! all of them run in subshells), `$$` is that shell's, dash names
//! `eval` in the errors it prints for a command not found or a syntax
//! error (`sh: 1: eval: foo: not found`), and a script killed by a signal
//! reports `128 + signal` as its status.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ring::rand::{SecureRandom, SystemRandom};

use crate::exec::{Exec, Output, RUN_MARK, TransportError, as_user, line, quote};

/// What a transport reads from a shell's exec.
#[derive(Debug)]
pub enum Chunk {
    Stdout(Bytes),
    Stderr(Bytes),
    /// The exec ended (its stdout and stderr are closed).
    Closed,
}

/// A transport's exec of `sh -s`, its stdin open.
#[async_trait]
pub trait Pipe: Send {
    async fn write(&mut self, bytes: Bytes) -> Result<(), TransportError>;
    async fn read(&mut self) -> Result<Chunk, TransportError>;
    /// Ends the shell: stdin closed (it exits at its end), or with `kill`
    /// at once, whatever it was doing.
    async fn close(&mut self, kill: bool);
}

/// A shell kept open on a host (see the module's documentation).
pub struct Shell {
    host: String,
    pipe: Box<dyn Pipe>,
    nonce: String,
    become_user: Option<String>,
    timeout: Duration,
    /// Garbled, lost or timed out: no more requests.
    broken: bool,
    /// Bumped by every script run (see [`Shell::counted`]).
    runs: Option<Arc<AtomicUsize>>,
    last_mark: Option<String>,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("host", &self.host)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Shell {
    /// The command line a transport runs for a shell: `sh -s`, through
    /// `sudo -n` when becoming another user.
    pub fn command_line(become_user: Option<&str>) -> String {
        line(&Shell::argv(become_user))
    }

    /// [`Shell::command_line`] as a program and its arguments.
    pub fn argv(become_user: Option<&str>) -> Vec<String> {
        as_user(become_user, ["sh", "-s"])
    }

    /// Over `pipe`, an exec of [`Shell::command_line`]; `timeout`: a
    /// script's time when its [`Exec`] sets none. `None` when no random
    /// nonce could be drawn.
    pub async fn start(
        host: impl Into<String>,
        mut pipe: Box<dyn Pipe>,
        become_user: Option<String>,
        timeout: Duration,
    ) -> Result<Option<Shell>, TransportError> {
        let mut bytes = [0u8; 16];
        if SystemRandom::new().fill(&mut bytes).is_err() {
            pipe.close(false).await;
            return Ok(None);
        }
        let nonce = hex::encode(bytes);
        // The temporary file for input is made when first needed, and
        // goes when the shell ends.
        let prologue =
            format!("N={nonce}\nT=\ntrap 'if [ -n \"$T\" ]; then rm -f \"$T\"; fi' EXIT\n");
        pipe.write(prologue.into()).await?;
        Ok(Some(Shell {
            host: host.into(),
            pipe,
            nonce,
            become_user,
            timeout,
            broken: false,
            runs: None,
            last_mark: None,
        }))
    }

    /// The mark of the last script's processes (see
    /// [`Exec::marked_command_line`]): each script runs with a mark of its
    /// own, so that one past its time can be killed with all it started
    /// ([`Exec::reaper`]) and nothing an earlier script left running.
    pub fn last_mark(&self) -> Option<&str> {
        self.last_mark.as_deref()
    }

    pub fn become_user(&self) -> Option<&str> {
        self.become_user.as_deref()
    }

    /// Counts every script this shell runs in `runs` (for callers that
    /// count what a host was asked).
    pub fn counted(mut self, runs: Arc<AtomicUsize>) -> Shell {
        self.runs = Some(runs);
        self
    }

    /// Whether `exec` can run here: as this shell's user, and it still
    /// answers.
    pub fn fits(&self, exec: &Exec) -> bool {
        !self.broken && exec.become_user == self.become_user
    }

    /// Runs one script to its end. An error breaks the shell: later
    /// scripts fail at once (run them as execs of their own).
    pub async fn run(&mut self, exec: Exec) -> Result<Output, TransportError> {
        if !self.fits(&exec) {
            return Err(TransportError::Other {
                host: self.host.clone(),
                reason: "the host's shell cannot run this script (ended, or another user's)".into(),
            });
        }
        if let Some(runs) = &self.runs {
            runs.fetch_add(1, Ordering::SeqCst);
        }
        let after = exec.timeout.unwrap_or(self.timeout);
        match tokio::time::timeout(after, self.request(exec)).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => {
                self.broken = true;
                self.pipe.close(true).await;
                Err(e)
            }
            Err(_) => {
                self.broken = true;
                self.pipe.close(true).await;
                Err(TransportError::CommandTimeout {
                    host: self.host.clone(),
                    after,
                })
            }
        }
    }

    /// Ends the shell (stdin closed; it exits after its last script).
    pub async fn close(mut self) {
        self.pipe.close(self.broken).await;
    }

    fn garbled(&self, what: &str) -> TransportError {
        TransportError::Other {
            host: self.host.clone(),
            reason: format!("the host's shell answered out of turn ({what})"),
        }
    }

    async fn request(&mut self, exec: Exec) -> Result<Output, TransportError> {
        let input = exec.stdin.filter(|b| !b.is_empty());
        let script = quote(&exec.script);
        let mark = crate::exec::run_mark();
        let mark_it = format!("export {RUN_MARK}={mark}");
        self.last_mark = Some(mark);
        let text = match &input {
            None => format!(
                "( unset N T; {mark_it}; eval {script} ) </dev/null\nprintf '\\n%s end %d\\n' \"$N\" \"$?\"\n\
                 printf '\\n%s end\\n' \"$N\" >&2\n"
            ),
            Some(bytes) => format!(
                "if [ -z \"$T\" ]; then T=$(mktemp) || exit 1; fi\n\
                 printf '\\n%s data\\n' \"$N\"\n\
                 head -c {len} >\"$T\" || exit 1\n\
                 ( unset N T; {mark_it}; eval {script} ) <\"$T\"\nr=$?\n: >\"$T\"\n\
                 printf '\\n%s end %d\\n' \"$N\" \"$r\"\nprintf '\\n%s end\\n' \"$N\" >&2\n",
                len = bytes.len()
            ),
        };
        self.pipe.write(text.into()).await?;
        let data_mark = format!("\n{} data\n", self.nonce);
        let end_out = format!("\n{} end ", self.nonce);
        let end_err = format!("\n{} end\n", self.nonce);
        let mut input = input;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut status: Option<i32> = None;
        let mut err_done = false;
        loop {
            if let Some(bytes) = &input
                && out.len() >= data_mark.len()
            {
                if !out.starts_with(data_mark.as_bytes()) {
                    return Err(self.garbled("output before its input was asked for"));
                }
                out.drain(..data_mark.len());
                let bytes = bytes.clone();
                input = None;
                self.pipe.write(bytes).await?;
            }
            if input.is_none()
                && status.is_none()
                && let Some(at) = find(&out, end_out.as_bytes())
            {
                let rest = &out[at + end_out.len()..];
                if let Some(nl) = rest.iter().position(|b| *b == b'\n') {
                    if nl + 1 != rest.len() {
                        return Err(self.garbled("output after the end of a script"));
                    }
                    let code = std::str::from_utf8(&rest[..nl])
                        .ok()
                        .and_then(|c| c.parse::<i32>().ok())
                        .ok_or_else(|| self.garbled("a status that is not a number"))?;
                    status = Some(code);
                    out.truncate(at);
                }
            }
            if !err_done && let Some(at) = find(&err, end_err.as_bytes()) {
                if at + end_err.len() != err.len() {
                    return Err(self.garbled("errors after the end of a script"));
                }
                err.truncate(at);
                err_done = true;
            }
            if let (Some(code), true) = (status, err_done) {
                return Ok(Output {
                    status: Some(code),
                    stdout: out,
                    stderr: err,
                });
            }
            match self.pipe.read().await? {
                Chunk::Stdout(b) => out.extend_from_slice(&b),
                Chunk::Stderr(b) => err.extend_from_slice(&b),
                Chunk::Closed => {
                    return Err(TransportError::Dropped {
                        host: self.host.clone(),
                        reason: "the host's shell ended before its script did".into(),
                    });
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests;
