//! Names and record values, from the notation people write to hickory's
//! wire types. Every failure says what was expected, with an example.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_server::proto::rr::{
    Name, RData,
    rdata::{A, AAAA, CNAME, MX, NS, SRV, TXT},
};

use super::error::DnsError;
use super::model::RecordType;

/// A zone name as the canonical absolute, lowercase name (`example.test.`).
pub(super) fn zone_origin(zone: &str) -> Result<Name, DnsError> {
    let invalid = |reason: String| DnsError::InvalidZoneName {
        zone: zone.to_owned(),
        reason,
    };
    let text = zone.trim();
    if text.is_empty() {
        return Err(invalid("the name is empty".into()));
    }
    if text == "." {
        return Err(invalid("the root zone cannot be served".into()));
    }
    let name = Name::parse(text, Some(&Name::root())).map_err(|e| invalid(e.to_string()))?;
    if name.iter().any(|label| label == b"*") {
        return Err(invalid(
            "a zone name cannot contain a wildcard label".into(),
        ));
    }
    Ok(name.to_lowercase())
}

/// How names appear to users: no final dot (`www.example.test`).
pub(super) fn display_name(name: &Name) -> String {
    let text = name.to_string();
    match text.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => text,
    }
}

/// A record's owner name inside the zone at `origin`, by [`name_in_zone`].
pub(super) fn owner_name(origin: &Name, name: &str) -> Result<Name, DnsError> {
    let invalid = |reason: String| DnsError::InvalidRecordName {
        zone: display_name(origin),
        name: name.to_owned(),
        reason,
    };
    let text = name.trim();
    if text.is_empty() {
        return Err(invalid(
            "the name is empty; use \"@\" for the zone apex".into(),
        ));
    }
    let owner = name_in_zone(origin, text).map_err(invalid)?;
    if !origin.zone_of(&owner) {
        return Err(invalid(format!(
            "{} is outside the zone; write it relative to the zone (\"www\") or as a name ending in .{}.",
            display_name(&owner),
            display_name(origin),
        )));
    }
    Ok(owner)
}

/// A name as written in a record, read as zone files do: `"@"` is the apex,
/// a final dot makes it absolute, anything else is relative to the zone.
/// One exception, Route 53's: a name that already ends in the zone's name
/// (`"www.example.test"` in zone `example.test`) is taken as absolute rather
/// than doubled, since nobody means `www.example.test.example.test`.
fn name_in_zone(origin: &Name, text: &str) -> Result<Name, String> {
    if text == "@" {
        return Ok(origin.clone());
    }
    let mut name = Name::parse(text, None).map_err(|e| e.to_string())?;
    if name.is_fqdn() || origin.zone_of(&name) {
        name.set_fqdn(true);
    } else {
        name = name.append_domain(origin).map_err(|e| e.to_string())?;
    }
    Ok(name.to_lowercase())
}

/// Parses one value of a record set of type `rtype` in the zone at `origin`.
/// `record` names the record set in errors (`www.example.test MX`).
pub(super) fn parse_value(
    record: &str,
    rtype: RecordType,
    origin: &Name,
    value: &str,
) -> Result<RData, DnsError> {
    let invalid = |reason: String| DnsError::InvalidValue {
        record: record.to_owned(),
        value: value.to_owned(),
        reason,
    };
    let text = value.trim();
    match rtype {
        RecordType::A => text
            .parse::<Ipv4Addr>()
            .map(|ip| RData::A(A(ip)))
            .map_err(|_| {
                if text.parse::<Ipv6Addr>().is_ok() {
                    invalid("this is an IPv6 address; use an AAAA record".into())
                } else {
                    invalid("expected an IPv4 address such as \"192.0.2.10\"".into())
                }
            }),
        RecordType::Aaaa => text
            .parse::<Ipv6Addr>()
            .map(|ip| RData::AAAA(AAAA(ip)))
            .map_err(|_| {
                if text.parse::<Ipv4Addr>().is_ok() {
                    invalid("this is an IPv4 address; use an A record".into())
                } else {
                    invalid("expected an IPv6 address such as \"2001:db8::10\"".into())
                }
            }),
        RecordType::Cname => target_name(origin, text)
            .map(|name| RData::CNAME(CNAME(name)))
            .map_err(|e| {
                invalid(format!(
                    "expected a domain name such as \"target.example.test.\" or \"www\": {e}"
                ))
            }),
        RecordType::Ns => target_name(origin, text)
            .map(|name| RData::NS(NS(name)))
            .map_err(|e| {
                invalid(format!(
                    "expected a name server's domain name such as \"ns1.example.test.\": {e}"
                ))
            }),
        // TXT takes the text literally, surrounding spaces included.
        RecordType::Txt => Ok(RData::TXT(txt(value))),
        RecordType::Mx => {
            const EXPECTED: &str =
                "expected \"PREFERENCE EXCHANGE\" such as \"10 mail.example.test.\"";
            let [preference, exchange] = fields(text).ok_or_else(|| invalid(EXPECTED.into()))?;
            let preference = number(preference, "preference")
                .map_err(|e| invalid(format!("{EXPECTED}: {e}")))?;
            let exchange = target_name(origin, exchange)
                .map_err(|e| invalid(format!("{EXPECTED}: exchange: {e}")))?;
            Ok(RData::MX(MX::new(preference, exchange)))
        }
        RecordType::Srv => {
            const EXPECTED: &str =
                "expected \"PRIORITY WEIGHT PORT TARGET\" such as \"10 5 5060 sip.example.test.\"";
            let [priority, weight, port, target] =
                fields(text).ok_or_else(|| invalid(EXPECTED.into()))?;
            let with_expected = |e: String| invalid(format!("{EXPECTED}: {e}"));
            let priority = number(priority, "priority").map_err(with_expected)?;
            let weight = number(weight, "weight").map_err(with_expected)?;
            let port = number(port, "port").map_err(with_expected)?;
            let target =
                target_name(origin, target).map_err(|e| with_expected(format!("target: {e}")))?;
            Ok(RData::SRV(SRV::new(priority, weight, port, target)))
        }
        RecordType::Caa => {
            const EXPECTED: &str =
                "expected \"FLAGS TAG \\\"VALUE\\\"\" such as '0 issue \"letsencrypt.org\"'";
            let tokens = text.split_whitespace().count();
            if tokens < 3 {
                return Err(invalid(EXPECTED.into()));
            }
            RData::try_from_str(super::model::wire(rtype), text)
                .map_err(|e| invalid(format!("{EXPECTED}: {e}")))
        }
    }
}

/// A name a record points at (CNAME, NS, MX, SRV), by [`name_in_zone`].
fn target_name(origin: &Name, text: &str) -> Result<Name, String> {
    if text.is_empty() {
        return Err("the name is empty".into());
    }
    if text.split_whitespace().nth(1).is_some() {
        return Err("a name cannot contain spaces".into());
    }
    name_in_zone(origin, text)
}

/// Exactly `N` whitespace-separated fields, or `None`.
fn fields<const N: usize>(text: &str) -> Option<[&str; N]> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    parts.try_into().ok()
}

fn number(text: &str, what: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .map_err(|_| format!("{what} {text:?} is not a number from 0 to 65535"))
}

/// TXT data on the wire is a sequence of strings of at most 255 bytes each;
/// long text is split, and resolvers join the parts back together.
fn txt(text: &str) -> TXT {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return TXT::from_bytes(vec![b"".as_slice()]);
    }
    TXT::from_bytes(bytes.chunks(255).collect())
}
