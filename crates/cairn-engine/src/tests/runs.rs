use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{World, fast_retries};
use crate::apply::{ApplyOptions, OnFailure, Status};
use crate::plan::{Action, PlanError, PlanFailure, PlanOptions};
use crate::store::StateStore;
use crate::testing::FakeResource;

/// 34 resources with 12 servers: a network, 4 subnets, a firewall, N servers, a load
/// balancer, a zone, per-server DNS records, a database and a bucket.
const TEMPLATE: &str = r#"
cairn: 1
parameters:
  web_count: {type: int, default: 12}
  image: {type: string, default: debian-12}
  db_password: {type: secret, default: "correct horse battery staple"}
resources:
  net:
    type: network
    properties: {cidr: 10.20.0.0/16}
  subnet:
    type: subnet
    count: 4
    properties: {network: "{{ net.id }}", cidr: "{{ cidr_subnet(net.cidr, 8, index) }}"}
  fw:
    type: firewall
    properties:
      network: "{{ net.id }}"
      ingress: [{protocol: tcp, port: 80, from: 0.0.0.0/0}]
  web:
    type: server
    count: "{{ params.web_count }}"
    lifecycle: {create_before_destroy: true}
    properties:
      image: "{{ params.image }}"
      subnet: "{{ subnet[index % 4].id }}"
      firewalls: ["{{ fw.id }}"]
  lb:
    type: load_balancer
    properties:
      listen: {protocol: http, port: 80}
      backends: "{{ web | map(attribute='address') | list }}"
      backend_port: 8080
  zone:
    type: dns_zone
    properties: {name: example.test}
  www:
    type: dns_record
    count: "{{ params.web_count }}"
    properties: {zone: "{{ zone.id }}", name: "web{{ index }}", type: A, values: ["{{ web[index].address }}"]}
  db:
    type: database
    properties: {engine: postgres, owner_password: "{{ params.db_password }}"}
  assets:
    type: bucket
    properties: {versioning: true}
"#;

fn count(report: &crate::apply::ApplyReport, status: Status) -> usize {
    report
        .resources
        .iter()
        .filter(|r| r.status == status)
        .count()
}

#[tokio::test]
async fn up_creates_everything_and_a_second_plan_is_empty() {
    let w = World::new(TEMPLATE);
    let (plan, report) = w.up(&[], fast_retries()).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(plan.summary.create, 34);
    assert_eq!(report.counts.created, 34);
    w.assert_state_matches_reality();
    let again = w.plan(&[], &PlanOptions::default()).unwrap();
    assert!(
        !again.has_changes(),
        "{:?}",
        again
            .changes
            .iter()
            .filter(|c| c.action != Action::NoOp)
            .collect::<Vec<_>>()
    );
    // Inputs used attributes of what was created before them.
    let lb = w.first_of_kind("load_balancer");
    assert_eq!(lb.properties["backends"].as_array().unwrap().len(), 12);
    assert!(
        lb.properties["backends"][0]
            .as_str()
            .unwrap()
            .starts_with("10.9.")
    );
}

/// Buckets declared (and planned) before a chain of three.
const CHAIN: &str = r#"
cairn: 1
resources:
  a:
    type: bucket
    count: 3
    properties: {versioning: false}
  net:
    type: network
    properties: {cidr: 10.30.0.0/16}
  sub:
    type: subnet
    properties: {network: "{{ net.id }}", cidr: 10.30.1.0/24}
  web:
    type: server
    properties: {image: debian-12, subnet: "{{ sub.id }}"}
"#;

/// Of the nodes ready at once, the tallest starts first: one step at a
/// time, the network that a subnet and then a server wait for goes before
/// the three buckets planned before it, which nothing waits for.
#[tokio::test]
async fn the_longest_chain_starts_first() {
    let w = World::new(CHAIN);
    let one_at_a_time = ApplyOptions {
        parallelism: 1,
        ..fast_retries()
    };
    let (_, report) = w.up(&[], one_at_a_time).await;
    assert!(report.ok, "{report:?}");
    let order: Vec<String> = w
        .provider
        .create_calls
        .lock()
        .unwrap()
        .iter()
        .map(|(address, _)| address.clone())
        .collect();
    assert_eq!(order.len(), 6, "{order:?}");
    assert_eq!(order[0], "net", "{order:?}");
}

