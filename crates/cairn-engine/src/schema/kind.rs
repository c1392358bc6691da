//! The resource types this cairn knows, as one enum. A template's type
//! string is parsed once, when the template is evaluated (an unknown one is
//! an error at its file:line:col); past that point, targets dispatch with
//! an exhaustive `match`, so a type added here and missed by a target does
//! not compile. On disk and on the wire a kind stays its type string
//! (`server`, `aws.iam_role`): state, journals and saved plans written
//! before the enum existed read the same.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::catalog::lookup;
use super::definition::ResourceSchema;

/// One resource type: the portable ones, then those of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Network,
    Subnet,
    Firewall,
    Server,
    IpAddress,
    LoadBalancer,
    DnsZone,
    DnsRecord,
    Database,
    Bucket,
    Secret,
    KeyPair,
    Volume,
    Snapshot,
    Image,
    /// `aws.iam_role`
    AwsIamRole,
    /// `aws.iam_instance_profile`
    AwsIamInstanceProfile,
}

impl Kind {
    /// Every kind, portable ones first, in the schema tables' order.
    pub const ALL: [Kind; 17] = [
        Kind::Network,
        Kind::Subnet,
        Kind::Firewall,
        Kind::Server,
        Kind::IpAddress,
        Kind::LoadBalancer,
        Kind::DnsZone,
        Kind::DnsRecord,
        Kind::Database,
        Kind::Bucket,
        Kind::Secret,
        Kind::KeyPair,
        Kind::Volume,
        Kind::Snapshot,
        Kind::Image,
        Kind::AwsIamRole,
        Kind::AwsIamInstanceProfile,
    ];

    /// The type string, as templates, state and journals spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Network => "network",
            Kind::Subnet => "subnet",
            Kind::Firewall => "firewall",
            Kind::Server => "server",
            Kind::IpAddress => "ip_address",
            Kind::LoadBalancer => "load_balancer",
            Kind::DnsZone => "dns_zone",
            Kind::DnsRecord => "dns_record",
            Kind::Database => "database",
            Kind::Bucket => "bucket",
            Kind::Secret => "secret",
            Kind::KeyPair => "key_pair",
            Kind::Volume => "volume",
            Kind::Snapshot => "snapshot",
            Kind::Image => "image",
            Kind::AwsIamRole => "aws.iam_role",
            Kind::AwsIamInstanceProfile => "aws.iam_instance_profile",
        }
    }

    /// The kind a type string names; `None` for a type this cairn does
    /// not know (the evaluator says so at the type's file:line:col).
    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The kind of a schema from this cairn's tables.
    pub fn of(schema: &ResourceSchema) -> Kind {
        Kind::parse(schema.kind).expect("every schema has a kind (tested)")
    }

    /// Its schema: properties, attributes, whether it holds data.
    pub fn schema(self) -> &'static ResourceSchema {
        lookup(self.as_str()).expect("every kind has a schema (tested)")
    }

    /// The one target a target-specific kind deploys to (`aws`); `None`
    /// for a portable kind, which every target implements.
    pub const fn target(self) -> Option<&'static str> {
        match self {
            Kind::AwsIamRole | Kind::AwsIamInstanceProfile => Some("aws"),
            _ => None,
        }
    }

    pub const fn is_portable(self) -> bool {
        self.target().is_none()
    }
}

/// By type string, as kinds sorted when they were strings (listings,
/// maps keyed by kind keep their order).
impl Ord for Kind {
    fn cmp(&self, other: &Kind) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Kind {
    fn partial_cmp(&self, other: &Kind) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A type string that names no kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown resource type `{0}` (this cairn knows {known})",
    known = Kind::ALL.map(Kind::as_str).join(", ")
)]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Kind, UnknownKind> {
        Kind::parse(s).ok_or_else(|| UnknownKind(s.to_string()))
    }
}

impl PartialEq<str> for Kind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Kind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Kind {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Kind> for String {
    fn eq(&self, other: &Kind) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Kind> for &str {
    fn eq(&self, other: &Kind) -> bool {
        *self == other.as_str()
    }
}

impl AsRef<str> for Kind {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{AWS, PORTABLE};

    #[test]
    fn every_schema_has_a_kind_and_every_kind_a_schema() {
        let tables: Vec<&str> = PORTABLE.iter().chain(AWS).map(|s| s.kind).collect();
        let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(kinds, tables);
        for k in Kind::ALL {
            assert_eq!(k.schema().kind, k.as_str());
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert_eq!(k.target(), crate::schema::target_of(k.as_str()));
            assert_eq!(
                k.is_portable(),
                crate::schema::portable(k.as_str()).is_some()
            );
        }
    }

    #[test]
    fn the_type_string_is_the_wire_and_disk_form() {
        assert_eq!(
            serde_json::to_string(&Kind::LoadBalancer).unwrap(),
            r#""load_balancer""#
        );
        assert_eq!(
            serde_json::to_string(&Kind::AwsIamInstanceProfile).unwrap(),
            r#""aws.iam_instance_profile""#
        );
        for k in Kind::ALL {
            let text = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<Kind>(&text).unwrap(), k);
        }
        assert_eq!(Kind::Server.to_string(), "server");
        assert!(Kind::Server == "server" && "dns_zone" == Kind::DnsZone);
        let mut sorted = Kind::ALL;
        sorted.sort();
        let mut texts = Kind::ALL.map(Kind::as_str);
        texts.sort();
        assert_eq!(
            sorted.map(Kind::as_str),
            texts,
            "kinds sort as their strings"
        );
    }

    #[test]
    fn an_unknown_type_is_refused_naming_the_known_ones() {
        assert_eq!(Kind::parse("sever"), None);
        let e = "aws.route_table".parse::<Kind>().unwrap_err();
        assert_eq!(e, UnknownKind("aws.route_table".into()));
        let text = e.to_string();
        assert!(
            text.starts_with(
                "unknown resource type `aws.route_table` (this cairn knows network, subnet,"
            ),
            "{text}"
        );
        assert!(text.ends_with("aws.iam_instance_profile)"), "{text}");
        let e = serde_json::from_str::<Kind>(r#""sever""#).unwrap_err();
        assert!(
            e.to_string().starts_with("unknown resource type `sever`"),
            "{e}"
        );
        // Not a string at all.
        assert!(serde_json::from_str::<Kind>("3").is_err());
    }
}
