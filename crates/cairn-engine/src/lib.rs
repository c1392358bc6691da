//! cairn's engine.
//!
//! Owns: the resource model (portable type schemas), the dependency graph,
//! and the evaluation of a loaded template into desired resource instances
//! with unknowns tracked. Plan, apply, the journal and the `Provider` trait
//! build on this.
//!
//! Never: names SQLite, AWS or a terminal; prints; reads the environment.
//!
//! Modules depend one way, each on those below it only, and so do the
//! files inside a module: no file imports one that imports it back, and a
//! child never takes a name from its parent's `mod.rs` (what siblings share
//! has a file of its own; a `mod.rs` declares, re-exports, and at most
//! composes its children, as `apply` drives the walk and `evaluate` the
//! declarations). `scripts/module-graph crates/cairn-engine/src` checks it:
//!
//! ```text
//! run        run → recover → apply; import → run; validate → evaluate
//!   ▼
//! apply      apply → walk → rollback → node → calls → record; walk → order,
//!   │          report; calls → context (RunContext) → events; reads retry
//!   │          and fence
//!   ▼
//! plan       plan → evaluate, provider, store
//!   ▼
//! evaluate   evaluate → references, instances → checks; context, desired
//!   │          → graph; check (a value against its schema)
//!   ▼
//! provider   provider → backend → provider::error; retry → provider
//! store      store → timefmt; fence, holder → store
//!   ▼
//! schema     kind → catalog → aws, portable → definition; each type's
//!              reader (balancer, dns, ...) → typed → parse; firewall →
//!              limits → parse
//!
//! testing    fakes for tests → backend, provider, store, schema
//! ```

pub mod apply;
pub mod backend;
pub mod check;
pub mod evaluate;
pub mod fence;
pub mod graph;
pub mod holder;
pub mod import;
pub mod plan;
pub mod provider;
pub mod recover;
pub mod retry;
pub mod run;
pub mod schema;
pub mod store;
pub mod testing;
pub mod timefmt;
pub mod validate;

pub use evaluate::{
    Desired, DesiredResource, Instance, InstanceKey, KnownAttributes, NoAttributes, evaluate,
};

#[cfg(test)]
mod tests;
