//! cairn's template language.
//!
//! Owns: reading templates and environment files (YAML and JSON) into spanned
//! nodes, the document model (parameters, variables, resources, outputs),
//! parameter types and value resolution, expressions (minijinja) and the
//! function library, reference extraction, and diagnostics with file:line:col.
//!
//! Never: talks to a target, reads the process environment or the clock
//! (callers inject both), or prints.

pub mod diagnostic;
pub mod node;
pub mod source;
