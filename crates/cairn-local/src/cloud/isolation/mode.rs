//! Which isolation a cloud runs its servers with, chosen once when the
//! cloud is made and kept in its record. Apart from `Hosts` so that the
//! daemon, its launcher and the CLI name it without the `runc` machinery.

use std::fmt;
use std::str::FromStr;

use crate::host::HostError;

/// How a cloud runs its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// A supervised process on a loopback address, sharing the machine's
    /// filesystem, processes and network stack.
    Process,
    /// A container started by runc: its own root, hostname, processes and
    /// network namespace, with an address of its subnet.
    Runc,
}

impl Isolation {
    /// The name in the record, on the command line and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Process => "process",
            Isolation::Runc => "runc",
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Isolation {
    type Err = IsolationError;

    fn from_str(s: &str) -> Result<Isolation, IsolationError> {
        match s {
            "process" => Ok(Isolation::Process),
            "runc" => Ok(Isolation::Runc),
            other => Err(IsolationError::Unknown(other.to_string())),
        }
    }
}

/// Why a cloud cannot run with the isolation asked for.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// A name that is not an isolation.
    #[error("unknown isolation `{0}`: use `process` or `runc`")]
    Unknown(String),
    /// The cloud was made with the other isolation.
    #[error(
        "the local cloud in {dir} was made with `{made}` isolation and cannot run with `{asked}`; \
         use another directory (CAIRN_LOCAL_DIR) for a `{asked}` cloud, or destroy this one's \
         deployments, stop it and remove {dir}"
    )]
    Mismatch {
        /// The cloud's directory.
        dir: String,
        /// The isolation it was made with.
        made: Isolation,
        /// The isolation asked for.
        asked: Isolation,
    },
    /// The machine cannot run `runc` servers (not root, a tool missing).
    #[error("`runc` isolation: {0}")]
    Host(#[from] HostError),
}

/// The isolation a cloud runs with: the recorded one, else the one asked
/// for (a cloud with no record of it and resources already is an old
/// process cloud), else, for a new cloud, `runc` when the machine can run
/// it (`runc_ready`: root and the tools) and `process` when it cannot.
/// Servers are hosts wherever that is possible; a machine without root
/// still gets a working cloud. Refuses a mismatch.
pub fn choose(
    dir: &str,
    recorded: Option<&str>,
    has_resources: bool,
    asked: Option<Isolation>,
    runc_ready: impl FnOnce() -> Result<(), HostError>,
) -> Result<Isolation, IsolationError> {
    let made = match recorded {
        Some(text) => Some(text.parse()?),
        None if has_resources => Some(Isolation::Process),
        None => None,
    };
    match (made, asked) {
        (Some(made), Some(asked)) if made != asked => Err(IsolationError::Mismatch {
            dir: dir.to_string(),
            made,
            asked,
        }),
        (Some(made), _) => Ok(made),
        (None, Some(asked)) => Ok(asked),
        (None, None) => match runc_ready() {
            Ok(()) => Ok(Isolation::Runc),
            Err(e) => {
                tracing::warn!("a new cloud in {dir} runs its servers as processes: {e}");
                Ok(Isolation::Process)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_isolation_is_chosen_once_and_a_mismatch_is_refused() {
        use Isolation::*;
        let ready = || Ok(());
        let not_root = || {
            Err(HostError::Missing {
                what: vec!["root".into()],
                packages: vec![],
            })
        };
        // A new cloud: servers are hosts where the machine can run them.
        assert_eq!(choose("/d", None, false, None, ready).unwrap(), Runc);
        assert_eq!(choose("/d", None, false, None, not_root).unwrap(), Process);
        // Asked for: that, whatever the machine (runc's own check comes later).
        assert_eq!(choose("/d", None, false, Some(Runc), ready).unwrap(), Runc);
        assert_eq!(
            choose("/d", None, false, Some(Process), ready).unwrap(),
            Process
        );
        // Made: what it was made with, whatever the machine can do now.
        assert_eq!(
            choose("/d", Some("runc"), true, None, not_root).unwrap(),
            Runc
        );
        assert_eq!(
            choose("/d", Some("process"), true, None, ready).unwrap(),
            Process
        );
        // Resources and no record: a cloud made before the record said.
        assert_eq!(choose("/d", None, true, None, ready).unwrap(), Process);
        let err = choose("/d", Some("runc"), true, Some(Process), ready).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the local cloud in /d was made with `runc` isolation and cannot run with `process`; \
             use another directory (CAIRN_LOCAL_DIR) for a `process` cloud, or destroy this \
             one's deployments, stop it and remove /d"
        );
        let err = choose("/d", None, true, Some(Runc), ready).unwrap_err();
        assert!(err.to_string().contains("made with `process`"), "{err}");
        let err = "docker".parse::<Isolation>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown isolation `docker`: use `process` or `runc`"
        );
    }
}
