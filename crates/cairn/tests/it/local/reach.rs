//! What reaches a `runc` server and what a server reaches, through the
//! binary: the database from the servers (and still from the machine) at
//! its endpoint, a public address leading into a server from the machine
//! and from servers (SSH with a real OpenSSH client and strict host key
//! checking, HTTP, a server reaching itself), and the firewalls at every
//! one of those addresses, a rule change applying at the next connect.
//! Skipped, saying why, when the machine cannot run `runc` servers or has
//! no PostgreSQL.

use std::path::Path;
use std::time::{Duration, Instant};

use super::hosts::{
    RuncCloud, connects, free_cidr, one_network, skip_unless_ready, ssh_files, ssh_until, unready,
    web_firewalls, which,
};
use super::{get, ok};

const PASSWORD: &str = "reach-pw-1234";

fn template(cidr: &str) -> String {
    format!(
        r#"{}{}  db_fw:
    type: firewall
    properties:
      network: "{{{{ net.id }}}}"
      ingress:
        - {{protocol: tcp, port: 5432, from: "{{{{ web_fw.id }}}}"}}
  deployer:
    type: key_pair
    properties: {{name: deployer}}
  web:
    type: server
    properties:
      name: web-0
      image: host
      size: small
      subnet: "{{{{ sub.id }}}}"
      firewalls: ["{{{{ web_fw.id }}}}"]
      key_pair: "{{{{ deployer.id }}}}"
      user_data: |
        #!/bin/sh
        exec cairn util http-echo --port 8080 --text "hello from web"
  other:
    type: server
    properties: {{name: other, image: host, size: small, subnet: "{{{{ sub.id }}}}"}}
  client_fw:
    type: firewall
    properties:
      network: "{{{{ net.id }}}}"
      ingress: []
  client:
    type: server
    properties:
      name: client
      image: host
      size: small
      subnet: "{{{{ sub.id }}}}"
      firewalls: ["{{{{ client_fw.id }}}}"]
  public:
    type: ip_address
    properties: {{server: "{{{{ web.id }}}}"}}
  lb:
    type: load_balancer
    properties:
      listen: {{protocol: http, port: 80}}
      firewalls: ["{{{{ lb_fw.id }}}}"]
      health_check: {{path: /, interval: 2s, timeout: 1s, healthy: 1, unhealthy: 2}}
      backends: ["{{{{ web.address }}}}"]
      backend_port: 8080
  db:
    type: database
    properties: {{engine: postgres, owner_password: {PASSWORD}, firewalls: ["{{{{ db_fw.id }}}}"]}}
outputs:
  front: "{{{{ lb.address }}}}:{{{{ lb.port }}}}"
  public: "{{{{ public.address }}}}"
  db: "{{{{ db.endpoint }}}}"
  key: {{value: "{{{{ deployer.private_key }}}}", secret: true}}
"#,
        one_network(cidr),
        // Members of client_fw may reach web on 8080 too.
        web_firewalls(8080).replace(
            "        - {protocol: tcp, port: 22, from: 0.0.0.0/0}\n",
            "        - {protocol: tcp, port: 8080, from: \"{{ client_fw.id }}\"}\n        \
             - {protocol: tcp, port: 22, from: 0.0.0.0/0}\n",
        )
    )
}

/// The same with web_fw open on 8080 and db_fw on 5432 to anyone.
fn opened(cidr: &str) -> String {
    template(cidr)
        .replace(
            "        - {protocol: tcp, port: 22, from: 0.0.0.0/0}\n",
            "        - {protocol: tcp, port: 22, from: 0.0.0.0/0}\n        \
             - {protocol: tcp, port: 8080, from: 0.0.0.0/0}\n",
        )
        .replace(
            "        - {protocol: tcp, port: 5432, from: \"{{ web_fw.id }}\"}\n",
            "        - {protocol: tcp, port: 5432, from: \"{{ web_fw.id }}\"}\n        \
             - {protocol: tcp, port: 5432, from: 0.0.0.0/0}\n",
        )
}

/// Whether a TCP connect from inside `server` to `host:port` succeeds
/// (bash's /dev/tcp; the machine's bash, as the server is on `image: host`).
fn connects_from(c: &RuncCloud, server: &str, host: &str, port: &str) -> bool {
    let out = c.run(&[
        "local",
        "exec",
        server,
        "--",
        "timeout",
        "5",
        "bash",
        "-c",
        &format!("exec 3<>/dev/tcp/{host}/{port}"),
    ]);
    out.code == 0
}