#[tokio::test]
async fn secrets_are_kept_apart_in_records() {
    let w = World::new(TEMPLATE);
    w.up(&[], fast_retries()).await;
    let db = w
        .store
        .resources(&w.deployment())
        .unwrap()
        .into_iter()
        .find(|r| r.address == "db")
        .unwrap();
    assert!(db.properties.get("owner_password").is_none());
    assert_eq!(
        db.secrets["properties.owner_password"],
        "correct horse battery staple"
    );
    let plan = w
        .plan(&["db_password=another one"], &PlanOptions::default())
        .unwrap();
    let change = plan.changes.iter().find(|c| c.address == "db").unwrap();
    assert_eq!(change.action, Action::Update);
    let text = serde_json::to_string(&plan).unwrap();
    assert!(
        !text.contains("another one") && !text.contains("correct horse"),
        "{text}"
    );
}

#[tokio::test]
async fn scaling_updates_dependents_and_deletes_the_rest() {
    let w = World::new(TEMPLATE);
    w.up(&[], fast_retries()).await;
    let (plan, report) = w.up(&["web_count=3"], fast_retries()).await;
    assert!(report.ok);
    assert_eq!(plan.summary.delete, 18);
    assert!(
        plan.changes
            .iter()
            .any(|c| c.address == "lb" && c.action == Action::Update)
    );
    w.assert_state_matches_reality();
    assert_eq!(w.count_of_kind("server"), 3);
}

#[tokio::test]
async fn a_force_new_change_replaces_and_names_the_property() {
    let w = World::new(TEMPLATE);
    w.up(&["web_count=2"], fast_retries()).await;
    let plan = w
        .plan(&["web_count=2", "image=debian-13"], &PlanOptions::default())
        .unwrap();
    let web0 = plan.changes.iter().find(|c| c.address == "web[0]").unwrap();
    assert_eq!(web0.action, Action::Replace);
    assert_eq!(web0.replace_because, ["image"]);
    // The replacement's address is unknown until it exists, so dependents update.
    let www0 = plan.changes.iter().find(|c| c.address == "www[0]").unwrap();
    assert_eq!(www0.action, Action::Update);
    let (_, report) = w
        .up(&["web_count=2", "image=debian-13"], fast_retries())
        .await;
    assert!(report.ok);
    w.assert_state_matches_reality();
    assert!(
        w.plan(&["web_count=2", "image=debian-13"], &PlanOptions::default())
            .unwrap()
            .summary
            .create
            == 0
    );
}

