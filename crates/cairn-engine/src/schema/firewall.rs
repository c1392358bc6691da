//! A firewall's rules, read once for every target: protocol, port range and
//! peer (`from` for ingress, `to` for egress). The evaluator checks them
//! when the template is evaluated, at the rule (file:line:col), whatever
//! the target; the targets read rules through [`rules`], so a range one of
//! them accepts the other cannot refuse halfway through an apply.

use serde_json::Value as Json;

use super::limits::{Breach, Step};

/// Which way a rule lets traffic through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// The property holding the rules.
    pub fn list(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// The key naming the other end: where traffic comes from or goes to.
    pub fn peer_key(self) -> &'static str {
        match self {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    All,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::All => "all",
        }
    }

    /// Whether the protocol has ports at all.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }
}

/// First and last port, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub const ALL: PortRange = PortRange {
        first: 0,
        last: 65535,
    };

    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// One rule as the template says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub protocol: Protocol,
    /// `port` or `ports`; `None` when the rule names neither (every port).
    pub ports: Option<PortRange>,
    /// A CIDR block, an address, or another firewall's id.
    pub peer: String,
    pub description: Option<String>,
}

impl Rule {
    /// The ports the rule opens: those it names, else every one.
    pub fn port_range(&self) -> PortRange {
        self.ports.unwrap_or(PortRange::ALL)
    }
}

/// What is wrong with one rule: the key at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub key: &'static str,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Reads one rule of `direction`.
pub fn read_rule(direction: Direction, rule: &Json) -> Result<Rule, RuleError> {
    let err = |key: &'static str, message: String| RuleError { key, message };
    let protocol = match rule.get("protocol").and_then(Json::as_str) {
        None | Some("tcp") => Protocol::Tcp,
        Some("udp") => Protocol::Udp,
        Some("icmp") => Protocol::Icmp,
        Some("all") => Protocol::All,
        Some(other) => {
            return Err(err(
                "protocol",
                format!("protocol `{other}` is not one of tcp, udp, icmp, all"),
            ));
        }
    };
    let ports = ports_of(rule)?;
    let peer_key = direction.peer_key();
    let peer = match rule.get(peer_key) {
        Some(Json::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => {
            return Err(err(
                peer_key,
                format!(
                    "an {} rule needs `{peer_key}`: a CIDR block (0.0.0.0/0 for anywhere) or a firewall's id",
                    direction.list()
                ),
            ));
        }
    };
    Ok(Rule {
        protocol,
        ports,
        peer,
        description: rule
            .get("description")
            .and_then(Json::as_str)
            .map(str::to_string),
    })
}

/// The ports a rule names: `port`, else `ports`; `None` when neither.
pub fn ports_of(rule: &Json) -> Result<Option<PortRange>, RuleError> {
    Ok(match (rule.get("port"), rule.get("ports")) {
        (Some(p), _) if !p.is_null() => Some(port(p).ok_or_else(|| RuleError {
            key: "port",
            message: format!("`port` {p} is not a port number (0 to 65535)"),
        })?),
        (_, Some(Json::String(range))) => Some(port_range(range).ok_or_else(|| RuleError {
            key: "ports",
            message: format!(
                "`ports` {range:?} is not a port or a range such as 8000-8100 (first no higher than last, up to 65535)"
            ),
        })?),
        _ => None,
    })
}

fn port(v: &Json) -> Option<PortRange> {
    let p = u16::try_from(v.as_u64()?).ok()?;
    Some(PortRange { first: p, last: p })
}

/// `"443"` or `"8000-8100"`.
pub fn port_range(text: &str) -> Option<PortRange> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let first: u16 = a.trim().parse().ok()?;
    let last: u16 = b.trim().parse().ok()?;
    (first <= last).then_some(PortRange { first, last })
}

/// The rules of `direction` in a firewall's properties, each read (or
/// what is wrong with it), in order.
pub fn rules(
    properties: &Json,
    direction: Direction,
) -> impl Iterator<Item = Result<Rule, RuleError>> + '_ {
    properties
        .get(direction.list())
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .map(move |r| read_rule(direction, r))
}

