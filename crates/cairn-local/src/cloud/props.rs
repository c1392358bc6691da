//! Reading a resource's properties as the local cloud does (the engine
//! checked them against the schema; absent and `null` are the same), and
//! the refusal every provider call answers a bad one with.

use cairn_engine::provider::{Json, ProviderError, ProviderResult};
use ipnet::IpNet;

pub(super) fn permanent(msg: impl Into<String>) -> ProviderError {
    ProviderError::Permanent(msg.into())
}

pub(super) fn prop<'a>(p: &'a Json, name: &str) -> Option<&'a Json> {
    p.get(name).filter(|v| !v.is_null())
}

pub(super) fn prop_str<'a>(p: &'a Json, name: &str) -> Option<&'a str> {
    prop(p, name).and_then(Json::as_str)
}

pub(super) fn parse_cidr(s: &str) -> ProviderResult<IpNet> {
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| permanent(format!("`{s}` is not a network in CIDR notation")))
}

pub(super) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}
