//! The nftables rules of a `runc` cloud, from its record: each server
//! with firewalls lets in only what their ingress rules allow, by CIDR or
//! by membership of another firewall (servers by their address, load
//! balancers by their address on the link); a server without
//! firewalls is open. The cloud's databases, which listen in the cloud
//! namespace itself, are held to their firewalls the same way. Each public
//! address associated with a server is translated to the server's address,
//! where those rules judge it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use cairn_engine::provider::Json;
use ipnet::{IpNet, Ipv4Net};

use crate::cloud::firewall;
use crate::cloud::model::{CloudState, LocalResource};
use crate::cloud::props::{prop, prop_str};
use crate::host::firewall::{self as nft, Policy, Protocol, Ruleset, ServerRules, Source};
use crate::host::network::PUBLIC_RANGE;

/// Where the cloud's own things are on its link: each load balancer's
/// address (on the machine's end: it listens there and connects to
/// backends from there) and each database's listening address (in the
/// cloud namespace), by resource id.
#[derive(Debug, Clone, Default)]
pub struct LinkAddresses {
    /// Load balancers' addresses.
    pub balancers: BTreeMap<String, Ipv4Addr>,
    /// Databases' addresses.
    pub databases: BTreeMap<String, Ipv4Addr>,
}

impl LinkAddresses {
    /// Every address handed out, to balancers and databases alike (both
    /// come from the same link).
    pub fn taken(&self) -> Vec<Ipv4Addr> {
        self.balancers
            .values()
            .chain(self.databases.values())
            .copied()
            .collect()
    }
}

/// The ids of the firewalls a resource names.
fn firewalls_of(r: &LocalResource) -> Vec<String> {
    prop(&r.properties, "firewalls")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .map(str::to_string)
        .collect()
}

/// What may reach a resource: everything without firewalls, else the
/// union of its firewalls' ingress rules.
fn policy_of(state: &CloudState, r: &LocalResource) -> Policy {
    let fws = firewalls_of(r);
    if fws.is_empty() {
        return Policy::Open;
    }
    let mut ingress = Vec::new();
    for fw in fws.iter().filter_map(|id| state.resources.get(id)) {
        for rule in firewall::rules(&fw.properties, "ingress") {
            if let Some(rule) = nft_rule(state, rule) {
                ingress.push(rule);
            }
        }
    }
    Policy::Only(ingress)
}

/// The nftables rules of a `runc` cloud: each server with firewalls lets
/// in only what their ingress rules allow, by CIDR or by membership of
/// another firewall (servers by their address, load balancers by their
/// address on the link); a server without firewalls is open; each
/// database the same, at its address in the cloud namespace.
pub fn ruleset(state: &CloudState, link: &LinkAddresses) -> Ruleset {
    let mut members: BTreeMap<String, Vec<Ipv4Addr>> = state
        .of_kind("firewall")
        .map(|f| (f.id.clone(), Vec::new()))
        .collect();
    for r in state.resources.values() {
        let address = match r.kind.as_str() {
            "server" => r.ip,
            "load_balancer" => link.balancers.get(&r.id).copied(),
            _ => None,
        };
        let Some(address) = address else { continue };
        for fw in firewalls_of(r) {
            if let Some(list) = members.get_mut(&fw) {
                list.push(address);
            }
        }
    }
    let servers = state
        .of_kind("server")
        .filter_map(|r| {
            Some(ServerRules {
                name: r.id.clone(),
                addresses: vec![r.ip?],
                policy: policy_of(state, r),
            })
        })
        .collect();
    let services = state
        .of_kind("database")
        .filter_map(|r| {
            Some(ServerRules {
                name: r.id.clone(),
                addresses: vec![*link.databases.get(&r.id)?],
                policy: policy_of(state, r),
            })
        })
        .collect();
    let networks = state
        .of_kind("network")
        .filter_map(|n| prop_str(&n.properties, "cidr"))
        .filter_map(|c| c.parse::<Ipv4Net>().ok())
        .map(|n| n.trunc())
        .collect();
    let internet = state
        .of_kind("network")
        .filter(|n| prop(&n.properties, "internet").and_then(Json::as_bool) == Some(true))
        .filter_map(|n| prop_str(&n.properties, "cidr"))
        .filter_map(|c| c.parse::<Ipv4Net>().ok())
        .map(|n| n.trunc())
        .collect();
    Ruleset {
        members,
        servers,
        services,
        networks,
        publics: publics(state),
        internet,
        way_out: None,
    }
}

