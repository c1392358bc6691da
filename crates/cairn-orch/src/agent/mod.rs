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
mod binary;
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

pub use binary::{BINARY, binary_beside};
pub use config::AgentConfig;
pub use event::{Event, TagGlob};
pub use guard::Guard;
pub use keys::{KeyAction, KeyEntry, KeyStatus};
pub use master::{
    AdminError, AdminReply, AdminRequest, Batch, MasterConfig, admin_socket, ask, ask_all,
};
pub use protocol::JobKind;
pub use reactor::{ReactorError, Reactors};
