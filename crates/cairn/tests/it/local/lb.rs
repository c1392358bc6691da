//! The load balancer end to end: weights, firewalls, and replacing the
//! servers behind it without a failed request.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Local, get, get_from, ok, wait_serving};

const WEIGHTED: &str = r#"
cairn: 1
resources:
  net: {type: network, properties: {cidr: 10.30.0.0/16}}
  sub: {type: subnet, properties: {network: "{{ net.id }}", cidr: 10.30.1.0/24}}
  a:
    type: server
    properties:
      image: debian-12
      subnet: "{{ sub.id }}"
      user_data: "exec cairn util http-echo --port 8080 --text from-a"
  b:
    type: server
    properties:
      image: debian-12
      subnet: "{{ sub.id }}"
      user_data: "exec cairn util http-echo --port 8080 --text from-b"
  lb:
    type: load_balancer
    properties:
      listen: {protocol: http, port: 80}
      health_check: {path: /, interval: 1s, timeout: 500ms, healthy: 1, unhealthy: 2}
      backends:
        - {address: "{{ a.address }}", weight: 3}
        - {address: "{{ b.address }}", weight: 1}
      backend_port: 8080
"#;

/// Weights 3:1: over 400 requests through the load balancer, `a` answers
/// 300 ± 20 (±5 % of the requests).
#[test]
fn load_balancer_weights_split_traffic_3_to_1() {
    let l = Local::new("weights");
    let t = l.template("weighted", WEIGHTED);
    assert_eq!(l.json(&["up", &t, "--yes"])["result"], "applied");
    let front = l.front(&t, "lb");
    // Both backends in before counting: each has answered through it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "only {seen:?} answered");
        if let Some(b) = get(&front).filter(|b| ok(b)) {
            seen.insert(b.lines().last().unwrap_or_default().to_string());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut counts = BTreeMap::<String, u32>::new();
    for _ in 0..400 {
        let b = get(&front).expect("the load balancer answers");
        assert!(ok(&b), "{b}");
        *counts
            .entry(b.lines().last().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    let a = counts.get("from-a").copied().unwrap_or(0);
    let b = counts.get("from-b").copied().unwrap_or(0);
    assert_eq!(a + b, 400, "{counts:?}");
    assert!(a.abs_diff(300) <= 20, "3:1 expected, got {counts:?}");
    l.destroy(&t);
}

const GUARDED: &str = r#"
cairn: 1
resources:
  net: {type: network, properties: {cidr: 10.31.0.0/16}}
  sub: {type: subnet, properties: {network: "{{ net.id }}", cidr: 10.31.1.0/24}}
  clients_fw:
    type: firewall
    properties: {network: "{{ net.id }}", ingress: []}
  lb_fw:
    type: firewall
    properties:
      network: "{{ net.id }}"
      ingress:
        - {protocol: tcp, port: 80, from: "{{ clients_fw.id }}"}
        - {protocol: tcp, port: 22, from: 127.0.0.1/32}
  client:
    type: server
    properties:
      image: debian-12
      subnet: "{{ sub.id }}"
      firewalls: ["{{ clients_fw.id }}"]
      user_data: "exec sleep 3600"
  web:
    type: server
    properties:
      image: debian-12
      subnet: "{{ sub.id }}"
      user_data: "exec cairn util http-echo --port 8080 --text guarded"
  lb:
    type: load_balancer
    properties:
      listen: {protocol: http, port: 80}
      health_check: {path: /, interval: 1s, timeout: 500ms, healthy: 1, unhealthy: 2}
      backends: ["{{ web.address }}"]
      backend_port: 8080
      firewalls: ["{{ lb_fw.id }}"]
"#;

/// A load balancer whose firewall lets in only the members of another
/// firewall: the client server's address is served, 127.0.0.1 (allowed on
/// port 22 only) and a stranger's address are refused.
#[test]
fn load_balancer_firewalls_refuse_other_sources() {
    let l = Local::new("lbfw");
    let t = l.template("guarded", GUARDED);
    assert_eq!(l.json(&["up", &t, "--yes"])["result"], "applied");
    let front = l.front(&t, "lb");
    let client = l.json(&["show", &t, "--address", "client"]);
    let client_ip = client["attributes"]["address"]
        .as_str()
        .unwrap()
        .to_string();

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match get_from(&client_ip, &front) {
            Ok(b) if ok(&b) && b.contains("guarded") => break,
            other => assert!(Instant::now() < deadline, "client never served: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for stranger in ["127.0.0.1".to_string(), l.spare_address(7)] {
        let refused = get_from(&stranger, &front);
        assert!(refused.is_err(), "{stranger} got {refused:?}");
    }
    l.destroy(&t);
}

const REPLACED: &str = r#"
cairn: 1
parameters:
  version: {type: string, default: "1"}
resources:
  net: {type: network, properties: {cidr: 10.32.0.0/16}}
  sub: {type: subnet, properties: {network: "{{ net.id }}", cidr: 10.32.1.0/24}}
  web:
    type: server
    count: 2
    lifecycle: {create_before_destroy: true}
    properties:
      image: debian-12
      subnet: "{{ sub.id }}"
      user_data: "exec cairn util http-echo --port 8080 --text v{{ params.version }}"
  lb:
    type: load_balancer
    properties:
      listen: {protocol: http, port: 80}
      health_check: {path: /, interval: 1s, timeout: 500ms, healthy: 1, unhealthy: 2}
      backends: "{{ web | map(attribute='address') | list }}"
      backend_port: 8080
"#;

/// A force-new change (`user_data`) replaces every server; with
/// `create_before_destroy` the load balancer always has a healthy backend,
/// so a client loop through it during the `up` sees no failed request.
#[test]
fn replacing_servers_with_create_before_destroy_fails_no_request() {
    let l = Local::new("cbd");
    let t = l.template("replaced", REPLACED);
    assert_eq!(l.json(&["up", &t, "--yes"])["result"], "applied");
    let front = l.front(&t, "lb");
    wait_serving(&front, "v1", Duration::from_secs(20));
    let before = l.json(&["show", &t, "--address", "web[0]"])["attributes"]["address"].clone();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = std::thread::spawn({
        let (stop, front) = (stop.clone(), front.clone());
        // Bounded: until told to stop, at most 60 s and 20,000 requests.
        move || {
            let started = Instant::now();
            let (mut answers, mut failed) = (BTreeMap::<String, u32>::new(), Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst)
                && started.elapsed() < Duration::from_secs(60)
                && answers.values().sum::<u32>() + (failed.len() as u32) < 20_000
            {
                match get(&front) {
                    Some(b) if ok(&b) => {
                        *answers
                            .entry(b.lines().last().unwrap_or_default().to_string())
                            .or_default() += 1;
                    }
                    other => failed.push(other),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (answers, failed)
        }
    });
    let up = l.json(&["up", &t, "--yes", "-p", "version=2"]);
    assert_eq!(up["result"], "applied", "{up}");
    wait_serving(&front, "v2", Duration::from_secs(10));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (answers, failed) = client.join().unwrap();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert!(
        answers.contains_key("v1") && answers.contains_key("v2"),
        "{answers:?}"
    );
    let after = l.json(&["show", &t, "--address", "web[0]"])["attributes"]["address"].clone();
    assert_ne!(before, after, "web[0] was not replaced");
    l.destroy(&t);
}

/// `up --replace a`: a new server where nothing changed, the balancer
/// follows it and keeps answering from it, `b` is untouched; `plan
/// --replace` says why; an address the state lacks is refused.
#[test]
fn up_replace_makes_a_new_server_and_the_balancer_follows() {
    let l = Local::new("replace");
    let t = l.template("replace", WEIGHTED);
    assert_eq!(l.json(&["up", &t, "--yes"])["result"], "applied");
    let id = |address: &str| l.json(&["show", &t, "--address", address])["id"].clone();
    let (a, b) = (id("a"), id("b"));

    let plan = l.run(&["plan", &t, "--replace", "a", "-o", "table"]);
    assert_eq!(plan.code, 0, "{}", plan.snapshot());
    assert!(
        plan.stdout
            .contains("-/+ a (server)  replaced on request (--replace)"),
        "{}",
        plan.stdout
    );
    let up = l.json(&["up", &t, "--replace", "a", "--yes"]);
    assert_eq!(up["result"], "applied", "{up}");
    assert_eq!(up["counts"]["replaced"], 1, "{up}");
    assert_ne!(id("a"), a);
    assert_eq!(id("b"), b);
    wait_serving(&l.front(&t, "lb"), "from-a", Duration::from_secs(20));
    assert_eq!(l.json(&["plan", &t])["summary"]["replace"], 0);
    // A saved plan keeps its --replace: `apply` plans the same again.
    let saved = std::path::Path::new(&t).join("replace-b.plan");
    let saved = saved.to_str().unwrap();
    let plan = l.run(&["plan", &t, "--replace", "b", "--out", saved, "-o", "none"]);
    assert_eq!(plan.code, 0, "{}", plan.snapshot());
    let applied = l.json(&["apply", saved]);
    assert_eq!(applied["counts"]["replaced"], 1, "{applied}");
    assert_ne!(id("b"), b);
    wait_serving(&l.front(&t, "lb"), "from-b", Duration::from_secs(20));

    let bad = l.run(&["up", &t, "--replace", "c", "--yes"]);
    assert_eq!(bad.code, 2, "{}", bad.snapshot());
    assert!(
        bad.stderr.contains(
            "--replace names `c`, which is not a resource in this deployment's state (see `cairn state list`)"
        ),
        "{}",
        bad.stderr
    );
    l.destroy(&t);
}

/// A balancer whose address another program took while the cloud was
/// stopped: `local start` brings the rest back, says which balancer it
/// could not and why, and exits 1; once the port is free, the next start
/// brings it back and exits 0.
#[test]
fn a_start_that_cannot_bring_a_balancer_back_says_so_and_fails() {
    let l = Local::new("lb-taken");
    let t = l.template("taken", WEIGHTED);
    assert_eq!(l.json(&["up", &t, "--yes"])["result"], "applied");
    let front = l.front(&t, "lb");
    let out = l.run(&["local", "stop", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let squatter = std::net::TcpListener::bind(&front).unwrap();
    let out = l.run(&["local", "start", "-o", "json"]);
    let again = l.run(&["local", "start", "-o", "json"]);
    let stopped = l.run(&["local", "stop", "-o", "none"]);
    drop(squatter);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("warning: the local cloud started without all it had: ")
            && out.stderr.contains(&front),
        "{}",
        out.stderr
    );
    let started: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(started["running"], true, "{started}");
    assert_eq!(
        started["problems"].as_array().unwrap().len(),
        1,
        "{started}"
    );
    // Found running, it is not this command's start to report.
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(!again.stderr.contains("warning:"), "{}", again.stderr);
    assert_eq!(stopped.code, 0, "{}", stopped.stderr);

    let out = l.run(&["local", "start", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_serving(&front, "from-", Duration::from_secs(20));
    l.destroy(&t);
}
