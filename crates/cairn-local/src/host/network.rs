//! The cloud's networks, in a network namespace of the cloud's own.
//!
//! ```text
//!  machine (host netns)                 cloud netns "cairn-<tag>"          server netns
//!  ch<tag> 169.254.a.1/24  <-veth->  cc<tag> 169.254.a.2/24
//!  route CIDR via 169.254.a.2            bridge b<hash> = gateway (CIDR's
//!  unreachable CIDR metric 4000          first address)  <-veth v<hash>->  eth0 ADDR/len,
//!                                                                          default via gateway
//! ```
//!
//! The machine reaches a cloud network as Docker's host reaches its
//! bridges: through the link, from 169.254.a.1, which the firewalls see as
//! one more outside source. The `unreachable` route stays while the daemon
//! is down (the link and its `via` route go with it), so nothing addressed
//! to a cloud CIDR ever leaves the machine; it goes only when the network
//! is destroyed. A CIDR overlapping the machine's own routes is refused.
//!
//! A cloud's public addresses come from a /24 of its own in RFC 2544's
//! 198.18.0.0/15 (reserved for network testing, never on the internet),
//! routed into the cloud namespace the same way (`unreachable` while the
//! daemon is down), where the firewall's table translates each to its
//! server's address. Servers reach them too: their default route is the
//! gateway, in the cloud namespace. Every bridge port is in hairpin mode:
//! a server's packet to a public address that leads back to a server on
//! the same bridge is bridged back out (br_netfilter), also out of the
//! port it came in by when the server reaches itself.
//!
//! Names are derived from the cloud's id (a hash), so two clouds never
//! clash; interface names stay within the kernel's 15 characters.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::command::Cmd;
use super::error::HostError;

/// Metric of the route that keeps a cloud CIDR on the machine; the `via`
/// route (metric 100) is preferred while the cloud is up.
pub const UNREACHABLE_METRIC: u32 = 4000;
const VIA_METRIC: u32 = 100;

/// Where clouds' public addresses come from: RFC 2544's block for
/// network testing, which no network on the internet uses.
pub const PUBLIC_RANGE: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(198, 18, 0, 0), 15) {
    Ok(net) => net,
    Err(_) => panic!("198.18.0.0/15 is a block"),
};

/// The size of a cloud's block of public addresses.
pub const PUBLIC_BLOCK_LEN: u8 = 24;

/// `ip -n NS ARGS`: a command in namespace `ns`.
fn ip_in(ns: &str, args: &[&str]) -> Cmd {
    Cmd::new("ip").args(["-n", ns]).args(args)
}

/// `n` bytes of the SHA-256 of `s`, as hex.
fn short_hash(s: &str, n: usize) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..n])
}

/// A name usable in a namespace's file name and in messages.
fn check_name(what: &'static str, name: &str) -> Result<(), HostError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(HostError::InvalidName {
            what,
            name: name.to_string(),
            reason: "use 1 to 64 letters, digits, '-', '_' or '.', not first '.' or '-'".into(),
        })
    }
}

/// A route of the machine, as `ip -j route` gives it.
#[derive(Debug, Clone, Deserialize)]
pub struct Route {
    /// `default`, an address, or a block.
    pub dst: String,
    /// `unicast` when absent; `unreachable`, `local`, `broadcast`...
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Output device.
    pub dev: Option<String>,
    /// Gateway.
    pub gateway: Option<String>,
    /// Metric.
    pub metric: Option<u32>,
    /// Routing table, when not main.
    pub table: Option<String>,
}

impl Route {
    /// The block the route covers; `None` for the default route and
    /// anything that is not IPv4.
    pub fn block(&self) -> Option<Ipv4Net> {
        if self.dst == "default" {
            return None;
        }
        self.dst
            .parse::<Ipv4Net>()
            .ok()
            .or_else(|| self.dst.parse::<Ipv4Addr>().ok().map(Ipv4Net::from))
    }

    /// The route as `ip route` would print it, roughly.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(kind) = self.kind.as_deref().filter(|k| *k != "unicast") {
            s.push_str(kind);
            s.push(' ');
        }
        s.push_str(&self.dst);
        if let Some(gw) = &self.gateway {
            s.push_str(&format!(" via {gw}"));
        }
        if let Some(dev) = &self.dev {
            s.push_str(&format!(" dev {dev}"));
        }
        if let Some(metric) = self.metric {
            s.push_str(&format!(" metric {metric}"));
        }
        if let Some(table) = &self.table {
            s.push_str(&format!(" table {table}"));
        }
        s
    }
}

