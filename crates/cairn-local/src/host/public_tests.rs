//! Real tests of public addresses in the kernel: a block of RFC 2544's
//! range routed into a cloud namespace and translated there to servers'
//! addresses, reached from the machine and from servers (on the same
//! bridge, and a server reaching itself), TCP and UDP, through the
//! firewall's rules by the real source. Skipped, saying why, when not root
//! or a tool is missing; everything made is undone by a guard. Traffic goes
//! only to addresses inside namespaces the test made.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use super::command::Cmd;
use super::firewall::{self, Ingress, Protocol, Ruleset, Source};
use super::network::{self, PUBLIC_RANGE};
use super::tests::{
    Guard, MACHINE, cloud_with_network, guarded_and_open, host, skip_unless_ready, stdout, unready,
};

/// Answers each TCP connection and UDP datagram on port 8080 with the
/// address it came from.
const ECHO_SOURCE: &str = r#"
import socket, threading
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 8080))
    while True:
        _, peer = u.recvfrom(64)
        u.sendto(peer[0].encode(), peer)
threading.Thread(target=udp, daemon=True).start()
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 8080))
t.listen()
while True:
    c, peer = t.accept()
    c.sendall(peer[0].encode())
    c.close()
"#;

/// Asks `ip`:8080 over `proto` who it sees; prints that, or fails.
const ASK: &str = r#"
import socket, sys
ip, proto = sys.argv[1], sys.argv[2]
if proto == "tcp":
    s = socket.create_connection((ip, 8080), timeout=2)
    print(s.recv(64).decode())
else:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(2)
    u.connect((ip, 8080))
    u.send(b"?")
    print(u.recv(64).decode())
"#;

