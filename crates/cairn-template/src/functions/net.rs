//! `cidr_subnet`, `cidr_host` (Terraform's `cidrsubnet` / `cidrhost`) and
//! `parse_cidr` (ARM's `parseCidr`).
//!
//! Addresses are handled as `u128` whatever the family, so IPv4 and IPv6
//! share the arithmetic. Parsing follows Terraform's: the prefix may have
//! host bits set (`10.1.2.3/16` means `10.1.0.0/16`), IPv4 octets with
//! leading zeros are read as decimal (`010.1.0.0` is `10.1.0.0`), and an
//! IPv4-mapped IPv6 prefix of at least 96 bits (`::ffff:10.0.0.0/104`) is
//! treated as the IPv4 prefix it maps (`10.0.0.0/8`).

use std::net::{Ipv4Addr, Ipv6Addr};

use minijinja::Error;
use minijinja::value::Value;

use super::args::{expect_int, expect_str, invalid};

/// A parsed, truncated network prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// 32 for IPv4, 128 for IPv6.
    pub bits: u8,
    /// The network address (host bits cleared).
    pub network: u128,
    /// The prefix length.
    pub len: u8,
}

/// A mask of the lowest `n` bits (`n` up to 128).
fn low_bits(n: u32) -> u128 {
    if n >= 128 {
        u128::MAX
    } else {
        (1u128 << n) - 1
    }
}

impl Prefix {
    /// Number of host bits.
    fn host_bits(&self) -> u32 {
        u32::from(self.bits - self.len)
    }

    /// The netmask as an address value.
    fn netmask(&self) -> u128 {
        let all = low_bits(u32::from(self.bits));
        all & !low_bits(self.host_bits())
    }

    /// The last address in the prefix.
    fn last(&self) -> u128 {
        self.network | low_bits(self.host_bits())
    }

    /// Builds a prefix, clearing host bits and unwrapping IPv4-mapped IPv6
    /// prefixes of at least 96 bits into IPv4.
    fn new(bits: u8, addr: u128, len: u8) -> Prefix {
        let host = u32::from(bits - len);
        let network = addr & !low_bits(host);
        if bits == 128 && len >= 96 && (network >> 32) == 0xffff {
            return Prefix {
                bits: 32,
                network: network & 0xffff_ffff,
                len: len - 96,
            };
        }
        Prefix { bits, network, len }
    }
}

/// Formats an address of the given family. An IPv4-mapped IPv6 address is
/// written as the IPv4 address it maps, like Terraform (Go) does.
fn format_addr(bits: u8, addr: u128) -> String {
    if bits == 32 {
        Ipv4Addr::from(addr as u32).to_string()
    } else {
        let v6 = Ipv6Addr::from(addr);
        match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        }
    }
}

/// Formats a prefix in CIDR notation.
fn format_prefix(p: Prefix) -> String {
    let p = Prefix::new(p.bits, p.network, p.len);
    format!("{}/{}", format_addr(p.bits, p.network), p.len)
}

/// Parses a dotted-quad IPv4 address, reading leading zeros as decimal.
fn parse_ipv4(s: &str) -> Option<u32> {
    let mut out: u32 = 0;
    let mut parts = 0;
    for part in s.split('.') {
        parts += 1;
        if parts > 4
            || part.is_empty()
            || part.len() > 3
            || !part.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let octet: u32 = part.parse().ok()?;
        if octet > 255 {
            return None;
        }
        out = (out << 8) | octet;
    }
    (parts == 4).then_some(out)
}

/// Parses a prefix in CIDR notation (`10.0.0.0/16`, `fd00::/48`).
pub fn parse_prefix(func: &str, s: &str) -> Result<Prefix, Error> {
    let bad = |why: &str| invalid(format!("{func}(): invalid CIDR prefix {s:?}: {why}"));
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| bad("expected an address, a '/' and a prefix length"))?;
    let (bits, value) = if addr.contains(':') {
        let v6: Ipv6Addr = addr
            .parse()
            .map_err(|_| bad("the address is not a valid IPv6 address"))?;
        (128u8, u128::from(v6))
    } else {
        let v4 = parse_ipv4(addr).ok_or_else(|| bad("the address is not a valid IPv4 address"))?;
        (32u8, u128::from(v4))
    };
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the prefix length must be a number"));
    }
    let len: u8 = len
        .parse()
        .map_err(|_| bad("the prefix length is too large"))?;
    if len > bits {
        return Err(bad(&format!(
            "the prefix length {len} is larger than {bits}, the size of an IPv{} address",
            if bits == 32 { 4 } else { 6 }
        )));
    }
    Ok(Prefix::new(bits, value, len))
}