/// Parses `ip -j -4 route show table all`.
pub fn parse_routes(json: &str) -> Result<Vec<Route>, String> {
    serde_json::from_str(json).map_err(|e| e.to_string())
}

/// The first route (other than the default route and routes through
/// `ignore_devs`) whose block overlaps `cidr`.
pub fn overlapping_route<'a>(
    routes: &'a [Route],
    cidr: Ipv4Net,
    ignore_devs: &[&str],
) -> Option<&'a Route> {
    routes.iter().find(|r| {
        let ignored = r.dev.as_deref().is_some_and(|d| ignore_devs.contains(&d));
        !ignored
            && r.block()
                .is_some_and(|b| b.contains(&cidr.network()) || cidr.contains(&b.network()))
    })
}

/// The machine's IPv4 routes, every table.
pub async fn machine_routes() -> Result<Vec<Route>, HostError> {
    let cmd = Cmd::new("ip").args(["-j", "-4", "route", "show", "table", "all"]);
    let out = cmd.run().await?;
    parse_routes(&out).map_err(|reason| HostError::Output {
        command: cmd.line(),
        reason,
    })
}

/// Refuses `cidr` if it overlaps a route of the machine.
pub async fn check_cidr_free(
    what: &str,
    cidr: Ipv4Net,
    ignore_devs: &[&str],
) -> Result<(), HostError> {
    let routes = machine_routes().await?;
    match overlapping_route(&routes, cidr, ignore_devs) {
        None => Ok(()),
        Some(route) => Err(overlap(what, cidr, route)),
    }
}

/// The error for `cidr` overlapping `route`: a block a local network
/// holds (one of this cloud's or another's) is told apart from the
/// machine's own routes, because what to do differs.
fn overlap(what: &str, cidr: Ipv4Net, route: &Route) -> HostError {
    let cairns = (route.kind.as_deref() == Some("unreachable")
        && route.metric == Some(UNREACHABLE_METRIC))
        || route.dev.as_deref().is_some_and(is_link_dev);
    let (what, route) = (what.to_string(), route.describe());
    if cairns {
        HostError::CidrHeld { what, cidr, route }
    } else {
        HostError::CidrOverlap { what, cidr, route }
    }
}

