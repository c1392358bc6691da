//! The journal: intents written before provider calls, outcomes after, and
//! what a killed run leaves open for the next one.

use cairn_engine::store::{JournalEntry, JournalOp, JournalOutcome};

pub(crate) fn entry(
    deployment: &str,
    address: &str,
    op: JournalOp,
    started_at: i64,
) -> JournalEntry {
    JournalEntry {
        seq: 0,
        deployment: deployment.into(),
        run_id: "run-7".into(),
        address: address.into(),
        kind: "server".into(),
        op,
        token: format!("cairn-{address}-tok"),
        id: (op != JournalOp::Create).then(|| format!("i-{address}")),
        started_at,
        outcome: None,
    }
}

fn ok(id: Option<&str>, at: i64) -> JournalOutcome {
    JournalOutcome {
        ok: true,
        id: id.map(Into::into),
        error: None,
        finished_at: at,
    }
}

crate::both_stores! {
    fn open_entries_survive_a_killed_run_and_close_on_reconcile(scratch) {
        let (web, db, old) = {
            let store = scratch.open();
            let web = store
                .journal_intent(&entry("prod", "web", JournalOp::Create, 10))
                .unwrap();
            let db = store
                .journal_intent(&entry("prod", "db", JournalOp::Update, 11))
                .unwrap();
            let old = store
                .journal_intent(&entry("prod", "old", JournalOp::Delete, 12))
                .unwrap();
            store
                .journal_intent(&entry("staging", "web", JournalOp::Create, 13))
                .unwrap();
            assert!(web < db && db < old, "seqs must increase: {web} {db} {old}");
            store.journal_outcome(web, &ok(Some("i-web"), 20)).unwrap();
            // Killed here: db and old never got an outcome.
            (web, db, old)
        };

        let store = scratch.open();
        let open = store.open_journal("prod").unwrap();
        let mut expected_db = entry("prod", "db", JournalOp::Update, 11);
        expected_db.seq = db;
        let mut expected_old = entry("prod", "old", JournalOp::Delete, 12);
        expected_old.seq = old;
        assert_eq!(
            open,
            [expected_db.clone(), expected_old.clone()],
            "oldest first"
        );

        let failed = JournalOutcome {
            ok: false,
            id: None,
            error: Some("reconciled: the server was already gone".into()),
            finished_at: 30,
        };
        store.close_journal(old, &failed).unwrap();
        assert_eq!(store.open_journal("prod").unwrap(), [expected_db.clone()]);
        store.close_journal(db, &ok(None, 31)).unwrap();
        assert!(store.open_journal("prod").unwrap().is_empty());
        assert_eq!(store.open_journal("staging").unwrap().len(), 1);

        // The whole journal keeps every outcome as written.
        let all = store.journal("prod").unwrap();
        let outcomes: Vec<_> = all.iter().map(|e| (e.seq, e.outcome.clone())).collect();
        assert_eq!(
            outcomes,
            [
                (web, Some(ok(Some("i-web"), 20))),
                (db, Some(ok(None, 31))),
                (old, Some(failed)),
            ]
        );
        expected_db.outcome = Some(ok(None, 31));
        assert_eq!(all[1], expected_db);
    }

    fn an_intent_written_with_its_outcome_is_closed(scratch) {
        let store = scratch.open();
        let mut done = entry("prod", "web", JournalOp::Create, 1);
        done.outcome = Some(ok(Some("i-1"), 2));
        let seq = store.journal_intent(&done).unwrap();
        assert!(store.open_journal("prod").unwrap().is_empty());
        done.seq = seq;
        assert_eq!(store.journal("prod").unwrap(), [done]);
    }
}