/// Each public address (in the public range: one made by an older cairn
/// on the machine's loopback is not translated) whose server is recorded,
/// to that server's address.
fn publics(state: &CloudState) -> BTreeMap<Ipv4Addr, Ipv4Addr> {
    state
        .of_kind("ip_address")
        .filter_map(|r| {
            let public = r.ip.filter(|ip| PUBLIC_RANGE.contains(ip))?;
            let server = state
                .resources
                .get(prop_str(&r.properties, "server")?)
                .filter(|s| s.kind == "server")?;
            Some((public, server.ip?))
        })
        .collect()
}

/// One ingress rule of a firewall as an nftables rule; `None` for a rule
/// that lets nobody in (a source that does not resolve, an IPv6 block).
fn nft_rule(state: &CloudState, rule: &Json) -> Option<nft::Ingress> {
    let protocol = match prop_str(rule, "protocol").unwrap_or("tcp") {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" => Protocol::Icmp,
        _ => Protocol::All,
    };
    let ports = match (protocol, firewall::ports(rule).ok()?) {
        (Protocol::Tcp | Protocol::Udp, (0, 65535)) => None,
        (Protocol::Tcp | Protocol::Udp, (lo, hi)) => Some((lo as u16, hi as u16)),
        _ => None,
    };
    let from = prop_str(rule, "from").unwrap_or_default();
    let from = if let Ok(net) = from.parse::<IpNet>() {
        match net.trunc() {
            IpNet::V4(n) => Source::Cidr(n),
            IpNet::V6(_) => return None,
        }
    } else if let Ok(ip) = from.parse::<IpAddr>() {
        match ip {
            IpAddr::V4(a) => Source::Cidr(Ipv4Net::from(a)),
            IpAddr::V6(_) => return None,
        }
    } else if state
        .resources
        .get(from)
        .is_some_and(|r| r.kind == "firewall")
    {
        Source::Members(from.to_string())
    } else {
        return None;
    };
    Some(nft::Ingress {
        protocol,
        ports,
        from,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    use crate::cloud::model::put;

    fn placed(state: &mut CloudState) {
        put(
            state,
            "net",
            "network",
            json!({"cidr": "10.9.0.0/16"}),
            None,
        );
    }

    #[test]
    fn firewalls_become_rules_by_cidr_and_by_membership_of_servers_and_balancers() {
        let mut st = CloudState::default();
        placed(&mut st);
        put(
            &mut st,
            "fw-lb",
            "firewall",
            json!({"ingress": [{"protocol": "tcp", "port": 80, "from": "0.0.0.0/0"}]}),
            None,
        );
        put(
            &mut st,
            "fw-web",
            "firewall",
            json!({"ingress": [
                {"protocol": "tcp", "port": 8080, "from": "fw-lb"},
                {"protocol": "tcp", "port": 22, "from": "203.0.113.0/24"},
                {"protocol": "udp", "ports": "1000-2000", "from": "10.9.1.7"},
                {"protocol": "tcp", "port": 9, "from": "fw-gone"},
            ]}),
            None,
        );
        put(
            &mut st,
            "web",
            "server",
            json!({"firewalls": ["fw-web"]}),
            Some("10.9.1.10"),
        );
        put(&mut st, "open", "server", json!({}), Some("10.9.1.11"));
        put(
            &mut st,
            "lb",
            "load_balancer",
            json!({"firewalls": ["fw-lb"]}),
            Some("127.5.0.2"),
        );
        put(
            &mut st,
            "db",
            "database",
            json!({"firewalls": ["fw-db"]}),
            Some("127.5.0.3"),
        );
        put(
            &mut st,
            "fw-db",
            "firewall",
            json!({"ingress": [{"protocol": "tcp", "port": 5432, "from": "fw-web"}]}),
            None,
        );
        put(&mut st, "db-open", "database", json!({}), Some("127.5.0.4"));
        put(&mut st, "db-gone", "database", json!({}), Some("127.5.0.5"));
        let link = LinkAddresses {
            balancers: BTreeMap::from([("lb".to_string(), Ipv4Addr::new(169, 254, 3, 10))]),
            databases: BTreeMap::from([
                ("db".to_string(), Ipv4Addr::new(169, 254, 3, 253)),
                ("db-open".to_string(), Ipv4Addr::new(169, 254, 3, 252)),
            ]),
        };
        let rules = ruleset(&st, &link);
        // Databases are guarded at their link address, not their loopback
        // one; one not served (yet) is not in the table.
        let db = &rules.services;
        assert_eq!(db.len(), 2, "{db:?}");
        let only = db.iter().find(|s| s.name == "db").unwrap();
        assert_eq!(only.addresses, [Ipv4Addr::new(169, 254, 3, 253)]);
        assert_eq!(
            only.policy,
            Policy::Only(vec![nft::Ingress {
                protocol: Protocol::Tcp,
                ports: Some((5432, 5432)),
                from: Source::Members("fw-web".into()),
            }])
        );
        assert_eq!(
            db.iter().find(|s| s.name == "db-open").unwrap().policy,
            Policy::Open
        );
        assert_eq!(rules.members["fw-lb"], [Ipv4Addr::new(169, 254, 3, 10)]);
        assert_eq!(rules.members["fw-web"], [Ipv4Addr::new(10, 9, 1, 10)]);
        assert_eq!(rules.networks, ["10.9.0.0/16".parse::<Ipv4Net>().unwrap()]);
        let web = rules.servers.iter().find(|s| s.name == "web").unwrap();
        let Policy::Only(ingress) = &web.policy else {
            panic!("web has firewalls")
        };
        assert_eq!(
            ingress.len(),
            3,
            "the rule from a deleted firewall lets nobody in"
        );
        assert_eq!(ingress[0].from, Source::Members("fw-lb".into()));
        assert_eq!(ingress[0].ports, Some((8080, 8080)));
        assert_eq!(ingress[2].protocol, Protocol::Udp);
        assert_eq!(
            ingress[2].from,
            Source::Cidr("10.9.1.7/32".parse().unwrap())
        );
        let open = rules.servers.iter().find(|s| s.name == "open").unwrap();
        assert_eq!(open.policy, Policy::Open);
        let script = nft::render(&rules).unwrap();
        assert!(script.contains("tcp dport 8080 ip saddr @"), "{script}");
        assert!(rules.publics.is_empty());
    }

    #[test]
    fn public_addresses_lead_to_their_recorded_servers_only() {
        let mut st = CloudState::default();
        placed(&mut st);
        put(&mut st, "web", "server", json!({}), Some("10.9.1.10"));
        put(&mut st, "other", "server", json!({}), Some("10.9.1.11"));
        let public = |st: &mut CloudState, id: &str, server: Json, ip: &str| {
            put(st, id, "ip_address", json!({ "server": server }), Some(ip));
        };
        public(&mut st, "p1", json!("web"), "198.18.4.1");
        public(&mut st, "p2", json!("other"), "198.18.4.2");
        public(&mut st, "p3", Json::Null, "198.18.4.3");
        public(&mut st, "p4", json!("gone"), "198.18.4.4");
        public(&mut st, "old", json!("web"), "127.5.0.9");
        let rules = ruleset(&st, &LinkAddresses::default());
        assert_eq!(
            rules.publics,
            BTreeMap::from([
                (Ipv4Addr::new(198, 18, 4, 1), Ipv4Addr::new(10, 9, 1, 10)),
                (Ipv4Addr::new(198, 18, 4, 2), Ipv4Addr::new(10, 9, 1, 11)),
            ])
        );
    }
}
