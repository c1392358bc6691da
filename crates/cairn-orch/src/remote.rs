//! What every transport gives the layers above it: run a POSIX shell script
//! on one host, with bytes on its stdin, perhaps as another user.
//!
//! Modules, states and jobs see a host only through [`Remote`], so the same
//! code runs over SSH, through the agent, and against a local shell in tests.
//! Everything a module does on a host (read a file, stat it, write it
//! atomically, install a package) is a script, as pyinfra does: one round
//! trip per step, no helper program copied to the host first.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use miette::Diagnostic;
use thiserror::Error;

/// One script to run on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exec {
    /// A POSIX `sh` script.
    pub script: String,
    /// Bytes fed to the script's stdin, which is then closed. `None`: an
    /// empty stdin.
    pub stdin: Option<Bytes>,
    /// Run as this user through `sudo -n` (Ansible's `become`); `None`: as
    /// the user the transport connected as.
    pub become_user: Option<String>,
    /// Overrides the transport's command timeout.
    pub timeout: Option<Duration>,
}

impl Exec {
    pub fn new(script: impl Into<String>) -> Exec {
        Exec {
            script: script.into(),
            ..Exec::default()
        }
    }

    pub fn stdin(mut self, bytes: impl Into<Bytes>) -> Exec {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn become_user(mut self, user: Option<String>) -> Exec {
        self.become_user = user;
        self
    }

    /// The command line a transport hands to the host's login shell (SSH's
    /// `exec` request, or `sh -c` locally): the script quoted once, run by
    /// `sh`, through `sudo -n` when becoming another user. `-n`: a sudo that
    /// wants a password fails at once instead of hanging on a prompt.
    pub fn command_line(&self) -> String {
        let sh = format!("sh -c {}", quote(&self.script));
        match &self.become_user {
            Some(user) => format!("sudo -n -H -u {} -- {sh}", quote(user)),
            None => sh,
        }
    }

    /// [`Exec::command_line`] as the arguments of a process, for a
    /// transport that starts it itself (this machine): one `sh` for the
    /// script, not a second one to read the line first.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![];
        if let Some(user) = &self.become_user {
            argv.extend(["sudo", "-n", "-H", "-u"].map(String::from));
            argv.push(user.clone());
            argv.push("--".into());
        }
        argv.extend(["sh".to_string(), "-c".to_string(), self.script.clone()]);
        argv
    }
}

/// What a script did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// The exit status; `None` when it was killed by a signal.
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why a host could not run a script at all (a script that ran and failed
/// is an [`Output`] with a non-zero status, not an error).
#[derive(Debug, Error, Diagnostic, Clone, PartialEq, Eq)]
pub enum TransportError {
    #[error("{host}: unreachable: {reason}")]
    #[diagnostic(code(cairn::orch::unreachable))]
    Unreachable { host: String, reason: String },

    #[error("{host}: authentication as {user} refused: {reason}")]
    #[diagnostic(code(cairn::orch::auth))]
    Auth {
        host: String,
        user: String,
        reason: String,
    },

    #[error(
        "{host}: HOST KEY MISMATCH: it offered {found}, but {expected_from} says {expected}; \
         refusing to connect (someone may be in the middle, or the host was rebuilt)"
    )]
    #[diagnostic(
        code(cairn::orch::host_key),
        help("if the host was rebuilt on purpose, remove its old line from the known_hosts file")
    )]
    HostKeyMismatch {
        host: String,
        found: String,
        expected: String,
        /// `known_hosts FILE:LINE` or `the deployment's record`.
        expected_from: String,
    },

    #[error("{host}: host key {found} is not known (no known_hosts line and no recorded host_key)")]
    #[diagnostic(
        code(cairn::orch::host_key_unknown),
        help("add it to known_hosts (ssh-keyscan) or pass --known-hosts FILE")
    )]
    HostKeyUnknown { host: String, found: String },

    /// The host did not answer (connecting, the handshake, logging in).
    #[error("{host}: no answer within {}s", after.as_secs_f64())]
    #[diagnostic(code(cairn::orch::timeout))]
    Timeout { host: String, after: Duration },

    /// The host answered, but a script ran past its time and was stopped:
    /// the host was reached, so this is a failure, not `unreachable`.
    #[error("{host}: the command ran past {}s and was stopped", after.as_secs_f64())]
    #[diagnostic(code(cairn::orch::command_timeout))]
    CommandTimeout { host: String, after: Duration },

    #[error("{host}: connection lost: {reason}")]
    #[diagnostic(code(cairn::orch::dropped))]
    Dropped { host: String, reason: String },

    #[error("{host}: {reason}")]
    #[diagnostic(code(cairn::orch::transport))]
    Other { host: String, reason: String },
}

impl TransportError {
    /// Whether the host was never reached (Ansible's `unreachable`), as
    /// opposed to lost or refused on the way.
    pub fn is_unreachable(&self) -> bool {
        !matches!(
            self,
            TransportError::Other { .. } | TransportError::CommandTimeout { .. }
        )
    }
}

/// A host a script can be run on.
#[async_trait]
pub trait Remote: Send + Sync {
    /// The host's inventory name, for messages.
    fn name(&self) -> &str;

    /// Runs one script to its end. Many may run at once on one host (over
    /// SSH: one channel each on the host's one connection).
    async fn exec(&self, exec: Exec) -> Result<Output, TransportError>;
}

/// POSIX single quoting: `it's` → `'it'\''s'`.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        for s in ["plain", "", "it's", "a b", "$(rm -rf /)", "'\"\\\n"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn become_goes_through_sudo_without_a_prompt() {
        let e = Exec::new("id -u").become_user(Some("root".into()));
        assert_eq!(e.command_line(), "sudo -n -H -u root -- sh -c 'id -u'");
        assert_eq!(Exec::new("id -u").command_line(), "sh -c 'id -u'");
        assert_eq!(
            e.argv(),
            ["sudo", "-n", "-H", "-u", "root", "--", "sh", "-c", "id -u"]
        );
        assert_eq!(Exec::new("id -u").argv(), ["sh", "-c", "id -u"]);
    }
}
