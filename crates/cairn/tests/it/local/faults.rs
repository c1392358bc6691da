//! Bad input on the local target: each a clear error, and nothing half-made
//! left behind (the state matches the cloud, no process, sandbox or
//! listener remains). Then the cloud surviving `local stop` / `start`, and
//! two clouds asking for one address pool.

use std::time::Duration;

use super::{Local, WEBAPP, get, ok, wait_serving};
use crate::command;

/// `up` fails with exit code 1 and `expected` in its message; afterwards
/// the deployment has no resource, the cloud runs nothing, and no sandbox
/// directory remains.
fn fails_cleanly(l: &Local, template: &str, expected: &[&str]) -> String {
    let out = l.run(&["up", template, "--yes", "-o", "json"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let text = format!("{}{}", out.stdout, out.stderr);
    for e in expected {
        assert!(text.contains(e), "{e:?} not in:\n{text}");
    }
    let listed = l.json(&["list", template]);
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
    let status = l.json(&["local", "status"]);
    assert_eq!(status.as_array().map(Vec::len), Some(0), "{status}");
    let servers = l.root.join("local/servers");
    assert!(
        std::fs::read_dir(&servers).map_or(true, |mut d| d.next().is_none()),
        "a sandbox remains in {}",
        servers.display()
    );
    text
}

#[test]
fn two_servers_asking_for_one_address_fail_cleanly() {
    let l = Local::new("sameaddr");
    let fixed = l.spare_address(9);
    let t = l.template(
        "same",
        &format!(
            r#"
cairn: 1
resources:
  net: {{type: network, properties: {{cidr: 10.40.0.0/16}}}}
  sub: {{type: subnet, properties: {{network: "{{{{ net.id }}}}", cidr: 10.40.1.0/24}}}}
  one:
    type: server
    properties: {{image: debian-12, subnet: "{{{{ sub.id }}}}", address: "{fixed}", user_data: "exec sleep 3600"}}
  two:
    type: server
    properties: {{image: debian-12, subnet: "{{{{ sub.id }}}}", address: "{fixed}", user_data: "exec sleep 3600"}}
"#
        ),
    );
    fails_cleanly(&l, &t, &[&format!("address {fixed}")]);
}

#[test]
fn overlapping_subnets_fail_cleanly() {
    let l = Local::new("overlap");
    let t = l.template(
        "overlap",
        r#"
cairn: 1
resources:
  net: {type: network, properties: {cidr: 10.41.0.0/16}}
  a: {type: subnet, properties: {network: "{{ net.id }}", cidr: 10.41.1.0/24}}
  b: {type: subnet, properties: {network: "{{ net.id }}", cidr: 10.41.1.128/25}}
"#,
    );
    fails_cleanly(&l, &t, &["overlaps"]);
}

#[test]
fn a_server_whose_user_data_exits_fails_with_its_log() {
    let l = Local::new("quits");
    let t = l.template(
        "quits",
        r#"
cairn: 1
resources:
  net: {type: network, properties: {cidr: 10.42.0.0/16}}
  sub: {type: subnet, properties: {network: "{{ net.id }}", cidr: 10.42.1.0/24}}
  app:
    type: server
    properties:
      image: debian-12
      subnet: "{{ sub.id }}"
      user_data: |
        #!/bin/sh
        echo "cannot find /etc/app.conf" >&2
        exit 3
"#,
    );
    fails_cleanly(
        &l,
        &t,
        &["did not become ready", "cannot find /etc/app.conf"],
    );
}

/// The load balancer's port is held by another program (this test) on the
/// address the cloud gives it (the pool's first, 127.P.0.2).
#[test]
fn a_load_balancer_port_taken_by_another_program_fails_cleanly() {
    let l = Local::new("porttaken");
    let address = format!("127.{}.0.2", l.pool);
    let holder = std::net::TcpListener::bind((address.as_str(), 18080)).unwrap();
    let t = l.template(
        "taken",
        r#"
cairn: 1
resources:
  lb:
    type: load_balancer
    properties:
      listen: {protocol: http, port: 18080}
      backends: []
      backend_port: 8080
"#,
    );
    fails_cleanly(
        &l,
        &t,
        &[&format!("cannot listen on {address}:18080"), "in use"],
    );
    // The port is still the other program's, and the cloud gives the
    // address out again once the port is free.
    assert_eq!(
        holder.local_addr().unwrap(),
        format!("{address}:18080").parse().unwrap()
    );
    drop(holder);
    assert_eq!(l.json(&["up", &t, "--yes"])["result"], "applied");
    assert_eq!(l.front(&t, "lb"), format!("{address}:18080"));
    l.destroy(&t);
}

/// `cairn local stop` then `start`: every server, the load balancer, the
/// DNS zone and the database answer again at the same addresses, the
/// database with the password sealed in the cloud's record.
#[test]
fn local_stop_and_start_bring_everything_back_at_the_same_addresses() {
    let l = Local::new("restart");
    assert_eq!(l.json(&["up", WEBAPP, "--yes"])["result"], "applied");
    let front = l.front(WEBAPP, "lb");
    let webs: Vec<String> = (0..2)
        .map(|i| {
            let w = l.json(&["show", WEBAPP, "--address", &format!("web[{i}]")]);
            format!("{}:8080", w["attributes"]["address"].as_str().unwrap())
        })
        .collect();
    let db = l.json(&["show", WEBAPP, "--address", "db", "--secret"]);
    let password = db["properties"]["owner_password"]
        .as_str()
        .unwrap()
        .to_string();
    let db_host = db["attributes"]["address"].as_str().unwrap().to_string();
    let cloud_json = ["cloud.db", "cloud.db-wal"]
        .iter()
        .filter_map(|f| std::fs::read(l.root.join("local").join(f)).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect::<String>();
    assert!(
        !cloud_json.contains(&password),
        "the database password is in the cloud's record in clear"
    );
    let lb_ip = front.split(':').next().unwrap().to_string();

    let answers = || {
        wait_serving(&front, "hello from", Duration::from_secs(20));
        for (i, w) in webs.iter().enumerate() {
            wait_serving(w, &format!("hello from {i}"), Duration::from_secs(10));
        }
        let dig = std::process::Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &l.dns_port.to_string(),
                "www.example.test",
                "A",
                "+short",
                "+time=2",
                "+tries=1",
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&dig.stdout).trim(), lb_ip);
        psql(&db_host, &password)
    };
    assert_eq!(answers(), "app");

    let stopped = l.json(&["local", "stop"]);
    assert_eq!(stopped["running"], false, "{stopped}");
    assert!(
        get(&front).is_none(),
        "the load balancer answers while stopped"
    );
    assert!(webs.iter().all(|w| get(w).is_none()), "a server answers");
    assert!(std::net::TcpStream::connect((db_host.as_str(), 5432)).is_err());

    let started = l.json(&["local", "start"]);
    assert_eq!(started["running"], true, "{started}");
    assert_eq!(answers(), "app");
    assert!(
        get(&front).is_some_and(|b| ok(&b)),
        "the load balancer is not back at {front}"
    );
    l.destroy(WEBAPP);
}

/// `select current_user` as the owner, with the password.
fn psql(host: &str, password: &str) -> String {
    let psql = cairn_local::postgres::find_binaries().unwrap().psql;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let q = std::process::Command::new(&psql)
            .args([
                "-h",
                host,
                "-p",
                "5432",
                "-U",
                "app",
                "-d",
                "app",
                "-tAc",
                "select current_user",
            ])
            .env("PGPASSWORD", password)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&q.stdout).trim().to_string();
        if q.status.success() || std::time::Instant::now() > deadline {
            return if out.is_empty() {
                String::from_utf8_lossy(&q.stderr).into_owned()
            } else {
                out
            };
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Two clouds (two directories) asking for the same address pool: the
/// second is refused with a message that names the first, and starts once
/// the first has stopped.
#[test]
fn a_second_cloud_on_the_same_pool_is_refused() {
    let first = Local::new("pool1");
    let mut second = Local::new("pool2");
    second.pool = first.pool.clone();
    assert_eq!(first.json(&["local", "start"])["running"], true);
    let refused = second.run(&["local", "start", "-o", "json"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    let first_dir = first.root.join("local").display().to_string();
    let expected = [
        format!("127.{}.0.0/16 is in use by another local cloud", first.pool),
        first_dir,
        "CAIRN_LOCAL_POOL".to_string(),
    ];
    for e in expected {
        assert!(
            refused.stderr.contains(&e),
            "{e:?} not in {}",
            refused.stderr
        );
    }
    assert!(!second.root.join("local/daemon.json").exists());

    first.json(&["local", "stop"]);
    assert_eq!(second.json(&["local", "start"])["running"], true);
}

/// The daemon killed with SIGKILL in the middle of an `up`: every resource
/// the run recorded as made (its provider call answered) is still in the
/// cloud after a restart, and the next `up` converges with no orphan.
#[test]
fn a_daemon_killed_mid_up_loses_nothing_a_call_reported_done() {
    let l = Local::new("daemonkill");
    let t = l.template(
        "records",
        r#"
cairn: 1
resources:
  zone: {type: dns_zone, properties: {name: kill.test}}
  rec:
    type: dns_record
    count: 800
    properties:
      zone: "{{ zone.id }}"
      name: "host-{{ index }}"
      type: A
      values: ["10.1.{{ index // 250 }}.{{ index % 250 + 1 }}"]
"#,
    );
    let started = l.json(&["local", "start"]);
    let daemon = nix::unistd::Pid::from_raw(started["pid"].as_i64().unwrap() as i32);
    let vars = l.vars();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut up = command(&["up", &t, "--yes", "-o", "none"], &vars)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the run has recorded some records and before it is done.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let made = l.json(&["list", &t]).as_array().map_or(0, Vec::len);
        if made >= 40 {
            assert!(
                made < 801,
                "the run ended before the daemon could be killed"
            );
            break;
        }
        assert!(up.try_wait().unwrap().is_none(), "the run ended early");
        assert!(std::time::Instant::now() < deadline, "the run made nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(daemon, nix::sys::signal::Signal::SIGKILL).unwrap();
    // The run retries calls to a daemon that is gone: stop it too.
    let _ = up.kill();
    let _ = up.wait();
    let recorded = l.json(&["list", &t]);
    let recorded = recorded.as_array().unwrap().clone();
    assert!(recorded.len() >= 40, "{}", recorded.len());

    // Back up: the daemon's record has every one the run recorded.
    assert_eq!(l.json(&["local", "start"])["running"], true);
    let status = l.json(&["local", "status"]);
    let ids: std::collections::HashSet<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    for r in &recorded {
        let id = r["id"].as_str().unwrap();
        assert!(
            ids.contains(id),
            "{} ({id}) is gone from the cloud",
            r["address"]
        );
    }
    // The rerun takes the dead run's lease at once and converges, and a
    // plan that also looks for orphans finds nothing.
    let rerun = l.run(&["up", &t, "--yes", "-o", "json"]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert_eq!(l.json(&["list", &t]).as_array().map(Vec::len), Some(801));
    let again = l.run(&["plan", &t, "--prune", "--detailed-exitcode", "-o", "none"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let status = l.json(&["local", "status"]);
    assert_eq!(status.as_array().map(Vec::len), Some(801), "no duplicate");
    l.destroy(&t);
}