/// Whether `dev` is the machine's end of a cloud's link (`ch` and the
/// eight hex digits of the cloud's tag: [`CloudNet::new`]).
fn is_link_dev(dev: &str) -> bool {
    dev.strip_prefix("ch")
        .is_some_and(|tag| tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Reserves a network's CIDR when the network is made: refused if it
/// overlaps the machine's routes, else an `unreachable` route for it that
/// stays (daemon up or down) until [`release_cidr`].
pub async fn reserve_cidr(cidr: Ipv4Net) -> Result<(), HostError> {
    check_cidr_free("network", cidr, &[]).await?;
    add_unreachable(cidr).await
}

/// The `unreachable` route that holds a block on the machine (cairn's
/// metric, so it is told apart from anyone else's).
async fn add_unreachable(cidr: Ipv4Net) -> Result<(), HostError> {
    Cmd::new("ip")
        .args(["route", "add", "unreachable"])
        .arg(cidr.to_string())
        .args(["metric", &UNREACHABLE_METRIC.to_string()])
        .run()
        .await?;
    Ok(())
}

/// Removes the `unreachable` route of a destroyed network (by type and
/// metric: `ip route del CIDR` alone would take the first match).
pub async fn release_cidr(cidr: Ipv4Net) -> Result<(), HostError> {
    ignore_missing(
        Cmd::new("ip")
            .args(["route", "del", "unreachable"])
            .arg(cidr.to_string())
            .args(["metric", &UNREACHABLE_METRIC.to_string()]),
    )
    .await
}

/// Claims a /24 of [`PUBLIC_RANGE`] for cloud `id`'s public addresses:
/// the one its id hashes to, else the next one no route of the machine
/// overlaps, with an `unreachable` route that stays (daemon up or down)
/// until [`release_cidr`]. Adding that route is the claim: of two clouds
/// choosing at once, the second finds it there and takes the next block.
pub async fn claim_public_block(id: &str) -> Result<Ipv4Net, HostError> {
    let routes = machine_routes().await?;
    for block in public_blocks(id) {
        if overlapping_route(&routes, block, &[]).is_some() {
            continue;
        }
        let cmd = Cmd::new("ip")
            .args(["route", "add", "unreachable"])
            .arg(block.to_string())
            .args(["metric", &UNREACHABLE_METRIC.to_string()]);
        let out = cmd.output().await?;
        if out.status.success() {
            return Ok(block);
        }
        if !String::from_utf8_lossy(&out.stderr).contains("File exists") {
            cmd.check(&out)?;
        }
    }
    Err(HostError::NoPublicBlock {
        cloud: id.to_string(),
    })
}

/// Every /24 of [`PUBLIC_RANGE`], from the one cloud `id` hashes to on.
pub fn public_blocks(id: &str) -> impl Iterator<Item = Ipv4Net> {
    let count = 1u32 << (PUBLIC_BLOCK_LEN - PUBLIC_RANGE.prefix_len());
    let digest = Sha256::digest(id.as_bytes());
    let start = u32::from(u16::from_be_bytes([digest[0], digest[1]]));
    let base = u32::from(PUBLIC_RANGE.network());
    (0..count).filter_map(move |i| {
        let n = (start + i) % count;
        Ipv4Net::new(Ipv4Addr::from(base + (n << 8)), PUBLIC_BLOCK_LEN).ok()
    })
}

/// Re-claims a cloud's recorded public block after the machine lost its
/// route (a reboot); refused if something else took it meanwhile.
pub async fn reclaim_public_block(block: Ipv4Net) -> Result<(), HostError> {
    let routes = machine_routes().await?;
    let held = routes.iter().any(|r| {
        r.kind.as_deref() == Some("unreachable")
            && r.dst == block.to_string()
            && r.metric == Some(UNREACHABLE_METRIC)
    });
    if held {
        return Ok(());
    }
    check_cidr_free("the public addresses' block", block, &[]).await?;
    add_unreachable(block).await
}

/// Runs a removal; "it is not there" counts as done.
async fn ignore_missing(cmd: Cmd) -> Result<(), HostError> {
    let output = cmd.output().await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success()
        || [
            "Cannot find device",
            "No such file or directory",
            "No such process",
            "does not exist",
        ]
        .iter()
        .any(|m| stderr.contains(m))
    {
        return Ok(());
    }
    cmd.check(&output)
}

/// A network: its name in the cloud and its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// The network's name (or id) in the cloud.
    pub name: String,
    /// Its block; the first usable address is the gateway.
    pub cidr: Ipv4Net,
}

impl Network {
    /// A network, checked: a block with room for a gateway and a server.
    pub fn new(name: &str, cidr: Ipv4Net) -> Result<Network, HostError> {
        check_name("network name", name)?;
        if cidr.prefix_len() > 30 {
            return Err(HostError::InvalidName {
                what: "network CIDR",
                name: cidr.to_string(),
                reason: "a network needs a /30 or larger block (gateway + servers)".into(),
            });
        }
        Ok(Network {
            name: name.to_string(),
            cidr: cidr.trunc(),
        })
    }

    /// The gateway: the block's first usable address (on the bridge).
    pub fn gateway(&self) -> Ipv4Addr {
        self.cidr.hosts().next().unwrap_or(self.cidr.network())
    }

    /// The bridge's name in the cloud namespace.
    pub fn bridge(&self) -> String {
        format!("b{}", short_hash(&self.name, 6))
    }

    /// The gateway's MAC address: the bridge's, set when it is made.
    /// Left to the kernel, a bridge takes the lowest MAC of its ports and
    /// changes it when a lower one joins. Servers keep the old one in
    /// their neighbour tables, and the bridge drops what they send to it
    /// (a frame to another port's MAC is not for the host): every packet
    /// they route through the gateway is lost until their entry expires,
    /// up to a minute. Derived from the network's name, so that a bridge
    /// made again after a restart keeps it too. Locally administered,
    /// unicast.
    pub fn gateway_mac(&self) -> String {
        let digest = Sha256::digest(format!("gateway of {}", self.name).as_bytes());
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&digest[..6]);
        mac[0] = (mac[0] & 0xfc) | 0x02;
        mac.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Checks that `address` is one a server can have here.
    pub fn check_address(&self, address: Ipv4Addr) -> Result<(), HostError> {
        let usable = self.cidr.contains(&address)
            && address != self.cidr.network()
            && address != self.cidr.broadcast()
            && address != self.gateway();
        if usable {
            Ok(())
        } else {
            Err(HostError::AddressOutsideSubnet {
                address,
                subnet: self.cidr,
                gateway: self.gateway(),
            })
        }
    }
}

/// A server's place on a network: its own network namespace, the veth end
/// in the cloud namespace, its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerNet {
    /// The server's network namespace (in /run/netns).
    pub netns: String,
    /// The veth end on the cloud's bridge.
    pub veth: String,
    /// The server's address with its network's prefix length.
    pub address: Ipv4Net,
}

