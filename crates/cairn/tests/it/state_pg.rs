//! The state on PostgreSQL through the binary: `cairn state migrate` from
//! SQLite to PostgreSQL and back, checked table by table; a target that
//! holds the deployment refused without --force; `cairn list
//! --all-deployments` on the database; the password never printed, even
//! at -vvv; `cairn up` killed at random moments, and the database
//! restarted under it; the errors a user fixes (server, privileges, a
//! schema from a newer cairn).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::store::{Owner, ResourceRecord, RunRecord, StateStore};
use cairn_orch::job::JobStore;
use cairn_state::{KeySource, SqliteStore, Transfer};
use cairn_test_support::poll::wait_until;
use serde_json::json;

use crate::cairn_env;
use crate::lifecycle::{
    FLEET, assert_converged, deployment_of, inventory, kill_up_at_random_moments, reap, s, site,
    spawn_up,
};
use crate::local::Local;

use crate::pg_cluster::{Cluster, PASSWORD, SUPERUSER};

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
        // A job, which belongs to no deployment: it goes with `--all`.
        let mut job = cairn_orch::job::JobRecord {
            id: "20261205031522000001".into(),
            kind: "run".into(),
            target: "*".into(),
            function: "cmd hostname".into(),
            args: json!({"cmd": "hostname"}),
            check: false,
            user: "ann".into(),
            started_at: 1_700_000_000,
            finished_at: Some(1_700_000_001),
            hosts: vec![cairn_orch::job::HostResult::skipped("web-0", "down")],
        };
        store.save_job(&job).unwrap();
        job.id = "20261205031523000001".into();
        job.hosts.clear();
        store.save_job(&job).unwrap();
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
        forced
            .stderr
            .contains("migrated 2 deployments and 2 jobs from"),
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
            "-o", "json", "state", "migrate", "--from", &pg, "--to", &sqlite_b, "--all",
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
    let jobs = original.export_jobs().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(copied.export_jobs().unwrap(), jobs);
    let back: serde_json::Value = serde_json::from_str(&back.stdout).unwrap();
    let job_rows: Vec<_> = back
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["deployment"].is_null())
        .map(|r| (r["table"].clone(), r["rows"].clone(), r["check"].clone()))
        .collect();
    assert_eq!(
        job_rows,
        [
            (json!("jobs"), json!(2), json!("same")),
            (json!("job_hosts"), json!(1), json!("same"))
        ]
    );
    // Into a state that holds one of the jobs: refused before any write.
    let c = scratch.join("c.db");
    SqliteStore::open(&c, KeySource::File(key.clone()))
        .unwrap()
        .save_job(&jobs[1])
        .unwrap();
    let sqlite_c = format!("sqlite:{}", c.display());
    let refused = cairn_env(
        &[
            "state", "migrate", "--from", &pg, "--to", &sqlite_c, "--all",
        ],
        &env,
    );
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains(&format!("already holds job {}: pass --force", jobs[1].id)),
        "{}",
        refused.stderr
    );
    let c = SqliteStore::open(&c, KeySource::File(key.clone())).unwrap();
    assert_eq!(c.deployments().unwrap(), Vec::<String>::new());

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

#[test]
fn cairn_up_killed_at_random_moments_on_postgres_converges_without_orphans() {
    let db = Cluster::database("cli_kill9");
    let l = Local::with_state("kill9-pg", db.url());
    let t = Instant::now();
    kill_up_at_random_moments(&l, 20, 60);
    eprintln!("20 kills on PostgreSQL took {:?}", t.elapsed());
}