/// Every fault of every rule, where it is (`ingress[1].ports`), for the
/// evaluator. Rules whose values are not known yet are skipped: they are
/// checked again once they are.
pub(crate) fn check(rule_lists: &[(Direction, Option<&Json>)]) -> Vec<Breach> {
    let mut out = Vec::new();
    for (direction, list) in rule_lists {
        let Some(items) = list.and_then(Json::as_array) else {
            continue;
        };
        for (i, rule) in items.iter().enumerate() {
            if let Err(e) = read_rule(*direction, rule) {
                out.push(Breach {
                    path: vec![
                        Step::Key(direction.list()),
                        Step::Index(i),
                        Step::Key(e.key),
                    ],
                    message: format!("{} rule {}: {}", direction.list(), i + 1, e.message),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(direction: Direction, rule: Json) -> Result<Rule, String> {
        read_rule(direction, &rule).map_err(|e| format!("{}: {}", e.key, e.message))
    }

    #[test]
    fn rules_read_protocol_ports_and_peer() {
        let r = one(Direction::Ingress, json!({"port": 80, "from": "0.0.0.0/0"})).unwrap();
        assert_eq!(r.protocol, Protocol::Tcp);
        assert_eq!(
            r.ports,
            Some(PortRange {
                first: 80,
                last: 80
            })
        );
        assert_eq!(r.peer, "0.0.0.0/0");
        let r = one(
            Direction::Egress,
            json!({"protocol": "udp", "ports": "8000-8100", "to": "fw-1", "description": "app"}),
        )
        .unwrap();
        assert_eq!(
            (r.protocol, r.port_range().first, r.port_range().last),
            (Protocol::Udp, 8000, 8100)
        );
        assert_eq!(r.description.as_deref(), Some("app"));
        // Neither port nor ports: every port.
        let r = one(
            Direction::Ingress,
            json!({"protocol": "all", "from": "10.0.0.0/8"}),
        )
        .unwrap();
        assert_eq!((r.ports, r.port_range()), (None, PortRange::ALL));
        // A null port (unset in the template) is no port.
        let r = one(
            Direction::Ingress,
            json!({"port": null, "ports": "22", "from": "10.0.0.0/8"}),
        )
        .unwrap();
        assert_eq!(
            r.ports,
            Some(PortRange {
                first: 22,
                last: 22
            })
        );
    }

    #[test]
    fn a_bad_rule_names_its_key_and_why() {
        let bad = |d, r| one(d, r).unwrap_err();
        assert!(
            bad(
                Direction::Ingress,
                json!({"ports": "9000-80", "from": "0.0.0.0/0"})
            )
            .starts_with("ports: `ports` \"9000-80\" is not a port")
        );
        assert!(
            bad(
                Direction::Ingress,
                json!({"ports": "abc", "from": "0.0.0.0/0"})
            )
            .starts_with("ports: ")
        );
        assert!(
            bad(
                Direction::Ingress,
                json!({"ports": "1-70000", "from": "0.0.0.0/0"})
            )
            .starts_with("ports: ")
        );
        assert!(
            bad(
                Direction::Ingress,
                json!({"port": 70000, "from": "0.0.0.0/0"})
            )
            .starts_with("port: `port` 70000 is not a port number")
        );
        assert!(
            bad(Direction::Ingress, json!({"port": -1, "from": "0.0.0.0/0"})).starts_with("port: ")
        );
        assert!(
            bad(
                Direction::Ingress,
                json!({"protocol": "sctp", "from": "0.0.0.0/0"})
            )
            .starts_with("protocol: protocol `sctp`")
        );
        assert_eq!(
            bad(Direction::Ingress, json!({"port": 22})),
            "from: an ingress rule needs `from`: a CIDR block (0.0.0.0/0 for anywhere) or a firewall's id"
        );
        assert!(
            bad(Direction::Egress, json!({"port": 22, "from": "0.0.0.0/0"}))
                .starts_with("to: an egress rule needs `to`")
        );
    }

    #[test]
    fn check_points_at_the_rule_and_key() {
        let ingress =
            json!([{"port": 22, "from": "0.0.0.0/0"}, {"ports": "90-80", "from": "0.0.0.0/0"}]);
        let egress = json!([{"protocol": "all"}]);
        let found = check(&[
            (Direction::Ingress, Some(&ingress)),
            (Direction::Egress, Some(&egress)),
        ]);
        let paths: Vec<String> = found.iter().map(|b| b.path_text()).collect();
        assert_eq!(paths, ["ingress[1].ports", "egress[0].to"]);
        assert!(
            found[0]
                .message
                .starts_with("ingress rule 2: `ports` \"90-80\""),
            "{}",
            found[0].message
        );
        // Not known yet (None): nothing to say.
        assert!(check(&[(Direction::Ingress, None)]).is_empty());
    }
}
