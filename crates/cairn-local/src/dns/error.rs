//! The errors of the zone model and the server.

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
