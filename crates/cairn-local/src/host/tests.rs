//! Real tests of the host building blocks on this machine: namespaces,
//! bridges, routes, nftables, runc, sshd. Each is skipped, saying why, when
//! not root or a tool is missing. Every name is unique to the test process
//! (its pid) and everything made is removed even when a test fails (a
//! guard undoes it in reverse order on drop). Traffic goes only to
//! addresses inside namespaces the test made.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use tokio::sync::Mutex;

use super::command::{Cmd, find_program};
use super::firewall::{self, Ingress, Policy, Protocol, Ruleset, ServerRules, Source};
use super::network::{self, CloudNet, Network};
use super::runtime::{Server, ServerSpec};
use super::{HostError, image, preflight, ssh};

/// One real test at a time: they share the machine's routes and 2 cores.
pub(super) static MACHINE: Mutex<()> = Mutex::const_new(());

/// Why this machine cannot run the real tests, if it cannot.
pub(super) fn unready(extra_tools: &[&str]) -> Option<String> {
    if let Err(e) = preflight() {
        return Some(e.to_string());
    }
    let missing: Vec<&str> = extra_tools
        .iter()
        .copied()
        .filter(|t| find_program(t).is_none())
        .collect();
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

macro_rules! skip_unless_ready {
    ($($tool:expr),*) => {
        if let Some(why) = unready(&[$($tool),*]) {
            eprintln!("skipped: {why} (run ./scripts/install-deps as root)");
            return;
        }
    };
}
pub(super) use skip_unless_ready;

/// Commands that undo what a test made, run in reverse order on drop,
/// whatever happened; each may find its object already gone.
#[derive(Default)]
pub(super) struct Guard {
    undo: Vec<Vec<String>>,
    dirs: Vec<PathBuf>,
}

impl Guard {
    pub(super) fn undo(&mut self, cmd: &[&str]) {
        self.undo.push(cmd.iter().map(|s| s.to_string()).collect());
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for cmd in self.undo.iter().rev() {
            let _ = std::process::Command::new(&cmd[0])
                .args(&cmd[1..])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        for dir in &self.dirs {
            if !super::runtime::is_mount_point(&dir.join("rootfs")).unwrap_or(true) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// A /24 in 10.250.0.0/16 that no route of the machine overlaps, picked
/// from the pid so two test processes rarely try the same.
async fn free_cidr(k: u32) -> Ipv4Net {
    let routes = network::machine_routes().await.unwrap();
    (0..250u32)
        .map(|i| (std::process::id() * 7 + k * 31 + i) % 250 + 1)
        .map(|x| Ipv4Net::new(Ipv4Addr::new(10, 250, x as u8, 0), 24).unwrap())
        .find(|n| network::overlapping_route(&routes, *n, &[]).is_none())
        .expect("a free 10.250.x.0/24")
}

fn cloud_id(test: &str) -> String {
    format!("test-{}-{test}", std::process::id())
}

/// A cloud namespace with one network, each undone by the guard.
pub(super) async fn cloud_with_network(g: &mut Guard, test: &str, k: u32) -> (CloudNet, Network) {
    let id = cloud_id(test);
    let cloud = CloudNet::new(&id, network::choose_link(&id).await.unwrap());
    let net = Network::new("net", free_cidr(k).await).unwrap();
    let cidr = net.cidr.to_string();
    g.undo(&["ip", "route", "del", "unreachable", &cidr, "metric", "4000"]);
    network::reserve_cidr(net.cidr).await.unwrap();
    g.undo(&["ip", "netns", "del", &cloud.netns]);
    g.undo(&["ip", "link", "del", &cloud.host_if]);
    cloud.up().await.unwrap();
    cloud.add_network(&net).await.unwrap();
    (cloud, net)
}

pub(super) fn host(net: &Network, n: u8) -> Ipv4Addr {
    let o = net.cidr.network().octets();
    Ipv4Addr::new(o[0], o[1], o[2], n)
}

/// Whether a TCP connection from the machine to `addr` is accepted.
pub(super) async fn connects(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Whether a TCP connection from namespace `netns` to `addr` is accepted.
async fn connects_from(netns: &str, addr: SocketAddr) -> bool {
    let script =
        "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)";
    Cmd::in_netns(netns, "python3")
        .args([
            "-c",
            script,
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ])
        .output()
        .await
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub(super) async fn stdout(cmd: Cmd) -> String {
    cmd.run().await.unwrap()
}

#[tokio::test]
async fn a_cloud_network_routes_its_cidr_and_leaves_nothing_behind() {
    skip_unless_ready!();
    let _machine = MACHINE.lock().await;
    let mut g = Guard::default();
    let t = Instant::now();
    let (cloud, net) = cloud_with_network(&mut g, "net", 3).await;
    eprintln!(
        "cloud netns + link + bridge: {} ms",
        t.elapsed().as_millis()
    );

    // A CIDR already routed is refused, with the route it clashes with.
    let err = network::reserve_cidr(net.cidr).await.unwrap_err();
    assert!(matches!(err, HostError::CidrHeld { .. }), "{err}");
    assert!(err.to_string().contains(&net.cidr.to_string()), "{err}");
    let routes = network::machine_routes().await.unwrap();
    if let Some(own) = routes.iter().find(|r| {
        // The machine's own, not a cloud's link (this test's included).
        r.kind.is_none()
            && r.block().is_some()
            && r.dev.as_deref().is_some_and(|d| !d.starts_with("ch"))
    }) {
        let err = network::reserve_cidr(own.block().unwrap())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("overlaps the machine's route"),
            "{err}"
        );
    }

    // A server netns on the bridge, reached from the machine through the link.
    let addr = host(&net, 10);
    let err = cloud
        .add_server(&net, "a", host(&net, 1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the gateway is"), "{err}");
    let s = cloud.server_net(&net, "a", addr).unwrap();
    g.undo(&["ip", "netns", "del", &s.netns]);
    let t = Instant::now();
    cloud.add_server(&net, "a", addr).await.unwrap();
    eprintln!("server netns + veth: {} ms", t.elapsed().as_millis());
    let route = stdout(Cmd::new("ip").args(["route", "get", &addr.to_string()])).await;
    assert!(
        route.contains(&format!(
            "via {} dev {}",
            cloud.cloud_address(),
            cloud.host_if
        )),
        "{route}"
    );
    let inside = stdout(Cmd::new("ip").args(["-n", &s.netns, "-4", "addr", "show", "eth0"])).await;
    assert!(inside.contains(&s.address.to_string()), "{inside}");
    let ping = Cmd::new("ping")
        .args(["-c1", "-W2", &addr.to_string()])
        .output()
        .await;
    if let Ok(out) = ping {
        assert!(
            out.status.success(),
            "ping {addr}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // The daemon goes down: the link goes, the CIDR stays on the machine.
    cloud.remove_server(&s).await.unwrap();
    cloud.down().await.unwrap();
    let out = Cmd::new("ip")
        .args(["route", "get", &addr.to_string()])
        .output()
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "{addr} must be unreachable with the cloud down"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("No route to host"));

    // The network is destroyed: nothing of it remains.
    network::release_cidr(net.cidr).await.unwrap();
    network::release_cidr(net.cidr).await.unwrap();
    let netns = stdout(Cmd::new("ip").args(["netns", "list"])).await;
    assert!(!netns.contains(&cloud.netns), "{netns}");
    let links = stdout(Cmd::new("ip").args(["link"])).await;
    assert!(!links.contains(&cloud.host_if), "{links}");
    let routes = stdout(Cmd::new("ip").args(["route", "show", "table", "all"])).await;
    assert!(!routes.contains(&net.cidr.to_string()), "{routes}");
}

/// Link `dev`'s MAC address in `netns`, as `ip` shows it.
async fn mac_of(netns: &str, dev: &str) -> String {
    let shown = stdout(Cmd::new("ip").args(["-n", netns, "-br", "link", "show", dev])).await;
    shown
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn servers_keep_reaching_through_their_gateway_when_others_join() {
    skip_unless_ready!("python3");
    let _machine = MACHINE.lock().await;
    let mut g = Guard::default();
    let (cloud, net) = cloud_with_network(&mut g, "mac", 5).await;
    let mut servers = Vec::new();
    for (n, name) in [(10, "a"), (11, "b"), (12, "c")] {
        let s = cloud.server_net(&net, name, host(&net, n)).unwrap();
        g.undo(&["ip", "netns", "del", &s.netns]);
        servers.push(cloud.add_server(&net, name, host(&net, n)).await.unwrap());
    }
    let bridge = net.bridge();
    let gateway = mac_of(&cloud.netns, &bridge).await;
    assert_eq!(gateway, net.gateway_mac());
    // Something behind the gateway: a listener in the cloud namespace on
    // an address of its own (as a database's).
    let behind = SocketAddr::from((Ipv4Addr::new(169, 254, 250, 9), 5432));
    Cmd::new("ip")
        .args([
            "-n",
            &cloud.netns,
            "addr",
            "add",
            "169.254.250.9/32",
            "dev",
            "lo",
        ])
        .run()
        .await
        .unwrap();
    let _listener = super::dial::listen_in(&PathBuf::from("/run/netns").join(&cloud.netns), behind)
        .await
        .unwrap();
    // a learns the gateway's MAC while b's port has the lowest MAC of the
    // bridge's ports; then c's gets a lower one. A bridge left to the
    // kernel would take c's and drop what a sends to b's.
    let set_mac = |veth: &str, mac: &str| {
        Cmd::new("ip").args(["-n", &cloud.netns, "link", "set", veth, "address", mac])
    };
    set_mac(&servers[1].veth, "00:00:00:00:00:02")
        .run()
        .await
        .unwrap();
    assert!(connects_from(&servers[0].netns, behind).await);
    set_mac(&servers[2].veth, "00:00:00:00:00:01")
        .run()
        .await
        .unwrap();
    assert_eq!(mac_of(&cloud.netns, &bridge).await, gateway);
    assert!(
        connects_from(&servers[0].netns, behind).await,
        "a server lost its way out when another joined the network"
    );
}

#[tokio::test]
async fn the_firewall_lets_in_only_what_its_rules_allow_and_changes_at_once() {
    skip_unless_ready!("python3");
    let _machine = MACHINE.lock().await;
    let mut g = Guard::default();
    let (cloud, net) = cloud_with_network(&mut g, "fw", 2).await;
    let (a_addr, b_addr) = (host(&net, 10), host(&net, 11));
    let mut servers = Vec::new();
    for (name, addr) in [("a", a_addr), ("b", b_addr)] {
        let s = cloud.server_net(&net, name, addr).unwrap();
        g.undo(&["ip", "netns", "del", &s.netns]);
        servers.push(cloud.add_server(&net, name, addr).await.unwrap());
    }
    let (a, b) = (&servers[0], &servers[1]);
    let target = SocketAddr::from((a_addr, 8080));
    let _listener = tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &a.netns,
            "python3",
            "-m",
            "http.server",
            "8080",
        ])
        .args(["--bind", &a_addr.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !connects(target).await {
        assert!(
            Instant::now() < deadline,
            "the listener in {} never came up",
            a.netns
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let rules = |peers: Vec<Ipv4Addr>, from_host: bool| {
        let mut ingress = vec![Ingress {
            protocol: Protocol::Tcp,
            ports: Some((8080, 8080)),
            from: Source::Members("peers".into()),
        }];
        if from_host {
            ingress.push(Ingress {
                protocol: Protocol::Tcp,
                ports: Some((8000, 8100)),
                from: Source::Cidr(Ipv4Net::from(cloud.host_address())),
            });
        }
        guarded_and_open(peers, (a_addr, ingress), b_addr, net.cidr)
    };
    let t = Instant::now();
    firewall::apply(&cloud.netns, &rules(vec![b_addr], false))
        .await
        .unwrap();
    eprintln!("nft -f (whole table): {} ms", t.elapsed().as_millis());
    assert!(
        connects_from(&b.netns, target).await,
        "b is a member of peers: allowed"
    );
    assert!(!connects(target).await, "the machine is not allowed");

    firewall::apply(&cloud.netns, &rules(vec![b_addr], true))
        .await
        .unwrap();
    assert!(
        connects(target).await,
        "the machine is allowed at the next connect"
    );

    firewall::apply(&cloud.netns, &rules(vec![], true))
        .await
        .unwrap();
    assert!(
        !connects_from(&b.netns, target).await,
        "b left peers: refused at once"
    );
    assert!(connects(target).await);

    // An address in the network with no server behind it is refused too.
    assert!(!connects(SocketAddr::from((host(&net, 99), 8080))).await);

    firewall::remove(&cloud.netns).await.unwrap();
    let tables = stdout(Cmd::in_netns(&cloud.netns, "nft").args(["list", "tables"])).await;
    assert!(!tables.contains(firewall::TABLE), "{tables}");
    drop(_listener);
    for s in &servers {
        cloud.remove_server(s).await.unwrap();
    }
    cloud.down().await.unwrap();
    network::release_cidr(net.cidr).await.unwrap();
}

/// PID 1 of the runtime's own tests, which have no cairn binary to run
/// `cairn init` from (it is tested through the binary, see
/// crates/cairn/tests/it/local/hosts.rs): runs user_data, starts sshd,
/// reaps, passes TERM on.
const TEST_INIT: &str = r#"
trap 'kill -TERM -1 2>/dev/null; wait; exit 0' TERM INT
if [ -f /etc/cairn/ssh ] && [ -f /etc/ssh/ssh_host_ed25519_key ] && [ -x /usr/sbin/sshd ]; then
  mkdir -p /run/sshd
  /usr/sbin/sshd -D -e &
fi
if [ -f /etc/cairn/user_data ]; then
  ( sh /etc/cairn/user_data >/var/log/cairn-user-data.log 2>&1 ) &
fi
sleep infinity &
wait
"#;

/// What a test server needs beyond its network.
fn server(dir: &Path, cloud: &CloudNet, name: &str, netns: PathBuf) -> Server {
    Server::new(ServerSpec {
        id: format!("{}-{name}", cloud.netns),
        hostname: name.to_string(),
        dir: dir.join(name),
        image: PathBuf::from("/"),
        seed: None,
        resolv_conf: None,
        netns,
        cairn_binary: std::env::current_exe().unwrap(),
        init: ["/bin/sh", "-c", TEST_INIT]
            .iter()
            .map(|a| a.to_string())
            .collect(),
        cgroup_parent: cloud.netns.clone(),
        env: Vec::new(),
    })
    .unwrap()
}

async fn exec(s: &Server, args: &[&str]) -> super::runtime::ExecOutput {
    s.exec(args).await.unwrap()
}

/// Two servers on `image: host`: hostnames, their own /etc and process
/// table, the firewall between them and the machine, sshd with a host key
/// made in Rust and a real OpenSSH client checking it strictly, a restart
/// that keeps the layer, and a teardown that leaves nothing.
#[tokio::test]
async fn two_servers_are_small_hosts_end_to_end() {
    skip_unless_ready!("python3");
    let _machine = MACHINE.lock().await;
    let mut g = Guard::default();
    let images = image::ImageCache::new("/nonexistent");
    let host_image = images.resolve("host", &mut |_: &str| {}).await.unwrap();
    assert_eq!(host_image.root, PathBuf::from("/"));
    let (cloud, net) = cloud_with_network(&mut g, "e2e", 1).await;
    let dir = std::env::temp_dir().join(format!("cairn-hosts-{}", std::process::id()));
    g.dirs.push(dir.clone());
    // The containers' shared parent cgroup, removed after them (undo runs
    // in reverse).
    for d in super::runtime::cgroup_dirs(&cloud.netns, "x").unwrap() {
        if d.ends_with(&cloud.netns) {
            g.undo(&["rmdir", &d.display().to_string()]);
        }
    }
    let mut servers = Vec::new();
    let mut nets = Vec::new();
    for (name, n) in [("web0", 10), ("web1", 11)] {
        let s = cloud.server_net(&net, name, host(&net, n)).unwrap();
        g.undo(&["ip", "netns", "del", &s.netns]);
        let snet = cloud.add_server(&net, name, host(&net, n)).await.unwrap();
        let srv = server(&dir, &cloud, name, snet.netns_path());
        let rootfs = srv.rootfs().display().to_string();
        g.undo(&["umount", &rootfs]);
        g.undo(&["runc", "delete", "-f", &srv.spec().id]);
        nets.push(snet);
        servers.push(srv);
    }
    let (web0, web1) = (&servers[0], &servers[1]);
    let web0_addr = host(&net, 10);

    // web0: a host key, root's authorized key, a service from user_data.
    let sshd = Path::new("/usr/sbin/sshd").is_file() && find_program("ssh").is_some();
    web0.mount_root().await.unwrap();
    let host_key =
        ssh::install_host_key(&web0.rootfs(), &ssh::generate_key("web0").unwrap()).unwrap();
    let client = ssh::generate_key("test").unwrap();
    ssh::install_authorized_key(&web0.rootfs(), &client.public_key().to_openssh().unwrap())
        .unwrap();
    web0.write_file(
        super::runtime::USER_DATA_PATH,
        format!("exec python3 -m http.server 8080 --bind {web0_addr}\n").as_bytes(),
        0o755,
    )
    .unwrap();

    for s in &servers {
        let t = Instant::now();
        s.start().await.unwrap();
        eprintln!(
            "start {} (mount + bundle + runc run -d): {} ms",
            s.spec().hostname,
            t.elapsed().as_millis()
        );
    }
    let state = web0.state().await.unwrap().unwrap();
    assert_eq!(state.status, "running");
    assert!(state.pid > 0);

    // Hostname, exit codes, timings.
    let t = Instant::now();
    let out = exec(web0, &["hostname"]).await;
    eprintln!("exec hostname: {} ms", t.elapsed().as_millis());
    assert_eq!((out.code, out.stdout.trim()), (0, "web0"), "{}", out.stderr);
    assert_eq!(exec(web1, &["hostname"]).await.stdout.trim(), "web1");
    let t = Instant::now();
    for _ in 0..10 {
        exec(web1, &["true"]).await;
    }
    eprintln!("exec true: {} ms avg", t.elapsed().as_millis() / 10);
    assert_eq!(exec(web0, &["sh", "-c", "exit 42"]).await.code, 42);

    // Its own /etc.
    let marker = format!("/etc/cairn-e2e-{}", std::process::id());
    let out = exec(web0, &["sh", "-c", &format!("echo hi > {marker}")]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(exec(web0, &["cat", &marker]).await.stdout, "hi\n");
    assert!(!Path::new(&marker).exists(), "not on the machine");
    assert_eq!(
        exec(web1, &["test", "-e", &marker]).await.code,
        1,
        "not in web1"
    );
    assert!(
        web0.upper().join(marker.trim_start_matches('/')).is_file(),
        "in web0's layer"
    );

    // Its own processes: the init is PID 1, few processes.
    let ps = exec(web1, &["ps", "-e", "-o", "pid=,args="]).await;
    let lines: Vec<&str> = ps.stdout.lines().collect();
    assert!(lines.len() < 8, "ps sees only its own: {lines:?}");
    assert!(lines[0].trim().starts_with("1 /bin/sh -c"), "{lines:?}");

    // The cairn binary is there, read-only.
    assert_eq!(
        exec(web0, &["test", "-x", super::runtime::CAIRN_PATH])
            .await
            .code,
        0
    );
    let out = exec(
        web0,
        &[
            "sh",
            "-c",
            &format!("echo x > {}", super::runtime::CAIRN_PATH),
        ],
    )
    .await;
    assert_ne!(out.code, 0, "the cairn binary is read-only");

    // Firewall: web1 may reach web0:8080, the machine may not; the
    // machine may reach sshd.
    let rules = Ruleset {
        members: BTreeMap::new(),
        servers: vec![
            ServerRules {
                name: "web0".into(),
                addresses: vec![web0_addr],
                policy: Policy::Only(vec![
                    Ingress {
                        protocol: Protocol::Tcp,
                        ports: Some((8080, 8080)),
                        from: Source::Cidr(Ipv4Net::from(host(&net, 11))),
                    },
                    Ingress {
                        protocol: Protocol::Tcp,
                        ports: Some((22, 22)),
                        from: Source::Cidr(Ipv4Net::from(cloud.host_address())),
                    },
                ]),
            },
            ServerRules {
                name: "web1".into(),
                addresses: vec![host(&net, 11)],
                policy: Policy::Only(vec![]),
            },
        ],
        networks: vec![net.cidr],
        ..Ruleset::default()
    };
    firewall::apply(&cloud.netns, &rules).await.unwrap();
    let target = SocketAddr::from((web0_addr, 8080));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !connects_from(&nets[1].netns, target).await {
        let log = std::fs::read_to_string(web0.upper().join("var/log/cairn-user-data.log"))
            .unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "web0's user_data service never answered web1: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !connects(target).await,
        "the machine is refused by web0's firewall"
    );
    assert!(
        !connects(SocketAddr::from((host(&net, 11), 22))).await,
        "web1 lets nothing in"
    );

    // SSH: the machine's OpenSSH client, strict host key checking
    // against the recorded host_key.
    if sshd {
        let work = dir.join("ssh");
        std::fs::create_dir_all(&work).unwrap();
        let key_path = work.join("id_ed25519");
        let private = client.to_openssh(ssh_key::LineEnding::LF).unwrap();
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key_path)
                .unwrap();
            std::io::Write::write_all(&mut f, private.as_bytes()).unwrap();
        }
        let known_hosts = work.join("known_hosts");
        std::fs::write(&known_hosts, format!("{web0_addr} {host_key}\n")).unwrap();
        let ssh_cmd = |kh: &Path| {
            Cmd::new("ssh")
                .args(["-F", "/dev/null", "-i"])
                .arg(&key_path)
                .args([
                    "-o",
                    "IdentitiesOnly=yes",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "StrictHostKeyChecking=yes",
                    "-o",
                    "ConnectTimeout=3",
                ])
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", kh.display()))
                .arg(format!("root@{web0_addr}"))
                .arg("hostname")
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let out = loop {
            let t = Instant::now();
            let out = ssh_cmd(&known_hosts).output().await.unwrap();
            if out.status.success() || Instant::now() > deadline {
                eprintln!("ssh root@web0 hostname: {} ms", t.elapsed().as_millis());
                break out;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let console = std::fs::read_to_string(web0.console_log()).unwrap_or_default();
        assert!(
            out.status.success(),
            "ssh: {}\nconsole: {console}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "web0");
        let wrong = work.join("known_hosts.wrong");
        let other = ssh::host_key_attribute(client.public_key()).unwrap();
        std::fs::write(&wrong, format!("{web0_addr} {other}\n")).unwrap();
        assert!(
            !ssh_cmd(&wrong).output().await.unwrap().status.success(),
            "a wrong host key is refused"
        );
    } else {
        eprintln!(
            "ssh part skipped: no /usr/sbin/sshd or ssh on this machine (./scripts/install-deps)"
        );
    }

    // Stop and start: the layer (files, host key) stays.
    let t = Instant::now();
    web0.stop(Duration::from_secs(5)).await.unwrap();
    eprintln!(
        "stop web0 (TERM, wait, delete, umount): {} ms",
        t.elapsed().as_millis()
    );
    assert!(!web0.is_mounted().unwrap());
    assert_eq!(web0.state().await.unwrap(), None);
    let t = Instant::now();
    web0.start().await.unwrap();
    eprintln!("restart web0: {} ms", t.elapsed().as_millis());
    assert_eq!(exec(web0, &["cat", &marker]).await.stdout, "hi\n");
    assert_eq!(ssh::read_host_key(&web0.rootfs()).unwrap(), Some(host_key));

    // Teardown, then nothing remains.
    for s in &servers {
        s.destroy().await.unwrap();
    }
    for s in &nets {
        cloud.remove_server(s).await.unwrap();
    }
    cloud.remove_network(&net).await.unwrap();
    cloud.down().await.unwrap();
    network::release_cidr(net.cidr).await.unwrap();
    let netns = stdout(Cmd::new("ip").args(["netns", "list"])).await;
    assert!(!netns.contains(&cloud.netns), "{netns}");
    let links = stdout(Cmd::new("ip").args(["-o", "link"])).await;
    assert!(!links.contains(&cloud.host_if), "{links}");
    let routes = stdout(Cmd::new("ip").args(["route", "show", "table", "all"])).await;
    assert!(!routes.contains(&net.cidr.to_string()), "{routes}");
    // The firewall's table lived in the cloud namespace, which is gone.
    let nft = Cmd::in_netns(&cloud.netns, "nft")
        .args(["list", "tables"])
        .output()
        .await
        .unwrap();
    assert!(
        !nft.status.success(),
        "the cloud namespace still has tables"
    );
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&cloud.netns), "{mounts}");
    let containers = stdout(Cmd::new("runc").args(["list", "-q"])).await;
    assert!(!containers.contains(&cloud.netns), "{containers}");
    for d in super::runtime::cgroup_dirs(&cloud.netns, &web0.spec().id).unwrap() {
        assert!(!d.exists(), "cgroup {} remains", d.display());
    }
    assert!(!dir.join("web0").exists());
}

/// debian-12 from the default cache, built there first if missing (once
/// per machine, about 45 s cold from the distribution's mirror: a slow
/// fixture kept outside the checkout, keyed by the recipe); `None` when
/// this machine has no mmdebstrap.
async fn built_debian_12() -> Option<image::Image> {
    find_program("mmdebstrap")?;
    let root = image::ImageCache::default_root().expect("HOME or XDG_CACHE_HOME");
    let built = image::ImageCache::new(root)
        .resolve("debian-12", &mut |line: &str| {
            eprintln!("debian-12: {line}")
        })
        .await;
    Some(built.unwrap_or_else(|e| panic!("debian-12 could not be built: {e}")))
}

/// A server on the real debian-12 image: its own distribution, python3
/// with json, sshd, and no host key from the image.
#[tokio::test]
async fn a_server_runs_on_debian_12_when_the_image_is_built() {
    skip_unless_ready!();
    let _machine = MACHINE.lock().await;
    let mut g = Guard::default();
    let dir = std::env::temp_dir().join(format!("cairn-deb-{}", std::process::id()));
    g.dirs.push(dir.clone());
    let Some(debian) = built_debian_12().await else {
        eprintln!("skipped: no mmdebstrap to build debian-12 (./scripts/install-deps installs it)");
        return;
    };
    let (cloud, net) = cloud_with_network(&mut g, "deb", 4).await;
    let s = cloud.server_net(&net, "deb0", host(&net, 10)).unwrap();
    g.undo(&["ip", "netns", "del", &s.netns]);
    let snet = cloud
        .add_server(&net, "deb0", host(&net, 10))
        .await
        .unwrap();
    let mut spec = server(&dir, &cloud, "deb0", snet.netns_path())
        .spec()
        .clone();
    spec.image = debian.root.clone();
    let srv = Server::new(spec).unwrap();
    for d in super::runtime::cgroup_dirs(&cloud.netns, "x").unwrap() {
        if d.ends_with(&cloud.netns) {
            g.undo(&["rmdir", &d.display().to_string()]);
        }
    }
    g.undo(&["umount", &srv.rootfs().display().to_string()]);
    g.undo(&["runc", "delete", "-f", &srv.spec().id]);
    let t = Instant::now();
    srv.start().await.unwrap();
    eprintln!("start on debian-12: {} ms", t.elapsed().as_millis());
    assert_eq!(exec(&srv, &["hostname"]).await.stdout.trim(), "deb0");
    let version = exec(&srv, &["cat", "/etc/debian_version"]).await;
    assert!(version.stdout.starts_with("12."), "{version:?}");
    let py = exec(
        &srv,
        &["python3", "-c", "import json, http.server; print('ok')"],
    )
    .await;
    assert_eq!(py.stdout.trim(), "ok", "{py:?}");
    assert_eq!(exec(&srv, &["test", "-x", "/usr/sbin/sshd"]).await.code, 0);
    let keys = exec(
        &srv,
        &["sh", "-c", "ls /etc/ssh/ssh_host_* 2>/dev/null | wc -l"],
    )
    .await;
    assert_eq!(keys.stdout.trim(), "0", "the image carries no host key");
    srv.destroy().await.unwrap();
    cloud.remove_server(&snet).await.unwrap();
    cloud.remove_network(&net).await.unwrap();
    cloud.down().await.unwrap();
    network::release_cidr(net.cidr).await.unwrap();
}

/// The firewall tests' two servers on network `cidr`: `a` (at its address)
/// takes only `ingress`, where `peers` are the members of the firewall
/// "peers"; `b` is open.
pub(super) fn guarded_and_open(
    peers: Vec<Ipv4Addr>,
    (a_addr, ingress): (Ipv4Addr, Vec<Ingress>),
    b_addr: Ipv4Addr,
    cidr: Ipv4Net,
) -> Ruleset {
    Ruleset {
        members: BTreeMap::from([("peers".to_string(), peers)]),
        servers: vec![
            ServerRules {
                name: "a".into(),
                addresses: vec![a_addr],
                policy: Policy::Only(ingress),
            },
            ServerRules {
                name: "b".into(),
                addresses: vec![b_addr],
                policy: Policy::Open,
            },
        ],
        networks: vec![cidr],
        ..Ruleset::default()
    }
}
