use std::collections::BTreeMap;

use cairn_engine::store::ResourceRecord;
use serde_json::json;

use super::{Host, Inventory, deployment};
use crate::Target;

fn server(address: &str, name: Option<&str>, ip: &str, tags: &[(&str, &str)]) -> ResourceRecord {
    ResourceRecord {
        address: address.into(),
        kind: "server".into(),
        id: format!("srv-{address}"),
        properties: match name {
            Some(n) => json!({"name": n, "image": "debian-12"}),
            None => json!({"image": "debian-12"}),
        },
        attributes: json!({"address": ip, "public_ip": "203.0.113.9", "host_key": "ssh-ed25519 AAAA"}),
        secrets: BTreeMap::new(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        depends_on: vec![],
        data_holding: false,
        prevent_destroy: false,
        create_before_destroy: false,
    }
}

#[test]
fn deployment_servers_become_hosts() {
    let mut bucket = server("assets", None, "", &[]);
    bucket.kind = "bucket".into();
    let records = vec![
        server("web[0]", None, "127.42.0.10", &[]),
        server("web[1]", Some("web-b"), "127.42.0.11", &[("team", "shop")]),
        server("db", None, "127.42.0.20", &[("role", "database")]),
        bucket,
    ];
    let inv = deployment::from_records("shop-dev", "dev", &records);
    let names: Vec<&str> = inv.hosts().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["web[0]", "web-b", "db"]);
    let web = inv.host("web-b").unwrap();
    assert_eq!(web.address.as_deref(), Some("127.42.0.11"));
    assert_eq!(web.public_address.as_deref(), Some("203.0.113.9"));
    assert_eq!(web.host_key.as_deref(), Some("ssh-ed25519 AAAA"));
    assert_eq!(web.groups, ["web", "shop-dev", "dev"]);
    assert_eq!(web.tags["role"], json!("web"));
    assert_eq!(web.tags["team"], json!("shop"));
    assert_eq!(web.sources, ["deployment:shop-dev"]);

    let sel = |e: &str| -> Vec<String> {
        inv.select(&Target::parse(e).unwrap())
            .iter()
            .map(|h| h.name.clone())
            .collect()
    };
    assert_eq!(sel("G@role:web"), ["web[0]", "web-b"]);
    assert_eq!(sel("G@role:database"), ["db"]);
    assert_eq!(sel("G@team:shop or S@127.42.0.20"), ["web-b", "db"]);
    assert_eq!(sel("shop-dev:!web"), ["db"]);
    assert_eq!(sel("S@203.0.113.0/24"), ["web[0]", "web-b", "db"]);

    let list = inv.ansible_list();
    assert_eq!(list["web"]["hosts"], json!(["web[0]", "web-b"]));
    let hv = &list["_meta"]["hostvars"]["db"];
    assert_eq!(hv["ansible_host"], json!("127.42.0.20"));
    assert_eq!(hv["cairn_host_key"], json!("ssh-ed25519 AAAA"));
    assert_eq!(hv["cairn_resource"], json!("db"));
}

#[test]
fn a_host_seen_twice_is_merged() {
    let mut inv = Inventory::new();
    let mut a = Host::new("h");
    a.groups.push("web".into());
    a.set_var("ansible_port", json!("2222")).unwrap();
    a.set_var("x", json!(1)).unwrap();
    inv.add_host(a);
    let mut b = Host::new("h");
    b.groups.push("prod".into());
    b.set_var("ansible_user", json!("ops")).unwrap();
    b.set_var("x", json!(2)).unwrap();
    inv.add_host(b);
    let h = inv.host("h").unwrap();
    assert_eq!(h.groups, ["web", "prod"]);
    assert_eq!((h.port, h.user.as_deref()), (Some(2222), Some("ops")));
    assert_eq!(h.vars["x"], json!(2));
    let mut c = h.clone();
    assert!(c.set_var("ansible_become", json!("maybe")).is_err());
}

#[test]
fn child_cycles_are_walked_once() {
    let mut inv = Inventory::new();
    inv.add_child("a", "b");
    inv.add_child("b", "a");
    let mut h = Host::new("h");
    h.groups.push("a".into());
    inv.add_host(h);
    let h = inv.host("h").unwrap();
    assert_eq!(inv.groups_of(h), ["a", "b", "all"]);
}

#[test]
fn a_server_gets_its_key_pairs_private_key_and_no_output_shows_it() {
    let mut web = server("web[0]", Some("web-a"), "127.42.0.10", &[]);
    web.properties["key_pair"] = json!("key-1");
    let bare = server("web[1]", Some("web-b"), "127.42.0.11", &[]);
    let key = ResourceRecord {
        address: "deployer".into(),
        kind: "key_pair".into(),
        id: "key-1".into(),
        properties: json!({"name": "deployer"}),
        attributes: json!({"public_key": "ssh-ed25519 AAAA"}),
        secrets: BTreeMap::from([(
            "attributes.private_key".to_string(),
            json!("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret"),
        )]),
        ..web.clone()
    };
    let inv = deployment::from_records("shop-dev", "dev", &[web, bare, key]);
    let a = inv.host("web-a").unwrap();
    assert!(a.private_key.as_ref().unwrap().0.contains("secret"));
    // What a transport is given keeps it.
    assert_eq!(inv.connection(a).private_key, a.private_key);
    assert!(inv.host("web-b").unwrap().private_key.is_none());
    for shown in [
        inv.ansible_list().to_string(),
        inv.ansible_host("web-a").unwrap().to_string(),
        serde_json::to_string(a).unwrap(),
        format!("{a:?}"),
    ] {
        assert!(!shown.contains("secret"), "{shown}");
    }
}
