//! Leases under contention: separate connections in threads, and separate
//! processes (this test binary re-run as children), as when several `cairn`
//! commands start at once on one state file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use cairn_engine::store::{Lease, Owner, StateStore, StoreError};

use crate::{Scratch, open, owner};

const HOUR: Duration = Duration::from_secs(3600);
const NOW: i64 = 1_700_000_000;
const CONTENDERS: usize = 10;

/// Exactly one winner; every loser was refused with `Locked` naming it.
fn assert_one_winner(results: &[Result<Lease, StoreError>]) -> Lease {
    let winners: Vec<&Lease> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let winner = winners[0].clone();
    for result in results {
        match result {
            Ok(lease) => assert_eq!(lease, &winner),
            Err(StoreError::Locked {
                deployment, lease, ..
            }) => {
                assert_eq!(deployment, "prod");
                assert_eq!(**lease, winner, "Locked names someone else than the holder");
                let message = StoreError::Locked {
                    deployment: deployment.clone(),
                    lease: lease.clone(),
                    now: NOW,
                }
                .to_string();
                assert!(message.contains(&winner.owner.to_string()), "{message}");
            }
            Err(other) => panic!("expected Locked, got {other}"),
        }
    }
    winner
}

#[test]
fn ten_connections_race_for_a_lease_and_one_wins() {
    let scratch = Scratch::new("lease-threads");
    let db = scratch.db();
    // Each thread opens its own store on the fresh file (so the first open,
    // migration included, races too), then all try to acquire together.
    let barrier = Barrier::new(CONTENDERS);
    let results: Vec<Result<Lease, StoreError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CONTENDERS)
            .map(|i| {
                let (db, barrier) = (&db, &barrier);
                s.spawn(move || {
                    let store = open(db);
                    barrier.wait();
                    let who = owner(&format!("user{i}"));
                    store.acquire_lease("prod", &who, &format!("run-{i}"), "up", HOUR, NOW)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winner = assert_one_winner(&results);
    assert_eq!(open(&db).lease("prod").unwrap(), Some(winner));
}

const CHILD_DB: &str = "STATE_IT_LEASE_DB";
const CHILD_INDEX: &str = "STATE_IT_LEASE_INDEX";
const RESULT: &str = "LEASE-RESULT ";

/// Run only as a child of `ten_processes_race_for_a_lease_and_one_wins`.
#[test]
#[ignore = "a child process of ten_processes_race_for_a_lease_and_one_wins"]
fn lease_child_process() {
    let (Some(db), Some(index)) = (std::env::var_os(CHILD_DB), std::env::var_os(CHILD_INDEX))
    else {
        return;
    };
    let db = PathBuf::from(db);
    let index = index.into_string().unwrap();
    let store = open(&db);
    let dir = db.parent().unwrap();
    std::fs::write(dir.join(format!("ready-{index}")), "").unwrap();
    wait_for(&dir.join("go"));
    let who = Owner {
        user: format!("proc{index}"),
        host: "build-host".into(),
        pid: std::process::id(),
        process: None,
    };
    let result = store.acquire_lease("prod", &who, &format!("run-{index}"), "up", HOUR, NOW);
    // One line the parent parses: the outcome as JSON.
    let line = match result {
        Ok(lease) => serde_json::json!({"won": lease}),
        Err(StoreError::Locked { lease, .. }) => serde_json::json!({"locked": lease}),
        Err(other) => serde_json::json!({"error": other.to_string()}),
    };
    println!("{RESULT}{line}");
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn ten_processes_race_for_a_lease_and_one_wins() {
    let scratch = Scratch::new("lease-procs");
    let db = scratch.db();
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..CONTENDERS)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "leases::lease_child_process",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                ])
                .env(CHILD_DB, &db)
                .env(CHILD_INDEX, i.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Wait until every child has opened the store; a child that dies
    // before that fails the test at once, with its output.
    let deadline = Instant::now() + Duration::from_secs(60);
    while (0..CONTENDERS).any(|i| !scratch.dir.join(format!("ready-{i}")).exists()) {
        for child in &mut children {
            if child
                .try_wait()
                .unwrap()
                .is_some_and(|status| !status.success())
            {
                let mut stderr = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
                panic!("a child died before acquiring: {stderr}");
            }
        }
        assert!(Instant::now() < deadline, "the children did not all start");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::fs::write(scratch.dir.join("go"), "").unwrap();

    let results: Vec<Result<Lease, StoreError>> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "child failed: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let line = stdout
                .lines()
                .find_map(|l| l.strip_prefix(RESULT))
                .unwrap_or_else(|| panic!("no result from the child: {stdout}"));
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(lease) = value.get("won") {
                Ok(serde_json::from_value(lease.clone()).unwrap())
            } else if let Some(lease) = value.get("locked") {
                Err(StoreError::Locked {
                    deployment: "prod".into(),
                    lease: Box::new(serde_json::from_value(lease.clone()).unwrap()),
                    now: NOW,
                })
            } else {
                Err(StoreError::Storage(value["error"].to_string()))
            }
        })
        .collect();
    let winner = assert_one_winner(&results);
    assert!(winner.owner.user.starts_with("proc"));
    assert_ne!(
        winner.owner.pid,
        std::process::id(),
        "the parent does not take part"
    );
    assert_eq!(open(&db).lease("prod").unwrap(), Some(winner));
}

#[test]
fn an_expired_lease_is_taken_over_and_its_old_holder_loses_it() {
    let scratch = Scratch::new("lease-expiry");
    // Two stores on one file: two processes.
    let (ann, bob) = (scratch.open(), scratch.open());
    let ttl = Duration::from_secs(60);
    let first = ann
        .acquire_lease("prod", &owner("ann"), "run-ann", "up", ttl, NOW)
        .unwrap();
    assert_eq!(first.expires_at, NOW + 60);

    match bob.acquire_lease("prod", &owner("bob"), "run-bob", "destroy", ttl, NOW + 59) {
        Err(StoreError::Locked { lease, .. }) => assert_eq!(*lease, first),
        other => panic!("a live lease was not honoured: {other:?}"),
    }
    // Ann's heartbeat keeps it alive past the first expiry.
    ann.renew_lease("prod", "run-ann", ttl, NOW + 50).unwrap();
    assert!(matches!(
        bob.acquire_lease("prod", &owner("bob"), "run-bob", "destroy", ttl, NOW + 100),
        Err(StoreError::Locked { .. })
    ));

    // Ann stops renewing: at expiry (expires_at <= now) Bob takes over.
    let taken = bob
        .acquire_lease("prod", &owner("bob"), "run-bob", "destroy", ttl, NOW + 110)
        .unwrap();
    assert_eq!(taken.owner, owner("bob"));
    assert_eq!(
        (taken.acquired_at, taken.expires_at),
        (NOW + 110, NOW + 170)
    );

    // Ann comes back: her renewal fails, her release leaves Bob's lease.
    assert!(matches!(
        ann.renew_lease("prod", "run-ann", ttl, NOW + 111),
        Err(StoreError::LeaseLost { deployment }) if deployment == "prod"
    ));
    ann.release_lease("prod", "run-ann").unwrap();
    assert_eq!(ann.lease("prod").unwrap(), Some(taken.clone()));

    bob.renew_lease("prod", "run-bob", ttl, NOW + 120).unwrap();
    let broken = ann.break_lease("prod").unwrap().unwrap();
    assert_eq!(
        (broken.run_id.as_str(), broken.expires_at),
        ("run-bob", NOW + 180)
    );
    assert_eq!(bob.lease("prod").unwrap(), None);
    assert!(matches!(
        bob.renew_lease("prod", "run-bob", ttl, NOW + 130),
        Err(StoreError::LeaseLost { .. })
    ));
}

#[test]
fn leases_of_different_deployments_are_independent() {
    let scratch = Scratch::new("lease-independent");
    let store = scratch.open();
    store
        .acquire_lease("prod", &owner("ann"), "r1", "up", HOUR, NOW)
        .unwrap();
    store
        .acquire_lease("staging", &owner("bob"), "r2", "up", HOUR, NOW)
        .unwrap();
    store.release_lease("staging", "r2").unwrap();
    assert_eq!(store.lease("prod").unwrap().unwrap().run_id, "r1");
    assert_eq!(store.lease("staging").unwrap(), None);
}
