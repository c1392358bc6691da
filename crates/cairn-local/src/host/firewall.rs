//! Firewalls as kernel rules: one nftables `inet` table in the cloud's
//! network namespace, rendered from the servers' ingress rules by a pure
//! function and always replaced whole (`nft -f -` is one transaction), so a
//! rule change applies at the next connection and never half.
//!
//! Every packet to a server crosses the cloud namespace's `forward` hook:
//! routed from the machine's link, or bridged from a server on the same
//! bridge (br_netfilter is on in the namespace and on each bridge; without
//! it bridged traffic would bypass the rules). A `bridge`-family table is no
//! alternative on these kernels: without NF_CONNTRACK_BRIDGE it has no
//! `ct state`. A refused source gets `admin-prohibited` at once (no
//! connection, no timeout).
//!
//! The cloud's own services that listen in the cloud namespace itself (its
//! databases, on addresses of the link) are reached at its `input` hook
//! instead, from a server or from the machine; their rules are the same
//! kind, in chains of their own.
//!
//! Public addresses are the same table's: each is translated to its
//! server's address as it enters the cloud namespace (`prerouting`, and
//! `output` for the cloud's own connections), before the `forward` hook, so
//! the rules at the server's address judge it with its real source, every
//! protocol alike. A server that reaches itself through its public address
//! is masqueraded onto its gateway (a packet from its own address would be
//! dropped by its kernel as a martian). What is addressed to the public
//! range and translated to nobody is refused.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::command::Cmd;
use super::error::HostError;
use super::network::PUBLIC_RANGE;

/// The table's name in the cloud namespace (one per namespace).
pub const TABLE: &str = "cairn";

/// A rule's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP, on a port or range (or every port).
    Tcp,
    /// UDP, on a port or range (or every port).
    Udp,
    /// ICMP (no ports).
    Icmp,
    /// Everything (no ports).
    All,
}

/// Where a rule lets traffic come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A block (0.0.0.0/0 for anywhere).
    Cidr(Ipv4Net),
    /// The servers that are members of firewall `name`.
    Members(String),
}

/// One ingress rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingress {
    /// Its protocol.
    pub protocol: Protocol,
    /// Its port range (both ends included); `None` for every port.
    pub ports: Option<(u16, u16)>,
    /// Who may connect.
    pub from: Source,
}

/// What reaches a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// No firewall attached: everything.
    Open,
    /// Only what these rules allow (the union of its firewalls' rules).
    Only(Vec<Ingress>),
}

/// A server as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRules {
    /// Its name (in comments and chain names).
    pub name: String,
    /// Every address it is reached at.
    pub addresses: Vec<Ipv4Addr>,
    /// What may reach it.
    pub policy: Policy,
}

/// Everything the cloud namespace's table is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// The addresses of each firewall's members, by firewall name.
    pub members: BTreeMap<String, Vec<Ipv4Addr>>,
    /// The servers.
    pub servers: Vec<ServerRules>,
    /// The cloud's own services that listen in the cloud namespace itself
    /// (databases, on addresses of the link): guarded at its `input` hook,
    /// which every connection to them crosses, from a server or from the
    /// machine.
    pub services: Vec<ServerRules>,
    /// The cloud's network blocks: an address in them with no server
    /// behind it is refused too.
    pub networks: Vec<Ipv4Net>,
    /// Each public address that answers for a server: the server's own
    /// address, by public address.
    pub publics: BTreeMap<Ipv4Addr, Ipv4Addr>,
    /// The networks with `internet: true`: the only sources that may
    /// leave through [`Ruleset::way_out`].
    pub internet: Vec<Ipv4Net>,
    /// The device towards the internet (see `nat`), when there is one:
    /// what leaves through it is masqueraded onto its address, what comes
    /// in through it is only answers.
    pub way_out: Option<String>,
}

/// A name as an nft identifier: letters, digits and `_`.
fn ident(prefix: &str, i: usize, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{prefix}{i}_{clean}")
}

