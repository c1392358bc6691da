//! The local cloud: every portable type made real on this machine, behind
//! the engine's `Provider` trait. The daemon serves it over its control
//! API; tests drive it in-process.
//!
//! Files, lowest first: each uses only names and methods of those before
//! it (see the crate's doc for the whole crate).
//! - the record's types and where things are: `model`, `dirs`, `props`,
//!   `addresses`; `seal` and `record` (the SQLite record) on them.
//! - what the cloud runs, each apart from the `Cloud`: `relay`,
//!   `firewall` (the rules as the cloud's listeners apply them),
//!   `forward` (a public address's forwarding), `balancer`, `agents` (the
//!   master and the servers' agents), `isolation` (`runc` servers as
//!   hosts: `Hosts`, its own layers inside).
//! - `base`: the `Cloud` struct, opening it, its bookkeeping.
//! - its parts, `impl Cloud` blocks: `zones`, `public`, `services` (load
//!   balancers, databases, key pairs), `drain` (`BackendControl`).
//! - `make` (what each kind is made of), then `provider` (the `Provider`
//!   trait) and `lifecycle` (the daemon's start and stop).

mod addresses;
pub mod agents;
mod balancer;
mod base;
mod dirs;
mod drain;
mod firewall;
mod forward;
mod isolation;
mod lifecycle;
mod make;
mod model;
mod props;
mod provider;
mod public;
mod record;
mod relay;
mod seal;
mod services;
mod zones;

pub use addresses::DEFAULT_POOL;
pub use base::Cloud;
pub use dirs::LocalDirs;
pub use isolation::{Isolation, IsolationError, cloud_id, container_id};
pub use model::{CloudState, LocalResource, inventory};
pub use record::{read_isolation, read_resources};

#[cfg(test)]
mod tests;
