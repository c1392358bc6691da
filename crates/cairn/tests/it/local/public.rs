//! A public address (`ip_address`) associated with a server answers for it,
//! through the server's firewalls, and comes back after a daemon restart.

use std::time::{Duration, Instant};

use super::{Local, get_from, ok};

fn template(l: &Local) -> String {
    l.template(
        "public",
        r#"cairn: 1
parameters:
  from: {type: string, default: 0.0.0.0/0}
resources:
  net: {type: network, properties: {cidr: 10.30.0.0/16}}
  sub: {type: subnet, properties: {network: "{{ net.id }}", cidr: 10.30.1.0/24}}
  fw:
    type: firewall
    properties:
      network: "{{ net.id }}"
      ingress: [{protocol: tcp, port: 8080, from: "{{ params.from }}"}]
  app:
    type: server
    properties:
      image: debian-12
      subnet: "{{ sub.id }}"
      firewalls: ["{{ fw.id }}"]
      user_data: |
        #!/bin/sh
        exec cairn util http-echo --port 8080 --text "via public"
  pub: {type: ip_address, properties: {server: "{{ app.id }}"}}
outputs:
  public: "{{ pub.address }}"
"#,
    )
}

/// Waits (at most 10 s) until `addr` answers `source` with the server's text.
fn answers(source: &str, addr: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if get_from(source, addr).is_ok_and(|b| ok(&b) && b.contains("via public")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn refused(source: &str, addr: &str) -> bool {
    get_from(source, addr).map_or(true, |b| b.is_empty())
}

#[test]
fn a_public_address_forwards_to_its_server_through_its_firewall() {
    let l = Local::new("public");
    let dir = template(&l);
    let allowed = l.spare_address(7);
    let from = format!("from={allowed}/32");
    let out = l.run(&["up", &dir, "--yes", "-p", &from, "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The plan people read leaves a rule's unset members out.
    let rule = format!(r#"ingress: [{{"protocol":"tcp","port":8080,"from":"{allowed}/32"}}]"#);
    assert!(out.stderr.contains(&rule), "{}", out.stderr);
    let up: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(up["result"], "applied", "{up}");
    let public = up["outputs"]["public"].as_str().unwrap().to_string();
    let front = format!("{public}:8080");

    assert!(
        answers(&allowed, &front),
        "{front} never answered {allowed}"
    );
    assert!(
        refused("127.0.0.1", &front),
        "the firewall let 127.0.0.1 in"
    );

    // The rule opens to everyone: the next connection gets in.
    let up = l.json(&["up", &dir, "--yes", "-p", "from=0.0.0.0/0"]);
    assert_eq!(up["counts"]["updated"], 1, "{up}");
    assert!(answers("127.0.0.1", &front));
    let app = l.json(&["show", &dir, "--address", "app"]);
    assert_eq!(app["attributes"]["public_ip"], public.as_str(), "{app}");

    // The daemon restarts: the address answers again.
    l.json(&["local", "stop"]);
    l.json(&["local", "start"]);
    assert!(answers("127.0.0.1", &front), "not back after a restart");

    l.destroy(&dir);
    assert!(
        refused("127.0.0.1", &front),
        "{front} answers after destroy"
    );
}
