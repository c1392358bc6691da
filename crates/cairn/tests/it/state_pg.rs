//! The state on PostgreSQL through the binary: `cairn state migrate` from
//! SQLite to PostgreSQL and back, checked table by table; a target that
//! holds the deployment refused without --force; `cairn list
//! --all-deployments` on the database; the password never printed, even
//! at -vvv.

use std::collections::BTreeMap;

use cairn_engine::store::{Owner, ResourceRecord, RunRecord, StateStore};
use cairn_state::{KeySource, SqliteStore, Transfer};
use serde_json::json;

use crate::cairn_env;
use crate::pg_cluster::{Cluster, PASSWORD};

fn record(address: &str) -> ResourceRecord {
    ResourceRecord {
        address: address.into(),
        kind: "server".into(),
        id: format!("srv-{address}"),
        properties: json!({"size": "small"}),
        attributes: json!({"ip": "127.0.0.9"}),
        secrets: BTreeMap::from([("attributes.root_password".into(), json!("cli-secret-42"))]),
        tags: BTreeMap::new(),
        depends_on: vec![],
        data_holding: false,
        prevent_destroy: false,
        create_before_destroy: false,
    }
}

fn run(deployment: &str) -> RunRecord {
    RunRecord {
        serial: 0,
        deployment: deployment.into(),
        run_id: "r1".into(),
        command: "up".into(),
        owner: Owner {
            user: "ann".into(),
            host: "box".into(),
            pid: 1,
            process: None,
        },
        environment: "dev".into(),
        target: "local".into(),
        started_at: 1_700_000_000,
        finished_at: Some(1_700_000_010),
        template_digest: "sha256:00".into(),
        template_files: BTreeMap::new(),
        parameters: json!({}),
        plan: json!({}),
        outcome: "succeeded".into(),
        duration_ms: Some(10_000),
        outputs: json!({}),
    }
}

#[test]
fn state_migrate_sqlite_to_postgres_and_back_checks_every_table() {
    let scratch = std::env::temp_dir().join(format!("cairn-cli-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let key = scratch.join("key");
    let (a, b) = (scratch.join("a.db"), scratch.join("b.db"));
    let key_file = key.to_str().unwrap();
    {
        let store = SqliteStore::open(&a, KeySource::File(key.clone())).unwrap();
        for addr in ["web[0]", "web[1]", "db"] {
            store.put_resource("prod", &record(addr)).unwrap();
        }
        store.begin_run(&run("prod")).unwrap();
        store
            .put_generated_secret("prod", "db_password", "gen-secret-77")
            .unwrap();
        store.put_resource("staging", &record("one")).unwrap();
    }
    let db = Cluster::database("cli_migrate");
    // The password comes from PGPASSWORD, not the URL.
    let pg = db.url_without_password();
    let env = [("CAIRN_KEY_FILE", key_file), ("PGPASSWORD", PASSWORD)];
    let sqlite_a = format!("sqlite:{}", a.display());

    let out = cairn_env(
        &[
            "-vvv",
            "-o",
            "json",
            "state",
            "migrate",
            "--from",
            &sqlite_a,
            "--to",
            &pg,
            "--deployment",
            "prod",
        ],
        &env,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert!(rows.iter().all(|r| r["check"] == "same"));
    assert_eq!(
        rows.iter().find(|r| r["table"] == "resources").unwrap()["rows"],
        3
    );
    assert!(
        out.stderr.contains("migrated 1 deployment"),
        "{}",
        out.stderr
    );
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(PASSWORD), "the password was printed: {text}");
    }

    // Again: the target holds it now.
    let again = cairn_env(
        &[
            "state",
            "migrate",
            "--from",
            &sqlite_a,
            "--to",
            &pg,
            "--deployment",
            "prod",
        ],
        &env,
    );
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(
        again.stderr.contains("already holds deployment `prod`")
            && again.stderr.contains("--force"),
        "{}",
        again.stderr
    );
    let forced = cairn_env(
        &[
            "state", "migrate", "--from", &sqlite_a, "--to", &pg, "--all", "--force",
        ],
        &env,
    );
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(
        forced.stderr.contains("migrated 2 deployments"),
        "{}",
        forced.stderr
    );

    // Listed from the database, with the last run.
    let listed = cairn_env(
        &["-o", "json", "list", "--all-deployments", "--state", &pg],
        &env,
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed[0]["deployment"], "prod");
    assert_eq!(
        (listed[0]["resources"].clone(), listed[0]["outcome"].clone()),
        (json!(3), json!("succeeded"))
    );
    assert_eq!(listed[1]["deployment"], "staging");

    // And back to a new SQLite file: the same state.
    let sqlite_b = format!("sqlite:{}", b.display());
    let back = cairn_env(
        &[
            "state", "migrate", "--from", &pg, "--to", &sqlite_b, "--all",
        ],
        &env,
    );
    assert_eq!(back.code, 0, "{}", back.stderr);
    let original = SqliteStore::open(&a, KeySource::File(key.clone())).unwrap();
    let copied = SqliteStore::open(&b, KeySource::File(key.clone())).unwrap();
    for d in ["prod", "staging"] {
        assert_eq!(
            copied.export(d).unwrap().tables(),
            original.export(d).unwrap().tables()
        );
    }
    assert_eq!(
        copied.generated_secrets("prod").unwrap()["db_password"],
        "gen-secret-77"
    );

    // A wrong password is named, and not echoed.
    let wrong = cairn_env(
        &[
            "list",
            "--all-deployments",
            "--state",
            &db.url().replace(PASSWORD, "nope-pw"),
        ],
        &[("CAIRN_KEY_FILE", key_file)],
    );
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("password authentication failed"),
        "{}",
        wrong.stderr
    );
    assert!(!wrong.stderr.contains("nope-pw"), "{}", wrong.stderr);
    let _ = std::fs::remove_dir_all(&scratch);
}
