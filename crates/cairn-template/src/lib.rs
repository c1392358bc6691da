//! cairn's template language.
//!
//! Owns: reading templates and environment files (YAML and JSON) into spanned
//! nodes, the document model (parameters, variables, resources, outputs),
//! parameter types and value resolution, expressions (minijinja) and the
//! function library, reference extraction, diagnostics with file:line:col,
//! and plain values to YAML and back (`yaml`: the one YAML stack of cairn).
//!
//! Never: talks to a target, reads the process environment or the clock
//! (callers inject both), or prints.
//!
//! Modules depend one way, each on those below it only, and so do the
//! files inside a module: no file imports one that imports it back, and a
//! child never takes a name from its parent's `mod.rs` (what siblings share
//! has a file of its own; a `mod.rs` declares, re-exports, and at most
//! composes its children, as `functions::register` registers each family).
//! `scripts/module-graph crates/cairn-template/src` checks it:
//!
//! ```text
//! loader     load: reads the files and composes everything below
//!   ▼
//! model      model, environment → params → shape
//! expr       expr (minijinja) → functions: register → each family (arm,
//!   │          net, text, ...) → args; context
//!   ▼
//! yaml       yaml → node → diagnostic → source
//! value      plain values, importing nothing (params and expr read them)
//! ```

pub mod diagnostic;
pub mod environment;
pub mod expr;
pub mod functions;
pub mod loader;
pub mod model;
pub mod node;
pub mod params;
mod shape;
pub mod source;
pub mod value;
pub mod yaml;

pub use diagnostic::{Code, Diagnostic, Diagnostics};
pub use loader::{LoadError, LoadOptions, Loaded, load};
pub use source::{FileId, Sources, Span};
pub use value::Value;
