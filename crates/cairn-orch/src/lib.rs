//! Orchestration: the hosts cairn operates and how a command picks them.
//!
//! Owns the inventory (hosts merged from a deployment's servers, Ansible
//! static inventory files and Ansible-style inventory scripts) and the
//! targeting language (Salt's compound grammar and Ansible's patterns),
//! and the transports that run scripts on hosts ([`remote`]: this
//! machine's shell, SSH in process). Modules, states and jobs will live
//! here too.
//!
//! It must never print, read the clock or environment variables, or be
//! named by the engine: the CLI builds typed values with it and renders
//! them; the engine stays unaware of orchestration.

pub mod inventory;
pub mod module;
pub mod remote;
pub mod targeting;
pub mod transport;

pub use inventory::{Group, Host, Inventory, InventoryError};
pub use remote::{Exec, Output, Remote, TransportError};
pub use targeting::{Target, TargetError};