impl ServerNet {
    /// The namespace's path, which a runtime joins.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }
}

/// The cloud's network namespace and its link to the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudNet {
    /// The cloud's id (its pool name or id).
    pub id: String,
    /// Short hash of the id, in every name.
    pub tag: String,
    /// The cloud's network namespace.
    pub netns: String,
    /// The link's end on the machine.
    pub host_if: String,
    /// The link's end in the cloud namespace.
    pub cloud_if: String,
    /// The link's block: .1 is the machine, .2 the cloud namespace.
    pub link: Ipv4Net,
}

impl CloudNet {
    /// The names for cloud `id`, with link block `link` (see [`choose_link`]).
    pub fn new(id: &str, link: Ipv4Net) -> CloudNet {
        let tag = short_hash(id, 4);
        CloudNet {
            id: id.to_string(),
            netns: format!("cairn-{tag}"),
            host_if: format!("ch{tag}"),
            cloud_if: format!("cc{tag}"),
            tag,
            link: link.trunc(),
        }
    }

    /// The machine's address on the link: its source towards the cloud.
    pub fn host_address(&self) -> Ipv4Addr {
        nth_host(self.link, 1)
    }

    /// The cloud namespace's address on the link.
    pub fn cloud_address(&self) -> Ipv4Addr {
        nth_host(self.link, 2)
    }

    /// Makes the cloud namespace (forwarding on, bridged packets through
    /// netfilter) and its link to the machine. On failure, removes what it
    /// made.
    pub async fn up(&self) -> Result<(), HostError> {
        check_cidr_free("the host link", self.link, &[]).await?;
        let result = self.make().await;
        if result.is_err() {
            let _ = self.down().await;
        }
        result
    }

    async fn make(&self) -> Result<(), HostError> {
        let ns = self.netns.as_str();
        let prefix = self.link.prefix_len();
        Cmd::new("ip").args(["netns", "add", ns]).run().await?;
        ip_in(ns, &["link", "set", "lo", "up"]).run().await?;
        // br_netfilter: without it, traffic between two servers on one
        // bridge bypasses the firewall (set per bridge too). No rate limit
        // on the firewall's rejections: a source refused again within the
        // second must still learn at once, not wait for a timeout.
        Cmd::in_netns(ns, "sysctl")
            .args([
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.bridge.bridge-nf-call-iptables=1",
                "net.ipv4.icmp_ratelimit=0",
            ])
            .run()
            .await?;
        Cmd::new("ip")
            .args(["link", "add", &self.host_if, "type", "veth", "peer", "name"])
            .args([&self.cloud_if, "netns", ns])
            .run()
            .await?;
        Cmd::new("ip")
            .args([
                "addr",
                "add",
                &format!("{}/{prefix}", self.host_address()),
                "dev",
                &self.host_if,
            ])
            .run()
            .await?;
        Cmd::new("ip")
            .args(["link", "set", &self.host_if, "up"])
            .run()
            .await?;
        ip_in(
            ns,
            &["addr", "add", &format!("{}/{prefix}", self.cloud_address())],
        )
        .args(["dev", &self.cloud_if])
        .run()
        .await?;
        ip_in(ns, &["link", "set", &self.cloud_if, "up"])
            .run()
            .await?;
        Ok(())
    }

    /// Removes the link and the cloud namespace (and with them the
    /// bridges, the servers' veths and the `via` routes); the networks'
    /// `unreachable` routes stay. Whatever is already gone is skipped.
    pub async fn down(&self) -> Result<(), HostError> {
        // Explicitly: `ip netns del` frees the veth asynchronously, the
        // link would linger for a second.
        ignore_missing(Cmd::new("ip").args(["link", "del", &self.host_if])).await?;
        ignore_missing(Cmd::new("ip").args(["netns", "del", &self.netns])).await
    }

