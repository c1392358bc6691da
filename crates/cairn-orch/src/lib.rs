//! Orchestration: the hosts cairn operates and how a command picks them.
//!
//! Owns the inventory (hosts merged from a deployment's servers, Ansible
//! static inventory files and Ansible-style inventory scripts) and the
//! targeting language (Salt's compound grammar and Ansible's patterns); the
//! [`Remote`] contract and the transports that fulfil it (this machine's
//! shell, SSH in process); the modules that change a host through it
//! ([`module::load`]); states (Salt SLS files with requisites); and jobs
//! (per-host results, bounded concurrency, `--max-fail`).
//!
//! It must never print, read environment variables, or be
//! named by the engine: the CLI builds typed values with it and renders
//! them; the engine stays unaware of orchestration.

pub mod agent;
mod exec;
pub mod inventory;
pub mod job;
pub mod module;
pub mod remote;
pub mod state;
pub mod targeting;
pub mod transport;

pub use inventory::{Group, Host, Inventory, InventoryError};
pub use remote::{Exec, Output, Remote, TransportError};
pub use targeting::{Target, TargetError};
