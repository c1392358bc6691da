//! The store contract, on both stores: leases (semantics, and clients on
//! separate connections racing for one), values, jobs. Ported from the
//! SQLite store's unit tests so that each runs on SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Barrier;
use std::time::Duration;

use cairn_engine::store::{Lease, Owner, StoreError};
use cairn_orch::job::{HostResult, HostStatus, JobRecord};
use serde_json::json;

const HOUR: Duration = Duration::from_secs(3600);

fn who(user: &str) -> Owner {
    Owner {
        user: user.into(),
        host: "box".into(),
        pid: 42,
        process: None,
    }
}

fn job(id: &str, statuses: &[HostStatus]) -> JobRecord {
    JobRecord {
        id: id.into(),
        kind: "run".into(),
        target: "G@role:web".into(),
        function: "cmd hostname".into(),
        args: json!({"cmd": "hostname"}),
        check: false,
        user: "root".into(),
        started_at: 1_796_426_679,
        finished_at: Some(1_796_426_680),
        hosts: statuses
            .iter()
            .enumerate()
            .map(|(i, s)| HostResult {
                status: *s,
                stdout: format!("web-{i}\n"),
                detail: json!({"diff": []}),
                ..HostResult::skipped(&format!("web-{i}"), "x")
            })
            .collect(),
    }
}

