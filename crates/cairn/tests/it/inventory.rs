//! `cairn inventory`: Ansible's dynamic-inventory JSON from `-i` sources.

use serde_json::{Value as J, json};

use crate::cairn;

const FILE: &str = "tests/fixtures/inventory/hosts.ini";

fn json_of(out: &crate::Output) -> J {
    assert_eq!(out.code, 0, "{}", out.snapshot());
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
fn list_prints_ansible_dynamic_inventory_json() {
    let out = cairn(&["inventory", "-i", FILE, "--list"]);
    assert_eq!(
        json_of(&out),
        json!({
            "_meta": {"hostvars": {
                "bastion": {"ansible_host": "192.0.2.1", "ansible_user": "admin"},
                "web1.example.test": {"http_port": 8080},
                "web2.example.test": {"http_port": 8080},
                "db.example.test": {"ansible_port": 2222, "ansible_become": true}
            }},
            "all": {"children": ["ungrouped", "prod"]},
            "ungrouped": {"hosts": ["bastion"]},
            "web": {"hosts": ["web1.example.test", "web2.example.test"]},
            "db": {"hosts": ["db.example.test"]},
            "prod": {"hosts": [], "children": ["web", "db"], "vars": {"stage": "prod"}}
        })
    );
    // `--list` is the default; -i repeats and merges; --query works as everywhere.
    let out = cairn(&[
        "inventory",
        "-i",
        FILE,
        "-i",
        "extra-1,",
        "--query",
        "ungrouped.hosts",
    ]);
    assert_eq!(json_of(&out), json!(["bastion", "extra-1"]));
}

#[test]
fn host_prints_its_variables_with_its_groups() {
    let out = cairn(&["inventory", "-i", FILE, "--host", "web2.example.test"]);
    assert_eq!(json_of(&out), json!({"stage": "prod", "http_port": 8080}));

    let out = cairn(&["inventory", "-i", FILE, "--host", "nope"]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(out.stderr.contains("no host `nope`"), "{}", out.stderr);
}

#[test]
fn a_bad_inventory_is_exit_2_naming_the_file() {
    let out = cairn(&[
        "inventory",
        "-i",
        "tests/fixtures/inventory/bad.ini",
        "--list",
    ]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(
        out.stderr
            .contains("tests/fixtures/inventory/bad.ini:2:7: ansible_port must be a port number"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());

    let out = cairn(&["inventory", "-i", "tests/fixtures/inventory/missing.ini"]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    assert!(out.stderr.contains("missing.ini"), "{}", out.stderr);
}

/// A template directory whose state holds two servers and a bucket.
fn deployment_dir(name: &str) -> (std::path::PathBuf, String) {
    use std::collections::BTreeMap;

    use cairn_engine::store::{ResourceRecord, StateStore};
    use cairn_state::{KeySource, SqliteStore};

    let dir = std::env::temp_dir().join(format!("cairn-cli-inv-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cairn.yaml"), "cairn: 1\nresources: {}\n").unwrap();
    let store = SqliteStore::open(&dir.join("state.db"), KeySource::File(dir.join("key"))).unwrap();
    let deployment = format!("{}-dev", dir.file_name().unwrap().to_string_lossy());
    let record = |address: &str, kind: &str, attributes: J, tags: &[(&str, &str)]| ResourceRecord {
        address: address.into(),
        kind: kind.into(),
        id: format!("id-{address}"),
        properties: json!({"image": "debian-12"}),
        attributes,
        secrets: BTreeMap::new(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        depends_on: vec![],
        data_holding: false,
        prevent_destroy: false,
        create_before_destroy: false,
    };
    for r in [
        record(
            "web[0]",
            "server",
            json!({"address": "127.42.0.10", "host_key": "ssh-ed25519 AAAAC3Nza web0"}),
            &[("tier", "front")],
        ),
        record(
            "web[1]",
            "server",
            json!({"address": "127.42.0.11", "public_ip": "127.43.0.11"}),
            &[],
        ),
        record("assets", "bucket", json!({}), &[]),
    ] {
        store.put_resource(&deployment, &r).unwrap();
    }
    (dir, deployment)
}

#[test]
fn the_deployment_servers_merge_with_static_inventories() {
    let (dir, deployment) = deployment_dir("merge");
    let key = dir.join("key");
    let state = dir.join("state.db");
    let args = [
        "inventory",
        dir.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "-i",
        FILE,
    ];
    let out = crate::cairn_env(&args, &[("CAIRN_KEY_FILE", key.to_str().unwrap())]);
    let list = json_of(&out);
    assert_eq!(
        list["web"]["hosts"],
        json!(["web[0]", "web[1]", "web1.example.test", "web2.example.test"])
    );
    assert_eq!(list[&deployment]["hosts"], json!(["web[0]", "web[1]"]));
    assert_eq!(list["dev"]["hosts"], json!(["web[0]", "web[1]"]));
    let web0 = &list["_meta"]["hostvars"]["web[0]"];
    assert_eq!(web0["ansible_host"], json!("127.42.0.10"));
    assert_eq!(web0["cairn_host_key"], json!("ssh-ed25519 AAAAC3Nza web0"));
    assert_eq!(web0["cairn_tags"]["tier"], json!("front"));
    assert_eq!(web0["cairn_tags"]["role"], json!("web"));
    assert_eq!(
        list["_meta"]["hostvars"]["web[1]"]["cairn_public_address"],
        json!("127.43.0.11")
    );
    assert!(list["_meta"]["hostvars"].get("assets").is_none());

    // Without a state yet, a deployment has no servers, and none is created.
    let empty = std::env::temp_dir().join(format!("cairn-cli-inv-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("cairn.yaml"), "cairn: 1\nresources: {}\n").unwrap();
    let out = cairn(&["inventory", empty.to_str().unwrap()]);
    assert_eq!(json_of(&out)["ungrouped"], json!({"hosts": []}));
    assert!(!empty.join(".cairn").exists());
    let _ = std::fs::remove_dir_all(&empty);
    let _ = std::fs::remove_dir_all(&dir);
}