    /// Makes a network's bridge (address = gateway) and the machine's
    /// route to it through the link. The CIDR must be reserved.
    pub async fn add_network(&self, net: &Network) -> Result<(), HostError> {
        let result = self.make_network(net).await;
        if result.is_err() {
            let _ = self.remove_network(net).await;
        }
        result
    }

    async fn make_network(&self, net: &Network) -> Result<(), HostError> {
        let ns = self.netns.as_str();
        let bridge = net.bridge();
        ip_in(
            ns,
            &[
                "link",
                "add",
                &bridge,
                "address",
                &net.gateway_mac(),
                "type",
                "bridge",
                "nf_call_iptables",
                "1",
            ],
        )
        .run()
        .await?;
        ip_in(ns, &["addr", "add"])
            .arg(format!("{}/{}", net.gateway(), net.cidr.prefix_len()))
            .args(["dev", &bridge])
            .run()
            .await?;
        ip_in(ns, &["link", "set", &bridge, "up"]).run().await?;
        self.link_route("add", net.cidr).run().await?;
        Ok(())
    }

    /// Removes a network's bridge and route (its servers first).
    pub async fn remove_network(&self, net: &Network) -> Result<(), HostError> {
        ignore_missing(self.link_route("del", net.cidr)).await?;
        ignore_missing(ip_in(&self.netns, &["link", "del", &net.bridge()])).await
    }

    /// Routes a block of public addresses into the cloud namespace (from
    /// the machine's address on the link, so the firewalls see the machine
    /// as the source). Idempotent.
    pub async fn route_public(&self, block: Ipv4Net) -> Result<(), HostError> {
        self.link_route("replace", block)
            .args(["src", &self.host_address().to_string()])
            .run()
            .await?;
        Ok(())
    }

    /// Removes the route of a block of public addresses into the cloud.
    pub async fn unroute_public(&self, block: Ipv4Net) -> Result<(), HostError> {
        ignore_missing(self.link_route("del", block)).await
    }

    /// `ip route VERB BLOCK` through the link into the cloud namespace, at
    /// cairn's metric (so that `del` takes this route and no other).
    fn link_route(&self, verb: &str, block: Ipv4Net) -> Cmd {
        Cmd::new("ip")
            .args(["route", verb])
            .arg(block.to_string())
            .args(["via", &self.cloud_address().to_string()])
            .args(["dev", &self.host_if])
            .args(["metric", &VIA_METRIC.to_string()])
    }

    /// The names server `name` gets on this cloud.
    pub fn server_net(
        &self,
        net: &Network,
        name: &str,
        address: Ipv4Addr,
    ) -> Result<ServerNet, HostError> {
        check_name("server name", name)?;
        net.check_address(address)?;
        let address =
            Ipv4Net::new(address, net.cidr.prefix_len()).map_err(|e| HostError::InvalidName {
                what: "address",
                name: address.to_string(),
                reason: e.to_string(),
            })?;
        Ok(self.server_names(name, address))
    }

    /// The names server `name` was given with `address`, unchecked: for
    /// removing a server that was checked when it was made.
    pub fn server_names(&self, name: &str, address: Ipv4Net) -> ServerNet {
        ServerNet {
            netns: format!("{}-{name}", self.netns),
            veth: format!("v{}", short_hash(&format!("{}/{name}", self.id), 6)),
            address,
        }
    }

    /// Makes server `name`'s network namespace, plugged into `net`'s
    /// bridge with `address` and a default route via the gateway. On
    /// failure, removes what it made.
    pub async fn add_server(
        &self,
        net: &Network,
        name: &str,
        address: Ipv4Addr,
    ) -> Result<ServerNet, HostError> {
        let server = self.server_net(net, name, address)?;
        match self.make_server(net, &server).await {
            Ok(()) => Ok(server),
            Err(e) => {
                let _ = self.remove_server(&server).await;
                Err(e)
            }
        }
    }

