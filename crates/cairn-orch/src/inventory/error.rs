//! An inventory source that cannot be read.

use miette::Diagnostic;
use thiserror::Error;

/// An inventory source that cannot be read; every variant names it.
#[derive(Debug, Error, Diagnostic)]
pub enum InventoryError {
    #[error("{path}: {source}")]
    #[diagnostic(code(cairn::inventory::read))]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    #[diagnostic(code(cairn::inventory::syntax))]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    #[diagnostic(code(cairn::inventory::invalid))]
    Invalid { path: String, message: String },
    #[error("{path}: {message}")]
    #[diagnostic(code(cairn::inventory::script))]
    Script { path: String, message: String },
    #[error("the state of deployment {deployment}: {message}")]
    #[diagnostic(code(cairn::inventory::state))]
    State { deployment: String, message: String },
}
