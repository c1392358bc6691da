//! Hosts over SSH, in process (russh): no `ssh` binary. Connections live
//! as long as the process that made them; [`super::kept`] keeps them
//! between runs in a process of their own.
//!
//! One connection per host, many channels: every [`Remote::exec`] opens a
//! session channel on the host's one connection, so fifty scripts at once
//! on a host cost one TCP connection, one key exchange and one
//! authentication. The connection opens on the first exec and is kept; if
//! it was lost, the next exec reconnects once.
//!
//! Host keys are checked before anything is sent: against known_hosts
//! files and against the key a deployment recorded for the server, both
//! when both are given. A key neither knows is refused unless the caller
//! chose [`HostKeyPolicy::AcceptNew`] (no trust on first use by default).
//!
//! Files: `target` (what a host is and how to prove who we are),
//! `dial` (the byte stream under SSH), `checker` (the host key's judge
//! during the handshake), `host` (the connection and its channels),
//! `pool` (one host per inventory name).
//!
//! [`Remote::exec`]: crate::remote::Remote::exec

mod checker;
mod dial;
mod host;
mod pool;
mod target;

pub use dial::{DialFn, Dialer, SshStream, TcpDialer};
pub use host::SshHost;
pub use pool::SshPool;
pub use target::{HostKeyPolicy, KeyFiles, KeyPassphrase, SshAuth, SshOptions, SshTarget};