crate::both_stores! {
    fn lease_acquire_read_release(place) {
        let s = place.open();
        assert_eq!(s.lease("prod").unwrap(), None);
        let lease = s
            .acquire_lease("prod", &who("ann"), "run-1", "up", HOUR, 1000)
            .unwrap();
        assert_eq!(
            lease,
            Lease {
                deployment: "prod".into(),
                owner: who("ann"),
                run_id: "run-1".into(),
                operation: "up".into(),
                acquired_at: 1000,
                expires_at: 4600,
            }
        );
        assert_eq!(s.lease("prod").unwrap(), Some(lease));
        assert_eq!(s.lease("staging").unwrap(), None);
        // The holder may acquire again (it extends).
        let again = s.acquire_lease("prod", &who("ann"), "run-1", "up", HOUR, 1010).unwrap();
        assert_eq!(again.expires_at, 4610);
        s.release_lease("prod", "run-1").unwrap();
        assert_eq!(s.lease("prod").unwrap(), None);
    }

    fn lease_locked_until_expiry_then_taken_over(place) {
        let s = place.open();
        s.acquire_lease("prod", &who("ann"), "run-1", "up", Duration::from_secs(60), 1000)
            .unwrap();
        match s.acquire_lease("prod", &who("bob"), "run-2", "destroy", HOUR, 1059) {
            Err(StoreError::Locked { deployment, lease, .. }) => {
                assert_eq!(deployment, "prod");
                assert_eq!((lease.owner, lease.run_id.as_str()), (who("ann"), "run-1"));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        let taken = s
            .acquire_lease("prod", &who("bob"), "run-2", "destroy", HOUR, 1060)
            .unwrap();
        assert_eq!(taken.owner, who("bob"));
        assert_eq!(s.lease("prod").unwrap(), Some(taken));
        // The old holder lost it.
        assert!(matches!(
            s.renew_lease("prod", "run-1", HOUR, 1061),
            Err(StoreError::LeaseLost { .. })
        ));
    }

    fn lease_renew_extends_only_the_holders(place) {
        let s = place.open();
        s.acquire_lease("prod", &who("ann"), "run-1", "up", Duration::from_secs(60), 1000)
            .unwrap();
        let renewed = s.renew_lease("prod", "run-1", Duration::from_secs(60), 1050).unwrap();
        assert_eq!((renewed.acquired_at, renewed.expires_at), (1000, 1110));
        assert_eq!(s.lease("prod").unwrap(), Some(renewed));
        assert!(matches!(
            s.renew_lease("prod", "run-2", HOUR, 1050),
            Err(StoreError::LeaseLost { deployment }) if deployment == "prod"
        ));
        assert!(matches!(
            s.renew_lease("staging", "run-1", HOUR, 1050),
            Err(StoreError::LeaseLost { .. })
        ));
    }

    fn lease_take_over_has_one_winner_and_keeps_the_process(place) {
        let s = place.open();
        let dead = Owner { process: Some("boot:pid:[1]:77".into()), ..who("ann") };
        s.acquire_lease("prod", &dead, "run-1", "up", HOUR, 1000).unwrap();
        assert_eq!(s.lease("prod").unwrap().unwrap().owner, dead);
        let taken = s
            .take_over_lease("prod", "run-1", &who("bob"), "run-2", "up", HOUR, 1001)
            .unwrap();
        assert_eq!((taken.run_id.as_str(), taken.acquired_at), ("run-2", 1001));
        match s.take_over_lease("prod", "run-1", &who("cat"), "run-3", "up", HOUR, 1001) {
            Err(StoreError::Locked { lease, now, .. }) => {
                assert_eq!((lease.run_id.as_str(), now), ("run-2", 1001));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        s.release_lease("prod", "run-2").unwrap();
        s.take_over_lease("prod", "run-2", &who("cat"), "run-3", "up", HOUR, 1002).unwrap();
    }

    fn lease_release_and_break(place) {
        let s = place.open();
        let lease = s.acquire_lease("prod", &who("ann"), "run-1", "up", HOUR, 1000).unwrap();
        s.release_lease("prod", "run-2").unwrap();
        assert_eq!(s.lease("prod").unwrap().as_ref(), Some(&lease), "released by a stranger");
        assert_eq!(s.break_lease("prod").unwrap(), Some(lease));
        assert_eq!(s.lease("prod").unwrap(), None);
        assert_eq!(s.break_lease("prod").unwrap(), None);
    }

    // Clients with their own connections race for one deployment's lease,
    // 20 rounds: exactly one wins each, every loser is told who holds it.
    fn lease_race_has_exactly_one_winner_20_times(place) {
        const CLIENTS: usize = 4;
        const ROUNDS: usize = 20;
        let stores: Vec<_> = (0..CLIENTS).map(|_| place.open()).collect();
        let barrier = Barrier::new(CLIENTS);
        for round in 0..ROUNDS {
            let deployment = format!("race-{round}");
            let results: Vec<Result<Lease, StoreError>> = std::thread::scope(|sc| {
                let handles: Vec<_> = stores
                    .iter()
                    .enumerate()
                    .map(|(i, store)| {
                        let (barrier, deployment) = (&barrier, &deployment);
                        sc.spawn(move || {
                            barrier.wait();
                            store.acquire_lease(deployment, &who(&format!("u{i}")), &format!("run-{i}"), "up", HOUR, 1000)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let winners: Vec<&Lease> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(winners.len(), 1, "round {round}: {results:?}");
            for r in &results {
                if let Err(e) = r {
                    match e {
                        StoreError::Locked { lease, .. } => assert_eq!(&**lease, winners[0]),
                        other => panic!("round {round}: expected Locked, got {other}"),
                    }
                }
            }
            assert_eq!(stores[0].lease(&deployment).unwrap().as_ref(), Some(winners[0]));
        }
    }

    fn generated_secrets_per_deployment(place) {
        let s = place.open();
        assert!(s.generated_secrets("prod").unwrap().is_empty());
        s.put_generated_secret("prod", "db_password", "p1").unwrap();
        s.put_generated_secret("prod", "api_key", "k1").unwrap();
        s.put_generated_secret("staging", "db_password", "p2").unwrap();
        s.put_generated_secret("prod", "api_key", "k2").unwrap();
        assert_eq!(
            s.generated_secrets("prod").unwrap(),
            BTreeMap::from([("api_key".into(), "k2".into()), ("db_password".into(), "p1".into())])
        );
    }

    fn outputs_replace_the_previous_ones(place) {
        let s = place.open();
        assert_eq!(s.outputs("prod").unwrap(), (json!(null), BTreeMap::new()));
        let secrets = BTreeMap::from([("token".into(), json!({"v": "t"}))]);
        s.put_outputs("prod", &json!({"url": "a"}), &secrets).unwrap();
        assert_eq!(s.outputs("prod").unwrap(), (json!({"url": "a"}), secrets));
        s.put_outputs("prod", &json!({"url": "b"}), &BTreeMap::new()).unwrap();
        assert_eq!(s.outputs("prod").unwrap(), (json!({"url": "b"}), BTreeMap::new()));
    }

    fn jobs_read_back_whole_newest_first_with_their_tally(place) {
        let s = place.open();
        let a = job("20261205031522000001", &[HostStatus::Changed, HostStatus::Failed]);
        let b = job("20261205031523000001", &[HostStatus::Ok; 3]);
        s.save_job(&a).unwrap();
        s.save_job(&b).unwrap();
        assert_eq!(s.job(&a.id).unwrap().as_ref(), Some(&a));
        assert_eq!(s.job("nope").unwrap(), None);
        let list = s.jobs(10).unwrap();
        assert_eq!(list.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), [&b.id, &a.id]);
        assert_eq!(list[1].tally, a.tally());
        assert_eq!(list[0].hosts, 3);
        assert_eq!(s.jobs(1).unwrap().len(), 1);
        // Saving again replaces its hosts.
        let done = job("20261205031522000001", &[HostStatus::Ok, HostStatus::Unreachable]);
        s.save_job(&done).unwrap();
        assert_eq!(s.job(&a.id).unwrap(), Some(done));
    }

    fn a_wrong_key_is_refused_and_the_right_one_opens(place) {
        let s = place.open();
        s.put_generated_secret("prod", "p", "v").unwrap();
        drop(s);
        let err = place.open_with(cairn_state::KeySource::Bytes([9; 32])).unwrap_err();
        assert!(matches!(err, StoreError::Key(_)), "{err}");
        assert!(err.to_string().contains("does not open the state"), "{err}");
        assert_eq!(place.open().generated_secrets("prod").unwrap()["p"], "v");
    }
}

crate::both_stores! {
    fn overview_gives_each_deployment_its_count_last_run_and_holder(place) {
        use cairn_state::LastRun;
        let s = place.open();
        assert_eq!(s.overview().unwrap(), []);
        for a in ["a", "b", "c"] {
            s.put_resource("prod", &crate::resource(a, "pw")).unwrap();
        }
        s.begin_run(&crate::run("prod", "up")).unwrap();
        let mut last = crate::run("prod", "destroy");
        last.owner = crate::owner("bob");
        last.started_at = 1_700_000_500;
        let serial = s.begin_run(&last).unwrap();
        last.outcome = "failed".into();
        s.finish_run("prod", serial, &last).unwrap();
        s.acquire_lease("prod", &crate::owner("cid"), "r7", "up", std::time::Duration::from_secs(60), 0)
            .unwrap();
        // Only history; only resources; a lease alone does not list it.
        s.begin_run(&crate::run("Zeta", "plan")).unwrap();
        s.put_resource("alpha", &crate::resource("x", "pw")).unwrap();
        s.acquire_lease("idle", &crate::owner("dan"), "r8", "up", std::time::Duration::from_secs(60), 0)
            .unwrap();

        let all = s.overview().unwrap();
        let names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, s.deployments().unwrap());
        assert_eq!(names, ["Zeta", "alpha", "prod"]);
        let prod = &all[2];
        assert_eq!(prod.resources, 3);
        assert_eq!(
            prod.last_run,
            Some(LastRun {
                serial: 2,
                command: "destroy".into(),
                outcome: "failed".into(),
                user: "bob".into(),
                host: "build-host".into(),
                started_at: 1_700_000_500,
            })
        );
        assert_eq!(prod.locked_by, Some(crate::owner("cid")));
        assert_eq!((all[0].resources, all[0].last_run.as_ref().map(|r| r.serial)), (0, Some(1)));
        assert_eq!((all[1].resources, &all[1].last_run, &all[1].locked_by), (1, &None, &None));
    }
}

crate::both_stores! {
    fn writes_made_at_once_each_land_once_and_a_failed_one_undoes_only_itself(place) {
        use cairn_engine::store::{JournalOp, JournalOutcome};
        const WRITERS: usize = 24;
        let s = place.open();
        let outcome = JournalOutcome { ok: true, id: Some("i-1".into()), error: None, finished_at: 2 };
        let barrier = Barrier::new(WRITERS);
        // Every sixth writer records its resource against a journal entry
        // that does not exist: its record must not stay, nor disturb the
        // writes committed with it.
        let results: Vec<Result<(), StoreError>> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..WRITERS)
                .map(|i| {
                    let (s, barrier, outcome) = (&s, &barrier, &outcome);
                    sc.spawn(move || {
                        barrier.wait();
                        let entry =
                            crate::journal::entry("prod", &format!("web[{i}]"), JournalOp::Create, 1);
                        let seq = s.journal_intent(&entry)?;
                        let seq = if i % 6 == 5 { seq + 1_000_000 } else { seq };
                        let record = crate::resource(&format!("web[{i}]"), "pw");
                        s.put_resource_and_close("prod", &record, seq, outcome)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, r) in results.iter().enumerate() {
            match r {
                Ok(()) => assert_ne!(i % 6, 5, "writer {i} should have failed"),
                Err(e) => {
                    assert_eq!(i % 6, 5, "writer {i}: {e}");
                    assert!(e.to_string().contains("no journal entry"), "{e}");
                }
            }
        }
        let mut recorded: Vec<String> =
            s.resources("prod").unwrap().into_iter().map(|r| r.address).collect();
        recorded.sort();
        let mut expected: Vec<String> =
            (0..WRITERS).filter(|i| i % 6 != 5).map(|i| format!("web[{i}]")).collect();
        expected.sort();
        assert_eq!(recorded, expected);
        // Each writer's intent is there once; only the failed ones are open.
        let mut open: Vec<String> =
            s.open_journal("prod").unwrap().into_iter().map(|e| e.address).collect();
        open.sort();
        let mut failed: Vec<String> =
            (0..WRITERS).filter(|i| i % 6 == 5).map(|i| format!("web[{i}]")).collect();
        failed.sort();
        assert_eq!(open, failed);
    }
}