fn list<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The nft script that replaces the table (idempotent: it makes the table,
/// deletes it and defines it anew, all in one transaction).
pub fn render(rules: &Ruleset) -> Result<String, HostError> {
    let set_names: BTreeMap<&str, String> = rules
        .members
        .keys()
        .enumerate()
        .map(|(i, name)| (name.as_str(), ident("f", i, name)))
        .collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{"
    );
    for (name, addrs) in &rules.members {
        let _ = writeln!(
            s,
            "\tset {} {{\n\t\ttype ipv4_addr",
            set_names[name.as_str()]
        );
        if !addrs.is_empty() {
            let _ = writeln!(s, "\t\telements = {{ {} }}", list(addrs));
        }
        s.push_str("\t}\n");
    }
    if !rules.publics.is_empty() {
        let map = rules
            .publics
            .iter()
            .map(|(public, private)| format!("{public} : {private}"))
            .collect::<Vec<_>>()
            .join(", ");
        // `dstnat` is -100; nft 1.0.6 takes the name at prerouting only.
        for hook in ["prerouting", "output"] {
            let _ = writeln!(
                s,
                "\tchain {hook} {{\n\t\ttype nat hook {hook} priority -100; policy accept;\n\
                 \t\tdnat ip to ip daddr map {{ {map} }}\n\t}}"
            );
        }
    }
    let _ = writeln!(
        s,
        "\tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tct state established,related accept\n\
         \t\tct state invalid drop\n\
         \t\tip daddr {PUBLIC_RANGE} reject with icmpx type admin-prohibited"
    );
    if let Some(dev) = &rules.way_out {
        let dev = quoted_device(dev)?;
        let _ = writeln!(s, "\t\tiifname {dev} drop");
        if !rules.internet.is_empty() {
            let _ = writeln!(
                s,
                "\t\toifname {dev} ip saddr {{ {} }} accept",
                list(&rules.internet)
            );
        }
        let _ = writeln!(
            s,
            "\t\toifname {dev} reject with icmpx type admin-prohibited"
        );
    }
    let mut chains = String::new();
    let verdicts = guard(&rules.servers, "s", &set_names, &mut chains)?;
    if !verdicts.is_empty() {
        let _ = writeln!(s, "\t\tip daddr vmap {{ {} }}", verdicts.join(", "));
    }
    if !rules.networks.is_empty() {
        let _ = writeln!(
            s,
            "\t\tip daddr {{ {} }} reject with icmpx type admin-prohibited",
            list(&rules.networks)
        );
    }
    s.push_str("\t}\n");
    if !rules.services.is_empty() {
        let verdicts = guard(&rules.services, "d", &set_names, &mut chains)?;
        let _ = writeln!(
            s,
            "\tchain input {{\n\t\ttype filter hook input priority filter; policy accept;\n\
             \t\tct state established,related accept\n\
             \t\tct state invalid drop\n\
             \t\tip daddr vmap {{ {} }}\n\t}}",
            verdicts.join(", ")
        );
    }
    let mut masquerade = Vec::new();
    if !rules.publics.is_empty() {
        let hairpins: std::collections::BTreeSet<&Ipv4Addr> = rules.publics.values().collect();
        let pairs = hairpins
            .iter()
            .map(|a| format!("{a} . {a}"))
            .collect::<Vec<_>>()
            .join(", ");
        masquerade.push(format!("ip saddr . ip daddr {{ {pairs} }} masquerade"));
    }
    if let Some(dev) = &rules.way_out {
        masquerade.push(format!("oifname {} masquerade", quoted_device(dev)?));
    }
    if !masquerade.is_empty() {
        let _ = writeln!(
            s,
            "\tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;"
        );
        for rule in masquerade {
            let _ = writeln!(s, "\t\t{rule}");
        }
        s.push_str("\t}\n");
    }
    s.push_str(&chains);
    s.push_str("}\n");
    Ok(s)
}

/// The verdict for each address of `guarded` (`accept`, or a jump to a
/// chain of its rules that ends in a reject; the chains, named `prefix`N,
/// are appended to `chains`).
fn guard(
    guarded: &[ServerRules],
    prefix: &str,
    set_names: &BTreeMap<&str, String>,
    chains: &mut String,
) -> Result<Vec<String>, HostError> {
    let mut verdicts = Vec::new();
    for (i, server) in guarded.iter().enumerate() {
        let verdict = match &server.policy {
            Policy::Open => "accept".to_string(),
            Policy::Only(ingress) => {
                let chain = ident(prefix, i, &server.name);
                let _ = writeln!(chains, "\tchain {chain} {{");
                for rule in ingress {
                    let _ = writeln!(
                        chains,
                        "\t\t{}",
                        render_rule(rule, set_names, &server.name)?
                    );
                }
                chains.push_str("\t\treject with icmpx type admin-prohibited\n\t}\n");
                format!("jump {chain}")
            }
        };
        verdicts.extend(server.addresses.iter().map(|a| format!("{a} : {verdict}")));
    }
    Ok(verdicts)
}

/// A device name as an nft string; only what an interface name may be.
fn quoted_device(dev: &str) -> Result<String, HostError> {
    let ok = !dev.is_empty()
        && dev.len() <= 15
        && dev
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(HostError::InvalidName {
            what: "device",
            name: dev.to_string(),
            reason: "use 1 to 15 letters, digits, '-', '_' or '.'".into(),
        });
    }
    Ok(format!("\"{dev}\""))
}

