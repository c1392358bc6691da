//! What matching needs of a host, for both languages.

use std::net::IpAddr;

use serde_json::Value as J;

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
