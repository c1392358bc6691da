//! Engine runs end to end over the fake cloud and the in-memory store.

mod commands;
mod import;
mod lease;
mod runs;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_template::{LoadOptions, load};

use crate::apply::{ApplyOptions, ApplyReport, RunContext, Silent, apply};
use crate::evaluate::evaluate;
use crate::plan::{Plan, PlanFailure, PlanOptions, plan_with};
use crate::recover::reconcile;
use crate::retry::RetryPolicy;
use crate::store::StateStore;
use crate::testing::{FakeProvider, FakeResource, MemoryStore};

static WORLDS: AtomicU64 = AtomicU64::new(0);

/// A template directory, a fake cloud and a state store.
pub struct World {
    pub dir: PathBuf,
    pub provider: Arc<FakeProvider>,
    pub store: Arc<MemoryStore>,
    runs: AtomicU64,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl World {
    pub fn new(template: &str) -> World {
        let n = WORLDS.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("cairn-engine-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let w = World {
            dir,
            provider: Arc::new(FakeProvider::new()),
            store: Arc::new(MemoryStore::new()),
            runs: AtomicU64::new(0),
        };
        w.write(template);
        w
    }

    pub fn write(&self, template: &str) {
        std::fs::write(self.dir.join("cairn.yaml"), template).unwrap();
    }

    pub fn deployment(&self) -> String {
        self.context(ApplyOptions::default()).deployment
    }

    pub fn context(&self, options: ApplyOptions) -> RunContext {
        let name = self.dir.file_name().unwrap().to_string_lossy().to_string();
        RunContext {
            deployment: format!("{name}-dev"),
            run_id: format!("run-{}", self.runs.fetch_add(1, Ordering::SeqCst)),
            provider: self.provider.clone(),
            store: self.store.clone(),
            observer: Arc::new(Silent),
            clock: Arc::new(|| 1_700_000_000),
            options,
            fence: Default::default(),
        }
    }

    pub fn plan(&self, params: &[&str], opts: &PlanOptions) -> Result<Plan, PlanFailure> {
        let mut lo = LoadOptions::new(&self.dir);
        lo.params = params.iter().map(|s| s.to_string()).collect();
        let loaded = load(&lo).expect("template loads");
        let dep = self.deployment();
        let prior = self.store.resources(&dep).unwrap();
        let serial = self.store.serial(&dep).unwrap();
        plan_with(&mut |k| evaluate(&loaded, k), &prior, serial, opts).map(|(p, _)| p)
    }

    /// Reconciles the journal, plans and applies, like `cairn up --yes`.
    pub async fn up(&self, params: &[&str], options: ApplyOptions) -> (Plan, ApplyReport) {
        self.up_with(params, options, &PlanOptions::default()).await
    }

    /// [`World::up`] with plan options (`--replace`, `--target`).
    pub async fn up_with(
        &self,
        params: &[&str],
        options: ApplyOptions,
        plan_options: &PlanOptions,
    ) -> (Plan, ApplyReport) {
        let cx = self.context(options);
        reconcile(&cx).await.expect("journal reconciles");
        let mut lo = LoadOptions::new(&self.dir);
        lo.params = params.iter().map(|s| s.to_string()).collect();
        let loaded = load(&lo).expect("template loads");
        let prior = self.store.resources(&cx.deployment).unwrap();
        let serial = self.store.serial(&cx.deployment).unwrap();
        let (plan, _) = plan_with(&mut |k| evaluate(&loaded, k), &prior, serial, plan_options)
            .unwrap_or_else(|e| panic!("plan failed: {e:?}"));
        let report = apply(&cx, &plan, &prior, &mut |k| evaluate(&loaded, k)).await;
        (plan, report)
    }

    /// Every later create of `address` fails, until the test clears
    /// `provider.fail_create`.
    pub fn fail_creating(&self, address: &str) {
        self.provider
            .fail_create
            .lock()
            .unwrap()
            .insert(address.into());
    }

    /// The first resource of `kind` in the fake cloud.
    pub fn first_of_kind(&self, kind: &str) -> FakeResource {
        self.provider
            .inventory()
            .into_values()
            .find(|r| r.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} in the cloud"))
    }

    /// How many resources of `kind` the fake cloud holds.
    pub fn count_of_kind(&self, kind: &str) -> usize {
        self.provider
            .inventory()
            .values()
            .filter(|r| r.kind == kind)
            .count()
    }

    /// The state and the fake cloud's inventory agree: every record names a
    /// live resource of its type, every live resource is recorded once.
    pub fn assert_state_matches_reality(&self) {
        let records = self.store.resources(&self.deployment()).unwrap();
        let inventory = self.provider.inventory();
        for r in &records {
            let live = inventory.get(&r.id).unwrap_or_else(|| {
                panic!(
                    "{} ({}) is in the state but not in the cloud",
                    r.address, r.id
                )
            });
            assert_eq!(live.kind, r.kind);
        }
        let recorded: std::collections::HashSet<&str> =
            records.iter().map(|r| r.id.as_str()).collect();
        let orphans: Vec<&String> = inventory
            .keys()
            .filter(|id| !recorded.contains(id.as_str()))
            .collect();
        assert!(orphans.is_empty(), "orphans in the cloud: {orphans:?}");
        let mut addresses: Vec<&str> = inventory.values().map(|r| r.address.as_str()).collect();
        addresses.sort();
        let before = addresses.len();
        addresses.dedup();
        assert_eq!(before, addresses.len(), "duplicates in the cloud");
    }
}

pub fn fast_retries() -> ApplyOptions {
    ApplyOptions {
        retry: RetryPolicy {
            base: std::time::Duration::from_millis(1),
            max_delay: std::time::Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        ..ApplyOptions::default()
    }
}