    async fn make_server(&self, net: &Network, s: &ServerNet) -> Result<(), HostError> {
        let sns = s.netns.as_str();
        Cmd::new("ip").args(["netns", "add", sns]).run().await?;
        // One `ip` per namespace (its batch mode), not one per change:
        // with hundreds of servers made at once, each process counts.
        let batch = |ns: &str, lines: Vec<String>| {
            Cmd::new("ip")
                .args(["-n", ns, "-batch", "-"])
                .stdin(lines.join("\n") + "\n")
        };
        batch(
            &self.netns,
            vec![
                format!("link add {} type veth peer name eth0 netns {sns}", s.veth),
                format!("link set {} master {} up", s.veth, net.bridge()),
                // A public address that leads back to the server itself
                // goes back out of the port it came in by.
                format!("link set {} type bridge_slave hairpin on", s.veth),
            ],
        )
        .run()
        .await?;
        batch(
            sns,
            vec![
                "link set lo up".into(),
                format!("addr add {} dev eth0", s.address),
                "link set eth0 up".into(),
                format!("route add default via {}", net.gateway()),
            ],
        )
        .run()
        .await?;
        Ok(())
    }

    /// Removes a server's veth (explicitly, for a synchronous result) and
    /// its network namespace.
    pub async fn remove_server(&self, s: &ServerNet) -> Result<(), HostError> {
        ignore_missing(ip_in(&self.netns, &["link", "del", &s.veth])).await?;
        ignore_missing(Cmd::new("ip").args(["netns", "del", &s.netns])).await
    }
}

fn nth_host(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + n)
}

