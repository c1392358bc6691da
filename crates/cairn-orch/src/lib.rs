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
//!
//! Modules depend one way, each on those below it only, and so do the
//! files inside a module: no file imports one that imports it back, and a
//! child never takes a name from its parent's `mod.rs` (what siblings share
//! has a file of its own; a `mod.rs` declares, re-exports, and at most
//! composes its children, as `Inventory::load` picks a reader and
//! `Target::parse` a language). `scripts/module-graph crates/cairn-orch/src`
//! checks it. A new capability goes in the lowest layer that has every
//! name it needs:
//!
//! ```text
//! agent      agent (→ bus::agent, watch, work) · master (serve → direct,
//!   │          bus, admin_conn → react → dispatch → hub; client → admin;
//!   │          config) → reactor, keys, tls → seal, event, guard → protocol
//!   ▼
//! job        outcome (a host's run: a module, or states) · execute, store
//!   │          → record
//!   │
//! state      apply → ahead → batch · file → parse, order → render → error;
//!   │          resolved (the states and their requisites)
//! module     names → each module (archive, cmd, file, ...) → args, host,
//!   │          contract (the Module trait) → outcome, diff, error
//!   ▼
//! transport  kept (spec, protocol, dir) → ssh (checker, dial, target) →
//!   │          known_hosts · local; ssh's target reads inventory's Host
//!   ▼
//! remote     the Remote trait → transport::shell (Shell) → exec (Exec,
//!              Output, TransportError, quoting)
//!
//! inventory  load → ini, yaml, script · deployment → merge → host ← vars
//!   │          (merge selects hosts through targeting)
//!   ▼
//! targeting  Target (parse, select) → compound, pattern → glob, anchored,
//!              candidate, error
//! ```

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
