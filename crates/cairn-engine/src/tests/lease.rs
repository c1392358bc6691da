//! The lease as a fence: a run that loses it stops calling the provider,
//! a dead holder's lease is taken over at once, tokens are stable, and
//! only a retried create looks for what an earlier attempt made.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_template::LoadOptions;
use tokio::sync::Notify;

use super::{World, fast_retries};
use crate::apply::{ApplyOptions, Status, token};
use crate::plan::PlanOptions;
use crate::provider::*;
use crate::run::{RunError, RunOptions, RunOutcome, up};
use crate::schema::ResourceSchema;
use crate::store::{Owner, StateStore, StoreError};

const ZONES: &str = r#"
cairn: 1
resources:
  zone:
    type: dns_zone
    count: 8
    properties: {name: "z{{ index }}.test"}
"#;

fn owner(pid: u32, process: Option<&str>) -> Owner {
    Owner {
        user: "alice".into(),
        host: "laptop".into(),
        pid,
        process: process.map(str::to_string),
    }
}

fn options(holder_gone: fn(&Owner) -> bool) -> RunOptions {
    RunOptions {
        command: "up".into(),
        plan: PlanOptions::default(),
        refresh: true,
        owner: owner(42, None),
        lease_ttl: Duration::from_secs(30),
        expect_serial: None,
        expect_changes: None,
        prune: false,
        holder_gone,
    }
}

/// One call to the provider by one run: who, which, when it started and ended.
#[derive(Debug, Clone)]
struct Call {
    run: &'static str,
    what: String,
    start: Instant,
    end: Instant,
}

/// The shared fake cloud as one run sees it: every call is recorded, and
/// the `hold_after`-th create, once done in the cloud, waits for `release`
/// before it answers (the run is then between two steps, holding a
/// finished call).
struct Recording {
    inner: Arc<crate::testing::FakeProvider>,
    run: &'static str,
    calls: Arc<Mutex<Vec<Call>>>,
    hold_after: Option<usize>,
    creates: Mutex<usize>,
    held: Arc<Notify>,
    release: Arc<Notify>,
}

impl Recording {
    fn record(&self, what: String, start: Instant) {
        self.calls.lock().unwrap().push(Call {
            run: self.run,
            what,
            start,
            end: Instant::now(),
        });
    }
}

#[async_trait::async_trait]
impl Provider for Recording {
    fn name(&self) -> &str {
        "fake"
    }
    fn schema(&self, kind: &str) -> Option<&'static ResourceSchema> {
        self.inner.schema(kind)
    }
    async fn create(&self, req: CreateRequest) -> ProviderResult<Created> {
        let (t, what) = (Instant::now(), format!("create {}", req.address));
        let out = self.inner.create(req).await;
        self.record(what, t);
        let n = {
            let mut c = self.creates.lock().unwrap();
            *c += 1;
            *c
        };
        if Some(n) == self.hold_after {
            self.held.notify_one();
            self.release.notified().await;
        }
        out
    }
    async fn read(&self, req: ReadRequest) -> ProviderResult<Option<Observed>> {
        let (t, what) = (Instant::now(), format!("read {}", req.address));
        let out = self.inner.read(req).await;
        self.record(what, t);
        out
    }
    async fn update(&self, req: UpdateRequest) -> ProviderResult<Json> {
        let (t, what) = (Instant::now(), format!("update {}", req.address));
        let out = self.inner.update(req).await;
        self.record(what, t);
        out
    }
    async fn delete(&self, req: DeleteRequest) -> ProviderResult<()> {
        let (t, what) = (Instant::now(), format!("delete {}", req.address));
        let out = self.inner.delete(req).await;
        self.record(what, t);
        out
    }
    async fn find(&self, req: FindRequest) -> ProviderResult<Option<Created>> {
        let (t, what) = (Instant::now(), format!("find {}", req.address));
        let out = self.inner.find(req).await;
        self.record(what, t);
        out
    }
    async fn list(&self, deployment: &str) -> ProviderResult<Vec<Listed>> {
        let t = Instant::now();
        let out = self.inner.list(deployment).await;
        self.record("list".into(), t);
        out
    }
}