/// `select 1` with psql from inside `server`, or from the machine (`None`).
fn select_one(c: &RuncCloud, server: Option<&str>, endpoint: &str) -> crate::Output {
    let url = format!("postgresql://app:{PASSWORD}@{endpoint}/app?connect_timeout=5");
    match server {
        Some(s) => c.run(&["local", "exec", s, "--", "psql", &url, "-tAc", "select 1"]),
        None => {
            let out = std::process::Command::new("psql")
                .args([&url, "-tAc", "select 1"])
                .output()
                .unwrap();
            crate::Output {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
    }
}

/// An HTTP GET to `addr` that gets the web server's answer, tried until
/// `limit` (the public address learns a port a few times a second).
fn answers(addr: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if get(addr).is_some_and(|b| ok(&b) && b.contains("hello from web")) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn runc_servers_reach_the_database_and_a_public_address_reaches_them_through_firewalls() {
    skip_unless_ready!();
    if !which("psql") || !which("bash") {
        eprintln!("skipped: no psql or bash on this machine (./scripts/install-deps)");
        return;
    }
    let mut c = RuncCloud::new("reach");
    let cidr = free_cidr(21);
    let t = c.template("reach", &template(&cidr), &cidr);
    let up = c.json(&["up", &t, "--yes"]);
    assert_eq!(up["result"], "applied", "{up}");
    let outputs = c.json(&["output", &t, "--secret"]);
    let front = outputs["front"].as_str().unwrap().to_string();
    let public = outputs["public"].as_str().unwrap().to_string();
    let endpoint = outputs["db"].as_str().unwrap().to_string();
    let web = c.json(&["show", &t, "--address", "web"]);
    let own = web["attributes"]["address"].as_str().unwrap().to_string();
    let host_key = web["attributes"]["host_key"].as_str().unwrap().to_string();
    // A public address of the test range (RFC 2544), in a block of the
    // cloud's own, routed into its namespace: the guard removes its route
    // too if the test fails.
    let ip: std::net::Ipv4Addr = public.parse().unwrap();
    assert_eq!(
        ip.octets()[0..2],
        [198, 18 + (ip.octets()[1] & 1)],
        "{public}"
    );
    let block = format!("{}.0/24", public.rsplit_once('.').unwrap().0);
    c.also_cidr(&block);
    assert!(answers(&front, Duration::from_secs(20)), "the LB answers");

    // The database from a server its firewall allows; not from one it
    // does not, nor from the machine.
    assert!(
        !endpoint.starts_with("127."),
        "servers cannot reach the machine's loopback: {endpoint}"
    );
    let (db_host, db_port) = endpoint.rsplit_once(':').unwrap();
    let out = select_one(&c, Some("web"), &endpoint);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "1"),
        "{}",
        out.snapshot()
    );
    assert!(connects_from(&c, "web", db_host, db_port));
    assert!(
        !connects_from(&c, "other", db_host, db_port),
        "a server not allowed reached the database"
    );
    // What it sees: the kernel's admin-prohibited, at once.
    let out = select_one(&c, Some("other"), &endpoint);
    assert_ne!(out.code, 0, "{}", out.snapshot());
    assert!(
        out.stderr.contains("No route to host"),
        "{}",
        out.snapshot()
    );
    assert!(!connects(&endpoint), "the machine reached the database");

    // web[0]'s own address on 8080: the LB gets through, the machine and
    // a server not allowed do not.
    assert!(!connects(&format!("{own}:8080")));
    assert!(!connects_from(&c, "other", &own, "8080"));

    // The public address: SSH with the generated key and the recorded
    // host key, strictly checked; HTTP on 8080 only as web_fw allows (the
    // machine is not the LB: its connection is reset before any byte).
    if Path::new("/usr/sbin/sshd").is_file() && which("ssh") {
        let key = outputs["key"].as_str().unwrap();
        let (id, known) = ssh_files(&c.root().join("ssh"), key, &public, &host_key);
        let out = ssh_until(&id, &known, &public, "hostname", Duration::from_secs(15));
        assert!(
            out.status.success(),
            "ssh root@{public}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "web-0");
    } else {
        eprintln!("ssh part skipped: no sshd or ssh on this machine (./scripts/install-deps)");
    }
    let public_http = format!("{public}:8080");
    assert!(
        !answers(&public_http, Duration::from_secs(1)),
        "the machine got HTTP through the public address past web_fw"
    );
    assert!(!connects(&public_http), "refused at once, in the kernel");
    // From servers: one not allowed is refused at the public address as at
    // the own one; a member of client_fw gets through both; web reaches
    // itself through its public address (22 is open to all).
    assert!(!connects_from(&c, "other", &public, "8080"));
    assert!(connects_from(&c, "client", &public, "8080"));
    assert!(connects_from(&c, "client", &own, "8080"));
    assert!(connects_from(&c, "web", &public, "22"));

    // A rule change applies at the next connect: 8080 and 5432 open to
    // anyone. The machine gets HTTP at both of web[0]'s addresses, the
    // other server reaches it, and both reach the database.
    c.rewrite("reach", &opened(&cidr));
    let out = c.run(&["up", &t, "--yes", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    assert!(
        answers(&public_http, Duration::from_secs(10)),
        "public 8080"
    );
    assert!(answers(&format!("{own}:8080"), Duration::from_secs(2)));
    assert!(connects_from(&c, "other", &own, "8080"));
    assert!(connects_from(&c, "other", &public, "8080"));
    assert!(connects_from(&c, "other", db_host, db_port));
    let out = select_one(&c, None, &endpoint);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "1"),
        "{}",
        out.snapshot()
    );

    // Stopped and started: the database answers servers at the same
    // endpoint again.
    let out = c.run(&["local", "stop", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = c.run(&["local", "start", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = select_one(&c, Some("web"), &endpoint);
        if out.code == 0 || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "1"),
        "{}",
        out.snapshot()
    );
    assert!(
        answers(&public_http, Duration::from_secs(20)),
        "public again"
    );

    // While the daemon is stopped, the block stays on the machine.
    let out = c.run(&["local", "stop", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let route = std::process::Command::new("ip")
        .args(["route", "get", &public])
        .output()
        .unwrap();
    assert!(
        !route.status.success(),
        "{public} left the machine's keeping: {}",
        String::from_utf8_lossy(&route.stdout)
    );

    let out = c.run(&["destroy", &t, "--yes", "--allow-data-loss", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(c.leftovers(), Vec::<String>::new());
}