fn render_rule(
    rule: &Ingress,
    sets: &BTreeMap<&str, String>,
    server: &str,
) -> Result<String, HostError> {
    let invalid = |reason: String| HostError::InvalidName {
        what: "firewall rule",
        name: format!("{rule:?} of server {server}"),
        reason,
    };
    let proto = match rule.protocol {
        Protocol::Tcp => Some("tcp"),
        Protocol::Udp => Some("udp"),
        Protocol::Icmp | Protocol::All => None,
    };
    let mut parts = Vec::new();
    match (proto, rule.ports) {
        (Some(_), Some((lo, hi))) if lo > hi => {
            return Err(invalid(format!("port range {lo}-{hi} is backwards")));
        }
        (Some(p), Some((lo, hi))) if lo == hi => parts.push(format!("{p} dport {lo}")),
        (Some(p), Some((lo, hi))) => parts.push(format!("{p} dport {lo}-{hi}")),
        (Some(p), None) => parts.push(format!("meta l4proto {p}")),
        (None, Some(_)) => return Err(invalid("ports only go with tcp or udp".into())),
        (None, None) if rule.protocol == Protocol::Icmp => parts.push("meta l4proto icmp".into()),
        (None, None) => {}
    }
    match &rule.from {
        Source::Cidr(net) if net.prefix_len() == 0 => {}
        Source::Cidr(net) => parts.push(format!("ip saddr {}", net.trunc())),
        Source::Members(name) => {
            let set = sets
                .get(name.as_str())
                .ok_or_else(|| invalid(format!("no firewall `{name}` to take members from")))?;
            parts.push(format!("ip saddr @{set}"));
        }
    }
    parts.push("accept".into());
    Ok(parts.join(" "))
}

/// Replaces the table in namespace `netns` with `rules`, atomically.
pub async fn apply(netns: &str, rules: &Ruleset) -> Result<(), HostError> {
    let script = render(rules)?;
    Cmd::in_netns(netns, "nft")
        .args(["-f", "-"])
        .stdin(script)
        .run()
        .await?;
    Ok(())
}

