//! The history: runs numbered per deployment, finished in place, listed
//! oldest first.

use cairn_engine::store::StoreError;
use serde_json::json;

use crate::run;

crate::both_stores! {
    fn runs_are_numbered_per_deployment_and_survive_reopen(scratch) {
        {
            let store = scratch.open();
            for (i, command) in ["up", "up", "destroy"].into_iter().enumerate() {
                assert_eq!(
                    store.begin_run(&run("prod", command)).unwrap(),
                    i as i64 + 1
                );
            }
            assert_eq!(store.begin_run(&run("staging", "up")).unwrap(), 1);
        }
        let store = scratch.open();
        assert_eq!(store.begin_run(&run("prod", "rollback")).unwrap(), 4);

        let runs = store.runs("prod").unwrap();
        let listed: Vec<_> = runs
            .iter()
            .map(|r| (r.serial, r.command.as_str()))
            .collect();
        assert_eq!(
            listed,
            [(1, "up"), (2, "up"), (3, "destroy"), (4, "rollback")]
        );
        let mut expected = run("prod", "destroy");
        expected.serial = 3;
        assert_eq!(runs[2], expected, "a run round-trips whole");
        assert_eq!(store.runs("staging").unwrap().len(), 1);
        assert!(store.runs("nowhere").unwrap().is_empty());
    }

    fn finish_updates_the_run_in_place(scratch) {
        let store = scratch.open();
        let serial = store.begin_run(&run("prod", "up")).unwrap();
        store.begin_run(&run("prod", "up")).unwrap();

        let mut finished = run("prod", "up");
        finished.serial = 99; // ignored: the arguments name the run
        finished.finished_at = Some(1_700_000_042);
        finished.outcome = "failed".into();
        finished.duration_ms = Some(42_000);
        finished.outputs = json!({"url": "http://10.0.0.1"});
        finished.plan = json!({"changes": []});
        store.finish_run("prod", serial, &finished).unwrap();

        finished.serial = serial;
        assert_eq!(store.run("prod", serial).unwrap(), finished);
        assert_eq!(store.run("prod", 2).unwrap().outcome, "running");
        assert_eq!(store.runs("prod").unwrap().len(), 2);
    }

    fn unknown_runs_are_reported(scratch) {
        let store = scratch.open();
        store.begin_run(&run("prod", "up")).unwrap();
        for serial in [0, 2, -1] {
            match store.run("prod", serial) {
                Err(StoreError::NoSuchRun {
                    deployment,
                    serial: s,
                }) => {
                    assert_eq!((deployment.as_str(), s), ("prod", serial));
                }
                other => panic!("expected NoSuchRun, got {other:?}"),
            }
        }
        assert!(matches!(
            store.run("staging", 1),
            Err(StoreError::NoSuchRun { .. })
        ));
        assert!(matches!(
            store.finish_run("prod", 5, &run("prod", "up")),
            Err(StoreError::NoSuchRun { serial: 5, .. })
        ));
    }

    fn concurrent_runs_get_distinct_serials(scratch) {
        drop(scratch.open());
        let mut serials: Vec<i64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                        s.spawn(move || {
                        let store = scratch.open();
                        (0..5)
                            .map(|_| store.begin_run(&run("prod", "up")).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        serials.sort();
        assert_eq!(serials, (1..=20).collect::<Vec<_>>());
    }
}
