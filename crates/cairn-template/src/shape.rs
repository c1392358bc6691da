//! Reading a node as the shape a key wants (a map, a string, a string
//! key), with the diagnostic when it is something else: shared by the
//! template's model, its parameters and environment files.

use crate::diagnostic::{Code, Diagnostic, Diagnostics, did_you_mean};
use crate::node::{Node, NodeKind};
use crate::source::Span;

/// A name as written, with where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

pub(crate) fn key_name(k: &Node, d: &mut Diagnostics) -> Option<String> {
    match &k.kind {
        NodeKind::Str(s, _) => Some(s.clone()),
        _ => {
            d.push(
                Diagnostic::new(Code::Type, "keys must be strings")
                    .at(k.span, format!("this key is {}", k.type_name())),
            );
            None
        }
    }
}

pub(crate) fn expect_map<'n>(
    node: &'n Node,
    what: &str,
    d: &mut Diagnostics,
) -> Option<&'n [(Node, Node)]> {
    match &node.kind {
        NodeKind::Map(m) => Some(m),
        _ => {
            d.push(
                Diagnostic::new(Code::Type, format!("{what} must be a map")).at(
                    node.span,
                    format!("expected a map, found {}", node.type_name()),
                ),
            );
            None
        }
    }
}

pub(crate) fn expect_string(node: &Node, d: &mut Diagnostics) -> Option<String> {
    match &node.kind {
        NodeKind::Str(s, _) => Some(s.clone()),
        _ => {
            d.push(type_error(node, "a string"));
            None
        }
    }
}

pub(crate) fn type_error(node: &Node, expected: &str) -> Diagnostic {
    Diagnostic::new(
        Code::Type,
        format!("expected {expected}, found {}", node.type_name()),
    )
    .at(node.span, format!("expected {expected}"))
}

pub(crate) fn unknown_key(k: &Node, name: &str, within: &str, allowed: &[&str]) -> Diagnostic {
    Diagnostic::new(
        Code::UnknownKey,
        format!("unknown key `{name}` in {within}"),
    )
    .at(k.span, "not a known key")
    .maybe_help(did_you_mean(name, allowed))
}
