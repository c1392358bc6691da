//! Which hosts a command acts on: a target expression, parsed once into a
//! [`Target`] (no `eval`, every piece with its byte span), then matched
//! against a host list.
//!
//! Two languages, told apart by one rule: an expression is **compound**
//! (Salt's grammar) when it contains `@`, starts with `(`, or has a
//! whitespace-separated word `and`, `or` or `not`; anything else is an
//! **Ansible pattern** (whose `~regex` may hold parentheses).
//!
//! Compound (Salt's `compound_match`, with Python's precedence: `not` binds
//! tighter than `and`, `and` tighter than `or`; operators are explicit):
//! - `web-*`: a shell glob on the host's name;
//! - `E@web-\d+`: a regular expression on the name, anchored at the start as
//!   Salt's `re.match` is;
//! - `L@web-1,web-2`: exact names;
//! - `G@role:web`: a grain (a tag or a variable; `G@os:family:Debian` walks
//!   into nested mappings); the value may be a glob and matches any element
//!   of a list;
//! - `S@10.0.0.0/24` or `S@10.0.0.5`: any of the host's addresses in it;
//! - `and`, `or`, `not`, parentheses (they may touch the words:
//!   `(web-* or db-*)`).
//!
//! Ansible patterns (`ansible.inventory.manager`): separated by `,` when the
//! expression has one, else by `:` outside brackets (an IPv6 address is one
//! pattern); each is a group or host name, a glob (`web*`), or `~regex`
//! (anchored at the start), optionally subscripted (`web[0]`, `web[-1]`,
//! `web[0:2]` inclusive, `web[1:]`); `&` intersects and `!` removes. As
//! Ansible does, plain patterns are applied first, then `&`, then `!`,
//! whatever the written order; with no plain pattern the start is `all`. A
//! name that names a group gives the group's hosts (its children's too);
//! hosts are looked up by name when no group matched or the pattern is a
//! glob or regex. Subscripts count in inventory order.
//!
//! Matching always returns hosts in inventory order, each once.

mod compound;
pub mod glob;
mod pattern;

use std::net::IpAddr;

use miette::{Diagnostic, SourceSpan};
use serde_json::Value as J;
use thiserror::Error;

pub use compound::Expr;
pub use pattern::{Pattern, PatternKind, PatternOp, Subscript};

/// What matching needs to know of a host.
pub trait Candidate {
    fn name(&self) -> &str;
    /// Every address it has (private, public, ...); those that do not parse
    /// as IP addresses are left out.
    fn addresses(&self) -> Vec<IpAddr>;
    /// Every group it is in, directly or through a child group, `all`
    /// included.
    fn groups(&self) -> &[String];
    /// A grain: a tag or a variable by key.
    fn grain(&self, key: &str) -> Option<&J>;
}

/// A parsed target expression.
#[derive(Debug, Clone)]
pub enum Target {
    Compound(Expr),
    Patterns(Vec<Pattern>),
}

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

impl Target {
    /// Parses an expression; which language it is in follows the rule in
    /// the module documentation.
    pub fn parse(expr: &str) -> Result<Target, TargetError> {
        if expr.trim().is_empty() {
            return Err(TargetError::new(expr, 0, 0, "empty target"));
        }
        if is_compound(expr) {
            compound::parse(expr).map(Target::Compound)
        } else {
            pattern::parse(expr).map(Target::Patterns)
        }
    }

    /// The hosts it matches, in the order of `hosts`, each once.
    pub fn select<'a, C: Candidate>(&self, hosts: &'a [C]) -> Vec<&'a C> {
        let hit = match self {
            Target::Compound(e) => hosts.iter().map(|h| e.matches(h)).collect(),
            Target::Patterns(p) => pattern::select(p, hosts),
        };
        hosts
            .iter()
            .zip(hit)
            .filter_map(|(h, hit)| hit.then_some(h))
            .collect()
    }
}

/// The rule that tells the two languages apart.
pub fn is_compound(expr: &str) -> bool {
    expr.contains('@')
        || expr.trim_start().starts_with('(')
        || expr
            .split_whitespace()
            .any(|w| matches!(w, "and" | "or" | "not"))
}

/// Regex anchored at the start (`re.match`), with the error's own message
/// (its last line, without the caret drawing).
pub(crate) fn start_anchored(re: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{re})")).map_err(|e| match e {
        regex::Error::Syntax(s) => s
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().trim_start_matches("error: ").to_string())
            .unwrap_or(s),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests;
