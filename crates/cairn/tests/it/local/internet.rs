//! `internet: true` on the `runc` local cloud: servers of such a network
//! reach the distribution's package mirror (the only place off this
//! machine a test may talk to) through the cloud's NAT, servers of another
//! network reach nothing outside, turning it on applies at once, and
//! nothing of the NAT (no slirp4netns) outlives the networks or the daemon.
//! And names: a server resolves the cloud's own zones through the cloud's
//! DNS, served to it on the link.

use super::hosts::{RuncCloud, free_cidr, one_network, unready};

/// The host of the machine's first Debian mirror (apt's sources).
fn mirror() -> String {
    let mut sources = String::new();
    for path in [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ] {
        sources.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        sources.push('\n');
    }
    sources
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("deb.debian.org")
        .to_string()
}

fn template(open: &str, closed: &str, closed_internet: bool) -> String {
    format!(
        r#"cairn: 1
resources:
  open_net:
    type: network
    properties: {{cidr: {open}, internet: true}}
  open_sub:
    type: subnet
    properties: {{network: "{{{{ open_net.id }}}}", cidr: {open}}}
  closed_net:
    type: network
    properties: {{cidr: {closed}, internet: {closed_internet}}}
  closed_sub:
    type: subnet
    properties: {{network: "{{{{ closed_net.id }}}}", cidr: {closed}}}
  out:
    type: server
    properties: {{name: out, image: host, size: small, subnet: "{{{{ open_sub.id }}}}"}}
  inside:
    type: server
    properties: {{name: inside, image: host, size: small, subnet: "{{{{ closed_sub.id }}}}"}}
"#
    )
}

/// The slirp4netns processes of the cloud whose namespace is `netns`.
fn nat_processes(netns: &str) -> Vec<String> {
    let path = format!("/run/netns/{netns}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("slirp4netns")) && args.contains(&path) {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

#[test]
fn only_networks_with_internet_reach_the_package_mirror() {
    if let Some(why) = unready() {
        eprintln!("skipped: {why}");
        return;
    }
    if cairn_local::host::command::find_program("slirp4netns").is_none() {
        eprintln!("skipped: slirp4netns is not installed (./scripts/install-deps installs it)");
        return;
    }
    let mut c = RuncCloud::new("internet");
    let (open, closed) = (free_cidr(31), free_cidr(37));
    c.also_cidr(&closed);
    let t = c.template("internet", &template(&open, &closed, false), &open);
    let up = c.run(&["up", &t, "--yes", "-o", "none"]);
    assert_eq!(up.code, 0, "{}", up.snapshot());
    let netns = c.netns();
    assert_eq!(nat_processes(&netns).len(), 1, "one slirp4netns");

    let url = format!("http://{}/debian/dists/bookworm/Release", mirror());
    let fetch = |server: &str| {
        c.run(&[
            "local",
            "exec",
            server,
            "--",
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
            "-I",
            &url,
        ])
    };
    let out = fetch("out");
    assert_eq!(out.code, 0, "{}", out.snapshot());
    assert_eq!(out.stdout.trim(), "200", "{}", out.snapshot());
    let shut = fetch("inside");
    assert_ne!(shut.code, 0, "{}", shut.snapshot());

    // Turning it on applies to the next connection.
    std::fs::write(
        std::path::Path::new(&t).join("cairn.yaml"),
        template(&open, &closed, true),
    )
    .unwrap();
    let up = c.run(&["up", &t, "--yes", "-o", "none"]);
    assert_eq!(up.code, 0, "{}", up.snapshot());
    let now = fetch("inside");
    assert_eq!(now.stdout.trim(), "200", "{}", now.snapshot());

    // The daemon gone, the way out goes with it.
    let stop = c.run(&["local", "stop", "-o", "none"]);
    assert_eq!(stop.code, 0, "{}", stop.snapshot());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !nat_processes(&netns).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "slirp4netns outlived the daemon"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let down = c.run(&["destroy", &t, "--yes", "-o", "none"]);
    assert_eq!(down.code, 0, "{}", down.snapshot());
    assert!(nat_processes(&netns).is_empty());
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn a_network_on_the_nat_block_is_refused() {
    if let Some(why) = unready() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut c = RuncCloud::new("internet-bad");
    let bad = "100.127.255.0/24";
    let t = c.template("nat-block", &template(bad, &free_cidr(41), false), bad);
    let up = c.run(&["up", &t, "--yes", "-o", "none"]);
    assert_ne!(up.code, 0, "{}", up.snapshot());
    assert!(
        up.stderr
            .contains("overlaps 100.127.255.0/24, which the local cloud keeps"),
        "{}",
        up.snapshot()
    );
}

#[test]
fn a_server_resolves_the_clouds_zones() {
    if let Some(why) = unready() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut c = RuncCloud::new("server-dns");
    let cidr = free_cidr(43);
    let zone = format!("zone{}.test", std::process::id());
    let yaml = format!(
        r#"{}  web:
    type: server
    properties: {{name: web, image: host, size: small, subnet: "{{{{ sub.id }}}}"}}
  zone:
    type: dns_zone
    properties: {{name: {zone}}}
  www:
    type: dns_record
    properties: {{zone: "{{{{ zone.id }}}}", name: www, type: A, ttl: 60, values: ["{{{{ web.address }}}}"]}}
"#,
        one_network(&cidr)
    );
    let t = c.template("server-dns", &yaml, &cidr);
    let up = c.run(&["up", &t, "--yes", "-o", "none"]);
    assert_eq!(up.code, 0, "{}", up.snapshot());
    let address = c.json(&["show", &t, "--address", "web"])["attributes"]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let name = format!("www.{zone}");
    let out = c.run(&["local", "exec", "web", "--", "getent", "hosts", &name]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    assert!(
        out.stdout.starts_with(&format!("{address} ")),
        "{}",
        out.snapshot()
    );
    // A name the zone does not have: no answer, quickly (NXDOMAIN).
    let out = c.run(&[
        "local",
        "exec",
        "web",
        "--",
        "getent",
        "hosts",
        &format!("nope.{zone}"),
    ]);
    assert_ne!(out.code, 0, "{}", out.snapshot());
    // The cloud stopped and started: the link may move, resolv.conf follows.
    for cmd in ["stop", "start"] {
        let out = c.run(&["local", cmd, "-o", "none"]);
        assert_eq!(out.code, 0, "{}", out.snapshot());
    }
    let out = c.run(&["local", "exec", "web", "--", "getent", "hosts", &name]);
    assert!(
        out.stdout.starts_with(&format!("{address} ")),
        "{}",
        out.snapshot()
    );
}
