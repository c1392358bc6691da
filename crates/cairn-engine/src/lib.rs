//! cairn's engine.
//!
//! Owns: the resource model (portable type schemas), the dependency graph,
//! and the evaluation of a loaded template into desired resource instances
//! with unknowns tracked. Plan, apply, the journal and the `Provider` trait
//! build on this.
//!
//! Never: names SQLite, AWS or a terminal; prints; reads the environment.

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
