//! Inventory sources read from fixture files and a real script.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cairn_orch::{Inventory, InventoryError, Target};
use serde_json::json;

use crate::{fixture, scratch};

fn names(inv: &Inventory, expr: &str) -> Vec<String> {
    inv.select(&Target::parse(expr).unwrap())
        .iter()
        .map(|h| h.name.clone())
        .collect()
}

fn load(rel: &str) -> Inventory {
    Inventory::load(&fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn yaml_and_ini_read_the_same_hosts_and_groups() {
    for file in ["inventory/hosts.yaml", "inventory/hosts.ini"] {
        let inv = load(file);
        let hosts: Vec<&str> = inv.hosts().map(|h| h.name.as_str()).collect();
        let mut sorted = hosts.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "bastion",
                "db.example.test",
                "web01.example.test",
                "web02.example.test",
                "web03.example.test"
            ],
            "{file}"
        );
        let db = inv.host("db.example.test").unwrap();
        assert_eq!(db.address.as_deref(), Some("10.0.2.1"), "{file}");
        assert_eq!(db.port, Some(2222), "{file}");
        assert_eq!(db.key_file.as_deref(), Some("~/.ssh/db"), "{file}");
        assert_eq!(db.r#become, Some(true), "{file}");
        assert_eq!(db.vars.get("pg_version"), Some(&json!(16)), "{file}");
        let bastion = inv.host("bastion").unwrap();
        assert_eq!(bastion.user.as_deref(), Some("admin"));
        assert_eq!(inv.groups_of(bastion), ["ungrouped", "all"], "{file}");
        let web1 = inv.host("web01.example.test").unwrap();
        assert_eq!(inv.groups_of(web1), ["web", "prod", "all"], "{file}");

        // Group variables reach a host from `all`, its parents and groups.
        let vars = inv.ansible_host("web02.example.test").unwrap();
        assert_eq!(vars["ntp"], json!("ntp.example.test"), "{file}");
        assert_eq!(vars["stage"], json!("prod"), "{file}");
        assert!(vars.get("http_port").is_some(), "{file}");

        // Patterns over the groups read from the file.
        assert_eq!(names(&inv, "prod:!web"), ["db.example.test"], "{file}");
        assert_eq!(names(&inv, "web[0]"), ["web01.example.test"], "{file}");
        assert_eq!(names(&inv, "ungrouped"), ["bastion"], "{file}");
        assert_eq!(
            names(&inv, "S@10.0.2.0/24 or bastion"),
            ["bastion", "db.example.test"],
            "{file}"
        );

        let list = inv.ansible_list();
        let mut top: Vec<String> = serde_json::from_value(list["all"]["children"].clone()).unwrap();
        top.sort();
        assert_eq!(top, ["prod", "ungrouped"], "{file}");
        assert_eq!(list["prod"]["children"], json!(["web", "db"]), "{file}");
        assert_eq!(list["prod"]["vars"], json!({"stage": "prod"}), "{file}");
        assert_eq!(list["ungrouped"]["hosts"], json!(["bastion"]), "{file}");
        assert_eq!(
            list["web"]["hosts"],
            json!([
                "web01.example.test",
                "web02.example.test",
                "web03.example.test"
            ]),
            "{file}"
        );
        assert_eq!(
            list["all"]["vars"],
            json!({"ntp": "ntp.example.test"}),
            "{file}"
        );
        assert_eq!(
            list["_meta"]["hostvars"]["db.example.test"],
            json!({
                "ansible_host": "10.0.2.1",
                "ansible_port": 2222,
                "ansible_ssh_private_key_file": "~/.ssh/db",
                "ansible_become": true,
                "pg_version": 16
            }),
            "{file}"
        );
    }
}

#[test]
fn sources_merge_and_connection_resolves_group_vars() {
    let mut inv = load("inventory/hosts.yaml");
    inv.merge(load("inventory/hosts.json"));
    inv.merge(Inventory::load(Path::new("adhoc-1,bastion,")).unwrap());
    assert!(inv.host("cache-1").is_some());
    assert!(inv.host("adhoc-1").is_some());
    let bastion = inv.host("bastion").unwrap();
    assert_eq!(bastion.sources.len(), 2, "{:?}", bastion.sources);
    assert_eq!(bastion.address.as_deref(), Some("192.0.2.1"));

    let mut dir_inv = Inventory::load(&fixture("inventory")).unwrap_err();
    // The directory holds `bad/` too, which fails, naming its file.
    if let InventoryError::Invalid { path, .. } | InventoryError::Syntax { path, .. } = &mut dir_inv
    {
        assert!(path.contains("bad/"), "{path}");
    } else {
        panic!("{dir_inv}");
    }

    let ini = scratch("group-connection");
    let file = ini.join("hosts");
    std::fs::write(
        &file,
        "[web]\nweb-1\n[web:vars]\nansible_user=deploy\nansible_port=2200\n",
    )
    .unwrap();
    let inv = Inventory::load(&file).unwrap();
    let h = inv.host("web-1").unwrap();
    assert_eq!(h.user, None);
    let c = inv.connection(h);
    assert_eq!((c.user.as_deref(), c.port), (Some("deploy"), Some(2200)));
}

#[test]
fn bad_files_name_the_file_and_say_why() {
    let cases = [
        ("inventory/bad/syntax.yaml", "syntax.yaml:3:1:"),
        (
            "inventory/bad/unknown-key.yaml",
            "host `a` in `all` must be a mapping",
        ),
        (
            "inventory/bad/no-equals.ini",
            "no-equals.ini:2:7: expected key=value",
        ),
        (
            "inventory/bad/section.ini",
            "section.ini:1:1: unknown section kind `:nonsense`",
        ),
        (
            "inventory/bad/range.ini",
            "range.ini:2:1: host range `[3:1]` ends before it begins",
        ),
        (
            "inventory/bad/port.ini",
            "port.ini:2:7: ansible_port must be a port number",
        ),
        ("inventory/missing.ini", "missing.ini: No such file"),
    ];
    for (rel, want) in cases {
        let e = Inventory::load(&fixture(rel)).expect_err(rel).to_string();
        assert!(e.contains(rel.rsplit('/').next().unwrap()), "{rel}: {e}");
        assert!(e.contains(want), "{rel}: {e}");
    }
}

fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_script_with_meta_is_called_once() {
    let dir = scratch("script-meta");
    let calls = dir.join("calls");
    let body = format!(
        r#"#!/bin/sh
echo "$@" >> '{}'
case "$1" in
--list) cat <<'JSON'
{{"web": {{"hosts": ["web-1", "web-2"], "vars": {{"tier": "front"}}}},
 "prod": {{"children": ["web"]}},
 "_meta": {{"hostvars": {{"web-1": {{"ansible_host": "10.0.0.1", "ansible_port": 22}},
                         "lone": {{"ansible_user": "root"}}}}}}}}
JSON
;;
*) exit 9;;
esac
"#,
        calls.display()
    );
    let path = script(&dir, "inv.sh", &body);
    let inv = Inventory::load(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "--list\n");
    let names: Vec<&str> = inv.hosts().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["web-1", "web-2", "lone"]);
    assert_eq!(
        inv.host("web-1").unwrap().address.as_deref(),
        Some("10.0.0.1")
    );
    assert_eq!(inv.host("lone").unwrap().user.as_deref(), Some("root"));
    let list = inv.ansible_list();
    assert_eq!(list["web"]["vars"], json!({"tier": "front"}));
    assert_eq!(list["prod"]["children"], json!(["web"]));
    assert_eq!(list["ungrouped"]["hosts"], json!(["lone"]));
}

