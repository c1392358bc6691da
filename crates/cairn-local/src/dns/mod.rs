//! The local target's authoritative DNS server (`dns_zone` / `dns_record`).
//!
//! [`Zones`] is the zone model the daemon edits: zones, record sets in the
//! notation people write (`"10 mail.example.test."`), and a serializable
//! [`ZonesSnapshot`] the daemon persists and restores. [`serve`] answers
//! queries for it over UDP and TCP with hickory-server.
//!
//! How changes reach the wire: every successful edit rebuilds the edited
//! zone's hickory `InMemoryZoneHandler` and a new `Catalog`, and swaps the
//! catalog in under the same lock as the edit, before the edit returns. Each
//! query takes the catalog current when it arrives, so the very next query
//! sees the change, and no query ever sees half of one.
//!
//! Never: answers for names outside its zones (REFUSED, no recursion), or
//! keeps a value it could not parse (the edit fails and nothing changes).

mod model;
mod server;
mod value;
mod zones;

#[cfg(test)]
mod tests;

pub use model::{RecordSet, RecordType, ZoneSnapshot, ZonesSnapshot};
pub use server::serve;
pub use zones::{Zones, record_fqdn};

/// TTL of the synthetic SOA record, and the negative-caching TTL it announces
/// (RFC 2308). Short, so that a resolver that cached "no such name" sees a
/// record created a moment later: this is a development cloud.
pub const NEGATIVE_TTL: u32 = 5;

/// TTL of the synthetic apex NS record (used when the zone has no `@ NS`).
pub const DEFAULT_NS_TTL: u32 = 3600;

/// The largest TTL DNS allows (RFC 2181 section 8).
pub const MAX_TTL: u32 = i32::MAX as u32;

/// Errors of the zone model and the server. Messages name the zone or the
/// record (`www.example.test MX`) and say what was expected, because they
/// reach users through `cairn up`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// A zone name that is not a valid domain name.
    #[error("invalid DNS zone name {zone:?}: {reason}")]
    InvalidZoneName { zone: String, reason: String },

    /// An edit named a zone that does not exist.
    #[error("DNS zone {zone} does not exist")]
    UnknownZone { zone: String },

    /// A record name that is not a valid name inside its zone.
    #[error("invalid DNS record name {name:?} in zone {zone}: {reason}")]
    InvalidRecordName {
        zone: String,
        name: String,
        reason: String,
    },

    /// A record set that is invalid as a whole (no values, TTL out of range,
    /// a CNAME beside other records).
    #[error("DNS record {record}: {reason}")]
    InvalidRecord { record: String, reason: String },

    /// One value of a record set could not be parsed.
    #[error("DNS record {record}: invalid value {value:?}: {reason}")]
    InvalidValue {
        record: String,
        value: String,
        reason: String,
    },

    /// A listener of the server failed.
    #[error("DNS server failed: {0}")]
    Server(#[source] hickory_server::net::NetError),
}
