//! Images captured from `runc` servers: a server's own layer becomes an
//! `image` resource; a server made from it sees those files, under its
//! own name, host key and `user_data`; an image stands alone: the image
//! and servers it came from can go, and servers made from it keep their
//! files.

use super::hosts::{RuncCloud, free_cidr, one_network, unready};

fn template(cidr: &str, extra: &str) -> String {
    format!(
        r#"{}  first:
    type: server
    properties:
      name: first
      image: host
      size: small
      subnet: "{{{{ sub.id }}}}"
      user_data: |
        #!/bin/sh
        echo first > /srv/ran-user-data
{extra}"#,
        one_network(cidr)
    )
}

const SNAP: &str = r#"  snap:
    type: image
    properties: {server: "{{ first.id }}", name: snap}
  second:
    type: server
    properties:
      name: second
      image: "{{ snap.id }}"
      size: small
      subnet: "{{ sub.id }}"
      user_data: |
        #!/bin/sh
        echo second > /srv/ran-user-data
"#;

const SNAP2: &str = r#"  snap2:
    type: image
    properties: {server: "{{ second.id }}", name: snap2}
  third:
    type: server
    properties: {name: third, image: "{{ snap2.id }}", size: small, subnet: "{{ sub.id }}"}
"#;

#[test]
fn a_captured_layer_is_an_image_servers_start_from() {
    if let Some(why) = unready() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut c = RuncCloud::new("images");
    let cidr = free_cidr(61);
    let t = c.template("images", &template(&cidr, ""), &cidr);
    let up = |c: &RuncCloud| {
        let out = c.run(&["up", &t, "--yes", "-o", "none"]);
        assert_eq!(out.code, 0, "{}", out.snapshot());
    };
    up(&c);
    let exec = |c: &RuncCloud, server: &str, script: &str| {
        c.run(&["local", "exec", server, "--", "sh", "-c", script])
    };
    // What the image is to hold; and user_data's own mark, which it is not.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while exec(&c, "first", "cat /srv/ran-user-data").stdout.trim() != "first" {
        assert!(
            std::time::Instant::now() < deadline,
            "first's user_data never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = exec(
        &c,
        "first",
        "mkdir -p /opt/app && echo v1 > /opt/app/version && rm -f /etc/motd",
    );
    assert_eq!(out.code, 0, "{}", out.snapshot());

    let write = |extra: &str| {
        std::fs::write(
            std::path::Path::new(&t).join("cairn.yaml"),
            template(&cidr, extra),
        )
        .unwrap()
    };
    write(SNAP);
    up(&c);
    let out = exec(
        &c,
        "second",
        "hostname; cat /opt/app/version; if test -e /etc/motd; then echo motd; fi",
    );
    assert_eq!(out.code, 0, "{}", out.snapshot());
    assert_eq!(out.stdout, "second\nv1\n", "{}", out.snapshot());
    // Its own user_data ran (the capture left first's mark out).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while exec(&c, "second", "cat /srv/ran-user-data").stdout.trim() != "second" {
        assert!(
            std::time::Instant::now() < deadline,
            "second's user_data never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Its own host key, not first's.
    let key = |server: &str| {
        let show = c.json(&["show", &t, "--address", server]);
        show["attributes"]["host_key"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_ne!(key("first"), key("second"));

    // An image of a server made from an image stands alone.
    let out = exec(&c, "second", "echo v2 > /opt/app/version");
    assert_eq!(out.code, 0, "{}", out.snapshot());
    write(&format!("{SNAP}{SNAP2}"));
    up(&c);
    let out = exec(&c, "third", "cat /opt/app/version /srv/ran-user-data");
    assert_eq!(out.stdout, "v2\nsecond\n", "{}", out.snapshot());

    // snap and second go (second named by id, so that the template can
    // keep snap2); third, from snap2, keeps every file.
    let id = |address: &str| {
        c.json(&["show", &t, "--address", address])["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (snap_id, second_id) = (id("snap"), id("second"));
    let only_third = SNAP2.replace(
        "server: \"{{ second.id }}\"",
        &format!("server: {second_id}"),
    );
    write(&only_third);
    up(&c);
    let dirs = c.dirs();
    assert!(!dirs.of("image", &snap_id).exists(), "snap is gone");
    let out = exec(&c, "third", "cat /opt/app/version");
    assert_eq!(out.stdout, "v2\n", "{}", out.snapshot());

    let out = c.run(&["destroy", &t, "--yes", "--allow-data-loss", "-o", "none"]);
    assert_eq!(out.code, 0, "{}", out.snapshot());
    let images = dirs.of("image", "x");
    let left = std::fs::read_dir(images.parent().unwrap()).map_or(0, |d| d.count());
    assert_eq!(left, 0, "destroy removes the images");
    assert_eq!(c.leftovers(), Vec::<String>::new());
}
