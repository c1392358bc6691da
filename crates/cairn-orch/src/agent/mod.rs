//! Agents: `cairn master` and `cairn agent` over mutual TLS, with events
//! ([`event`]) and reactors ([`reactor`]), over TLS or a NATS bus (issue 12).
//!
//! Trust: both ends are pinned by key fingerprint (SHA-256 of the public
//! key), see [`tls`]. The agent makes its key pair on first start (0600)
//! and pins the master's key (`--master-fingerprint`, else trust on first
//! use, saved to its directory). The master records an unknown agent key
//! pending and serves it nothing until `cairn keys accept ID` (or an
//! enrolment token); see [`master`] for the order of checks on every
//! connection. Every job message names the job, its target agent, an
//! expiry and a nonce, and the agent refuses it unless all four check out
//! ([`guard::Guard`]). With `--bus nats://ADDR` masters and agents meet
//! on NATS instead, each message signed ([`seal`], [`bus`]). Salt's CVE-2020-11651 is the lesson: no request is
//! read from a peer whose key is not accepted, save its one small hello.
//!
//! Jobs run on the agent's host through the same [`crate::module`] and
//! [`crate::state`] code as over SSH, against [`crate::transport::local`],
//! and come back as the same [`crate::job::HostResult`]s.

#[allow(clippy::module_inception)]
pub mod agent;
pub mod bus;
pub mod config;
pub mod event;
pub mod guard;
pub mod keys;
pub mod master;
pub mod protocol;
pub mod reactor;
pub mod seal;
pub mod tls;
pub mod watch;
pub mod work;

pub use config::AgentConfig;
pub use event::{Event, TagGlob};
pub use guard::Guard;
pub use keys::{KeyAction, KeyEntry, KeyStatus};
pub use master::{
    AdminError, AdminReply, AdminRequest, Batch, MasterConfig, admin_socket, ask, ask_all,
};
pub use protocol::JobKind;
pub use reactor::{ReactorError, Reactors};

use std::path::{Path, PathBuf};

/// The agent's own binary: a small program that holds only the agent, so
/// an idle agent maps a fraction of the pages of the whole `cairn`
/// (see README, "Agents").
pub const BINARY: &str = "cairn-agent";

/// The agent binary shipped beside `exe` (the `cairn` binary), if there is
/// one: `cairn agent` runs it, and the local cloud starts it. An empty
/// file (a mount point left in a server's root) is none.
pub fn binary_beside(exe: &Path) -> Option<PathBuf> {
    if exe.file_name()? == BINARY {
        return None;
    }
    let p = exe.with_file_name(BINARY);
    std::fs::metadata(&p)
        .is_ok_and(|m| m.is_file() && m.len() > 0)
        .then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_binary_is_found_beside_cairn_only() {
        let dir = tempfile::tempdir().unwrap();
        let cairn = dir.path().join("cairn");
        let agent = dir.path().join(BINARY);
        assert_eq!(binary_beside(&cairn), None);
        // A mount point left empty in a server's root is no binary.
        std::fs::write(&agent, "").unwrap();
        assert_eq!(binary_beside(&cairn), None);
        std::fs::write(&agent, "\x7fELF").unwrap();
        assert_eq!(binary_beside(&cairn), Some(agent.clone()));
        // The agent does not look for itself.
        assert_eq!(binary_beside(&agent), None);
    }
}
