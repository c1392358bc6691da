//! Firewall rules on the local target: checked when a firewall is made or
//! changed, and enforced on the listeners the cloud owns: load balancers,
//! and the public addresses (`ip_address`) that forward to servers.
//! A server's own address is reached directly on loopback; holding that to
//! its rules would need network namespaces, so there the rules apply only
//! to what comes in through its public address, as on a cloud where the
//! security group guards the way in from outside.

use std::net::{IpAddr, Ipv4Addr};

use cairn_engine::provider::Json;
use cairn_engine::schema::firewall::{self as schema, Direction, PortRange, Protocol};
use ipnet::{IpNet, Ipv4Net};

use super::model::CloudState;
use super::props::prop;
use crate::lb::Access;

/// Checks every rule of a firewall's properties as the engine reads them
/// (ports, protocol, a peer: see `cairn_engine::schema::firewall`), and
/// that each `from`/`to` is a CIDR block or a firewall of this cloud.
pub fn check_rules(state: &CloudState, p: &Json) -> Result<(), String> {
    for direction in Direction::BOTH {
        for (i, rule) in schema::rules(p, direction).enumerate() {
            let at = format!("{} rule {}", direction.list(), i + 1);
            let rule = rule.map_err(|e| format!("{at}: {e}"))?;
            sources(state, &rule.peer).map_err(|e| format!("{at}: {e}"))?;
        }
    }
    Ok(())
}

/// The ingress rules of a set of firewalls that cover TCP, by port range,
/// with their sources resolved to address blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Ingress {
    /// No firewall is attached: everyone, on every port.
    #[default]
    Open,
    Rules(Vec<(u64, u64, Vec<IpNet>)>),
}

impl Ingress {
    /// Who may connect on `port`.
    pub fn access(&self, port: u64) -> Access {
        match self {
            Ingress::Open => Access::Open,
            Ingress::Rules(rules) => Access::Only(
                rules
                    .iter()
                    .filter(|(lo, hi, _)| (*lo..=*hi).contains(&port))
                    .flat_map(|(_, _, nets)| nets.iter().copied())
                    .collect(),
            ),
        }
    }
}

/// The TCP ingress of the firewalls a resource names in `firewalls`.
///
/// A rule whose source no longer resolves (a firewall deleted under it)
/// lets nobody in and is reported in the second value, so the caller can
/// refuse it when the resource itself is being made or changed.
pub fn ingress(state: &CloudState, resource: &Json) -> (Ingress, Vec<String>) {
    let ids: Vec<&str> = prop(resource, "firewalls")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .collect();
    if ids.is_empty() {
        return (Ingress::Open, Vec::new());
    }
    let (mut allowed, mut problems) = (Vec::new(), Vec::new());
    for id in ids {
        let Some(fw) = state.resources.get(id).filter(|r| r.kind == "firewall") else {
            problems.push(format!("there is no firewall {id} in the local cloud"));
            continue;
        };
        for rule in schema::rules(&fw.properties, Direction::Ingress) {
            let rule = match rule {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("{} ({id}): {e}", fw.address));
                    continue;
                }
            };
            if !matches!(rule.protocol, Protocol::Tcp | Protocol::All) {
                continue;
            }
            let range = rule.port_range();
            match sources(state, &rule.peer) {
                Ok(nets) => allowed.push((range.first.into(), range.last.into(), nets)),
                Err(e) => problems.push(format!("{} ({id}): {e}", fw.address)),
            }
        }
    }
    (Ingress::Rules(allowed), problems)
}

/// Who may connect to a load balancer listening on `listen.port` (the port
/// the template asked for, which rules name even when a low port was mapped
/// to a high one).
pub fn lb_access(state: &CloudState, lb: &Json) -> (Access, Vec<String>) {
    let port = prop(lb, "listen")
        .and_then(|l| prop(l, "port"))
        .and_then(Json::as_u64)
        .unwrap_or(0);
    let (ingress, problems) = ingress(state, lb);
    (ingress.access(port), problems)
}

pub(super) fn rules<'a>(p: &'a Json, list: &str) -> impl Iterator<Item = &'a Json> {
    prop(p, list).and_then(Json::as_array).into_iter().flatten()
}