#[tokio::test]
async fn a_failure_rolls_back_to_the_previous_deployment() {
    let w = World::new(TEMPLATE);
    w.up(&["web_count=2"], fast_retries()).await;
    let before = w.provider.inventory();
    w.fail_creating("web[4]");
    let (_, report) = w.up(&["web_count=6"], fast_retries()).await;
    assert!(!report.ok);
    assert!(report.rolled_back, "{report:?}");
    assert_eq!(count(&report, Status::Failed), 1);
    w.assert_state_matches_reality();
    let after = w.provider.inventory();
    let kinds = |m: &std::collections::BTreeMap<String, FakeResource>| {
        let mut v: Vec<(String, String)> = m
            .values()
            .map(|r| (r.address.clone(), r.properties.to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        kinds(&before),
        kinds(&after),
        "the cloud is not as after the previous run"
    );
}

#[tokio::test]
async fn a_failure_with_keep_leaves_what_succeeded() {
    let w = World::new(TEMPLATE);
    w.up(&["web_count=2"], fast_retries()).await;
    w.fail_creating("web[4]");
    let opts = ApplyOptions {
        on_failure: OnFailure::Keep,
        ..fast_retries()
    };
    let (_, report) = w.up(&["web_count=6"], opts).await;
    assert!(!report.ok && !report.rolled_back);
    w.assert_state_matches_reality();
    let servers = w.count_of_kind("server");
    assert!((2..6).contains(&servers), "{servers}");
    // The next run without the fault converges.
    w.provider.fail_create.lock().unwrap().clear();
    let (_, report) = w.up(&["web_count=6"], fast_retries()).await;
    assert!(report.ok);
    w.assert_state_matches_reality();
}

#[tokio::test]
async fn throttling_is_retried() {
    let w = World::new(TEMPLATE);
    w.provider.throttle_next.store(10, Ordering::SeqCst);
    let (_, report) = w.up(&["web_count=1"], fast_retries()).await;
    assert!(report.ok, "{report:?}");
    w.assert_state_matches_reality();
}

#[tokio::test]
async fn deleting_data_needs_permission_and_prevent_destroy_refuses() {
    let w = World::new(TEMPLATE);
    w.up(&["web_count=1"], fast_retries()).await;
    let destroy = PlanOptions {
        destroy: true,
        ..PlanOptions::default()
    };
    match w.plan(&["web_count=1"], &destroy) {
        Err(PlanFailure::Refused(errs)) => {
            assert!(
                errs.iter()
                    .any(|e| matches!(e, PlanError::DataLoss { address, .. } if address == "db"))
            );
        }
        other => panic!("{other:?}"),
    }
    let allowed = PlanOptions {
        allow_data_loss: true,
        ..destroy.clone()
    };
    assert_eq!(
        w.plan(&["web_count=1"], &allowed).unwrap().summary.delete,
        1 + 4 + 1 + 1 + 1 + 1 + 1 + 1 + 1
    );
    w.write(&TEMPLATE.replace(
        "  db:\n    type: database\n",
        "  db:\n    type: database\n    lifecycle: {prevent_destroy: true}\n",
    ));
    w.up(&["web_count=1"], fast_retries()).await;
    match w.plan(&["web_count=1"], &allowed) {
        Err(PlanFailure::Refused(errs)) => assert!(
            errs.iter()
                .any(|e| matches!(e, PlanError::PreventDestroy { .. }))
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn target_and_exclude_limit_the_plan() {
    let w = World::new(TEMPLATE);
    let only_lb = PlanOptions {
        targets: vec!["lb".into()],
        ..PlanOptions::default()
    };
    let plan = w.plan(&["web_count=2"], &only_lb).unwrap();
    let mut names: Vec<&str> = plan.changes.iter().map(|c| c.resource.as_str()).collect();
    names.dedup();
    assert_eq!(names, ["net", "subnet", "fw", "web", "lb"]);
    let no_web = PlanOptions {
        excludes: vec!["web".into()],
        ..PlanOptions::default()
    };
    let plan = w.plan(&["web_count=2"], &no_web).unwrap();
    assert!(
        plan.changes
            .iter()
            .all(|c| !["web", "lb", "www"].contains(&c.resource.as_str()))
    );
    let one = PlanOptions {
        targets: vec!["web[1]".into()],
        ..PlanOptions::default()
    };
    let plan = w.plan(&["web_count=2"], &one).unwrap();
    assert!(plan.changes.iter().any(|c| c.address == "web[1]"));
    assert!(!plan.changes.iter().any(|c| c.address == "web[0]"));
    let bad = PlanOptions {
        targets: vec!["nope".into()],
        ..PlanOptions::default()
    };
    assert!(matches!(w.plan(&[], &bad), Err(PlanFailure::Refused(_))));
}

/// Kill the run at random moments; the next run converges with no orphans
/// and no duplicates, checked against the fake cloud's own inventory.
/// A kill is a dropped runtime: every task stops at once, as in `kill -9`
/// (a task's `abort()` would let in-flight calls go on).
#[test]
fn killed_runs_converge_without_orphans_or_duplicates() {
    let trials = 60;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    let mut killed_mid_run = 0;
    for trial in 0..trials {
        let w = std::sync::Arc::new(World::new(TEMPLATE));
        // Sometimes kill a first deployment, sometimes a scale-down or a
        // replacement of an existing one.
        let setup = next() % 3;
        if setup > 0 {
            let (_, r) = runtime().block_on(w.up(&["web_count=6"], fast_retries()));
            assert!(r.ok);
        }
        let params: Vec<&str> = match setup {
            0 => vec!["web_count=6"],
            1 => vec!["web_count=2"],
            _ => vec!["web_count=6", "image=debian-13"],
        };
        *w.provider.latency.lock().unwrap() = Duration::from_millis(3);
        let kill_after = Duration::from_micros(next() % 30_000);
        let rt = runtime();
        let finished = rt.block_on(async {
            tokio::select! {
                _ = w.up(&params, fast_retries()) => true,
                _ = tokio::time::sleep(kill_after) => false,
            }
        });
        drop(rt);
        if !finished {
            killed_mid_run += 1;
        }
        // The next run recovers and converges.
        *w.provider.latency.lock().unwrap() = Duration::ZERO;
        let (_, report) = runtime().block_on(w.up(&params, fast_retries()));
        assert!(report.ok, "trial {trial}: {report:?}");
        w.assert_state_matches_reality();
        assert!(
            !w.plan(&params, &PlanOptions::default())
                .unwrap()
                .has_changes(),
            "trial {trial}: not converged"
        );
        let expected_servers = if setup == 1 { 2 } else { 6 };
        assert_eq!(w.count_of_kind("server"), expected_servers, "trial {trial}");
        assert!(w.store.open_journal(&w.deployment()).unwrap().is_empty());
    }
    assert!(
        killed_mid_run >= trials / 2,
        "only {killed_mid_run} runs were killed before finishing"
    );
}

#[test]
fn deletes_wait_for_the_updates_of_what_used_them() {
    use crate::plan::ResourceChange;
    let change = |address: &str, resource: &str, action: Action, deps: &[&str]| ResourceChange {
        address: address.into(),
        resource: resource.into(),
        kind: "server".into(),
        action,
        id: None,
        diff: vec![],
        replace_because: vec![],
        replace_requested: false,
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        data_holding: false,
        create_before_destroy: false,
    };
    let web2 = change("web[2]", "web", Action::Delete, &[]);
    let lb = change("lb", "lb", Action::Update, &["web"]);
    let deps = crate::apply::dependencies_for_tests(&[&web2, &lb]);
    assert_eq!(
        deps[0],
        vec![1],
        "web[2] is deleted only after lb stops using it"
    );
    assert!(deps[1].is_empty());
}

/// With `create_before_destroy`, the old servers go only after the load
/// balancer (which uses them) has been updated to the new ones.
#[tokio::test]
async fn create_before_destroy_deletes_old_halves_after_their_users_moved() {
    let w = World::new(TEMPLATE);
    w.up(&["web_count=2"], fast_retries()).await;
    w.provider.changes.lock().unwrap().clear();
    let (_, report) = w
        .up(&["web_count=2", "image=debian-13"], fast_retries())
        .await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.counts.replaced, 2);
    w.assert_state_matches_reality();
    let changes = w.provider.changes.lock().unwrap().clone();
    let at = |prefix: &str| {
        changes
            .iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {changes:?}"))
    };
    let lb = at("update lb ");
    for i in 0..2 {
        assert!(at(&format!("create web[{i}] ")) < lb, "{changes:?}");
        assert!(at(&format!("delete web[{i}] ")) > lb, "{changes:?}");
    }
}

/// The run after `two_servers_up_and_web2_failing`: three servers, every one
/// replaced.
const THREE_ON_A_NEW_IMAGE: &[&str] = &["web_count=3", "image=debian-13"];

/// Two servers up, and web[2]'s create made to fail: the load balancer
/// waits for web[2], so in a run to `THREE_ON_A_NEW_IMAGE` the old halves of
/// web[0] and web[1] are still waiting when the run fails. Also the cloud
/// as it was before that run.
async fn two_servers_up_and_web2_failing()
-> (World, std::collections::BTreeMap<String, FakeResource>) {
    let w = World::new(TEMPLATE);
    w.up(&["web_count=2"], fast_retries()).await;
    let before = w.provider.inventory();
    w.fail_creating("web[2]");
    (w, before)
}

/// A failure before the old halves went: the rollback deletes the new
/// servers and keeps the old ones (the same ids, never recreated).
#[tokio::test]
async fn a_rollback_before_the_old_halves_went_keeps_them() {
    let (w, before) = two_servers_up_and_web2_failing().await;
    let (_, report) = w.up(THREE_ON_A_NEW_IMAGE, fast_retries()).await;
    assert!(!report.ok && report.rolled_back, "{report:?}");
    w.assert_state_matches_reality();
    let ids = |m: &std::collections::BTreeMap<String, FakeResource>| {
        m.keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(ids(&w.provider.inventory()), ids(&before));
    assert!(
        w.store.journal().iter().all(|e| e.outcome.is_some()),
        "an open journal entry remains"
    );
    w.provider.fail_create.lock().unwrap().clear();
    let (_, report) = w.up(THREE_ON_A_NEW_IMAGE, fast_retries()).await;
    assert!(report.ok, "{report:?}");
    w.assert_state_matches_reality();
}

/// The same failure with `--on-failure keep`: the new servers stay, and the
/// old halves, recorded nowhere, are deleted rather than left as orphans.
#[tokio::test]
async fn keep_after_a_failure_deletes_the_waiting_old_halves() {
    let (w, before) = two_servers_up_and_web2_failing().await;
    let opts = ApplyOptions {
        on_failure: OnFailure::Keep,
        ..fast_retries()
    };
    let (_, report) = w.up(THREE_ON_A_NEW_IMAGE, opts).await;
    assert!(!report.ok && !report.rolled_back, "{report:?}");
    w.assert_state_matches_reality();
    let old_servers: Vec<&String> = before
        .iter()
        .filter(|(_, r)| r.kind == "server")
        .map(|(id, _)| id)
        .collect();
    let now = w.provider.inventory();
    assert!(
        old_servers.iter().all(|id| !now.contains_key(*id)),
        "an old server remains: {old_servers:?}"
    );
}

/// `--replace web[1]`: a new server where nothing changed, what uses its
/// address follows it, the other servers stay; a data-holding resource
/// still needs permission; an address the state does not have is refused
/// with what to name instead.
#[tokio::test]
async fn replace_makes_a_new_instance_and_what_uses_it_follows() {
    let w = World::new(TEMPLATE);
    w.up(&["web_count=2"], fast_retries()).await;
    let before = w.store.resources(&w.deployment()).unwrap();
    let id_of = |records: &[crate::store::ResourceRecord], a: &str| {
        records.iter().find(|r| r.address == a).unwrap().id.clone()
    };
    let replace = |addresses: &[&str]| PlanOptions {
        replace: addresses.iter().map(|a| a.to_string()).collect(),
        ..PlanOptions::default()
    };
    let plan = w.plan(&["web_count=2"], &replace(&["web[1]"])).unwrap();
    let action = |a: &str| plan.changes.iter().find(|c| c.address == a).unwrap();
    assert_eq!(action("web[1]").action, Action::Replace);
    assert!(action("web[1]").replace_requested);
    assert!(action("web[1]").replace_because.is_empty());
    assert_eq!(action("web[0]").action, Action::NoOp);
    assert_eq!(action("lb").action, Action::Update);
    assert_eq!(action("www[1]").action, Action::Update);
    assert_eq!(
        (
            plan.summary.replace,
            plan.summary.create,
            plan.summary.delete
        ),
        (1, 0, 0)
    );

    let (_, report) = w
        .up_with(&["web_count=2"], fast_retries(), &replace(&["web[1]"]))
        .await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.counts.replaced, 1);
    let after = w.store.resources(&w.deployment()).unwrap();
    assert_ne!(id_of(&before, "web[1]"), id_of(&after, "web[1]"));
    assert_eq!(id_of(&before, "web[0]"), id_of(&after, "web[0]"));
    let new_address = after
        .iter()
        .find(|r| r.address == "web[1]")
        .unwrap()
        .attributes["address"]
        .clone();
    let lb = w.first_of_kind("load_balancer");
    assert!(
        lb.properties["backends"]
            .as_array()
            .unwrap()
            .contains(&new_address),
        "{lb:?}"
    );
    w.assert_state_matches_reality();
    assert!(
        !w.plan(&["web_count=2"], &PlanOptions::default())
            .unwrap()
            .has_changes()
    );

    // Refused: what the state does not hold, a whole resource, what the
    // template deletes, and data without --allow-data-loss.
    let refused = |opts: &PlanOptions, params: &[&str]| match w.plan(params, opts) {
        Err(PlanFailure::Refused(errs)) => errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refused(&replace(&["web[7]"]), &["web_count=2"]),
        [
            "--replace names `web[7]`, which is not a resource in this deployment's state (see `cairn state list`)"
        ]
    );
    assert_eq!(
        refused(&replace(&["web"]), &["web_count=2"]),
        [
            "--replace names `web`, which is not a resource in this deployment's state: name one instance, web[0], web[1]"
        ]
    );
    assert_eq!(
        refused(&replace(&["web[1]"]), &["web_count=1"]),
        [
            "--replace names `web[1]`, which is not a resource in this deployment's state (the template no longer declares it: `cairn up` deletes it)"
        ]
    );
    assert_eq!(
        refused(&replace(&["web[2]"]), &["web_count=3"]),
        [
            "--replace names `web[2]`, which is not a resource in this deployment's state (it is not made yet: `cairn up` creates it)"
        ]
    );
    assert!(refused(&replace(&["db"]), &["web_count=2"])[0].contains("needs --allow-data-loss"));
}
