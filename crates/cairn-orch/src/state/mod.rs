//! States: Salt-style SLS files, applied host by host.
//!
//! A state file is Jinja rendered per host ([`RenderContext`]: `facts`,
//! `vars`, `host`), then YAML: each top-level key is a state id mapping one
//! `module.function` to its arguments and requisites (see `parse.rs` for the
//! shape). [`StateFile::parse`] renders, reads, resolves requisites and
//! orders the states, reporting any mistake at the file:line:col people
//! edit. [`StateFile::prepare`] builds every module through a [`Loader`]
//! before any runs, and [`Prepared::apply`] runs them on one host, one at a
//! time, into a [`HostReport`]. Hosts run in parallel at the caller's
//! discretion: one `apply` per host.

mod ahead;
mod apply;
mod batch;
mod error;
mod file;
mod order;
mod parse;
mod render;
mod resolved;
#[cfg(test)]
mod tests;

pub use apply::{HostReport, Loader, Prepared, Skip, StateReport, StateResult, apply};
pub use error::{Location, StateError, StateErrorKind};
pub use file::StateFile;
pub use render::RenderContext;
pub use resolved::{Requisite, RequisiteKind, State};