/// The rule's port range: `port`, `ports` ("8000-8100" or "443"), or every
/// port when it names neither.
pub(super) fn ports(rule: &Json) -> Result<(u64, u64), String> {
    let range = schema::ports_of(rule)
        .map_err(|e| e.message)?
        .unwrap_or(PortRange::ALL);
    Ok((range.first.into(), range.last.into()))
}

/// A rule's source: a CIDR block, or a firewall's id meaning every address
/// of the resources it is attached to (a source security group).
fn sources(state: &CloudState, s: &str) -> Result<Vec<IpNet>, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(vec![net.trunc()]);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(vec![IpNet::from(ip)]);
    }
    if state.resources.get(s).is_some_and(|r| r.kind == "firewall") {
        return Ok(state
            .resources
            .values()
            .filter(|r| {
                prop(&r.properties, "firewalls")
                    .and_then(Json::as_array)
                    .is_some_and(|fws| fws.iter().any(|f| f.as_str() == Some(s)))
            })
            .filter_map(|r| r.ip)
            .map(|ip: Ipv4Addr| IpNet::V4(Ipv4Net::from(ip)))
            .collect());
    }
    Err(format!(
        "`{s}` is neither a CIDR block nor a firewall of this local cloud"
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    use crate::cloud::model::put;

    fn lb(firewalls: &[&str]) -> Json {
        json!({"listen": {"protocol": "http", "port": 80}, "firewalls": firewalls})
    }

    fn allows(access: &Access, ip: &str) -> bool {
        access.allows(ip.parse().unwrap())
    }

    #[test]
    fn rules_pick_sources_by_protocol_port_and_firewall() {
        let mut st = CloudState::default();
        put(
            &mut st,
            "fw-clients",
            "firewall",
            json!({"ingress": []}),
            None,
        );
        put(
            &mut st,
            "client",
            "server",
            json!({"firewalls": ["fw-clients"]}),
            Some("127.61.0.5"),
        );
        put(
            &mut st,
            "fw-lb",
            "firewall",
            json!({"ingress": [
                {"protocol": "tcp", "port": 80, "from": "fw-clients"},
                {"protocol": "tcp", "ports": "79-81", "from": "127.0.0.2/32"},
                {"protocol": "tcp", "port": 22, "from": "127.0.0.1/32"},
                {"protocol": "udp", "port": 80, "from": "127.0.0.3/32"},
                {"protocol": "all", "from": "127.0.0.4"},
            ]}),
            None,
        );
        let (access, problems) = lb_access(&st, &lb(&["fw-lb"]));
        assert!(problems.is_empty(), "{problems:?}");
        assert!(allows(&access, "127.61.0.5"));
        assert!(allows(&access, "127.0.0.2"));
        assert!(allows(&access, "127.0.0.4"));
        assert!(!allows(&access, "127.0.0.1"), "port 22 only");
        assert!(!allows(&access, "127.0.0.3"), "udp only");
        assert!(!allows(&access, "127.61.0.6"));

        assert_eq!(lb_access(&st, &lb(&[])).0, Access::Open);
        let (gone, problems) = lb_access(&st, &lb(&["fw-gone"]));
        assert_eq!(gone, Access::Only(vec![]));
        assert_eq!(
            problems,
            ["there is no firewall fw-gone in the local cloud"]
        );
    }

    #[test]
    fn bad_rules_are_refused_with_where_they_are() {
        let st = CloudState::default();
        let check = |rules: Json| check_rules(&st, &json!({"ingress": rules})).unwrap_err();
        assert!(
            check(json!([{"port": 80}])).contains("ingress rule 1: an ingress rule needs `from`")
        );
        assert!(
            check(json!([{"from": "0.0.0.0/0"}, {"ports": "90-80", "from": "0.0.0.0/0"}]))
                .starts_with("ingress rule 2: `ports` \"90-80\"")
        );
        assert!(
            check(json!([{"from": "fw-nope"}])).contains("neither a CIDR block nor a firewall")
        );
        let egress = check_rules(&st, &json!({"egress": [{"to": "x/33"}]})).unwrap_err();
        assert!(egress.starts_with("egress rule 1"), "{egress}");
        assert!(
            check_rules(
                &st,
                &json!({"ingress": [{"port": 80, "from": "0.0.0.0/0"}]})
            )
            .is_ok()
        );
    }
}
