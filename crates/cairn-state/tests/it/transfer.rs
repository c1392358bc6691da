//! `Transfer`: a deployment copied SQLite → PostgreSQL → SQLite keeps every
//! table (counts and digests), and a target that holds it refuses.

use std::collections::BTreeMap;

use cairn_engine::store::{JournalEntry, JournalOp, JournalOutcome, StateStore};
use serde_json::json;

use crate::{Place, owner, resource, run};

fn fill(store: &dyn StateStore) {
    for (i, a) in ["web[0]", "web[1]", "db"].iter().enumerate() {
        store
            .put_resource("prod", &resource(a, &format!("pw-{i}")))
            .unwrap();
    }
    store.delete_resource("prod", "web[1]").unwrap();
    let serial = store.begin_run(&run("prod", "up")).unwrap();
    let mut done = run("prod", "up");
    done.outcome = "succeeded".into();
    done.finished_at = Some(1_700_000_100);
    store.finish_run("prod", serial, &done).unwrap();
    store.begin_run(&run("prod", "destroy")).unwrap();
    for (i, op) in [JournalOp::Create, JournalOp::Delete]
        .into_iter()
        .enumerate()
    {
        let seq = store
            .journal_intent(&JournalEntry {
                seq: 0,
                deployment: "prod".into(),
                run_id: "r1".into(),
                address: format!("a{i}"),
                kind: "server".into(),
                op,
                token: format!("tok{i}"),
                id: None,
                started_at: 10 + i as i64,
                outcome: None,
            })
            .unwrap();
        if i == 0 {
            let ok = JournalOutcome {
                ok: true,
                id: Some("i-1".into()),
                error: None,
                finished_at: 20,
            };
            store.journal_outcome(seq, &ok).unwrap();
        }
    }
    store
        .put_generated_secret("prod", "db_password", "gen-pw")
        .unwrap();
    store
        .put_outputs(
            "prod",
            &json!({"url": "u"}),
            &BTreeMap::from([("t".into(), json!("s"))]),
        )
        .unwrap();
    store
        .acquire_lease(
            "prod",
            &owner("ann"),
            "r9",
            "up",
            std::time::Duration::from_secs(5),
            0,
        )
        .unwrap();
    store.put_resource("other", &resource("x", "y")).unwrap();
}

#[test]
fn a_deployment_goes_to_postgres_and_back_whole() {
    let sqlite = Place::sqlite("transfer-src");
    let pg = Place::postgres("transfer");
    let back = Place::sqlite("transfer-back");
    let src = sqlite.open();
    fill(&*src);
    let dump = src.export("prod").unwrap();
    assert_eq!(dump.resources.len(), 2);
    assert_eq!(
        (dump.runs.len(), dump.journal.len(), dump.serial),
        (2, 2, 4)
    );

    let target = pg.open();
    target.import(&dump, false).unwrap();
    let copied = target.export("prod").unwrap();
    assert_eq!(copied.tables(), dump.tables());
    assert_eq!(target.serial("prod").unwrap(), 4);
    assert_eq!(target.open_journal("prod").unwrap().len(), 1);
    assert_eq!(target.run("prod", 2).unwrap().command, "destroy");
    assert_eq!(target.lease("prod").unwrap(), None, "a lease is not copied");
    assert!(
        !target.holds("other").unwrap(),
        "only the deployment asked for"
    );

    let again = back.open();
    again.import(&copied, false).unwrap();
    let round = again.export("prod").unwrap();
    assert_eq!(round.tables(), dump.tables());
    assert_eq!(round.resources, dump.resources);
    assert_eq!(round.outputs, dump.outputs);
}

#[test]
fn a_target_that_holds_the_deployment_refuses_unless_replacing() {
    let src = Place::sqlite("transfer-refuse");
    let pg = Place::postgres("transfer_refuse");
    let s = src.open();
    fill(&*s);
    let dump = s.export("prod").unwrap();
    let t = pg.open();
    t.put_resource("prod", &resource("stale", "z")).unwrap();
    let err = t.import(&dump, false).unwrap_err().to_string();
    assert!(
        err.contains("already holds deployment `prod`") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(t.resources("prod").unwrap().len(), 1, "nothing written");
    t.import(&dump, true).unwrap();
    assert_eq!(t.export("prod").unwrap().tables(), dump.tables());
}

fn job(id: &str, hosts: usize) -> cairn_orch::job::JobRecord {
    use cairn_orch::job::{HostResult, HostStatus, JobRecord};
    JobRecord {
        id: id.into(),
        kind: "run".into(),
        target: "G@role:web".into(),
        function: "cmd uptime".into(),
        args: json!({"cmd": "uptime", "timeout": 30, "env": {"B": "2", "A": "1"}}),
        check: false,
        user: "root".into(),
        started_at: 1_796_426_679,
        finished_at: Some(1_796_426_680),
        hosts: (0..hosts)
            .map(|i| HostResult {
                status: if i % 2 == 0 {
                    HostStatus::Changed
                } else {
                    HostStatus::Failed
                },
                stdout: format!("web-{i} up 3 days\n"),
                detail: json!({"diff": [], "rc": i}),
                ..HostResult::skipped(&format!("web-{i}"), "x")
            })
            .collect(),
    }
}

#[test]
fn jobs_go_to_postgres_and_back_whole_and_a_target_holding_one_refuses() {
    use cairn_state::job_tables;
    let sqlite = Place::sqlite("transfer-jobs");
    let pg = Place::postgres("transfer_jobs");
    let back = Place::sqlite("transfer-jobs-back");
    let src = sqlite.open();
    let jobs = [
        job("20261205031522000001", 3),
        job("20261205031523000001", 0),
        job("20261205031524000001", 2),
    ];
    for j in &jobs {
        src.save_job(j).unwrap();
    }
    let dump = src.export_jobs().unwrap();
    assert_eq!(dump, jobs);
    let tables = job_tables(&dump);
    assert_eq!(
        tables.iter().map(|t| (t.table, t.rows)).collect::<Vec<_>>(),
        [("jobs", 3), ("job_hosts", 5)]
    );

    let target = pg.open();
    target.import_jobs(&dump, false).unwrap();
    let copied = target.export_jobs().unwrap();
    assert_eq!(job_tables(&copied), tables);
    assert_eq!(target.jobs(10).unwrap()[0].tally, jobs[2].tally());

    // Again: the target holds them now, and nothing is written.
    let mut changed = dump.clone();
    changed[0].user = "someone-else".into();
    let err = target.import_jobs(&changed, false).unwrap_err().to_string();
    assert!(
        err.contains(&format!("already holds job {}", jobs[0].id)) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(target.export_jobs().unwrap(), copied);
    target.import_jobs(&changed, true).unwrap();
    assert_eq!(
        target.job(&jobs[0].id).unwrap().unwrap().user,
        "someone-else"
    );

    let again = back.open();
    again.import_jobs(&copied, false).unwrap();
    assert_eq!(again.export_jobs().unwrap(), jobs);
}
