//! Whole commands through `run::up`: leases, generated secrets, history,
//! outputs, refresh, stale plans.

use std::time::Duration;

use cairn_template::LoadOptions;

use super::{World, fast_retries};
use crate::apply::RunContext;
use crate::plan::PlanOptions;
use crate::run::{RunError, RunOptions, RunOutcome, up};
use crate::schema::Kind;
use crate::store::{Owner, StateStore, StoreError};

const TEMPLATE: &str = r#"
cairn: 1
parameters:
  db_password: {type: secret, generate: {length: 24}}
  count: {type: int, default: 2}
resources:
  net:
    type: network
    properties: {cidr: 10.1.0.0/16}
  sub:
    type: subnet
    properties: {network: "{{ net.id }}", cidr: 10.1.1.0/24}
  web:
    type: server
    count: "{{ params.count }}"
    properties: {image: debian-12, subnet: "{{ sub.id }}"}
  db:
    type: database
    properties: {engine: postgres, owner_password: "{{ params.db_password }}"}
  keys:
    type: key_pair
    properties: {name: admin}
outputs:
  first_web: "{{ web[0].address }}"
  db_url: {value: "postgres://app:{{ params.db_password }}@{{ db.endpoint }}/app", secret: true}
  admin_key: {value: "{{ keys.private_key }}", secret: true}
"#;

fn owner(pid: u32) -> Owner {
    Owner {
        user: "alice".into(),
        host: "laptop".into(),
        pid,
        process: None,
    }
}

fn options(command: &str) -> RunOptions {
    RunOptions {
        command: command.into(),
        plan: PlanOptions::default(),
        refresh: true,
        owner: owner(42),
        lease_ttl: Duration::from_secs(30),
        expect_serial: None,
        expect_changes: None,
        prune: false,
        holder_gone: |_| false,
    }
}

fn load_opts(w: &World, params: &[&str]) -> LoadOptions {
    let mut o = LoadOptions::new(&w.dir);
    o.params = params.iter().map(|s| s.to_string()).collect();
    o
}

/// `TEMPLATE` up with its defaults, and the context it ran in.
async fn deployed() -> (World, RunContext) {
    let w = World::new(TEMPLATE);
    let cx = w.context(fast_retries());
    up(&cx, &load_opts(&w, &[]), &options("up"), &mut |_| true)
        .await
        .unwrap();
    (w, cx)
}