/// What the database holds that must survive anything: the journal's
/// intents and the history's runs, one line each.
fn recorded(cluster: &Cluster, db: &str) -> BTreeSet<String> {
    cluster
        .psql(
            db,
            "SELECT 'journal ' || seq || ' ' || run_id || ' ' || address || ' ' || op || ' ' || token
             FROM cairn.journal
             UNION ALL SELECT 'run ' || serial || ' ' || run_id || ' ' || command FROM cairn.runs",
        )
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits for `child` at most `limit`, then kills it (the test then fails).
fn wait_at_most(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let out = reap(child);
            panic!(
                "the run was still going after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reap(child)
}

#[test]
fn the_database_restarted_in_the_middle_of_up_loses_nothing_and_the_rerun_converges() {
    // A cluster of its own: restarting the shared one would break the
    // other tests' connections.
    let cluster = Arc::new(Cluster::start());
    cluster.psql("postgres", "CREATE DATABASE up_restart");
    let l = Local::with_state("pg-restart", cluster.url("up_restart"));
    let dir = site(&l, FLEET);
    assert_eq!(l.json(&["up", s(&dir), "--yes"])["result"], "applied");
    // Each round adds servers one at a time (each must stay up 300 ms to
    // count as made), so the run is still applying when the server goes.
    type Restart = fn(&Cluster);
    let rounds: [(&str, Restart, [&str; 2]); 2] = [
        ("fast", Cluster::restart, ["n=6", "web_count=6"]),
        (
            "immediate",
            Cluster::restart_immediate,
            ["n=8", "web_count=10"],
        ),
    ];
    for (round, (mode, restart, [n, web])) in rounds.into_iter().enumerate() {
        let params = ["-p", n, "-p", web];
        let earlier = recorded(&cluster, "up_restart");
        let child = spawn_up(
            &l,
            &dir,
            &[&params[..], &["--parallelism", "1"]].concat(),
            "30",
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while l.json(&["lock", "show", s(&dir)])["locked"] != true {
            assert!(
                Instant::now() < deadline,
                "{mode}: the run never took the lease"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Restart once it has journalled a step of this round.
        wait_until(
            &format!("{mode}: a journal entry of this run"),
            Duration::from_secs(30),
            || {
                recorded(&cluster, "up_restart")
                    .difference(&earlier)
                    .any(|line| line.starts_with("journal "))
            },
        );
        let before = recorded(&cluster, "up_restart");
        let mut child = child;
        assert!(
            child.try_wait().unwrap().is_none(),
            "{mode}: the run ended before the restart"
        );
        let pid = child.id();
        let t = Instant::now();
        restart(&cluster);
        let down = t.elapsed();
        let out = wait_at_most(child, Duration::from_secs(120));
        // With `-o json`, a failed step's error is in the result on stdout.
        let stderr = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
        eprintln!(
            "{mode}: the server was back after {down:?}; the run exited {:?}",
            out.status.code()
        );
        match out.status.code() {
            // It reconnected within its deadline and finished.
            Some(0) => {}
            // Or a call in flight broke with the connection: the run
            // stopped cleanly, saying so (the journal holds what it did).
            Some(1) => assert!(stderr.contains("state storage"), "{mode}: {stderr}"),
            other => panic!("{mode}: exit {other:?}: {stderr}"),
        }
        assert!(!stderr.contains("panicked"), "{mode}: {stderr}");
        let after = recorded(&cluster, "up_restart");
        let lost: Vec<_> = before.difference(&after).collect();
        assert!(lost.is_empty(), "{mode}: lost {lost:?}");
        // The lease is free, or held by the run that ended: the rerun at
        // once (no `lock break`) takes it over and converges.
        let lock = l.json(&["lock", "show", s(&dir)]);
        if lock["locked"] == true {
            assert!(
                lock["owner"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("(pid {pid})")),
                "{lock}"
            );
        }
        let up = [&["up", s(&dir)][..], &params[..], &["--yes", "-o", "json"]].concat();
        let rerun = l.run(&up);
        assert_eq!(rerun.code, 0, "{mode}: {}", rerun.stderr);
        assert_converged(&l, &dir, round);
        let plan = [
            &["plan", s(&dir)][..],
            &params[..],
            &["--detailed-exitcode", "-o", "none"],
        ]
        .concat();
        assert_eq!(l.run(&plan).code, 0, "{mode}: the rerun left changes");
        assert_eq!(l.json(&["lock", "show", s(&dir)])["locked"], false);
    }
    l.json(&["destroy", s(&dir), "--yes", "--allow-data-loss"]);
    assert!(inventory(&l, &deployment_of(&dir)).is_empty());
}

#[test]
fn bad_state_databases_through_the_binary_say_what_to_fix() {
    let scratch = std::env::temp_dir().join(format!("cairn-cli-pg-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let key = scratch.join("key");
    let env = [("CAIRN_KEY_FILE", key.to_str().unwrap())];
    let list = |url: &str| cairn_env(&["list", "--all-deployments", "--state", url], &env);
    let db = Cluster::database("cli_bad");
    let port = db.cluster.port();

    // Nothing listens: the address is named, and the fix.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = list(&format!(
        "postgres://{SUPERUSER}:{PASSWORD}@127.0.0.1:{closed}/{}?sslmode=disable",
        db.name
    ));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{closed}"))
            && out.stderr.contains("is the server running and reachable"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(PASSWORD), "{}", out.stderr);

    // TLS asked of a server that has none; verify-full without its CA.
    let out = list(&db.url().replace("sslmode=disable", "sslmode=require"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("server does not support TLS")
            && out.stderr.contains("TLS enabled on the server"),
        "{}",
        out.stderr
    );
    let out = list(&db.url().replace("sslmode=disable", "sslmode=verify-full"));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("needs sslrootcert=PATH"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(PASSWORD), "{}", out.stderr);

    // A role that may connect but not create schema `cairn` the first time.
    let role = format!("r_{}", db.name);
    db.psql(&format!("CREATE ROLE {role} LOGIN PASSWORD 'role-pw'"));
    let as_role = format!(
        "postgres://{role}:role-pw@127.0.0.1:{port}/{}?sslmode=disable",
        db.name
    );
    let out = list(&as_role);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("permission denied") && out.stderr.contains("CREATE on the database"),
        "{}",
        out.stderr
    );
    // Once the schema is there, the same role without rights on its tables.
    assert_eq!(list(&db.url()).code, 0);
    db.psql(&format!("GRANT USAGE ON SCHEMA cairn TO {role}"));
    let out = list(&as_role);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("permission denied for table")
            && out
                .stderr
                .contains("SELECT, INSERT, UPDATE and DELETE on its tables"),
        "{}",
        out.stderr
    );

    // A schema a newer cairn wrote: refused, left as it was.
    let newer = cairn_state::PG_SCHEMA_VERSION + 1;
    db.psql(&format!("UPDATE cairn.version SET version = {newer}"));
    let out = list(&db.url());
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("newer than this cairn")
            && out.stderr.contains(&format!("schema {newer}"))
            && out.stderr.contains("upgrade cairn"),
        "{}",
        out.stderr
    );
    assert_eq!(
        db.psql("SELECT version FROM cairn.version").trim(),
        newer.to_string()
    );
    db.psql(&format!("DROP OWNED BY {role}; DROP ROLE {role}"));
    let _ = std::fs::remove_dir_all(&scratch);
}