/// Removes the table from namespace `netns` (it also goes with the
/// namespace).
pub async fn remove(netns: &str) -> Result<(), HostError> {
    let cmd = Cmd::in_netns(netns, "nft").args(["delete", "table", "inet", TABLE]);
    let out = cmd.output().await?;
    if out.status.success() || String::from_utf8_lossy(&out.stderr).contains("No such file") {
        return Ok(());
    }
    cmd.check(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn a_small_ruleset_renders_exactly() {
        let rules = Ruleset {
            members: BTreeMap::from([
                ("web".to_string(), vec![ip("10.20.1.10"), ip("10.20.1.11")]),
                ("empty".to_string(), vec![]),
            ]),
            servers: vec![
                ServerRules {
                    name: "web[0]".into(),
                    addresses: vec![ip("10.20.1.10")],
                    policy: Policy::Only(vec![
                        Ingress {
                            protocol: Protocol::Tcp,
                            ports: Some((8080, 8080)),
                            from: Source::Members("web".into()),
                        },
                        Ingress {
                            protocol: Protocol::Tcp,
                            ports: Some((22, 22)),
                            from: Source::Cidr("169.254.77.1/32".parse().unwrap()),
                        },
                        Ingress {
                            protocol: Protocol::Udp,
                            ports: Some((5000, 5100)),
                            from: Source::Cidr("0.0.0.0/0".parse().unwrap()),
                        },
                        Ingress {
                            protocol: Protocol::Icmp,
                            ports: None,
                            from: Source::Cidr("10.20.0.0/16".parse().unwrap()),
                        },
                    ]),
                },
                ServerRules {
                    name: "bastion".into(),
                    addresses: vec![ip("10.20.1.20")],
                    policy: Policy::Open,
                },
            ],
            networks: vec!["10.20.1.0/24".parse().unwrap()],
            ..Ruleset::default()
        };
        assert_eq!(
            render(&rules).unwrap(),
            "table inet cairn
delete table inet cairn
table inet cairn {
\tset f0_empty {
\t\ttype ipv4_addr
\t}
\tset f1_web {
\t\ttype ipv4_addr
\t\telements = { 10.20.1.10, 10.20.1.11 }
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state established,related accept
\t\tct state invalid drop
\t\tip daddr 198.18.0.0/15 reject with icmpx type admin-prohibited
\t\tip daddr vmap { 10.20.1.10 : jump s0_web_0_, 10.20.1.20 : accept }
\t\tip daddr { 10.20.1.0/24 } reject with icmpx type admin-prohibited
\t}
\tchain s0_web_0_ {
\t\ttcp dport 8080 ip saddr @f1_web accept
\t\ttcp dport 22 ip saddr 169.254.77.1/32 accept
\t\tudp dport 5000-5100 accept
\t\tmeta l4proto icmp ip saddr 10.20.0.0/16 accept
\t\treject with icmpx type admin-prohibited
\t}
}
"
        );
    }

    #[test]
    fn only_internet_networks_leave_through_the_way_out_masqueraded() {
        let rules = Ruleset {
            networks: vec!["10.20.1.0/24".parse().unwrap()],
            internet: vec!["10.20.2.0/24".parse().unwrap()],
            way_out: Some("tap0".into()),
            ..Ruleset::default()
        };
        let text = render(&rules).unwrap();
        let forward = "\t\tct state invalid drop
\t\tip daddr 198.18.0.0/15 reject with icmpx type admin-prohibited
\t\tiifname \"tap0\" drop
\t\toifname \"tap0\" ip saddr { 10.20.2.0/24 } accept
\t\toifname \"tap0\" reject with icmpx type admin-prohibited
\t\tip daddr { 10.20.1.0/24 } reject";
        assert!(text.contains(forward), "{text}");
        assert!(
            text.contains(
                "\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname \"tap0\" masquerade
\t}"
            ),
            "{text}"
        );
        // No network with internet: nothing may leave.
        let none = render(&Ruleset {
            internet: vec![],
            ..rules.clone()
        })
        .unwrap();
        assert!(!none.contains("accept\n\t\toifname"), "{none}");
        assert!(none.contains("oifname \"tap0\" reject"), "{none}");
        // No way out: no rule about one.
        let closed = render(&Ruleset {
            way_out: None,
            ..rules.clone()
        })
        .unwrap();
        assert!(!closed.contains("tap0") && !closed.contains("masquerade"));
        let bad = render(&Ruleset {
            way_out: Some("tap0\" accept #".into()),
            ..rules
        });
        assert!(bad.is_err());
    }

    #[test]
    fn a_rule_naming_an_unknown_firewall_or_bad_ports_is_refused() {
        let server = |rule| Ruleset {
            servers: vec![ServerRules {
                name: "a".into(),
                addresses: vec![ip("10.0.0.2")],
                policy: Policy::Only(vec![rule]),
            }],
            ..Ruleset::default()
        };
        let err = render(&server(Ingress {
            protocol: Protocol::Tcp,
            ports: None,
            from: Source::Members("db".into()),
        }))
        .unwrap_err();
        assert!(err.to_string().contains("no firewall `db`"), "{err}");
        let err = render(&server(Ingress {
            protocol: Protocol::Icmp,
            ports: Some((1, 2)),
            from: Source::Cidr("0.0.0.0/0".parse().unwrap()),
        }))
        .unwrap_err();
        assert!(
            err.to_string().contains("ports only go with tcp or udp"),
            "{err}"
        );
    }

    #[test]
    fn services_in_the_cloud_namespace_are_guarded_at_input() {
        let rules = Ruleset {
            members: BTreeMap::from([("web".to_string(), vec![ip("10.20.1.10")])]),
            services: vec![
                ServerRules {
                    name: "db".into(),
                    addresses: vec![ip("169.254.7.250")],
                    policy: Policy::Only(vec![Ingress {
                        protocol: Protocol::Tcp,
                        ports: Some((5432, 5432)),
                        from: Source::Members("web".into()),
                    }]),
                },
                ServerRules {
                    name: "open".into(),
                    addresses: vec![ip("169.254.7.249")],
                    policy: Policy::Open,
                },
            ],
            ..Ruleset::default()
        };
        let text = render(&rules).unwrap();
        assert!(
            text.contains(
                "\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tct state established,related accept
\t\tct state invalid drop
\t\tip daddr vmap { 169.254.7.250 : jump d0_db, 169.254.7.249 : accept }
\t}"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\tchain d0_db {
\t\ttcp dport 5432 ip saddr @f0_web accept
\t\treject with icmpx type admin-prohibited
\t}"
            ),
            "{text}"
        );
        // No service: no input chain at all.
        assert!(!render(&Ruleset::default()).unwrap().contains("input"));
    }

    #[test]
    fn public_addresses_are_translated_before_the_rules_and_hairpins_masqueraded() {
        let rules = Ruleset {
            publics: BTreeMap::from([
                (ip("198.18.7.1"), ip("10.20.1.10")),
                (ip("198.18.7.2"), ip("10.20.1.11")),
            ]),
            way_out: Some("tap0".into()),
            ..Ruleset::default()
        };
        let text = render(&rules).unwrap();
        for hook in ["prerouting", "output"] {
            let chain = format!(
                "\tchain {hook} {{
\t\ttype nat hook {hook} priority -100; policy accept;
\t\tdnat ip to ip daddr map {{ 198.18.7.1 : 10.20.1.10, 198.18.7.2 : 10.20.1.11 }}
\t}}"
            );
            assert!(text.contains(&chain), "{text}");
        }
        assert!(
            text.contains(
                "\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr . ip daddr { 10.20.1.10 . 10.20.1.10, 10.20.1.11 . 10.20.1.11 } masquerade
\t\toifname \"tap0\" masquerade
\t}"
            ),
            "{text}"
        );
        // Without public addresses: no translation, the range refused.
        let none = render(&Ruleset::default()).unwrap();
        assert!(
            !none.contains("dnat") && !none.contains("postrouting"),
            "{none}"
        );
        assert!(none.contains("ip daddr 198.18.0.0/15 reject"), "{none}");
    }

    #[test]
    fn no_servers_is_an_empty_forward_chain() {
        let text = render(&Ruleset::default()).unwrap();
        assert!(!text.contains("vmap"));
        assert!(text.ends_with("\t}\n}\n"));
    }
}
