//! Local servers as small hosts (`runc` isolation), through the binary: a
//! template with two servers on `image: host` behind a load balancer, on a
//! CIDR of the test's own (never the webapp's 10.20.0.0/16: clouds run in
//! parallel and one CIDR can be routed by one cloud only). Skipped, saying
//! why, when not root or runc/nft are missing. Traffic goes to loopback or
//! to addresses inside the namespaces the test's cloud made. Whatever a
//! test made is removed by a guard, also when it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_local::cloud::LocalDirs;
use cairn_local::host::network::{overlapping_route, parse_routes};

use super::{Local, get, ok};

/// Why this machine cannot run servers as hosts, if it cannot.
pub(super) fn unready() -> Option<String> {
    cairn_local::host::preflight().err().map(|e| e.to_string())
}

macro_rules! skip_unless_ready {
    () => {
        if let Some(why) = unready() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}
pub(super) use skip_unless_ready;

fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn machine_routes() -> Vec<cairn_local::host::network::Route> {
    parse_routes(&sh("ip", &["-j", "-4", "route", "show", "table", "all"])).unwrap()
}

/// A /24 in 10.251.0.0/16 that no route of the machine overlaps, from the
/// pid and `k` so that parallel tests and test runs rarely meet.
pub(super) fn free_cidr(k: u32) -> String {
    let routes = machine_routes();
    (0..250u32)
        .map(|i| (std::process::id() * 7 + k * 53 + i) % 250 + 1)
        .map(|x| format!("10.251.{x}.0/24"))
        .find(|n| overlapping_route(&routes, n.parse().unwrap(), &[]).is_none())
        .expect("a free 10.251.x.0/24")
}

/// A `runc` cloud of the test's own; on drop (also after a failed
/// assertion) it destroys its deployments, stops the daemon, and removes
/// anything of its cloud still on the machine.
pub(super) struct RuncCloud {
    local: Local,
    templates: Vec<String>,
    cidrs: Vec<String>,
    /// More environment for every command (an image cache of the test's).
    pub(super) extra: Vec<(&'static str, String)>,
}

impl RuncCloud {
    pub(super) fn new(name: &str) -> RuncCloud {
        RuncCloud {
            local: Local::new(name),
            templates: Vec::new(),
            cidrs: Vec::new(),
            extra: Vec::new(),
        }
    }

    pub(super) fn run(&self, args: &[&str]) -> crate::Output {
        let mut vars = self.local.vars();
        vars.push(("CAIRN_LOCAL_ISOLATION", "runc".into()));
        vars.extend(self.extra.iter().cloned());
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        crate::cairn_env(args, &vars)
    }

    /// Starts a command without waiting for it (stdout and stderr piped).
    pub(super) fn spawn(&self, args: &[&str]) -> std::process::Child {
        let mut vars = self.local.vars();
        vars.push(("CAIRN_LOCAL_ISOLATION", "runc".into()));
        vars.extend(self.extra.iter().cloned());
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        crate::command(args, &vars)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub(super) fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.run(&all);
        assert_eq!(out.code, 0, "{args:?}:\n{}", out.stderr);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}\n{}", out.stdout))
    }

    pub(super) fn template(&mut self, name: &str, yaml: &str, cidr: &str) -> String {
        self.cidrs.push(cidr.to_string());
        let t = self.local.template(name, yaml);
        self.templates.push(t.clone());
        t
    }

    /// Writes template `name` anew (a change for the next `up`).
    pub(super) fn rewrite(&self, name: &str, yaml: &str) {
        self.local.template(name, yaml);
    }

    /// The test's own directory (templates, state, files it writes).
    pub(super) fn root(&self) -> &Path {
        &self.local.root
    }

    /// The state every command of this cloud uses (`CAIRN_STATE`).
    pub(super) fn state(&self) -> String {
        self.local.state.clone()
    }

    /// Another CIDR the guard must clean up after (a second environment).
    pub(super) fn also_cidr(&mut self, cidr: &str) {
        self.cidrs.push(cidr.to_string());
    }

    pub(super) fn dirs(&self) -> LocalDirs {
        LocalDirs::new(self.local.root.join("local"))
    }

    /// The cloud's network namespace: every kernel object of the cloud has
    /// its tag in its name.
    pub(super) fn netns(&self) -> String {
        let id = cairn_local::cloud::container_id(&self.dirs(), "x");
        id.trim_end_matches("-x").to_string()
    }

    /// What of this cloud is still on the machine.
    pub(super) fn leftovers(&self) -> Vec<String> {
        let netns = self.netns();
        let tag = netns.trim_start_matches("cairn-").to_string();
        let mut left = Vec::new();
        for line in sh("ip", &["netns", "list"]).lines() {
            if line.starts_with(&netns) {
                left.push(format!("netns {line}"));
            }
        }
        for line in sh("ip", &["-o", "link"]).lines() {
            if line.contains(&tag) {
                left.push(format!("link {line}"));
            }
        }
        let routes = sh("ip", &["route", "show", "table", "all"]);
        for cidr in &self.cidrs {
            for line in routes.lines().filter(|l| l.contains(cidr.as_str())) {
                left.push(format!("route {line}"));
            }
        }
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        for line in mounts.lines().filter(|l| l.contains(&netns)) {
            left.push(format!("mount {line}"));
        }
        for line in sh("runc", &["list", "-q"]).lines() {
            if line.starts_with(&netns) {
                left.push(format!("container {line}"));
            }
        }
        let tables = sh("ip", &["netns", "exec", &netns, "nft", "list", "tables"]);
        if !tables.trim().is_empty() {
            left.push(format!("nft tables {}", tables.trim()));
        }
        left
    }

    /// What the cloud's network looked like, for a failed test's output:
    /// the links with their MACs, addresses and neighbours of the cloud
    /// namespace and of each server's, the firewall table and the
    /// daemon's last lines. Each part bounded.
    fn network_now(&self) -> String {
        let netns = self.netns();
        let head = |text: String, lines: usize| -> String {
            text.lines().take(lines).collect::<Vec<_>>().join("\n")
        };
        let mut out = String::from("--- the cloud's network at the failure ---\n");
        for (what, args) in [
            ("links", vec!["-n", &netns, "-br", "link"]),
            ("addresses", vec!["-n", &netns, "-br", "-4", "addr"]),
            ("neighbours", vec!["-n", &netns, "neigh"]),
        ] {
            out.push_str(&format!(
                "{what} ({netns}):\n{}\n",
                head(sh("ip", &args), 40)
            ));
        }
        let servers = sh("ip", &["netns", "list"]);
        for server in servers
            .lines()
            .filter_map(|l| l.split(' ').next())
            .filter(|n| n.starts_with(&format!("{netns}-")))
            .take(8)
        {
            out.push_str(&format!(
                "{server}: {} | neighbours: {}\n",
                sh("ip", &["-n", server, "-br", "-4", "addr", "show", "eth0"]).trim(),
                sh("ip", &["-n", server, "neigh"])
                    .trim()
                    .replace('\n', "; ")
            ));
        }
        let rules = sh("ip", &["netns", "exec", &netns, "nft", "list", "ruleset"]);
        out.push_str(&format!("firewall:\n{}\n", head(rules, 60)));
        let log = std::fs::read_to_string(self.dirs().root.join("daemon.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        out.push_str("daemon.log, last lines:\n");
        for line in tail.iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

impl Drop for RuncCloud {
    fn drop(&mut self) {
        // A failed test says what the network was before it goes.
        if std::thread::panicking() {
            eprintln!("{}", self.network_now());
        }
        for t in self.templates.iter().rev() {
            let _ = self.run(&["destroy", t, "--yes", "--allow-data-loss", "-o", "none"]);
        }
        let _ = self.run(&["local", "stop", "-o", "none"]);
        // Whatever a failure left: containers, mounts, namespaces, routes.
        let netns = self.netns();
        let quiet = |program: &str, args: &[&str]| {
            let _ = Command::new(program).args(args).output();
        };
        for id in sh("runc", &["list", "-q"]).lines() {
            if id.starts_with(&netns) {
                quiet("runc", &["delete", "-f", id]);
            }
        }
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        for line in mounts.lines().filter(|l| l.starts_with(&netns)) {
            if let Some(point) = line.split(' ').nth(1) {
                quiet("umount", &[point]);
            }
        }
        for name in sh("ip", &["netns", "list"]).lines() {
            if let Some(name) = name.split(' ').next().filter(|n| n.starts_with(&netns)) {
                quiet("ip", &["netns", "del", name]);
            }
        }
        let tag = netns.trim_start_matches("cairn-");
        quiet("ip", &["link", "del", &format!("ch{tag}")]);
        for cidr in &self.cidrs {
            quiet(
                "ip",
                &["route", "del", "unreachable", cidr, "metric", "4000"],
            );
        }
    }
}

fn template(cidr: &str, server_extra: &str) -> String {
    format!(
        r#"{}{}  deployer:
    type: key_pair
    properties: {{name: deployer}}
  web:
    type: server
    count: 2
    properties:
      name: "web-{{{{ index }}}}"
      image: host
      size: small
      subnet: "{{{{ sub.id }}}}"
      firewalls: ["{{{{ web_fw.id }}}}"]
      key_pair: "{{{{ deployer.id }}}}"
      {server_extra}
      user_data: |
        #!/bin/sh
        exec cairn util http-echo --port 8080 --text "hello from {{{{ index }}}}"
  lb:
    type: load_balancer
    properties:
      listen: {{protocol: http, port: 80}}
      firewalls: ["{{{{ lb_fw.id }}}}"]
      health_check: {{path: /, interval: 2s, timeout: 1s, healthy: 1, unhealthy: 2}}
      backends: "{{{{ web | map(attribute='address') | list }}}}"
      backend_port: 8080
outputs:
  front: "{{{{ lb.address }}}}:{{{{ lb.port }}}}"
  key: {{value: "{{{{ deployer.private_key }}}}", secret: true}}
"#,
        one_network(cidr),
        web_firewalls(8080)
    )
}

/// The start of a runc test's template: `cairn: 1`, network `net` and
/// its subnet `sub` on `cidr`; its resources follow.
pub(super) fn one_network(cidr: &str) -> String {
    format!(
        r#"cairn: 1
resources:
  net:
    type: network
    properties: {{cidr: {cidr}}}
  sub:
    type: subnet
    properties: {{network: "{{{{ net.id }}}}", cidr: {cidr}}}
"#
    )
}

/// The webapp's two firewalls: the balancer open on port 80, web servers
/// open to the balancer on `app_port` and to anyone on 22 (SSH).
pub(super) fn web_firewalls(app_port: u16) -> String {
    format!(
        r#"  lb_fw:
    type: firewall
    properties:
      network: "{{{{ net.id }}}}"
      ingress:
        - {{protocol: tcp, port: 80, from: 0.0.0.0/0}}
  web_fw:
    type: firewall
    properties:
      network: "{{{{ net.id }}}}"
      ingress:
        - {{protocol: tcp, port: {app_port}, from: "{{{{ lb_fw.id }}}}"}}
        - {{protocol: tcp, port: 22, from: 0.0.0.0/0}}
"#
    )
}

/// Waits until every web server has answered through `front`.
pub(super) fn wait_both(front: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        assert!(
            start.elapsed() < limit,
            "answers through {front} within {limit:?}: {seen:?}"
        );
        if let Some(body) = get(front).filter(|b| ok(b))
            && let Some(line) = body.lines().last().filter(|l| l.starts_with("hello from"))
        {
            seen.insert(line.to_string());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// The main test's template: [`template`] and a zone whose `www` is the
/// balancer's address.
fn with_www(yaml: &str) -> String {
    yaml.replace(
        "outputs:\n",
        &format!(
            "  zone:\n    type: dns_zone\n    properties: {{name: {ZONE}}}\n  www:\n    \
             type: dns_record\n    properties: {{zone: \"{{{{ zone.id }}}}\", name: www, type: A, \
             ttl: 60, values: [\"{{{{ lb.address }}}}\"]}}\noutputs:\n"
        ),
    )
}

const ZONE: &str = "hosts.test";

/// `curl URL` inside `server` (its own network namespace: its own
/// routes, its own 127.0.0.0/8, the cloud's DNS): its exit code and body.
fn curl_in(c: &RuncCloud, server: &str, url: &str) -> (i32, String) {
    let out = c.run(&["local", "exec", server, "--", "curl", "-sS", "-m", "5", url]);
    (out.code, format!("{}{}", out.stdout, out.stderr))
}

/// Asserts that `url` answers from a backend inside every server of
/// `servers`, by the balancer's address and by its name.
fn answers_in(c: &RuncCloud, servers: &[&str], front: &str) {
    for server in servers {
        for url in [
            format!("http://{front}/"),
            format!("http://www.{ZONE}:{}/", front.rsplit(':').next().unwrap()),
        ] {
            let (code, body) = curl_in(c, server, &url);
            assert!(
                code == 0 && body.contains("hello from"),
                "{url} from {server}: exit {code}: {body}"
            );
        }
    }
}

pub(super) fn connects(addr: &str) -> bool {
    std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)).is_ok()
}

/// A real OpenSSH client's `ssh`, with the key pair's private key `id`
/// and strict host key checking against `known`, running `command` on
/// `root@address`; tried until it succeeds or `limit` passes (sshd may
/// still be starting).
pub(super) fn ssh_until(
    id: &Path,
    known: &Path,
    address: &str,
    command: &str,
    limit: Duration,
) -> std::process::Output {
    let deadline = Instant::now() + limit;
    loop {
        let out = Command::new("ssh")
            .args(["-F", "/dev/null", "-i"])
            .arg(id)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=3"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .arg(format!("root@{address}"))
            .arg(command)
            .output()
            .unwrap();
        if out.status.success() || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The SSH client's files for `server`: the key pair's private key and a
/// known_hosts line from its `host_key` attribute.
pub(super) fn ssh_files(
    dir: &Path,
    key: &str,
    address: &str,
    host_key: &str,
) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let id = dir.join("id_ed25519");
    std::fs::write(&id, key).unwrap();
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o600)).unwrap();
    let known = dir.join("known_hosts");
    std::fs::write(&known, format!("{address} {host_key}\n")).unwrap();
    (id, known)
}

#[test]
fn runc_servers_are_hosts_behind_the_load_balancer_and_leave_nothing() {
    skip_unless_ready!();
    let mut c = RuncCloud::new("hosts");
    let cidr = free_cidr(1);
    let t = c.template("hosts", &with_www(&template(&cidr, "")), &cidr);

    let started = Instant::now();
    let up = c.json(&["up", &t, "--yes"]);
    let up_took = started.elapsed();
    assert_eq!(up["result"], "applied", "{up}");
    let outputs = c.json(&["output", &t, "--secret"]);
    let front = outputs["front"].as_str().unwrap().to_string();
    let first = wait_both(&front, Duration::from_secs(20));
    eprintln!(
        "runc: up {} ms, both servers answering through the LB {} ms later",
        up_took.as_millis(),
        first.as_millis()
    );

    // Addresses from the subnet, from .10 up (the two are made in
    // parallel, either may get .10); a host key recorded.
    let web0 = c.json(&["show", &t, "--address", "web[0]"]);
    let web1 = c.json(&["show", &t, "--address", "web[1]"]);
    let a0 = web0["attributes"]["address"].as_str().unwrap().to_string();
    let a1 = web1["attributes"]["address"].as_str().unwrap().to_string();
    let prefix = cidr.trim_end_matches("0/24");
    let mut both = [a0.clone(), a1.clone()];
    both.sort();
    assert_eq!(both, [format!("{prefix}10"), format!("{prefix}11")]);
    assert_eq!(web0["attributes"]["private_ip"], a0.as_str());
    let host_key = web0["attributes"]["host_key"].as_str().unwrap().to_string();
    assert!(host_key.starts_with("ssh-ed25519 "), "{host_key}");

    // The balancer listens on the cloud's link, not on the machine's
    // loopback (a server's 127.0.0.0/8 is its own): the machine and the
    // servers reach it there, by address and by the zone's name for it.
    let lb_ip: std::net::Ipv4Addr = front.split(':').next().unwrap().parse().unwrap();
    assert!(lb_ip.is_link_local(), "{front}");
    let dig = Command::new("dig")
        .args(["@127.0.0.1", "-p", &c.local.dns_port.to_string()])
        .args([&format!("www.{ZONE}"), "A", "+short", "+time=2", "+tries=1"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&dig.stdout).trim(),
        lb_ip.to_string()
    );
    answers_in(&c, &["web[0]", "web[1]"], &front);

    // Its hostname, its own /etc, its own processes.
    let out = c.run(&["local", "exec", "web[0]", "--", "hostname"]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "web-0"),
        "{}",
        out.stderr
    );
    let marker = format!("/etc/cairn-hosts-{}", std::process::id());
    let out = c.run(&[
        "local",
        "exec",
        "web[0]",
        "--",
        "sh",
        "-c",
        &format!("echo kept > {marker}"),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!Path::new(&marker).exists(), "not on the machine");
    let out = c.run(&["local", "exec", "web[1]", "--", "test", "-e", &marker]);
    assert_eq!(out.code, 1, "not in web[1]: {}", out.stderr);
    let ps = c.run(&[
        "local",
        "exec",
        "web[1]",
        "--",
        "ps",
        "-e",
        "-o",
        "pid=,args=",
    ]);
    let lines: Vec<&str> = ps.stdout.lines().collect();
    assert!(lines.len() < 10, "ps sees only the server's own: {lines:?}");
    assert!(
        lines[0].trim().starts_with("1 /usr/local/bin/cairn init"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("cairn util http-echo")),
        "{lines:?}"
    );
    let code = c.run(&["local", "exec", "web[1]", "--", "sh", "-c", "exit 42"]);
    assert_eq!(code.code, 42, "the command's exit code is cairn's");

    // The firewall: web_fw lets port 8080 in from the LB's firewall only,
    // so the machine is refused while the LB gets through.
    assert!(
        !connects(&format!("{a0}:8080")),
        "the machine reached web[0]:8080 past its firewall"
    );
    assert!(get(&front).is_some_and(|b| ok(&b)), "the LB still works");

    // SSH with the key pair's private key, the host key checked strictly.
    if Path::new("/usr/sbin/sshd").is_file() && which("ssh") {
        let key = outputs["key"].as_str().unwrap();
        let (id, known) = ssh_files(&c.local.root.join("ssh"), key, &a0, &host_key);
        let out = ssh_until(&id, &known, &a0, "hostname", Duration::from_secs(10));
        assert!(
            out.status.success(),
            "ssh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "web-0");
    } else {
        eprintln!("ssh part skipped: no sshd or ssh on this machine (./scripts/install-deps)");
    }

    // Orchestration on the servers: cairn reaches them from inside the
    // cloud, with the key pair it made, checking the host keys it recorded.
    if Path::new("/usr/sbin/sshd").is_file() {
        orchestrate(&c, &t, outputs["key"].as_str().unwrap());
    }

    // A runc cloud refuses to be started as a process cloud.
    let mut vars = c.local.vars();
    vars.push(("CAIRN_LOCAL_ISOLATION", "process".into()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = crate::cairn_env(&["local", "start"], &vars);
    assert_ne!(refused.code, 0);
    assert!(
        refused
            .stderr
            .contains("was made with `runc` isolation and cannot run with `process`"),
        "{}",
        refused.stderr
    );

    // Stop: the containers and the cloud namespace go, the CIDR stays
    // on the machine (unreachable); start: same addresses, same files.
    let out = c.run(&["local", "stop", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let routes = sh("ip", &["route", "show", "table", "all"]);
    assert!(
        routes.contains(&format!("unreachable {cidr} metric 4000")),
        "{routes}"
    );
    assert!(
        sh("runc", &["list", "-q"])
            .lines()
            .all(|l| !l.starts_with(&c.netns()))
    );
    assert!(
        !connects(&format!("{a0}:22")),
        "nothing answers while stopped"
    );
    let started = Instant::now();
    let out = c.run(&["local", "start", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let again = wait_both(&front, Duration::from_secs(20));
    eprintln!(
        "runc: local start + both answering again: {} ms",
        (started.elapsed()).as_millis().max(again.as_millis())
    );
    // The same address, back on the link before the balancer listened.
    answers_in(&c, &["web[0]"], &front);
    let out = c.run(&["local", "exec", "web[0]", "--", "cat", &marker]);
    assert_eq!(out.stdout.trim(), "kept", "{}", out.stderr);
    let out = c.run(&[
        "local", "exec", "web[0]", "--", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(out.stdout.contains(&format!("{a0}/24")), "{}", out.stdout);
    let out = c.run(&[
        "local", "exec", "web[1]", "--", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(out.stdout.contains(&format!("{a1}/24")), "{}", out.stdout);
    assert!(!connects(&format!("{a0}:8080")), "the firewall is back too");

    // A daemon killed outright leaves its containers running; the next
    // start takes them over: same servers, same files, HTTP again.
    let published = std::fs::read_to_string(c.local.root.join("local/daemon.json")).unwrap();
    let pid = serde_json::from_str::<serde_json::Value>(&published).unwrap()["pid"]
        .as_i64()
        .unwrap();
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the daemon {pid} outlived SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = c.run(&["local", "start", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_both(&front, Duration::from_secs(20));
    let out = c.run(&["local", "exec", "web[0]", "--", "cat", &marker]);
    assert_eq!(out.stdout.trim(), "kept", "{}", out.stderr);
    let running: Vec<String> = sh("runc", &["list", "-q"])
        .lines()
        .filter(|l| l.starts_with(&c.netns()))
        .map(String::from)
        .collect();
    assert_eq!(running.len(), 2, "one container per server: {running:?}");

    // A rule change applies at the next connect: web_fw opens 8080 to
    // anyone, the machine gets through.
    let opened = with_www(&template(&cidr, "")).replace(
        "        - {protocol: tcp, port: 22, from: 0.0.0.0/0}\n",
        "        - {protocol: tcp, port: 22, from: 0.0.0.0/0}\n        - {protocol: tcp, port: 8080, from: 0.0.0.0/0}\n",
    );
    c.local.template("hosts", &opened);
    let out = c.run(&["up", &t, "--yes", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        connects(&format!("{a0}:8080")),
        "the opened rule lets the machine in"
    );

    // The balancer's own firewall holds servers to it too: lb_fw lets in
    // the server on the subnet's .10 only; the other gets no answer, nor
    // does the machine.
    let prefix10 = format!("{prefix}10");
    let narrowed = opened.replace(
        "        - {protocol: tcp, port: 80, from: 0.0.0.0/0}\n",
        &format!("        - {{protocol: tcp, port: 80, from: {prefix10}/32}}\n"),
    );
    c.local.template("hosts", &narrowed);
    let out = c.run(&["up", &t, "--yes", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (allowed, refused) = if a0 == prefix10 {
        ("web[0]", "web[1]")
    } else {
        ("web[1]", "web[0]")
    };
    answers_in(&c, &[allowed], &front);
    let (code, body) = curl_in(&c, refused, &format!("http://{front}/"));
    assert!(
        code != 0 && !body.contains("hello from"),
        "{refused} got through the balancer's firewall: exit {code}: {body}"
    );
    assert!(
        !get(&front).is_some_and(|b| ok(&b)),
        "the machine got through the balancer's firewall"
    );

    // Destroy: nothing of the cloud remains on the machine.
    let out = c.run(&["destroy", &t, "--yes", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(c.leftovers(), Vec::<String>::new());
    let addresses = sh("ip", &["-o", "-4", "addr"]);
    assert!(
        !addresses.contains(&format!(" {lb_ip}/")),
        "the balancer's address is left: {addresses}"
    );
    assert!(
        !c.local
            .root
            .join("local/servers")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );
}

/// `cairn run` and `cairn state apply` on the deployment's servers, then
/// real Ansible pinging them through `cairn inventory` as its inventory
/// script.
fn orchestrate(c: &RuncCloud, t: &str, key: &str) {
    let job = |args: &[&str]| -> serde_json::Value {
        let mut all = args.to_vec();
        // Options before a `--` command.
        let at = all.iter().position(|a| *a == "--").unwrap_or(all.len());
        // Over SSH (the default on the local target is the agents).
        all.splice(at..at, ["-C", t, "-o", "json", "--via", "ssh"]);
        let out = c.run(&all);
        assert_eq!(out.code, 0, "{args:?}:\n{}", out.snapshot());
        serde_json::from_str(&out.stdout).unwrap()
    };
    let hostnames = |j: &serde_json::Value| -> Vec<(String, String)> {
        j["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["host"].as_str().unwrap().to_string(),
                    h["stdout"].as_str().unwrap_or("").trim().to_string(),
                )
            })
            .collect()
    };
    // sshd may still be starting in a server that was just made.
    let deadline = Instant::now() + Duration::from_secs(15);
    let ran = loop {
        let out = c.run(&[
            "run",
            "G@role:web",
            "-C",
            t,
            "-o",
            "json",
            "--via",
            "ssh",
            "--",
            "hostname",
        ]);
        if out.code == 0 || Instant::now() > deadline {
            assert_eq!(out.code, 0, "{}", out.snapshot());
            break serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        hostnames(&ran),
        [
            ("web-0".to_string(), "web-0".to_string()),
            ("web-1".to_string(), "web-1".to_string())
        ]
    );

    // A state: a config file per server and a command on its change,
    // applied, then again with nothing to change.
    let sls = c.local.root.join("site.sls");
    std::fs::write(
        &sls,
        "site-conf:\n  file.managed:\n    - name: /etc/site.conf\n    \
         - content: \"server {{ host }} on {{ facts.os.id }}\\n\"\n\
         reload:\n  cmd.run:\n    - name: echo reloaded >> /var/log/site.log\n    \
         - onchanges:\n      - file: site-conf\n",
    )
    .unwrap();
    let sls = sls.to_str().unwrap();
    let first = job(&["state", "apply", "web", sls]);
    let statuses = |j: &serde_json::Value| -> Vec<String> {
        j["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["status"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(statuses(&first), ["changed", "changed"], "{first}");
    let second = job(&["state", "apply", "web", sls]);
    assert_eq!(statuses(&second), ["ok", "ok"], "{second}");
    let conf = job(&["run", "web-1", "--", "cat /etc/site.conf /var/log/site.log"]);
    assert_eq!(
        conf["hosts"][0]["stdout"].as_str().unwrap(),
        format!("server web-1 on {}\nreloaded\n", os_id())
    );
    // The file is the server's, not the machine's.
    assert!(!Path::new("/etc/site.conf").exists());

    // Real Ansible, through `cairn inventory` as its inventory script.
    let bin = match crate::ansible::ansible_bin() {
        Ok(bin) => bin,
        Err(why) => {
            eprintln!("ansible part skipped: {why}");
            return;
        }
    };
    let dir = c.local.root.join("ansible");
    std::fs::create_dir_all(&dir).unwrap();
    let (id, _) = ssh_files(&dir, key, "-", "-");
    let script = dir.join("inventory.sh");
    let mut env = String::new();
    for (k, v) in c.local.vars() {
        env.push_str(&format!("{k}='{v}' "));
    }
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec env {env} '{}' inventory '{t}' \"$@\"\n",
            env!("CARGO_BIN_EXE_cairn")
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(bin.join("ansible"))
        .arg("-i")
        .arg(&script)
        .args(["all", "-m", "ping", "-u", "root", "--private-key"])
        .arg(&id)
        .env("ANSIBLE_HOST_KEY_CHECKING", "false")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCALHOST_WARNING", "false")
        .env("ANSIBLE_PYTHON_INTERPRETER", "/usr/bin/python3")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ansible ping: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("\"ping\": \"pong\"").count(), 2, "{stdout}");
}

/// This machine's os-release id (`image: host` servers share it).
fn os_id() -> String {
    std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("ID="))
        .unwrap_or("")
        .trim_matches('"')
        .to_string()
}

pub(super) fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

#[test]
fn runc_bad_input_is_refused_with_nothing_half_made() {
    skip_unless_ready!();
    let mut c = RuncCloud::new("hosts-bad");

    // A network whose CIDR overlaps a route of this machine.
    let routes = machine_routes();
    // The machine's own (its link), not a block another test's cloud
    // holds right now (10.251.x.0/24 and their 169.254.x.0/24 links).
    let taken = routes
        .iter()
        .filter(|r| r.kind.is_none() && r.table.is_none())
        .filter_map(|r| r.block())
        .find(|b| {
            let o = b.addr().octets();
            // Not a block of a test's cloud: networks, links, public blocks.
            !(o[0] == 10 && o[1] == 251
                || o[0] == 169 && o[1] == 254
                || o[0] == 198 && (o[1] == 18 || o[1] == 19))
        })
        .expect("the machine has a route to a block (its own link)");
    let t = c.template(
        "overlap",
        &template(&taken.to_string(), ""),
        &taken.to_string(),
    );
    let out = c.run(&["up", &t, "--yes", "-o", "json"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stdout
            .contains(&format!("network {taken} overlaps the machine's route")),
        "{}",
        out.stdout
    );
    let after = sh("ip", &["route", "show", "table", "all"]);
    assert!(
        !after.contains(&format!("unreachable {taken}")),
        "no reservation left: {after}"
    );

    // An image cairn does not know: nothing of the server stays.
    let cidr = free_cidr(2);
    let t = c.template(
        "image",
        &template(&cidr, "").replace("image: host", "image: windows-95"),
        &cidr,
    );
    let out = c.run(&["up", &t, "--yes", "-o", "json"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stdout
            .contains("unknown image `windows-95`: the known images are host, debian-12"),
        "{}",
        out.stdout
    );

    // An address outside the server's subnet.
    let cidr3 = free_cidr(3);
    let t = c.template(
        "address",
        &template(&cidr3, "address: 192.0.2.77").replace("count: 2", "count: 1"),
        &cidr3,
    );
    let out = c.run(&["up", &t, "--yes", "-o", "json"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stdout.contains(&format!(
            "`address` 192.0.2.77 is not a usable address of the server's subnet {cidr3}"
        )),
        "{}",
        out.stdout
    );

    // A server from an image this cloud never captured.
    let cidr4 = free_cidr(4);
    let t = c.template(
        "from-image",
        &format!(
            r#"{}  web:
    type: server
    properties: {{name: web, image: image-00042, size: small, subnet: "{{{{ sub.id }}}}"}}
"#,
            one_network(&cidr4)
        ),
        &cidr4,
    );
    let out = c.run(&["up", &t, "--yes", "-o", "json"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stdout
            .contains("image image-00042: no such image in this cloud"),
        "{}",
        out.stdout
    );

    // Two deployments, one block: the second network is refused, saying
    // that a local network holds it and what to do; the first stays.
    let cidr6 = free_cidr(6);
    let first = c.template("held-1", &one_network(&cidr6), &cidr6);
    let out = c.run(&["up", &first, "--yes", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let second = c.template("held-2", &one_network(&cidr6), &cidr6);
    let out = c.run(&["up", &second, "--yes", "-o", "json"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stdout.contains(&format!("network {cidr6} overlaps `"))
            && out
                .stdout
                .contains("a block another network of a local cloud holds")
            && out.stdout.contains("give this network another block"),
        "{}",
        out.stdout
    );
    let routes = sh("ip", &["route", "show", "table", "all"]);
    assert!(routes.contains(&format!("unreachable {cidr6}")), "{routes}");
    let out = c.run(&["destroy", &first, "--yes", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Each failed `up` rolled back: no server, mount or container, no
    // directory of one.
    let netns = c.netns();
    assert!(
        sh("runc", &["list", "-q"])
            .lines()
            .all(|l| !l.starts_with(&netns))
    );
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&netns), "{mounts}");
    let servers = sh("ip", &["netns", "list"]);
    assert!(
        servers
            .lines()
            .all(|l| !l.starts_with(&format!("{netns}-"))),
        "{servers}"
    );
    assert!(
        std::fs::read_dir(c.local.root.join("local/servers"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true),
        "a server directory stayed"
    );
}

#[test]
fn runc_isolation_names_what_the_machine_lacks_and_exec_needs_it() {
    // No cloud yet: exec says so.
    let l = Local::new("exec-process");
    let out = l.run(&["local", "exec", "web[0]", "--", "hostname"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("no local cloud in ")
            && out.stderr.contains("nothing has been deployed there"),
        "{}",
        out.stderr
    );
    // Process cloud (any machine): exec says it needs runc.
    let out = l.run(&["local", "start", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let exec = l.run(&["local", "exec", "web[0]", "--", "hostname"]);
    let out = l.run(&["local", "stop", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(exec.code, 2, "{}", exec.stderr);
    assert!(
        exec.stderr
            .contains("`cairn local exec` needs `runc` isolation"),
        "{}",
        exec.stderr
    );
    let out = l.run(&["local", "start", "--isolation", "docker"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("unknown isolation `docker`: use `process` or `runc`"),
        "{}",
        out.stderr
    );

    // Not root: a clear error naming it, and no daemon. (Missing tools
    // are named the same way: the library's unit tests show it; runc and
    // nft are found in /usr/sbin whatever PATH says, so a test cannot hide
    // them here.)
    if !which("setpriv") {
        eprintln!("not-root part skipped: no setpriv (util-linux)");
        return;
    }
    let exe = l.root.join("cairn");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_cairn"), &exe).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_cairn"), &exe).unwrap();
    }
    let mut cmd = crate::command(&["local", "start"], &[]);
    let mut vars = l.vars();
    vars.push(("CAIRN_LOCAL_ISOLATION", "runc".into()));
    cmd.envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
    let args: Vec<String> = ["--reuid=65534", "--regid=65534", "--clear-groups"]
        .iter()
        .map(|s| s.to_string())
        .chain([exe.display().to_string(), "local".into(), "start".into()])
        .collect();
    let out = Command::new("setpriv")
        .args(&args)
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir("/")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`runc` isolation: local servers as hosts need root ("),
        "{stderr}"
    );
    assert!(
        !l.root.join("local/daemon.json").exists(),
        "no daemon started"
    );

    // Not root, nothing asked for: a new cloud still starts, with its
    // servers as processes, and says why once.
    let mine = l.root.join("nobody");
    std::fs::create_dir_all(&mine).unwrap();
    std::os::unix::fs::chown(&mine, Some(65534), Some(65534)).unwrap();
    let mut vars = l.vars();
    vars.retain(|(k, _)| *k != "CAIRN_LOCAL_DIR");
    vars.push(("CAIRN_LOCAL_DIR", mine.join("local").display().to_string()));
    let as_nobody = |args: &[&str]| {
        let mut cmd = crate::command(args, &[]);
        cmd.envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("CAIRN_LOCAL_ISOLATION");
        let args: Vec<String> = ["--reuid=65534", "--regid=65534", "--clear-groups"]
            .iter()
            .map(|s| s.to_string())
            .chain([exe.display().to_string()])
            .chain(args.iter().map(|a| a.to_string()))
            .collect();
        Command::new("setpriv")
            .args(&args)
            .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .current_dir("/")
            .output()
            .unwrap()
    };
    let out = as_nobody(&["local", "start", "-o", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stopped = as_nobody(&["local", "stop", "-o", "none"]);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let started: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(started["isolation"], "process", "{started}");
    assert!(
        stderr.contains("runs its servers as processes on this machine")
            && stderr.contains("local servers as hosts need root (")
            && stderr.contains("CAIRN_LOCAL_ISOLATION=process"),
        "{stderr}"
    );
    assert_eq!(stopped.status.code(), Some(0), "{stopped:?}");
    // Told once: the cloud is made, its isolation recorded.
    let again = as_nobody(&["local", "start", "-o", "json"]);
    let _ = as_nobody(&["local", "stop", "-o", "none"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("note:"), "{stderr}");
}

/// Where the machine can run them, a new cloud's servers are hosts without
/// asking: `runc` is what a cloud is made with when nothing says otherwise.
#[test]
fn a_new_cloud_makes_its_servers_hosts_where_the_machine_can() {
    skip_unless_ready!();
    let c = RuncCloud::new("hosts-default");
    let vars = c.local.vars();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut start = crate::command(&["local", "start", "-o", "json"], &vars);
    start.env_remove("CAIRN_LOCAL_ISOLATION");
    let out = start.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let started: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(started["isolation"], "runc", "{started}");
    assert!(!stderr.contains("note:"), "{stderr}");
    // Asking for the other one now is refused: the cloud was made.
    let out = c.local.run(&["local", "start"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("was made with `runc` isolation"),
        "{}",
        out.stderr
    );
}

/// A server on the real `debian-12` image, built through the binary
/// (`cairn local image debian-12`) once per machine into the default cache
/// (about 45 s cold, from the distribution's mirror; a cache hit after),
/// as a slow fixture kept outside the checkout.
#[test]
fn a_runc_server_runs_on_debian_12_and_serves_with_the_mounted_cairn() {
    skip_unless_ready!();
    if !which("mmdebstrap") {
        eprintln!("skipped: no mmdebstrap to build debian-12 (./scripts/install-deps installs it)");
        return;
    }
    let mut c = RuncCloud::new("hosts-deb");
    let built = c.run(&["local", "image", "debian-12", "-o", "json"]);
    assert_eq!(built.code, 0, "{}", built.stderr);

    let cidr = free_cidr(5);
    // No key pair: the server must not run sshd.
    let yaml = with_www(&template(&cidr, ""))
        .replace("image: host", "image: debian-12")
        .replace("count: 2", "count: 1")
        .replace("      key_pair: \"{{ deployer.id }}\"\n", "");
    assert!(!yaml.contains("key_pair: \""), "{yaml}");
    let t = c.template("deb", &yaml, &cidr);
    let started = Instant::now();
    let out = c.run(&["up", &t, "--yes", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stderr.contains("Building image"),
        "cached: {}",
        out.stderr
    );
    let up_took = started.elapsed();
    let outputs = c.json(&["output", &t]);
    let front = outputs["front"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !get(&front).is_some_and(|b| ok(&b) && b.contains("hello from 0")) {
        assert!(Instant::now() < deadline, "no answer through {front}");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "runc on debian-12: up {} ms, first 200 {} ms",
        up_took.as_millis(),
        started.elapsed().as_millis()
    );
    let out = c.run(&[
        "local",
        "exec",
        "web[0]",
        "--",
        "cat",
        "/etc/debian_version",
    ]);
    assert!(out.stdout.starts_with("12."), "{}", out.snapshot());
    let out = c.run(&["local", "exec", "web[0]", "--", "hostname"]);
    assert_eq!(out.stdout.trim(), "web-0");
    // The image's own curl and resolver reach the balancer.
    answers_in(&c, &["web[0]"], &front);
    let out = c.run(&["local", "exec", "web[0]", "--", "ps", "-eo", "comm"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stdout.contains("sshd"),
        "sshd without a key pair:\n{}",
        out.stdout
    );
    let out = c.run(&["destroy", &t, "--yes", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

/// `cairn test` on a runc cloud: its `command` test runs on both servers
/// over SSH, as `cairn run` does, and passes (on a `process` cloud the
/// same test is skipped, see `test_cmd`); then everything is destroyed.
#[test]
fn cairn_test_runs_command_tests_on_runc_servers() {
    skip_unless_ready!();
    let mut c = RuncCloud::new("runc-ctest");
    let cidr = free_cidr(11);
    let mut yaml = template(&cidr, "tags: {role: web}");
    // sshd may still be starting in a server that was just made: retried.
    yaml.push_str(
        "tests:\n  hostnames:\n    command: {hosts: \"G@role:web\", run: hostname}\n    \
         expect: {exit_code: 0, stdout_contains: web-}\n    timeout: 30s\n  \
         through_lb:\n    http: {lb: \"{{ lb }}\", path: /}\n    \
         expect: {body_contains: hello from}\n    timeout: 30s\n",
    );
    let t = c.template("ctest", &yaml, &cidr);
    let out = c.run(&["test", &t, "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (r["passed"].as_u64(), r["skipped"].as_u64()),
        (Some(2), Some(0)),
        "{r}"
    );
    assert_eq!(r["tests"][0]["kind"], "command", "{r}");
    assert_eq!(r["destroyed"], true, "{r}");
    assert_eq!(c.json(&["local", "status"]), serde_json::json!([]));
}

/// A /16 no route of the machine overlaps, for a template that cuts /24s
/// out of its network (the webapp): from 10.160.0.0/16 up, from the pid.
fn free_block16() -> String {
    let routes = machine_routes();
    (0..80u32)
        .map(|i| (std::process::id() * 7 + i) % 80 + 160)
        .map(|x| format!("10.{x}.0.0/16"))
        .find(|n| overlapping_route(&routes, n.parse().unwrap(), &[]).is_none())
        .expect("a free 10.x.0.0/16")
}

/// The webapp itself (examples/webapp on `image: host`, on a block of the
/// test's own), its servers as hosts: both answer through the load
/// balancer, each has its own name for `local exec` and for `cairn run`;
/// once it is destroyed, `cairn test` deploys a throwaway copy and passes
/// every test of the template, `web_hostname` included (it needs hosts);
/// nothing of the cloud stays on the machine.
#[test]
fn the_webapp_runs_on_hosts_and_passes_its_own_tests() {
    skip_unless_ready!();
    let mut c = RuncCloud::new("hosts-webapp");
    let webapp = super::WEBAPP.to_string();
    let block = free_block16();
    c.cidrs.push(block.clone());
    c.templates.push(webapp.clone());
    let cidr = format!("cidr={block}");
    let params = ["-p", "image=host", "-p", &cidr];
    let mut up = vec!["up", &webapp, "--yes", "--exclude", "db", "-o", "none"];
    up.extend(params);
    let out = c.run(&up);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let lb = c.json(&["show", &webapp, "--address", "lb"]);
    let front = format!(
        "{}:{}",
        lb["attributes"]["address"].as_str().unwrap(),
        lb["attributes"]["port"]
    );
    wait_both(&front, Duration::from_secs(30));
    let web0 = c.json(&["show", &webapp, "--address", "web[0]"]);
    let name = web0["properties"]["name"].as_str().unwrap().to_string();
    let address = web0["attributes"]["address"].as_str().unwrap();
    let second: u8 = block.split('.').nth(1).unwrap().parse().unwrap();
    assert!(
        address.starts_with(&format!("10.{second}.1.")),
        "{address} in the web subnet of {block}"
    );
    let out = c.run(&["local", "exec", "web[0]", "--", "hostname"]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, name.as_str()),
        "{}",
        out.stderr
    );
    // A server reaches the site by its name, through the cloud's DNS and
    // the load balancer, as a client outside does.
    let out = c.run(&[
        "local",
        "exec",
        "web[1]",
        "--",
        "curl",
        "-sS",
        "--max-time",
        "5",
        "http://www.example.test/",
    ]);
    assert!(
        out.code == 0 && out.stdout.contains("hello from"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let out = c.run(&[
        "run",
        "-C",
        &webapp,
        "G@role:web",
        "-o",
        "json",
        "--",
        "hostname",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ran: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let mut names: Vec<&str> = ran["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["stdout"].as_str().unwrap().trim())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{ran}");
    assert!(
        names[0].ends_with("-web-0") && names[1].ends_with("-web-1"),
        "{ran}"
    );

    let out = c.run(&[
        "destroy",
        &webapp,
        "--yes",
        "--allow-data-loss",
        "-o",
        "none",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // `cairn test`: a throwaway copy in the same cloud (the block is free
    // again; the zone too), every test of the template passing.
    let out = c.run(&[
        "test",
        &webapp,
        "-p",
        "image=host",
        "-p",
        &cidr,
        "-o",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (&report["failed"], &report["skipped"]),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "{report}"
    );
    let hostname = report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "web_hostname");
    assert_eq!(hostname.unwrap()["status"], "passed", "{report}");

    let out = c.run(&["local", "stop", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let left = c.leftovers();
    assert!(left.is_empty(), "left on the machine: {left:?}");
}

/// `up` builds the images its new servers need in the foreground, saying
/// so, rather than leaving the daemon to build them with its progress in
/// its log. Here the cache cannot be made (under /proc): the CLI says why,
/// the server's create fails with the same reason, nothing stays.
#[test]
fn up_builds_a_missing_image_in_the_foreground_and_says_why_it_could_not() {
    skip_unless_ready!();
    let mut c = RuncCloud::new("hosts-image-build");
    c.extra
        .push(("XDG_CACHE_HOME", "/proc/cairn-no-cache-here".to_string()));
    let cidr = free_cidr(8);
    let yaml = template(&cidr, "")
        .replace("image: host", "image: debian-12")
        .replace("count: 2", "count: 1");
    let t = c.template("build", &yaml, &cidr);
    let out = c.run(&["up", &t, "--yes", "-o", "json"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("Building image debian-12 (once per machine;")
            && out.stderr.contains("image debian-12: ")
            && out
                .stderr
                .contains("/proc/cairn-no-cache-here/cairn/images"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains("/proc/cairn-no-cache-here/cairn/images"),
        "the create fails for the same reason: {}",
        out.stdout
    );
    let out = c.run(&["local", "stop", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
}
