//! The data of the zone model, as the provider and the daemon's store see it:
//! plain serde values in the notation people write.

use std::{fmt, str::FromStr};

use hickory_server::proto::rr::RecordType as WireType;
use serde::{Deserialize, Serialize};

use super::DnsError;

/// The record types the local DNS server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RecordType {
    #[serde(rename = "A")]
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
    #[serde(rename = "CNAME")]
    Cname,
    #[serde(rename = "TXT")]
    Txt,
    #[serde(rename = "MX")]
    Mx,
    #[serde(rename = "NS")]
    Ns,
    #[serde(rename = "SRV")]
    Srv,
    #[serde(rename = "CAA")]
    Caa,
}

impl RecordType {
    /// Every supported type, in the order error messages list them.
    pub const ALL: [Self; 8] = [
        Self::A,
        Self::Aaaa,
        Self::Cname,
        Self::Txt,
        Self::Mx,
        Self::Ns,
        Self::Srv,
        Self::Caa,
    ];

    /// The type's name as DNS writes it (`"AAAA"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Cname => "CNAME",
            Self::Txt => "TXT",
            Self::Mx => "MX",
            Self::Ns => "NS",
            Self::Srv => "SRV",
            Self::Caa => "CAA",
        }
    }

    pub(super) fn wire(self) -> WireType {
        match self {
            Self::A => WireType::A,
            Self::Aaaa => WireType::AAAA,
            Self::Cname => WireType::CNAME,
            Self::Txt => WireType::TXT,
            Self::Mx => WireType::MX,
            Self::Ns => WireType::NS,
            Self::Srv => WireType::SRV,
            Self::Caa => WireType::CAA,
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a type name case-insensitively (`"mx"`, `"MX"`).
impl FromStr for RecordType {
    type Err = DnsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| DnsError::UnsupportedType {
                rtype: s.to_owned(),
            })
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
