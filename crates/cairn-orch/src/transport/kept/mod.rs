//! SSH connections kept open between runs, as OpenSSH's `ControlPersist`
//! keeps them for Ansible: `cairn run --keep-connections 60s` leaves each
//! host's connection with a keeper process, and the next run within that
//! time opens channels on it instead of a TCP connection, a key exchange
//! and a login. On hosts whose CPU is shared (or small), the connection is
//! most of what a short command costs them (README, "Orchestration").
//!
//! The keeper ([`keeper::Keeper`]) is a process of this user's own,
//! listening on a Unix socket in a directory only this user may enter
//! (checked, as OpenSSH checks a `ControlPath`), and it serves only peers
//! of the same user id. A run's hosts are [`KeptHost`]s: each script is
//! one socket connection to the keeper, which runs it on the host's
//! [`SshHost`] (the same transport as without a keeper) and sends back
//! its output; a host's shell ([`crate::transport::Shell`]) is relayed the
//! same way, byte for byte.
//!
//! A kept connection is shared only by requests that describe the host
//! identically ([`Spec`]: address, port, user, credentials, the host keys
//! that vouch for it, the route, the timeouts): a run whose known_hosts
//! line or recorded key differs gets a connection of its own, judged by
//! its own lines, never one another run's lines let in.
//!
//! [`SshHost`]: crate::transport::SshHost

mod dir;
mod error;
pub mod host;
pub mod keeper;
mod protocol;
mod spec;
mod wire;

pub use dir::{default_dir, private_dir, socket_path};
pub use error::KeeperError;
pub use host::{KeptHost, kept_connections, stop_keeper};
pub use keeper::Keeper;
pub use protocol::KeptConnection;
pub use spec::Spec;
