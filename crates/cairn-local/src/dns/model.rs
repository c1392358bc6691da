//! The data of the zone model, as the provider and the daemon's store see it:
//! plain serde values in the notation people write.

use hickory_server::proto::rr::RecordType as WireType;
use serde::{Deserialize, Serialize};

/// TTL of the synthetic SOA record, and the negative-caching TTL it announces
/// (RFC 2308). Short, so that a resolver that cached "no such name" sees a
/// record created a moment later: this is a development cloud.
pub const NEGATIVE_TTL: u32 = 5;

/// TTL of the synthetic apex NS record (used when the zone has no `@ NS`).
pub const DEFAULT_NS_TTL: u32 = 3600;

/// The largest TTL DNS allows (RFC 2181 section 8).
pub const MAX_TTL: u32 = i32::MAX as u32;

/// The record types the local DNS server serves: the portable
/// `dns_record`'s, one enum for the template and the server.
pub use cairn_engine::schema::dns::RecordType;

/// The type as hickory writes it on the wire.
pub(super) fn wire(t: RecordType) -> WireType {
    match t {
        RecordType::A => WireType::A,
        RecordType::Aaaa => WireType::AAAA,
        RecordType::Cname => WireType::CNAME,
        RecordType::Txt => WireType::TXT,
        RecordType::Mx => WireType::MX,
        RecordType::Ns => WireType::NS,
        RecordType::Srv => WireType::SRV,
        RecordType::Caa => WireType::CAA,
    }
}

/// One record set: every value of one type at one name, with one TTL.
///
/// `name` is relative to the zone (`"www"`, `"_sip._tcp"`), `"@"` for the
/// apex; a name ending in `.` is absolute and must lie inside the zone.
/// Values are written as in a zone file, one record each: A `"192.0.2.10"`,
/// AAAA `"2001:db8::10"`, CNAME and NS a name (absolute with a final `.`, else
/// relative to the zone), TXT any text (split into 255-byte strings on the
/// wire), MX `"10 mail.example.test."`, SRV `"10 5 5060 sip.example.test."`,
/// CAA `0 issue "letsencrypt.org"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSet {
    pub name: String,
    pub rtype: RecordType,
    pub ttl: u32,
    pub values: Vec<String>,
}

/// Everything the server serves, for the daemon to persist and restore with
/// [`Zones::restore`](super::Zones::restore). Zones and records come in a
/// stable order, so equal contents serialize to equal bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZonesSnapshot {
    pub zones: Vec<ZoneSnapshot>,
}

/// One zone of a [`ZonesSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneSnapshot {
    /// The zone's name, lowercase, without the final dot (`"example.test"`).
    pub name: String,
    /// The SOA serial, kept so that a restored zone answers exactly as before.
    pub serial: u32,
    pub records: Vec<RecordSet>,
}