/// `cidr_subnet(prefix, newbits, netnum)`: the `netnum`-th subnet of
/// `prefix` with a prefix `newbits` longer, like Terraform's `cidrsubnet`.
///
/// `cidr_subnet('10.1.2.0/24', 4, 15)` is `'10.1.2.240/28'`.
pub fn cidr_subnet(prefix: Value, newbits: Value, netnum: Value) -> Result<String, Error> {
    const F: &str = "cidr_subnet";
    let p = parse_prefix(F, expect_str(F, "prefix", &prefix)?)?;
    let newbits = expect_int(F, "newbits", &newbits)?;
    let netnum = expect_int(F, "netnum", &netnum)?;
    if newbits < 0 {
        return Err(invalid(format!(
            "{F}(): newbits must not be negative, got {newbits}"
        )));
    }
    let new_len = i128::from(p.len).saturating_add(newbits);
    if new_len > i128::from(p.bits) {
        return Err(invalid(format!(
            "{F}(): insufficient address space to extend prefix of {} by {newbits}",
            p.len
        )));
    }
    // new_len <= bits <= 128, so both fit.
    let new_len = new_len as u8;
    let max = low_bits(newbits as u32);
    if netnum < 0 || netnum as u128 > max {
        return Err(invalid(format!(
            "{F}(): prefix extension of {newbits} does not accommodate a subnet numbered {netnum}"
        )));
    }
    let shift = u32::from(p.bits - new_len);
    let offset = (netnum as u128).checked_shl(shift).unwrap_or(0);
    Ok(format_prefix(Prefix {
        bits: p.bits,
        network: p.network | offset,
        len: new_len,
    }))
}

/// `cidr_host(prefix, hostnum)`: the `hostnum`-th address in `prefix`, like
/// Terraform's `cidrhost`. A negative `hostnum` counts from the end: `-1` is
/// the last address.
///
/// `cidr_host('10.12.112.0/20', 268)` is `'10.12.113.12'`.
pub fn cidr_host(prefix: Value, hostnum: Value) -> Result<String, Error> {
    const F: &str = "cidr_host";
    let p = parse_prefix(F, expect_str(F, "prefix", &prefix)?)?;
    let hostnum = expect_int(F, "hostnum", &hostnum)?;
    let max = low_bits(p.host_bits());
    let offset = if hostnum >= 0 {
        Some(hostnum as u128).filter(|n| *n <= max)
    } else {
        // -1 is the last address, -2 the one before, ...
        let from_end = hostnum.unsigned_abs() - 1;
        (from_end <= max).then(|| max - from_end)
    };
    let offset = offset.ok_or_else(|| {
        invalid(format!(
            "{F}(): prefix of {} does not accommodate a host numbered {hostnum}",
            p.len
        ))
    })?;
    Ok(format_addr(p.bits, p.network | offset))
}