/// A 169.254.x.0/24 block for cloud `id`'s link that overlaps none of the
/// machine's routes: the one its id hashes to, else the next free one.
/// Never 169.254.169.0/24 (cloud metadata services live there).
pub async fn choose_link(id: &str) -> Result<Ipv4Net, HostError> {
    let routes = machine_routes().await?;
    let start = u32::from(Sha256::digest(id.as_bytes())[0]);
    (0..254u32)
        .map(|i| 1 + (start + i) % 254)
        .filter(|x| *x != 169)
        .map(|x| Ipv4Net::new(Ipv4Addr::new(169, 254, x as u8, 0), 24).unwrap_or_default())
        .find(|block| overlapping_route(&routes, *block, &[]).is_none())
        .ok_or_else(|| HostError::NoLinkNet {
            cloud: id.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = r#"[
        {"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},
        {"dst":"192.0.2.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"192.0.2.2","flags":[]},
        {"type":"unreachable","dst":"10.20.0.0/16","metric":4000,"flags":[]},
        {"type":"local","dst":"127.0.0.0/8","table":"local","dev":"lo","protocol":"kernel","scope":"host","prefsrc":"127.0.0.1","flags":[]},
        {"type":"local","dst":"192.0.2.2","table":"local","dev":"eth0","protocol":"kernel","scope":"host","prefsrc":"192.0.2.2","flags":[]}
    ]"#;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn a_gateway_mac_is_its_networks_own_local_and_unicast() {
        let a = Network::new("net-a", net("10.1.0.0/24")).unwrap();
        let b = Network::new("net-b", net("10.1.0.0/24")).unwrap();
        let mac = a.gateway_mac();
        assert_eq!(mac.len(), 17, "{mac}");
        let first = u8::from_str_radix(&mac[..2], 16).unwrap();
        assert_eq!(first & 0x03, 0x02, "locally administered, unicast: {mac}");
        // The same network made again (a restart) has the same one.
        assert_eq!(
            mac,
            Network::new("net-a", net("10.2.0.0/24"))
                .unwrap()
                .gateway_mac()
        );
        assert_ne!(mac, b.gateway_mac());
    }

    #[test]
    fn a_cidr_overlapping_a_route_either_way_is_found() {
        let routes = parse_routes(ROUTES).unwrap();
        let hit = |c: &str| overlapping_route(&routes, net(c), &[]).map(Route::describe);
        assert_eq!(hit("10.250.1.0/24"), None, "the default route is no clash");
        assert_eq!(
            hit("192.0.2.128/25").as_deref(),
            Some("192.0.2.0/24 dev eth0")
        );
        assert_eq!(hit("192.0.0.0/8").as_deref(), Some("192.0.2.0/24 dev eth0"));
        assert_eq!(
            hit("10.20.1.0/24").as_deref(),
            Some("unreachable 10.20.0.0/16 metric 4000")
        );
        assert_eq!(
            hit("127.77.0.0/16").as_deref(),
            Some("local 127.0.0.0/8 dev lo table local")
        );
        assert_eq!(
            overlapping_route(&routes, net("192.0.2.0/24"), &["eth0"]).map(Route::describe),
            None
        );
    }

    #[test]
    fn a_block_a_local_network_holds_is_told_apart_from_the_machines_routes() {
        let mut routes = parse_routes(ROUTES).unwrap();
        routes.extend(
            parse_routes(r#"[{"dst":"10.30.0.0/16","dev":"ch0a1b2c3d","flags":[]}]"#).unwrap(),
        );
        let error = |c: &str| {
            let route = overlapping_route(&routes, net(c), &[]).unwrap();
            overlap("network", net(c), route)
        };
        assert!(matches!(error("10.20.0.0/16"), HostError::CidrHeld { .. }));
        assert!(matches!(error("10.30.1.0/24"), HostError::CidrHeld { .. }));
        let held = error("10.20.0.0/16").to_string();
        assert!(
            held.starts_with(
                "network 10.20.0.0/16 overlaps `unreachable 10.20.0.0/16 metric 4000`, a block \
                 another network of a local cloud holds"
            ),
            "{held}"
        );
        assert!(held.contains("CAIRN_LOCAL_ISOLATION=process"), "{held}");
        assert!(matches!(
            error("192.0.2.0/24"),
            HostError::CidrOverlap { .. }
        ));
        assert!(!is_link_dev("chrome01") && !is_link_dev("eth0") && is_link_dev("chdeadbeef"));
    }

    #[test]
    fn a_network_has_its_gateway_first_and_refuses_other_addresses() {
        let n = Network::new("web", net("10.250.1.0/24")).unwrap();
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 250, 1, 1));
        assert!(n.check_address(Ipv4Addr::new(10, 250, 1, 10)).is_ok());
        let err = n.check_address(Ipv4Addr::new(10, 250, 2, 10)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "address 10.250.2.10 is not a usable host address of 10.250.1.0/24 (the gateway is 10.250.1.1)"
        );
        assert!(n.check_address(n.gateway()).is_err());
        assert!(n.check_address(Ipv4Addr::new(10, 250, 1, 255)).is_err());
        assert!(Network::new("tiny", net("10.0.0.0/31")).is_err());
        assert!(Network::new("a/b", net("10.0.0.0/24")).is_err());
    }

    #[test]
    fn public_blocks_are_every_24_of_the_test_range_from_the_clouds_own() {
        let a: Vec<Ipv4Net> = public_blocks("pool-a/cloud-1").collect();
        assert_eq!(a.len(), 512);
        assert!(
            a.iter()
                .all(|b| PUBLIC_RANGE.contains(b) && b.prefix_len() == 24)
        );
        let distinct: std::collections::BTreeSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), 512);
        let b: Vec<Ipv4Net> = public_blocks("pool-b/cloud-1").collect();
        assert_ne!(a[0], b[0], "two clouds start apart");
        assert_eq!(
            public_blocks("pool-a/cloud-1").next(),
            Some(a[0]),
            "the same cloud gets the same block"
        );
        let full = HostError::NoPublicBlock { cloud: "c".into() };
        assert_eq!(
            full.to_string(),
            "no free /24 in 198.18.0.0/15 for the public addresses of cloud `c`: every one \
             overlaps a route of the machine (see `ip route`)"
        );
    }

    #[test]
    fn names_fit_the_kernels_limits_and_differ_per_cloud() {
        let a = CloudNet::new("pool-a/cloud-1", net("169.254.10.0/24"));
        let b = CloudNet::new("pool-b/cloud-1", net("169.254.11.0/24"));
        assert_ne!(a.netns, b.netns);
        assert_ne!(a.host_if, b.host_if);
        let n = Network::new("a-network-with-a-long-name", net("10.0.0.0/24")).unwrap();
        let s = a
            .server_net(
                &n,
                "a-server-with-a-very-long-name",
                Ipv4Addr::new(10, 0, 0, 9),
            )
            .unwrap();
        for ifname in [&a.host_if, &a.cloud_if, &n.bridge(), &s.veth] {
            assert!(ifname.len() <= 15, "{ifname}");
        }
        assert_eq!(s.address.to_string(), "10.0.0.9/24");
        assert_eq!(a.host_address(), Ipv4Addr::new(169, 254, 10, 1));
        assert_eq!(a.cloud_address(), Ipv4Addr::new(169, 254, 10, 2));
    }
}
