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

mod error;
mod model;
mod server;
mod value;
mod zones;

#[cfg(test)]
mod tests;

pub use error::DnsError;
pub use model::{
    DEFAULT_NS_TTL, MAX_TTL, NEGATIVE_TTL, RecordSet, RecordType, ZoneSnapshot, ZonesSnapshot,
};
pub use server::serve;
pub use zones::{Zones, record_fqdn};