/// `parse_cidr(cidr)`: the properties of a prefix, like ARM's `parseCidr`.
///
/// IPv4: `network`, `netmask`, `broadcast`, `firstUsable`, `lastUsable`,
/// `cidr`. The usable range excludes the network and broadcast addresses,
/// except for /31 and /32 where every address is usable (RFC 3021).
///
/// IPv6: `network`, `netmask`, `firstUsable`, `lastUsable`, `cidr`; there is
/// no broadcast, and every address is usable.
pub fn parse_cidr(cidr: Value) -> Result<Value, Error> {
    const F: &str = "parse_cidr";
    let p = parse_prefix(F, expect_str(F, "cidr", &cidr)?)?;
    let addr = |a: u128| Value::from(format_addr(p.bits, a));
    let (first, last) = if p.bits == 32 && p.len < 31 {
        (p.network + 1, p.last() - 1)
    } else {
        (p.network, p.last())
    };
    let mut pairs = vec![("network", addr(p.network)), ("netmask", addr(p.netmask()))];
    if p.bits == 32 {
        pairs.push(("broadcast", addr(p.last())));
    }
    pairs.push(("firstUsable", addr(first)));
    pairs.push(("lastUsable", addr(last)));
    pairs.push(("cidr", Value::from(p.len)));
    Ok(Value::from_pairs(pairs))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn subnet(prefix: &str, newbits: i64, netnum: i64) -> Result<String, String> {
        cidr_subnet(prefix.into(), newbits.into(), netnum.into())
            .map_err(|e| e.detail().unwrap_or_default().to_string())
    }

    fn host(prefix: &str, hostnum: i64) -> Result<String, String> {
        cidr_host(prefix.into(), hostnum.into())
            .map_err(|e| e.detail().unwrap_or_default().to_string())
    }

    #[test]
    fn cidrsubnet_terraform_docs_examples() {
        assert_eq!(subnet("172.16.0.0/12", 4, 2).unwrap(), "172.18.0.0/16");
        assert_eq!(subnet("10.1.2.0/24", 4, 15).unwrap(), "10.1.2.240/28");
        assert_eq!(
            subnet("fd00:fd12:3456:7890::/56", 16, 162).unwrap(),
            "fd00:fd12:3456:7800:a200::/72"
        );
        // From the "netnum" explanation: 10.0.0.0/8 + 8 bits.
        assert_eq!(subnet("10.0.0.0/8", 8, 2).unwrap(), "10.2.0.0/16");
    }

    #[test]
    fn cidrsubnet_terraform_test_cases() {
        // hashicorp/terraform internal/lang/funcs/cidr_test.go
        assert_eq!(subnet("192.168.2.0/20", 4, 6).unwrap(), "192.168.6.0/24");
        assert_eq!(subnet("fe80::/48", 16, 6).unwrap(), "fe80:0:0:6::/64");
        assert_eq!(
            subnet("::ffff:192.168.0.0/112", 8, 6).unwrap(),
            "192.168.6.0/24"
        );
        assert_eq!(subnet("fe80::/48", 33, 6).unwrap(), "fe80::3:0:0:0/81");
        assert_eq!(subnet("010.001.0.0/24", 4, 1).unwrap(), "10.1.0.16/28");
        assert!(subnet("192.168.0.0/30", 4, 6).is_err());
        assert!(subnet("192.168.0.0/168", 2, 16).is_err());
        assert!(subnet("not-a-cidr", 4, 6).is_err());
        assert!(subnet("10.256.0.0/8", 4, 6).is_err());
    }

    #[test]
    fn cidrsubnet_edges() {
        assert_eq!(subnet("10.1.2.3/16", 8, 5).unwrap(), "10.1.5.0/24");
        assert_eq!(subnet("10.0.0.0/8", 0, 0).unwrap(), "10.0.0.0/8");
        assert_eq!(
            subnet("0.0.0.0/0", 32, 4294967295).unwrap(),
            "255.255.255.255/32"
        );
        assert_eq!(subnet("::/0", 0, 0).unwrap(), "::/0");
        assert_eq!(subnet("::/0", 128, 1).unwrap(), "::1/128");
        assert_eq!(
            subnet("::/0", 64, i64::MAX).unwrap(),
            "7fff:ffff:ffff:ffff::/64"
        );
        assert_eq!(
            subnet("10.0.0.0/8", 24, 0xffffff).unwrap(),
            "10.255.255.255/32"
        );
        assert_eq!(
            cidr_subnet("::/0".into(), 128.into(), Value::from(i128::MAX)).unwrap(),
            "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"
        );
    }

    #[test]
    fn cidrsubnet_errors() {
        assert_eq!(
            subnet("10.0.0.0/16", 20, 0).unwrap_err(),
            "cidr_subnet(): insufficient address space to extend prefix of 16 by 20"
        );
        assert_eq!(
            subnet("10.0.0.0/16", 8, 256).unwrap_err(),
            "cidr_subnet(): prefix extension of 8 does not accommodate a subnet numbered 256"
        );
        assert_eq!(
            subnet("10.0.0.0/16", 8, -1).unwrap_err(),
            "cidr_subnet(): prefix extension of 8 does not accommodate a subnet numbered -1"
        );
        assert_eq!(
            subnet("10.0.0.0/16", -1, 0).unwrap_err(),
            "cidr_subnet(): newbits must not be negative, got -1"
        );
        assert!(
            subnet("10.0.0.0/16", i64::MAX, 0)
                .unwrap_err()
                .contains("insufficient")
        );
        assert!(
            subnet("10.0.0.0/16", i64::MIN, 0)
                .unwrap_err()
                .contains("negative")
        );
        assert!(subnet("::/0", 129, 0).unwrap_err().contains("insufficient"));
        assert!(
            cidr_subnet("10.0.0.0/8".into(), Value::from(i128::MAX), 0.into())
                .unwrap_err()
                .to_string()
                .contains("insufficient")
        );
        assert!(
            subnet("fe80::/48", 200, 1)
                .unwrap_err()
                .contains("insufficient")
        );
        let e = subnet("10.0.0.0", 8, 1).unwrap_err();
        assert!(e.contains(r#"invalid CIDR prefix "10.0.0.0""#), "{e}");
        let e = subnet("10.0.0.0/33", 1, 1).unwrap_err();
        assert!(e.contains("larger than 32"), "{e}");
        let e = subnet("fe80::/129", 1, 1).unwrap_err();
        assert!(e.contains("larger than 128"), "{e}");
        for bad in [
            "",
            "/",
            "/8",
            "10.0.0/8",
            "10.0.0.0.0/8",
            "10..0.0/8",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/1000",
            "10.0.0.0/8/8",
            "1000.0.0.0/8",
            "10.0.0.a/8",
            "fe80::zz/64",
            "fe80::1%eth0/64",
            " 10.0.0.0/8",
            "10.0.0.0/8 ",
            "::ffff:1.2.3/100",
        ] {
            assert!(subnet(bad, 1, 0).is_err(), "{bad:?} should be rejected");
        }
        // Wrong types.
        assert!(cidr_subnet(Value::from(5), 1.into(), 0.into()).is_err());
        assert!(cidr_subnet("10.0.0.0/8".into(), "8".into(), 0.into()).is_err());
        assert!(cidr_subnet("10.0.0.0/8".into(), 8.into(), Value::from(0.5)).is_err());
        assert!(cidr_subnet("10.0.0.0/8".into(), Value::from(2.0 / 3.0), 0.into()).is_err());
        assert!(cidr_subnet("10.0.0.0/8".into(), 8.into(), Value::from(u128::MAX)).is_err());
        assert!(cidr_subnet("10.0.0.0/8".into(), 8.into(), Value::UNDEFINED).is_err());
        assert!(cidr_subnet(Value::from(()), 8.into(), 0.into()).is_err());
    }

    #[test]
    fn cidrhost_terraform_docs_examples() {
        assert_eq!(host("10.12.112.0/20", 16).unwrap(), "10.12.112.16");
        assert_eq!(host("10.12.112.0/20", 268).unwrap(), "10.12.113.12");
        assert_eq!(
            host("fd00:fd12:3456:7890:00a2::/72", 34).unwrap(),
            "fd00:fd12:3456:7890::22"
        );
    }

    #[test]
    fn cidrhost_terraform_test_cases() {
        assert_eq!(host("192.168.1.0/24", 5).unwrap(), "192.168.1.5");
        assert_eq!(host("192.168.1.0/24", -5).unwrap(), "192.168.1.251");
        assert_eq!(host("192.168.1.0/24", -256).unwrap(), "192.168.1.0");
        assert_eq!(host("010.001.0.0/24", 6).unwrap(), "10.1.0.6");
        assert!(host("192.168.1.0/30", 255).is_err());
        assert!(host("192.168.1.0/30", -255).is_err());
        assert!(host("not-a-cidr", 6).is_err());
        assert!(host("10.256.0.0/8", 6).is_err());
        assert!(cidr_host("10.256.0.0/8".into(), Value::from(0.75)).is_err());
    }

    #[test]
    fn cidrhost_edges_and_errors() {
        assert_eq!(host("10.0.0.0/8", -1).unwrap(), "10.255.255.255");
        assert_eq!(host("10.0.0.0/32", 0).unwrap(), "10.0.0.0");
        assert_eq!(host("10.0.0.0/32", -1).unwrap(), "10.0.0.0");
        assert_eq!(host("fd00::/64", -1).unwrap(), "fd00::ffff:ffff:ffff:ffff");
        assert_eq!(
            host("::/0", -1).unwrap(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert_eq!(
            cidr_host("::/0".into(), Value::from(i128::MIN)).unwrap(),
            "8000::"
        );
        assert_eq!(host("::ffff:10.0.0.0/104", 5).unwrap(), "10.0.0.5");
        assert_eq!(
            host("192.168.1.0/30", 5).unwrap_err(),
            "cidr_host(): prefix of 30 does not accommodate a host numbered 5"
        );
        assert_eq!(
            host("192.168.1.0/30", -5).unwrap_err(),
            "cidr_host(): prefix of 30 does not accommodate a host numbered -5"
        );
        assert_eq!(host("192.168.1.0/30", -4).unwrap(), "192.168.1.0");
        assert!(host("10.0.0.0/32", 1).is_err());
        assert!(host("10.0.0.0/32", -2).is_err());
        assert!(host("10.0.0.0/8", i64::MAX).is_err());
        assert!(host("10.0.0.0/8", i64::MIN).is_err());
    }

    #[test]
    fn parse_cidr_arm_docs_examples() {
        assert_eq!(
            json("parse_cidr('10.144.0.0/20')"),
            r#"{"network":"10.144.0.0","netmask":"255.255.240.0","broadcast":"10.144.15.255","firstUsable":"10.144.0.1","lastUsable":"10.144.15.254","cidr":20}"#
        );
        assert_eq!(
            json("parse_cidr('fdad:3236:5555::/48')"),
            r#"{"network":"fdad:3236:5555::","netmask":"ffff:ffff:ffff::","firstUsable":"fdad:3236:5555::","lastUsable":"fdad:3236:5555:ffff:ffff:ffff:ffff:ffff","cidr":48}"#
        );
    }

    #[test]
    fn parse_cidr_edges() {
        assert_eq!(
            json("parse_cidr('10.144.3.7/20')['network']"),
            r#""10.144.0.0""#
        );
        assert_eq!(
            json("parse_cidr('10.0.0.4/31')"),
            r#"{"network":"10.0.0.4","netmask":"255.255.255.254","broadcast":"10.0.0.5","firstUsable":"10.0.0.4","lastUsable":"10.0.0.5","cidr":31}"#
        );
        assert_eq!(
            json("parse_cidr('10.0.0.4/32')"),
            r#"{"network":"10.0.0.4","netmask":"255.255.255.255","broadcast":"10.0.0.4","firstUsable":"10.0.0.4","lastUsable":"10.0.0.4","cidr":32}"#
        );
        assert_eq!(
            json("parse_cidr('0.0.0.0/0')"),
            r#"{"network":"0.0.0.0","netmask":"0.0.0.0","broadcast":"255.255.255.255","firstUsable":"0.0.0.1","lastUsable":"255.255.255.254","cidr":0}"#
        );
        assert_eq!(
            json("parse_cidr('::/0')"),
            r#"{"network":"::","netmask":"::","firstUsable":"::","lastUsable":"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff","cidr":0}"#
        );
        assert_eq!(json("parse_cidr('::1/128')['lastUsable']"), r#""::1""#);
        let e = err("parse_cidr('10.0.0.0')");
        assert!(e.contains("parse_cidr(): invalid CIDR prefix"), "{e}");
        let e = err("parse_cidr(10)");
        assert!(
            e.contains("parse_cidr(): cidr must be a string, got int"),
            "{e}"
        );
    }

    #[test]
    fn through_minijinja() {
        assert_eq!(json("cidr_subnet('10.0.0.0/16', 8, 3)"), r#""10.0.3.0/24""#);
        assert_eq!(json("cidr_host('10.0.3.0/24', -2)"), r#""10.0.3.254""#);
        let e = err("cidr_subnet('10.0.0.0/16', 20, 0)");
        assert!(e.contains("insufficient address space to extend prefix of 16 by 20"));
        assert!(eval("cidr_subnet('10.0.0.0/16', 8)").is_err());
        assert!(eval("cidr_host('10.0.0.0/16')").is_err());
    }
}
