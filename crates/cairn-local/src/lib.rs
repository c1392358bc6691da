//! The local target: an embedded cloud on this machine. Servers are
//! supervised processes on their own loopback addresses, the load balancer
//! is a real HTTP/TCP proxy, DNS is a real authoritative server, databases
//! are real PostgreSQL clusters.
//!
//! Never: listens on anything but loopback.
//!
//! Modules depend one way, each on those below it only, and so do the
//! files inside a module: no file imports one that imports it back, and a
//! child never takes a name from its parent's `mod.rs` (what siblings share
//! has a file of its own; a `mod.rs` declares, re-exports, and at most
//! composes its children, as `daemon::run` does). A new capability goes
//! in the lowest layer that has every name it needs:
//!
//! ```text
//! daemon      api · client, launch (on published, wire) · pool
//!   │
//! cloud       provider, lifecycle → make → services, public, zones, drain
//!   │           (impl Cloud parts) → base (the Cloud struct, its bookkeeping)
//!   │         → isolation (runc servers as hosts: Hosts, its own layers)
//!   │         → agents, forward, balancer, firewall, relay
//!   │         → record, seal → model, dirs, props, addresses
//!   ▼
//! lb, dns, postgres, supervisor           init (a runc server's PID 1)
//! host (runc, netns, nft, images, ...)  ◄──┘
//! random, echo, http
//! ```

pub mod cloud;
pub mod daemon;
pub mod dns;
pub mod echo;
pub mod host;
mod http;
pub mod init;
pub mod lb;
pub mod postgres;
pub mod random;
pub mod supervisor;
/// Loopback servers for the tests of every module.
#[cfg(test)]
mod test_server;
