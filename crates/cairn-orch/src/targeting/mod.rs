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

mod anchored;
mod candidate;
mod compound;
mod error;
pub mod glob;
mod pattern;

pub use candidate::Candidate;
pub use compound::Expr;
pub use error::TargetError;
pub use pattern::{Pattern, PatternKind, PatternOp, Subscript};

/// A parsed target expression.
#[derive(Debug, Clone)]
pub enum Target {
    Compound(Expr),
    Patterns(Vec<Pattern>),
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

#[cfg(test)]
mod tests;
