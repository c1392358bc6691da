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
