//! Why a module cannot run, or failed on a host.

use miette::Diagnostic;
use thiserror::Error;

use crate::remote::TransportError;

#[derive(Debug, Error, Diagnostic, Clone, PartialEq)]
pub enum ModuleError {
    /// Caught before any host is touched.
    #[error("no module named `{name}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    #[diagnostic(code(cairn::orch::module_unknown))]
    Unknown {
        name: String,
        suggestion: Option<String>,
    },

    /// Caught before any host is touched.
    #[error("{module}: {message}")]
    #[diagnostic(code(cairn::orch::module_args))]
    BadArgs { module: String, message: String },

    /// Ran, and failed on the host.
    #[error("{module}: {message}")]
    #[diagnostic(code(cairn::orch::module_failed))]
    Failed {
        module: String,
        message: String,
        stdout: String,
        stderr: String,
        rc: Option<i32>,
    },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Transport(#[from] TransportError),
}

impl ModuleError {
    /// The host is in a state the module will not change on its own (a
    /// directory where a file should go, a checkout with local edits):
    /// failed, with no command output to show.
    pub fn refused(module: &str, message: impl Into<String>) -> ModuleError {
        ModuleError::Failed {
            module: module.to_string(),
            message: message.into(),
            stdout: String::new(),
            stderr: String::new(),
            rc: None,
        }
    }
}