/// The source `ip`:8080 saw, asked from namespace `netns` (the machine's
/// with `None`) over `proto`; `None` when refused or unanswered.
async fn seen_from(netns: Option<&str>, ip: Ipv4Addr, proto: &str) -> Option<String> {
    let cmd = match netns {
        Some(ns) => Cmd::in_netns(ns, "python3"),
        None => Cmd::new("python3"),
    };
    let out = cmd
        .args(["-c", ASK, &ip.to_string(), proto])
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test]
async fn public_addresses_reach_servers_from_the_machine_and_servers_through_the_rules() {
    skip_unless_ready!("python3");
    let _machine = MACHINE.lock().await;
    let mut g = Guard::default();
    let (cloud, net) = cloud_with_network(&mut g, "public", 4).await;
    // Refusals are never rate-limited in the cloud namespace (the
    // machine's own setting is left alone).
    let limit =
        stdout(Cmd::in_netns(&cloud.netns, "sysctl").args(["-n", "net.ipv4.icmp_ratelimit"])).await;
    assert_eq!(limit.trim(), "0");
    let id = format!("test-{}-public", std::process::id());
    let block = network::claim_public_block(&id).await.unwrap();
    let b = block.to_string();
    g.undo(&["ip", "route", "del", "unreachable", &b, "metric", "4000"]);
    assert!(PUBLIC_RANGE.contains(&block), "{block}");
    // Claimed: a second cloud choosing now takes another block.
    let other = network::claim_public_block(&id).await.unwrap();
    let o = other.to_string();
    g.undo(&["ip", "route", "del", "unreachable", &o, "metric", "4000"]);
    assert_ne!(other, block);
    network::release_cidr(other).await.unwrap();
    cloud.route_public(block).await.unwrap();
    cloud.route_public(block).await.unwrap();

    let names = ["a", "b", "c"];
    let mut servers = Vec::new();
    let mut echoes = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let addr = host(&net, 10 + n as u8);
        let s = cloud.server_net(&net, name, addr).unwrap();
        g.undo(&["ip", "netns", "del", &s.netns]);
        let s = cloud.add_server(&net, name, addr).await.unwrap();
        echoes.push(
            tokio::process::Command::new("ip")
                .args(["netns", "exec", &s.netns, "python3", "-c", ECHO_SOURCE])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap(),
        );
        servers.push(s);
    }
    let (a, b_srv, c) = (&servers[0], &servers[1], &servers[2]);
    let [a_addr, b_addr, c_addr] = [a, b_srv, c].map(|s| s.address.addr());
    let nth = |n: u32| Ipv4Addr::from(u32::from(block.network()) + n);
    let (pa, pb, nobody) = (nth(1), nth(2), nth(3));

    // a lets in 8080 (TCP and UDP) only from members of `peers`; b is open.
    let rules = |peers: Vec<Ipv4Addr>, machine: bool| {
        let mut ingress = Vec::new();
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            ingress.push(Ingress {
                protocol,
                ports: Some((8080, 8080)),
                from: Source::Members("peers".into()),
            });
            if machine {
                ingress.push(Ingress {
                    protocol,
                    ports: Some((8080, 8080)),
                    from: Source::Cidr(Ipv4Net::from(cloud.host_address())),
                });
            }
        }
        Ruleset {
            publics: BTreeMap::from([(pa, a_addr), (pb, b_addr)]),
            ..guarded_and_open(peers, (a_addr, ingress), b_addr, net.cidr)
        }
    };
    firewall::apply(&cloud.netns, &rules(vec![c_addr], false))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen_from(None, pb, "tcp").await.is_none() {
        assert!(Instant::now() < deadline, "b's echo never answered at {pb}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let machine = cloud.host_address().to_string();
    for proto in ["tcp", "udp"] {
        // The machine: refused by a's rules, let in by b's (open).
        assert_eq!(
            seen_from(None, pa, proto).await,
            None,
            "machine -> a {proto}"
        );
        assert_eq!(seen_from(None, pb, proto).await, Some(machine.clone()));
        // A member of `peers` gets to a's public address, seen as itself;
        // b, not a member, does not.
        assert_eq!(
            seen_from(Some(&c.netns), pa, proto).await,
            Some(c_addr.to_string()),
            "c -> a's public address {proto}"
        );
        assert_eq!(seen_from(Some(&b_srv.netns), pa, proto).await, None);
        // Across the bridge to a neighbour, the answer comes back through
        // the translation; to itself (hairpin), masqueraded on the gateway.
        assert_eq!(
            seen_from(Some(&a.netns), pb, proto).await,
            Some(a_addr.to_string()),
            "a -> b's public address {proto}"
        );
        assert_eq!(
            seen_from(Some(&b_srv.netns), pb, proto).await,
            Some(net.gateway().to_string()),
            "b -> its own public address {proto}"
        );
        // A public address that leads nowhere is refused, not sent on.
        assert_eq!(seen_from(None, nobody, proto).await, None);
        assert_eq!(seen_from(Some(&c.netns), nobody, proto).await, None);
    }
    // The own address is held to the same rules.
    assert_eq!(seen_from(None, a_addr, "tcp").await, None);

    // A rule change applies at the next connect.
    firewall::apply(&cloud.netns, &rules(vec![], true))
        .await
        .unwrap();
    assert_eq!(seen_from(None, pa, "tcp").await, Some(machine.clone()));
    assert_eq!(seen_from(Some(&c.netns), pa, "tcp").await, None);

    // Down: the route into the cloud goes with the link, the block stays
    // on the machine until released.
    drop(echoes);
    for s in &servers {
        cloud.remove_server(s).await.unwrap();
    }
    cloud.down().await.unwrap();
    let out = Cmd::new("ip")
        .args(["route", "get", &pa.to_string()])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "{pa} must be unreachable");
    network::release_cidr(block).await.unwrap();
    let routes = stdout(Cmd::new("ip").args(["route", "show", "table", "all"])).await;
    assert!(!routes.contains(&b), "{routes}");
    network::release_cidr(net.cidr).await.unwrap();
}
