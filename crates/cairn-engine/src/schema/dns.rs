//! A `dns_record`'s properties as one typed model, read once for every
//! target ([`typed::read`](super::typed::read)): the zone, the name
//! relative to it, the record type, the TTL and the values.

use serde::{Deserialize, Serialize};

use super::typed::{self, PropError, ttl};

/// The record types the portable `dns_record` takes, and the local DNS
/// server serves.
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
    /// Every type, in the order error messages list them.
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

    /// As DNS and the template spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
            RecordType::Txt => "TXT",
            RecordType::Mx => "MX",
            RecordType::Ns => "NS",
            RecordType::Srv => "SRV",
            RecordType::Caa => "CAA",
        }
    }

    /// Whether its values are addresses (and may instead name a load
    /// balancer, which a target answers with an alias).
    pub fn is_address(self) -> bool {
        matches!(self, RecordType::A | RecordType::Aaaa)
    }
}

impl std::fmt::Display for RecordType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record type name that is none of [`RecordType::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported DNS record type {0:?}: expected one of A, AAAA, CNAME, TXT, MX, NS, SRV, CAA")]
pub struct UnsupportedRecordType(pub String);

/// Parses a type name case-insensitively (`"mx"`, `"MX"`).
impl std::str::FromStr for RecordType {
    type Err = UnsupportedRecordType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnsupportedRecordType(s.to_owned()))
    }
}

/// A `dns_zone`'s properties.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DnsZone {
    /// The domain (`example.test`).
    pub name: String,
    /// Answered only inside the cloud's networks.
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
}

impl DnsZone {
    /// Reads a `dns_zone`'s properties (as a request carries them).
    pub fn read(props: &serde_json::Value) -> Result<DnsZone, PropError> {
        typed::read(props)
    }
}

/// A `dns_record`'s properties.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DnsRecord {
    /// The zone's id.
    pub zone: String,
    /// Relative to the zone; `@` for the apex.
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: RecordType,
    #[serde(default = "five_minutes", deserialize_with = "ttl")]
    pub ttl: u32,
    pub values: Vec<String>,
}

fn five_minutes() -> u32 {
    300
}

impl DnsRecord {
    /// Reads a `dns_record`'s properties (as a request carries them).
    pub fn read(props: &serde_json::Value) -> Result<DnsRecord, PropError> {
        typed::read(props)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_reads_with_the_schema_defaults() {
        let r = DnsRecord::read(
            &json!({"zone": "z-1", "name": "www", "type": "AAAA", "ttl": null, "values": ["::1"]}),
        )
        .unwrap();
        assert_eq!(r.rtype, RecordType::Aaaa);
        assert_eq!((r.rtype.as_str(), r.ttl), ("AAAA", 300));
        assert!(r.rtype.is_address() && !RecordType::Txt.is_address());
    }

    #[test]
    fn a_bad_record_is_named_by_its_path() {
        let bad = |p| DnsRecord::read(&p).unwrap_err().to_string();
        assert!(
            bad(json!({"zone": "z", "name": "a", "type": "PTR", "values": []}))
                .starts_with("type: unknown variant `PTR`, expected one of `A`, `AAAA`"),
        );
        assert_eq!(
            bad(json!({"zone": "z", "name": "a", "type": "A", "ttl": -5, "values": []})),
            "ttl: -5 is not a TTL: whole seconds, 0 or more"
        );
        assert_eq!(
            bad(json!({"zone": "z", "name": "a", "type": "A", "values": ["1.2.3.4", 5]})),
            "values[1]: invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            bad(json!({"zone": "z", "type": "A", "values": []})),
            "properties: missing field `name`"
        );
    }
}