fn recording(
    w: &World,
    run: &'static str,
    calls: &Arc<Mutex<Vec<Call>>>,
    hold_after: Option<usize>,
) -> (Arc<Recording>, Arc<Notify>, Arc<Notify>) {
    let (held, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let p = Arc::new(Recording {
        inner: w.provider.clone(),
        run,
        calls: calls.clone(),
        hold_after,
        creates: Mutex::new(0),
        held: held.clone(),
        release: release.clone(),
    });
    (p, held, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_lease_is_broken_and_taken_starts_nothing_more() {
    let w = World::new(ZONES);
    let calls = Arc::new(Mutex::new(Vec::new()));
    let lo = LoadOptions::new(&w.dir);

    // Run A, one step at a time, is held after its third create.
    let (provider_a, held, release) = recording(&w, "A", &calls, Some(3));
    let mut cx_a = w.context(ApplyOptions {
        parallelism: 1,
        ..fast_retries()
    });
    cx_a.provider = provider_a;
    let a = {
        let lo = lo.clone();
        tokio::spawn(async move { up(&cx_a, &lo, &options(|_| false), &mut |_| true).await })
    };
    tokio::time::timeout(Duration::from_secs(10), held.notified())
        .await
        .expect("run A reaches its third create");

    // The operator breaks A's lease and run B takes it and does the work.
    let deployment = w.deployment();
    let broken = w
        .store
        .break_lease(&deployment)
        .unwrap()
        .expect("A holds it");
    let (provider_b, _, _) = recording(&w, "B", &calls, None);
    let mut cx_b = w.context(fast_retries());
    cx_b.provider = provider_b;
    let (outcome, _) = up(&cx_b, &lo, &options(|_| false), &mut |_| true)
        .await
        .expect("B runs");
    assert!(matches!(outcome, RunOutcome::Applied { .. }), "{outcome:?}");
    let b_done = Instant::now();

    // A's held call now answers: A must start nothing more.
    release.notify_one();
    let err = tokio::time::timeout(Duration::from_secs(10), a)
        .await
        .expect("A stops at once, not at a heartbeat")
        .unwrap()
        .expect_err("A fails");
    let RunError::LeaseLost { reason, report } = &err else {
        panic!("{err:?}")
    };
    assert!(
        reason.contains("lease") && reason.contains("stopped"),
        "{reason}"
    );
    assert!(!report.ok && !report.rolled_back, "no rollback: {report:?}");
    let skipped = report
        .resources
        .iter()
        .filter(|r| r.status == Status::Skipped)
        .count();
    assert_eq!(skipped, 5, "the five steps after the held one: {report:?}");

    let calls = calls.lock().unwrap().clone();
    let a_calls: Vec<&Call> = calls.iter().filter(|c| c.run == "A").collect();
    let b_calls: Vec<&Call> = calls.iter().filter(|c| c.run == "B").collect();
    assert!(!b_calls.is_empty());
    assert_eq!(
        a_calls
            .iter()
            .filter(|c| c.what.starts_with("create"))
            .count(),
        3,
        "A made no call after losing the lease: {a_calls:?}"
    );
    // The two runs never called the provider at the same time.
    for a in &a_calls {
        for b in &b_calls {
            assert!(
                a.end <= b.start || b.end <= a.start,
                "overlap: {a:?} and {b:?}"
            );
        }
        assert!(a.start < b_done);
    }
    assert_eq!(broken.run_id, err_run_id(&w, &deployment));

    // The deployment converged: every zone once, and nothing left to do.
    let zones = w.provider.inventory();
    assert_eq!(zones.len(), 8, "{zones:?}");
    let (outcome, _) = up(
        &w.context(fast_retries()),
        &lo,
        &options(|_| false),
        &mut |_| true,
    )
    .await
    .unwrap();
    assert!(
        matches!(outcome, RunOutcome::NoChanges { .. }),
        "{outcome:?}"
    );
}

/// The run id recorded by the run that lost its lease (its history row).
fn err_run_id(w: &World, deployment: &str) -> String {
    w.store
        .runs(deployment)
        .unwrap()
        .into_iter()
        .find(|r| r.outcome == "lease_lost")
        .expect("the run that lost its lease is in the history")
        .run_id
}

#[tokio::test]
async fn a_lease_whose_holder_is_gone_is_taken_over_at_once() {
    let w = World::new(ZONES);
    let cx = w.context(fast_retries());
    let lo = LoadOptions::new(&w.dir);
    let dead = owner(7, Some("boot:ns:1"));
    w.store
        .acquire_lease(
            &cx.deployment,
            &dead,
            "killed-run",
            "up",
            Duration::from_secs(30),
            (cx.clock)(),
        )
        .unwrap();
    // A holder that may be alive (or is on another host) still blocks.
    let err = up(&cx, &lo, &options(|_| false), &mut |_| true)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::Store(StoreError::Locked { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("expires in 30 s"), "{err}");
    // One known gone is replaced at once, long before the expiry.
    fn gone(o: &Owner) -> bool {
        o.pid == 7
    }
    let (outcome, _) = up(&w.context(fast_retries()), &lo, &options(gone), &mut |_| {
        true
    })
    .await
    .unwrap();
    assert!(matches!(outcome, RunOutcome::Applied { .. }), "{outcome:?}");
    assert!(w.store.lease(&cx.deployment).unwrap().is_none());
}

#[test]
fn take_over_refuses_when_another_run_took_the_lease_first() {
    let w = World::new(ZONES);
    let d = w.deployment();
    let ttl = Duration::from_secs(30);
    w.store
        .acquire_lease(&d, &owner(7, None), "dead", "up", ttl, 100)
        .unwrap();
    w.store
        .take_over_lease(&d, "dead", &owner(8, None), "first", "up", ttl, 100)
        .unwrap();
    match w
        .store
        .take_over_lease(&d, "dead", &owner(9, None), "second", "up", ttl, 100)
    {
        Err(StoreError::Locked { lease, .. }) => assert_eq!(lease.run_id, "first"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tokens_are_sha256_of_a_documented_input_and_never_change() {
    // Pinned: a run recovered by a later cairn must find what this one made.
    assert_eq!(
        token("shop-prod", "web[0]", "0a1b2c3d4e5f6789", "create"),
        "cairn-9a8e9e4866f153b5"
    );
    assert_ne!(
        token("shop-prod", "web[0]", "0a1b2c3d4e5f6789", "create"),
        token("shop-prod", "web[1]", "0a1b2c3d4e5f6789", "create")
    );
    // The separator keeps the parts apart.
    assert_ne!(
        token("ab", "c", "r", "create"),
        token("a", "bc", "r", "create")
    );
}

#[tokio::test]
async fn only_a_retried_create_looks_for_an_earlier_attempt() {
    let w =
        World::new("cairn: 1\nresources:\n  zone: {type: dns_zone, properties: {name: a.test}}\n");
    // The first call is throttled (its answer never came): the retry may
    // find what it made.
    w.provider
        .throttle_next
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let (outcome, _) = up(
        &w.context(fast_retries()),
        &LoadOptions::new(&w.dir),
        &options(|_| false),
        &mut |_| true,
    )
    .await
    .unwrap();
    assert!(matches!(outcome, RunOutcome::Applied { .. }), "{outcome:?}");
    assert_eq!(
        *w.provider.create_calls.lock().unwrap(),
        [("zone".to_string(), false), ("zone".to_string(), true)]
    );
}
