//! The error of an expression that does not parse, for both languages.

use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

/// A target expression that does not parse, at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq, Error, Diagnostic)]
#[error("expr:1:{column}: {message}")]
#[diagnostic(code(cairn::target::syntax))]
pub struct TargetError {
    /// Byte offset in the expression.
    pub offset: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    #[source_code]
    pub expr: String,
    #[label("{message}")]
    pub span: SourceSpan,
}

impl TargetError {
    pub(crate) fn new(expr: &str, offset: usize, len: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(expr.len());
        let column = expr[..offset].chars().count() + 1;
        TargetError {
            offset,
            column,
            message: message.into(),
            expr: expr.to_string(),
            span: (offset, len).into(),
        }
    }
}
