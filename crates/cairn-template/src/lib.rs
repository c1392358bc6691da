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
