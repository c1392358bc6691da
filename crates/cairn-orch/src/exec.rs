//! One script run on a host: what to run ([`Exec`]), what it did
//! ([`Output`]), why it could not run at all ([`TransportError`]), and the
//! quoting that builds its command line.

use std::time::Duration;

use bytes::Bytes;
use miette::Diagnostic;
use serde::{Deserialize, Serialize};
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
        line(&self.argv())
    }

    /// [`Exec::command_line`] with `mark` in the script's environment
    /// (`CAIRN_RUN=MARK`, through `env`, which any login shell and sudo's
    /// reset environment pass on): every process the script starts
    /// inherits it, so that a script stopped at its timeout can be found
    /// with all it started ([`Exec::reaper`]), where SSH's signal reaches
    /// only the session's first process.
    pub fn marked_command_line(&self, mark: &str) -> String {
        let env = format!("{RUN_MARK}={mark}");
        line(&as_user(
            self.become_user.as_deref(),
            ["env", &env, "sh", "-c", &self.script],
        ))
    }

    /// The script that kills every process marked with `mark` (see
    /// [`Exec::marked_command_line`]), as the same user: Linux's `/proc`,
    /// `grep -z` and `kill`, nothing else needed on the host.
    pub fn reaper(mark: &str, become_user: Option<String>) -> Exec {
        Exec::new(format!(
            "for d in /proc/[0-9]*; do grep -qxz {m} \"$d/environ\" 2>/dev/null && kill -KILL \"${{d#/proc/}}\" 2>/dev/null; done; true",
            m = quote(&format!("{RUN_MARK}={mark}")),
        ))
        .become_user(become_user)
    }

    /// [`Exec::command_line`] as the arguments of a process, for a
    /// transport that starts it itself (this machine): one `sh` for the
    /// script, not a second one to read the line first.
    pub fn argv(&self) -> Vec<String> {
        as_user(self.become_user.as_deref(), ["sh", "-c", &self.script])
    }

    /// The script as a program and its arguments, when it is one simple
    /// command `sh` would only split into words and look up on `PATH`
    /// (`hostname`, `systemctl restart web`): a transport that starts
    /// processes itself may start it without a shell, one process start
    /// fewer (README, "Agents": a `sh -c` costs as much as the command).
    /// `None` for anything else (quotes, expansions, redirections, several
    /// commands, an assignment, a shell keyword or a builtin other than
    /// `true`/`false`, `become_user`): those need `sh`.
    pub fn direct_argv(&self) -> Option<Vec<String>> {
        if self.become_user.is_some() {
            return None;
        }
        let line = self.script.trim_end_matches(['\n', ' ', '\t']);
        let plain = |c: char| c.is_ascii_alphanumeric() || "_-./,:+@%=".contains(c);
        if line.is_empty() || !line.chars().all(|c| plain(c) || c == ' ' || c == '\t') {
            return None;
        }
        let words: Vec<String> = line
            .split([' ', '\t'])
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect();
        let program = words.first()?;
        if program.contains('=') || SHELL_WORDS.contains(&program.as_str()) {
            return None;
        }
        Some(words)
    }
}

/// The environment variable that marks a script's processes (see
/// [`Exec::marked_command_line`]).
pub const RUN_MARK: &str = "CAIRN_RUN";

/// A mark for one command's processes: 64 random bits, hex.
pub(crate) fn run_mark() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness, the time: the mark need only be unlikely to
    // name another command's processes, not secret.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        bytes = (now.as_nanos() as u64).to_be_bytes();
    }
    hex::encode(bytes)
}

/// The first words `sh` reads as its own (keywords and `dash`'s and
/// POSIX's builtins), save `true` and `false`, whose programs do the same:
/// a script starting with one of these is run by `sh`.
const SHELL_WORDS: &[&str] = &[
    "!", ".", ":", "alias", "bg", "break", "case", "cd", "chdir", "command", "continue", "do",
    "done", "echo", "elif", "else", "esac", "eval", "exec", "exit", "export", "fc", "fg", "fi",
    "for", "function", "getopts", "hash", "if", "in", "jobs", "kill", "local", "printf", "pwd",
    "read", "readonly", "return", "select", "set", "shift", "test", "then", "times", "trap",
    "type", "ulimit", "umask", "unalias", "unset", "until", "wait", "while",
];

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
#[derive(Debug, Error, Diagnostic, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
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

/// `command` run as `user` when one is given: through `sudo -n` (a sudo
/// that wants a password fails at once instead of hanging on a prompt).
pub(crate) fn as_user<'a>(
    user: Option<&str>,
    command: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let mut argv = vec![];
    if let Some(user) = user {
        argv.extend(["sudo", "-n", "-H", "-u", user, "--"].map(String::from));
    }
    argv.extend(command.into_iter().map(String::from));
    argv
}

/// `argv` as one line for a shell to split back into the same words.
pub(crate) fn line(argv: &[String]) -> String {
    argv.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
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
        assert_eq!(
            e.marked_command_line("ab12"),
            "sudo -n -H -u root -- env CAIRN_RUN=ab12 sh -c 'id -u'"
        );
    }

    #[test]
    fn only_a_plain_simple_command_goes_without_a_shell() {
        let direct = |s: &str| Exec::new(s).direct_argv();
        assert_eq!(direct("true\n"), Some(vec!["true".to_string()]));
        assert_eq!(
            direct("systemctl  restart web@1.service\n"),
            Some(
                ["systemctl", "restart", "web@1.service"]
                    .map(String::from)
                    .to_vec()
            )
        );
        assert_eq!(
            direct("dd if=/dev/zero of=/tmp/x,y count=1"),
            Some(
                ["dd", "if=/dev/zero", "of=/tmp/x,y", "count=1"]
                    .map(String::from)
                    .to_vec()
            )
        );
        for needs_sh in [
            "",
            "\n",
            "echo $HOME",
            "echo hi",
            "cd /tmp",
            "FOO=1 env",
            "ls *.txt",
            "ls ~",
            "a; b",
            "a\nb",
            "a && b",
            "a | b",
            "a > f",
            "a 'b c'",
            "a \"b\"",
            "a \\n",
            "a # comment",
            "if true",
            "exit 3",
            "$(id)",
            "`id`",
            "{ a; }",
        ] {
            assert_eq!(direct(needs_sh), None, "{needs_sh:?}");
        }
        assert_eq!(
            Exec::new("id -u")
                .become_user(Some("root".into()))
                .direct_argv(),
            None
        );
    }
}