#[test]
fn a_script_without_meta_is_asked_per_host() {
    let dir = scratch("script-host");
    let path = script(
        &dir,
        "inv.py",
        r#"#!/usr/bin/env python3
import json, sys
if sys.argv[1] == "--list":
    print(json.dumps({"db": ["db-1", "db-2"]}))
elif sys.argv[1] == "--host":
    print(json.dumps({"ansible_host": "10.9.0." + sys.argv[2][-1]}))
"#,
    );
    let inv = Inventory::load(&path).unwrap();
    assert_eq!(
        inv.host("db-2").unwrap().address.as_deref(),
        Some("10.9.0.2")
    );
    assert_eq!(inv.host("db-1").unwrap().groups, ["db"]);
}

#[test]
fn a_failing_script_names_itself_and_its_stderr() {
    let dir = scratch("script-fail");
    let path = script(
        &dir,
        "broken.sh",
        "#!/bin/sh\necho 'cannot reach the CMDB' >&2\nexit 3\n",
    );
    let e = Inventory::load(&path).unwrap_err().to_string();
    assert!(e.contains("broken.sh"), "{e}");
    assert!(e.contains("`--list` failed"), "{e}");
    assert!(e.contains("cannot reach the CMDB"), "{e}");

    let path = script(&dir, "noise.sh", "#!/bin/sh\necho 'not json'\n");
    let e = Inventory::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("noise.sh") && e.contains("did not print JSON"),
        "{e}"
    );
}