#[tokio::test]
async fn a_generated_secret_is_stable_and_never_recorded_in_clear() {
    let w = World::new(TEMPLATE);
    let cx = w.context(fast_retries());
    let (outcome, _) = up(&cx, &load_opts(&w, &[]), &options("up"), &mut |_| true)
        .await
        .unwrap();
    let RunOutcome::Applied {
        report,
        outputs,
        serial,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert!(report.ok);
    assert_eq!(serial, 1);
    let secret = w.store.generated_secrets(&cx.deployment).unwrap()["db_password"].clone();
    assert_eq!(secret.len(), 24);
    // The database got the generated value.
    let db = w.first_of_kind("database");
    assert_eq!(db.properties["owner_password"], secret.as_str());
    // Nothing printable holds it: outputs, history, plan.
    assert_eq!(outputs["db_url"], "(secret)");
    assert!(outputs["first_web"].as_str().unwrap().starts_with("10.9."));
    let history = serde_json::to_string(&w.store.runs(&cx.deployment).unwrap()).unwrap();
    assert!(!history.contains(&secret), "history leaks the secret");
    let (_, secrets) = w.store.outputs(&cx.deployment).unwrap();
    assert!(secrets["db_url"].as_str().unwrap().contains(&secret));
    assert!(
        secrets["admin_key"]
            .as_str()
            .unwrap()
            .starts_with("private_key-")
    );
    // A second run keeps the same secret and changes nothing.
    let cx2 = w.context(fast_retries());
    let (outcome, _) = up(&cx2, &load_opts(&w, &[]), &options("up"), &mut |_| true)
        .await
        .unwrap();
    assert!(
        matches!(outcome, RunOutcome::NoChanges { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        w.store.generated_secrets(&cx.deployment).unwrap()["db_password"],
        secret
    );
}

#[tokio::test]
async fn a_second_run_fails_fast_naming_the_owner_and_an_expired_lease_is_taken_over() {
    let w = World::new(TEMPLATE);
    let cx = w.context(fast_retries());
    // Another run holds the lease (it was killed: nothing renews it).
    w.store
        .acquire_lease(
            &cx.deployment,
            &owner(7),
            "other-run",
            "up",
            Duration::from_secs(30),
            (cx.clock)(),
        )
        .unwrap();
    let err = up(&cx, &load_opts(&w, &[]), &options("up"), &mut |_| true)
        .await
        .unwrap_err();
    match &err {
        RunError::Store(StoreError::Locked { lease, .. }) => assert_eq!(lease.owner.pid, 7),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("alice@laptop (pid 7)"), "{err}");
    // Later than the expiry, the lease is taken over.
    let mut later = w.context(fast_retries());
    later.clock = std::sync::Arc::new(|| 1_700_000_000 + 31);
    let (outcome, _) = up(&later, &load_opts(&w, &[]), &options("up"), &mut |_| true)
        .await
        .unwrap();
    assert!(matches!(outcome, RunOutcome::Applied { .. }));
    assert!(
        w.store.lease(&cx.deployment).unwrap().is_none(),
        "the lease is released"
    );
}

#[tokio::test]
async fn declining_changes_nothing_and_a_stale_plan_is_refused() {
    let w = World::new(TEMPLATE);
    let cx = w.context(fast_retries());
    let (outcome, _) = up(&cx, &load_opts(&w, &[]), &options("up"), &mut |_| false)
        .await
        .unwrap();
    assert!(matches!(outcome, RunOutcome::Declined { .. }));
    assert!(w.provider.inventory().is_empty());
    let mut stale = options("apply");
    stale.expect_serial = Some(99);
    let err = up(&cx, &load_opts(&w, &[]), &stale, &mut |_| true)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RunError::StalePlan {
                expected: 99,
                found: 0
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn refresh_forgets_what_was_deleted_behind_our_back_and_recreates_it() {
    let (w, cx) = deployed().await;
    let web1 = w
        .provider
        .inventory()
        .into_iter()
        .find(|(_, r)| r.address == "web[1]")
        .unwrap()
        .0;
    use crate::provider::{DeleteRequest, Provider};
    w.provider
        .delete(DeleteRequest {
            deployment: cx.deployment.clone(),
            address: "web[1]".into(),
            kind: Kind::Server,
            id: web1,
            properties: serde_json::Value::Null,
            token: "by hand".into(),
        })
        .await
        .unwrap();
    let cx2 = w.context(fast_retries());
    let (outcome, _) = up(&cx2, &load_opts(&w, &[]), &options("up"), &mut |_| true)
        .await
        .unwrap();
    let RunOutcome::Applied { plan, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(plan.summary.create, 1);
    w.assert_state_matches_reality();
}

#[tokio::test]
async fn history_records_every_run_and_destroy_empties_the_cloud() {
    let w = World::new(TEMPLATE);
    up(
        &w.context(fast_retries()),
        &load_opts(&w, &[]),
        &options("up"),
        &mut |_| true,
    )
    .await
    .unwrap();
    up(
        &w.context(fast_retries()),
        &load_opts(&w, &["count=3"]),
        &options("up"),
        &mut |_| true,
    )
    .await
    .unwrap();
    let mut destroy = options("destroy");
    destroy.plan = PlanOptions {
        destroy: true,
        allow_data_loss: true,
        ..PlanOptions::default()
    };
    let cx = w.context(fast_retries());
    up(&cx, &load_opts(&w, &["count=3"]), &destroy, &mut |_| true)
        .await
        .unwrap();
    assert!(w.provider.inventory().is_empty());
    let runs = w.store.runs(&cx.deployment).unwrap();
    let summary: Vec<(i64, &str, &str)> = runs
        .iter()
        .map(|r| (r.serial, r.command.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, "up", "succeeded"),
            (2, "up", "succeeded"),
            (3, "destroy", "succeeded")
        ]
    );
    assert_eq!(runs[1].parameters["count"], 3);
    assert_eq!(runs[1].parameters["db_password"], "(secret)");
    assert!(
        runs[0]
            .template_files
            .values()
            .next()
            .unwrap()
            .contains("generate: {length: 24}")
    );
}

fn id_of(w: &World, address: &str) -> String {
    w.provider
        .inventory()
        .into_iter()
        .find(|(_, r)| r.address == address)
        .unwrap_or_else(|| panic!("{address} is not in the cloud"))
        .0
}

#[tokio::test]
async fn drift_names_the_property_changed_behind_our_back_and_up_puts_it_back() {
    use crate::run::{DriftStatus, drift, plan};
    let (w, cx) = deployed().await;
    assert!(
        drift(&cx).await.unwrap().is_empty(),
        "no drift right after up"
    );
    let web0 = id_of(&w, "web[0]");
    w.provider
        .tamper(&web0, "volumes", serde_json::json!(["vol-by-hand"]));

    let found = drift(&cx).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].address, "web[0]");
    assert_eq!(found[0].status, DriftStatus::Changed);
    assert_eq!(found[0].properties.len(), 1);
    let p = &found[0].properties[0];
    assert_eq!(p.path, "volumes");
    assert_eq!(p.recorded, serde_json::json!([]));
    assert_eq!(p.actual, serde_json::json!(["vol-by-hand"]));

    // `plan` shows the repair and writes nothing.
    let serial = w.store.serial(&cx.deployment).unwrap();
    let shown = plan(&cx, &load_opts(&w, &[]), &options("plan"))
        .await
        .unwrap();
    assert_eq!(shown.summary.update, 1, "{shown:?}");
    let change = shown
        .changes
        .iter()
        .find(|c| c.address == "web[0]")
        .unwrap();
    assert_eq!(change.diff[0].path, "volumes");
    assert_eq!(w.store.serial(&cx.deployment).unwrap(), serial);
    // Without refresh the plan sees only the state: nothing to do.
    let mut blind = options("plan");
    blind.refresh = false;
    let shown = plan(&cx, &load_opts(&w, &[]), &blind).await.unwrap();
    assert!(!shown.has_changes());

    // `up` puts it back.
    let (outcome, _) = up(&cx, &load_opts(&w, &[]), &options("up"), &mut |_| true)
        .await
        .unwrap();
    let RunOutcome::Applied { report, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(report.counts.updated, 1);
    assert_eq!(
        w.provider.inventory()[&web0].properties["volumes"],
        serde_json::json!([])
    );
    assert!(drift(&cx).await.unwrap().is_empty());
}

#[tokio::test]
async fn drift_reports_a_deleted_resource() {
    use crate::provider::{DeleteRequest, Provider};
    use crate::run::{DriftStatus, drift};
    let (w, cx) = deployed().await;
    let keys = id_of(&w, "keys");
    w.provider
        .delete(DeleteRequest {
            deployment: cx.deployment.clone(),
            address: "keys".into(),
            kind: Kind::KeyPair,
            id: keys.clone(),
            properties: serde_json::Value::Null,
            token: "by hand".into(),
        })
        .await
        .unwrap();
    let found = drift(&cx).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (
            found[0].address.as_str(),
            found[0].id.as_str(),
            found[0].status
        ),
        ("keys", keys.as_str(), DriftStatus::Deleted)
    );
    // Drift only reads: the state still has it.
    assert!(
        w.store
            .resources(&cx.deployment)
            .unwrap()
            .iter()
            .any(|r| r.address == "keys")
    );
}

#[tokio::test]
async fn prune_deletes_live_resources_tagged_for_the_deployment_that_the_state_does_not_know() {
    use crate::provider::{CreateRequest, Provider};
    let (w, cx) = deployed().await;
    let make = |deployment: &str, kind: &str, token: &str| CreateRequest {
        deployment: deployment.to_string(),
        address: "lost".into(),
        kind: kind.parse().unwrap(),
        properties: serde_json::json!({"cidr": "10.7.0.0/16", "image": "x", "subnet": "y"}),
        tags: [
            ("cairn:deployment".to_string(), deployment.to_string()),
            ("cairn:resource".to_string(), "web[9]".to_string()),
        ]
        .into(),
        target: None,
        token: token.into(),
        sensitive: Vec::new(),
        may_exist: true,
    };
    // Left by a run that died before its journal could tell: a network and
    // a server in it. And one of another deployment, which must stay.
    let lost_net = w
        .provider
        .create(make(&cx.deployment, "network", "lost-1"))
        .await
        .unwrap()
        .id;
    let lost_web = w
        .provider
        .create(make(&cx.deployment, "server", "lost-2"))
        .await
        .unwrap()
        .id;
    let other = w
        .provider
        .create(make("someone-else", "network", "other-1"))
        .await
        .unwrap()
        .id;

    // Without --prune they are not cairn's business.
    let (outcome, _) = up(&cx, &load_opts(&w, &[]), &options("up"), &mut |_| true)
        .await
        .unwrap();
    assert!(
        matches!(outcome, RunOutcome::NoChanges { .. }),
        "{outcome:?}"
    );
    assert!(w.provider.inventory().contains_key(&lost_web));

    let mut prune = options("up");
    prune.prune = true;
    let shown = crate::run::plan(&cx, &load_opts(&w, &[]), &prune)
        .await
        .unwrap();
    assert_eq!(shown.summary.delete, 2, "{shown:?}");
    let (outcome, _) = up(&cx, &load_opts(&w, &[]), &prune, &mut |_| true)
        .await
        .unwrap();
    let RunOutcome::Applied { report, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(report.ok, "{report:?}");
    assert_eq!(report.counts.deleted, 2);
    let inventory = w.provider.inventory();
    assert!(!inventory.contains_key(&lost_net));
    assert!(!inventory.contains_key(&lost_web));
    assert!(
        inventory.contains_key(&other),
        "another deployment's resource stays"
    );
    w.provider
        .delete(crate::provider::DeleteRequest {
            deployment: "someone-else".into(),
            address: "lost".into(),
            kind: Kind::Network,
            id: other,
            properties: serde_json::Value::Null,
            token: "by hand".into(),
        })
        .await
        .unwrap();
    w.assert_state_matches_reality();
}

#[tokio::test]
async fn a_saved_plan_applies_only_while_planning_again_gives_the_same_changes() {
    let w = World::new(TEMPLATE);
    let cx = w.context(fast_retries());
    let saved = crate::run::plan(&cx, &load_opts(&w, &[]), &options("plan"))
        .await
        .unwrap();
    assert_eq!(saved.summary.create, 6);

    // Other inputs since: refused, nothing made.
    let mut apply = options("apply");
    apply.expect_serial = Some(saved.state_serial);
    apply.expect_changes = Some(saved.changes.clone());
    let err = up(&cx, &load_opts(&w, &["count=3"]), &apply, &mut |_| true)
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::PlanChanged), "{err:?}");
    assert!(w.provider.inventory().is_empty());

    // The same inputs: applied as saved.
    let (outcome, _) = up(&cx, &load_opts(&w, &[]), &apply, &mut |_| true)
        .await
        .unwrap();
    let RunOutcome::Applied { report, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(report.counts.created, 6);

    // Once applied, the state moved on: the same file is refused.
    let err = up(&cx, &load_opts(&w, &[]), &apply, &mut |_| true)
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::StalePlan { .. }), "{err:?}");
}

#[tokio::test]
async fn refresh_reads_are_retried_when_throttled() {
    use std::sync::atomic::Ordering;
    let (w, cx) = deployed().await;
    w.provider.throttle_next.store(4, Ordering::SeqCst);
    assert!(crate::run::drift(&cx).await.unwrap().is_empty());
    assert_eq!(w.provider.throttle_next.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn what_the_target_chose_or_does_not_report_is_not_drift() {
    let (w, cx) = deployed().await;
    let web0 = id_of(&w, "web[0]");
    // The template left `name` unset: the target's choice is its own.
    w.provider
        .tamper(&web0, "name", serde_json::json!("ip-10-0-0-7"));
    // A target that reports no user_data says nothing about it.
    w.provider
        .tamper(&web0, "user_data", serde_json::Value::Null);
    assert!(crate::run::drift(&cx).await.unwrap().is_empty());
    // A set value that changed is drift.
    w.provider
        .tamper(&web0, "size", serde_json::json!("xlarge"));
    let found = crate::run::drift(&cx).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].properties[0].path, "size");
}

#[tokio::test]
async fn a_record_of_a_type_this_cairn_does_not_know_is_named_not_acted_on() {
    // State written by a newer cairn: the record still loads (the type is a
    // string on disk); acting on it says which record and why.
    let (w, cx) = deployed().await;
    let mut net = w
        .store
        .resources(&cx.deployment)
        .unwrap()
        .into_iter()
        .find(|r| r.kind == "network")
        .unwrap();
    net.kind = "aws.route_table".into();
    assert!(net.typed_kind().is_err());
    w.store.put_resource(&cx.deployment, &net).unwrap();
    let before = w.provider.inventory();
    let err = up(&cx, &load_opts(&w, &[]), &options("up"), &mut |_| true)
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "{}: unknown resource type `aws.route_table`",
            net.address
        )),
        "{err}"
    );
    // Nothing was made, changed or deleted.
    assert_eq!(w.provider.inventory(), before);
}
