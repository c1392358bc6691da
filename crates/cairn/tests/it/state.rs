//! Commands that read the state, against a real SQLite state file written
//! through the store's library API.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use cairn_engine::store::{Owner, ResourceRecord, RunRecord, StateStore};
use cairn_state::{KeySource, SqliteStore};
use serde_json::json;

use crate::cairn_env;

struct Fixture {
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const SECRET: &str = "s3cr3t-pa55-word";

fn fixture(name: &str) -> Fixture {
    // The pid padded to its widest (7 digits), so a table that shows the
    // deployment's name keeps its widths from run to run.
    let dir =
        std::env::temp_dir().join(format!("cairn-cli-state-{name}-{:07}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cairn.yaml"), "cairn: 1\nresources: {}\n").unwrap();
    let store = SqliteStore::open(&dir.join("state.db"), KeySource::File(dir.join("key"))).unwrap();
    let deployment = format!("{}-dev", dir.file_name().unwrap().to_string_lossy());
    store
        .put_resource(
            &deployment,
            &ResourceRecord {
                address: "db".into(),
                kind: "database".into(),
                id: "db-1".into(),
                properties: json!({"engine": "postgres", "owner": "app"}),
                attributes: json!({"endpoint": "127.0.0.9:5432"}),
                secrets: BTreeMap::from([("properties.owner_password".into(), json!(SECRET))]),
                tags: BTreeMap::from([("cairn:deployment".into(), deployment.clone())]),
                depends_on: vec![],
                data_holding: true,
                prevent_destroy: false,
                create_before_destroy: false,
            },
        )
        .unwrap();
    store
        .put_outputs(
            &deployment,
            &json!({"db_endpoint": "127.0.0.9:5432", "db_url": "(secret)"}),
            &BTreeMap::from([(
                "db_url".into(),
                json!(format!("postgres://app:{SECRET}@127.0.0.9/app")),
            )]),
        )
        .unwrap();
    let owner = Owner {
        user: "alice".into(),
        host: "laptop".into(),
        pid: 4242,
        process: None,
    };
    store
        .begin_run(&RunRecord {
            serial: 0,
            deployment: deployment.clone(),
            run_id: "r1".into(),
            command: "up".into(),
            owner: owner.clone(),
            environment: "dev".into(),
            target: "local".into(),
            started_at: 1_700_000_000,
            finished_at: Some(1_700_000_003),
            template_digest: "abcdef0123456789".into(),
            template_files: BTreeMap::new(),
            parameters: json!({"db_password": "(secret)"}),
            plan: json!({"summary": {"create": 1}}),
            outcome: "succeeded".into(),
            duration_ms: Some(3000),
            outputs: json!({}),
        })
        .unwrap();
    store
        .acquire_lease(
            &deployment,
            &owner,
            "r2",
            "up",
            Duration::from_secs(600),
            4_000_000_000,
        )
        .unwrap();
    Fixture { dir }
}

fn run(f: &Fixture, args: &[&str]) -> crate::Output {
    run_as(f, args, "json")
}

fn run_as(f: &Fixture, args: &[&str], format: &str) -> crate::Output {
    let dir = f.dir.to_str().unwrap().to_string();
    let state = f.dir.join("state.db").to_str().unwrap().to_string();
    let key = f.dir.join("key").to_str().unwrap().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend([dir.as_str(), "--state", state.as_str(), "-o", format]);
    cairn_env(&all, &[("CAIRN_KEY_FILE", key.as_str())])
}

#[test]
fn list_show_output_history_and_lock() {
    let f = fixture("all");
    let list = run(&f, &["list"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let rows: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(
        rows,
        json!([{"address": "db", "type": "database", "id": "db-1"}])
    );

    let show = run(&f, &["show", "--address", "db"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(!show.stdout.contains(SECRET));
    let db: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(db["properties"]["owner_password"], "(secret)");

    let out = run(&f, &["output"]);
    assert!(!out.stdout.contains(SECRET), "{}", out.stdout);
    let one = run(&f, &["output", "--name", "db_url", "--secret"]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert!(
        one.stdout.contains(SECRET),
        "the secret is revealed only when asked"
    );
    let missing = run(&f, &["output", "--name", "nope"]);
    assert_eq!(missing.code, 2);

    let history = run(&f, &["history"]);
    let runs: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!(runs[0]["serial"], 1);
    assert_eq!(runs[0]["who"], "alice@laptop");
    assert_eq!(runs[0]["outcome"], "succeeded");

    let lock = run(&f, &["lock", "show"]);
    let l: serde_json::Value = serde_json::from_str(&lock.stdout).unwrap();
    assert_eq!(l["owner"], "alice@laptop (pid 4242)");
    assert_eq!(l["locked"], true);
    let broke = run(&f, &["lock", "break"]);
    assert_eq!(broke.code, 0);
    let after: serde_json::Value =
        serde_json::from_str(&run(&f, &["lock", "show"]).stdout).unwrap();
    assert_eq!(after["locked"], false);
}

#[test]
fn a_wrong_key_is_a_clear_failure() {
    let f = fixture("key");
    let other = f.dir.join("other-key");
    std::fs::write(&other, "11".repeat(32)).unwrap();
    let dir = f.dir.to_str().unwrap().to_string();
    let state = f.dir.join("state.db").to_str().unwrap().to_string();
    let out = cairn_env(
        &["list", &dir, "--state", &state],
        &[("CAIRN_KEY_FILE", other.to_str().unwrap())],
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("key"), "{}", out.stderr);
}

/// A table as the binary prints it (never with epoch seconds in it), with
/// what changes per run made fixed: the test's pid in the deployment's name
/// and how far off the lease's expiry is (the clock is live here; the exact
/// words are unit-tested in `output::cell`).
fn table(f: &Fixture, args: &[&str]) -> String {
    let out = run_as(f, args, "table");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let epoch = regex::Regex::new(r"\b\d{10}\b").unwrap();
    assert!(
        !epoch.is_match(&out.stdout),
        "no epoch seconds:\n{}",
        out.stdout
    );
    let pid = regex::Regex::new(r"-\d{7}-dev").unwrap();
    let away = regex::Regex::new(r"\((in \d+ [a-z]+|\d+ [a-z]+ ago)\)").unwrap();
    let text = pid.replace_all(&out.stdout, "-[pid--]-dev");
    away.replace_all(&text, "([relative])").into_owned()
}

#[test]
fn tables_show_times_durations_and_summaries_as_people_read_them() {
    let f = fixture("table");
    let time = regex::Regex::new(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z").unwrap();
    let history = table(&f, &["history"]);
    let lock = table(&f, &["lock", "show"]);
    assert!(time.is_match(&history), "{history}");
    assert!(time.is_match(&lock), "{lock}");
    insta::assert_snapshot!("history_table", history);
    insta::assert_snapshot!("lock_show_table", lock);
    insta::assert_snapshot!("show_table", table(&f, &["show"]));
    insta::assert_snapshot!("output_table", table(&f, &["output"]));

    let history = run_as(&f, &["history"], "table").stdout;
    assert!(history.contains("1 created"), "{history}");
    assert!(history.contains("3.0 s"), "{history}");
    assert!(history.contains("2023-11-14 22:13:20Z"), "{history}");
    let lock = run_as(&f, &["lock", "show"], "table").stdout;
    // Acquired at 4,000,000,000 for 600 s: decades from now.
    assert!(
        lock.contains("2096-10-02 07:16:40Z (in "),
        "the expiry says how far off it is:\n{lock}"
    );

    // No times in a list: only the shape is the az one.
    let list = run_as(&f, &["list"], "table");
    assert_eq!(list.code, 0, "{}", list.stderr);
    insta::assert_snapshot!("list_table", list.stdout);
}

#[test]
fn machine_formats_keep_epoch_seconds_and_milliseconds() {
    let f = fixture("machine");
    let json = run_as(&f, &["history"], "json").stdout;
    let runs: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(runs[0]["started_at"], 1_700_000_000);
    assert_eq!(runs[0]["duration_ms"], 3000);
    assert_eq!(runs[0]["changes"], json!({"create": 1}));
    let yaml = run_as(&f, &["lock", "show"], "yaml").stdout;
    assert!(yaml.contains("acquired_at: 4000000000"), "{yaml}");
    assert!(yaml.contains("expires_at: 4000000600"), "{yaml}");
    let tsv = run_as(&f, &["history"], "tsv").stdout;
    assert!(tsv.contains("\t1700000000\t"), "{tsv}");
    assert!(tsv.contains("\t3000\t"), "{tsv}");
}
