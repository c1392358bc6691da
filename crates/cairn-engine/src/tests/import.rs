//! `import::import` over the fake cloud: adopting a resource made
//! elsewhere, under the lease, with retries, recorded through the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use super::{World, fast_retries};
use crate::apply::RunContext;
use crate::import::{ImportError, ImportOptions, ImportOutcome, ImportRequest, import};
use crate::provider::*;
use crate::schema::ResourceSchema;
use crate::store::{Owner, StateStore};
use crate::testing::{FakeProvider, MemoryStore};

const EMPTY: &str = "cairn: 1\nresources: {}\n";

fn options() -> ImportOptions {
    ImportOptions {
        owner: Owner {
            user: "alice".into(),
            host: "laptop".into(),
            pid: 42,
            process: None,
        },
        lease_ttl: Duration::from_secs(30),
        holder_gone: |_| false,
        environment: "dev".into(),
        target: "fake".into(),
    }
}

/// Makes a resource in the fake cloud as someone else would.
async fn made_elsewhere(w: &World, kind: &str, properties: Json) -> String {
    w.provider
        .create(CreateRequest {
            deployment: "someone-else".into(),
            address: "elsewhere".into(),
            kind: kind.parse().unwrap(),
            properties,
            tags: BTreeMap::from([("team".to_string(), "web".to_string())]),
            target: None,
            token: format!("by-hand-{kind}"),
            sensitive: Vec::new(),
            may_exist: false,
        })
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn import_adopts_a_resource_records_it_and_refuses_a_second_under_the_same_name() {
    let w = World::new(EMPTY);
    let id = made_elsewhere(
        &w,
        "database",
        json!({"name": "orders", "engine": "postgres", "size": "small", "storage_gb": 50,
               "owner_password": "hunter2"}),
    )
    .await;
    // The read is throttled once: the engine's retries see it through.
    w.provider.throttle_next.store(1, Ordering::SeqCst);
    let cx = w.context(fast_retries());
    let req = ImportRequest::new("database", &id, "orders").unwrap();
    let mut seen = None;
    let outcome = import(&cx, &req, &options(), &mut |i| {
        seen = Some(i.record.clone());
        true
    })
    .await
    .unwrap();
    let ImportOutcome::Recorded { imported, serial } = outcome else {
        panic!("not recorded: {outcome:?}");
    };
    assert_eq!(seen.as_ref(), Some(&imported.record));
    // Declared: what is set and not the default; the password never.
    assert_eq!(
        Json::Object(imported.declared.clone()),
        json!({"name": "orders", "engine": "postgres", "storage_gb": 50})
    );
    assert_eq!(imported.withheld, ["owner_password"]);

    let dep = w.deployment();
    let records = w.store.resources(&dep).unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r.address.as_str(), r.kind.as_str(), r.id.as_str()),
        ("orders", "database", id.as_str())
    );
    assert_eq!(r.secrets["properties.owner_password"], json!("hunter2"));
    assert!(r.properties.get("owner_password").is_none());
    assert_eq!(r.tags["team"], "web");
    assert!(r.data_holding);

    let runs = w.store.runs(&dep).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].serial, serial);
    assert_eq!(runs[0].command, "import");
    assert_eq!(runs[0].outcome, "succeeded");
    assert_eq!(runs[0].run_id, cx.run_id);
    assert_eq!(runs[0].plan["import"]["id"], json!(id));
    // The lease is released at the end.
    assert!(w.store.lease(&dep).unwrap().is_none());

    // The same name again (another resource) is refused; nothing changes.
    let other = made_elsewhere(&w, "bucket", json!({"name": "b"})).await;
    let again = ImportRequest::new("bucket", &other, "orders").unwrap();
    let err = import(&w.context(fast_retries()), &again, &options(), &mut |_| {
        true
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ImportError::AlreadyManaged { address, .. } if address == "orders"),
        "{err:?}"
    );
    assert!(err.to_string().contains("already has orders"), "{err}");
    assert_eq!(w.store.resources(&dep).unwrap().len(), 1);
    assert_eq!(w.store.runs(&dep).unwrap().len(), 1);
    assert!(w.store.lease(&dep).unwrap().is_none());
}

#[tokio::test]
async fn import_of_a_locked_deployment_is_refused_naming_the_owner() {
    let w = World::new(EMPTY);
    let id = made_elsewhere(&w, "bucket", json!({"name": "logs"})).await;
    let dep = w.deployment();
    let holder = Owner {
        user: "bob".into(),
        host: "ci-7".into(),
        pid: 4711,
        process: None,
    };
    w.store
        .acquire_lease(
            &dep,
            &holder,
            "bobs-run",
            "up",
            Duration::from_secs(30),
            1_700_000_000,
        )
        .unwrap();
    let calls = w.provider.calls.load(Ordering::SeqCst);
    let req = ImportRequest::new("bucket", &id, "logs").unwrap();
    let err = import(&w.context(fast_retries()), &req, &options(), &mut |_| true)
        .await
        .unwrap_err();
    assert!(matches!(err, ImportError::Store(_)), "{err:?}");
    assert!(err.to_string().contains("bob@ci-7 (pid 4711)"), "{err}");
    // Nothing read, nothing recorded, the lease still Bob's.
    assert_eq!(w.provider.calls.load(Ordering::SeqCst), calls);
    assert!(w.store.resources(&dep).unwrap().is_empty());
    assert_eq!(w.store.lease(&dep).unwrap().unwrap().run_id, "bobs-run");
}

#[tokio::test]
async fn import_refuses_what_is_missing_or_declined_and_records_nothing() {
    let w = World::new(EMPTY);
    let dep = w.deployment();
    let req = ImportRequest::new("bucket", "bucket-99", "logs").unwrap();
    let err = import(&w.context(fast_retries()), &req, &options(), &mut |_| true)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the fake target has no bucket with id bucket-99"
    );

    let id = made_elsewhere(&w, "bucket", json!({"name": "logs"})).await;
    let req = ImportRequest::new("bucket", &id, "logs").unwrap();
    let outcome = import(&w.context(fast_retries()), &req, &options(), &mut |_| false)
        .await
        .unwrap();
    assert!(matches!(outcome, ImportOutcome::Declined));
    assert!(w.store.resources(&dep).unwrap().is_empty());
    assert!(w.store.runs(&dep).unwrap().is_empty());
    assert!(w.store.lease(&dep).unwrap().is_none());
}

#[test]
fn an_import_request_names_a_portable_type_and_an_identifier() {
    let err = ImportRequest::new("bukket", "x", "logs").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("`bukket` is not a resource type; types: "),
        "{err}"
    );
    let err = ImportRequest::new("bucket", "x", "web[0]").unwrap_err();
    assert!(matches!(err, ImportError::InvalidName(_)), "{err:?}");
    let ok = ImportRequest::new("bucket", "x", "logs").unwrap();
    assert_eq!((ok.kind(), ok.id(), ok.address()), ("bucket", "x", "logs"));
}

/// The fake cloud, where the lease of the deployment is taken by another
/// run while a read is answered.
struct TakenDuringRead {
    inner: Arc<FakeProvider>,
    store: Arc<MemoryStore>,
    deployment: String,
}

#[async_trait::async_trait]
impl Provider for TakenDuringRead {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn schema(&self, kind: &str) -> Option<&'static ResourceSchema> {
        self.inner.schema(kind)
    }
    async fn create(&self, req: CreateRequest) -> ProviderResult<Created> {
        self.inner.create(req).await
    }
    async fn read(&self, req: ReadRequest) -> ProviderResult<Option<Observed>> {
        let read = self.inner.read(req).await;
        self.store.break_lease(&self.deployment).unwrap();
        let bob = Owner {
            user: "bob".into(),
            host: "ci-7".into(),
            pid: 4711,
            process: None,
        };
        let ttl = Duration::from_secs(30);
        let now = 1_700_000_000;
        self.store
            .acquire_lease(&self.deployment, &bob, "bobs-run", "up", ttl, now)
            .unwrap();
        read
    }
    async fn update(&self, req: UpdateRequest) -> ProviderResult<Json> {
        self.inner.update(req).await
    }
    async fn delete(&self, req: DeleteRequest) -> ProviderResult<()> {
        self.inner.delete(req).await
    }
    async fn find(&self, req: FindRequest) -> ProviderResult<Option<Created>> {
        self.inner.find(req).await
    }
    async fn list(&self, deployment: &str) -> ProviderResult<Vec<Listed>> {
        self.inner.list(deployment).await
    }
}

#[tokio::test]
async fn import_that_loses_its_lease_during_the_read_records_nothing() {
    let w = World::new(EMPTY);
    let id = made_elsewhere(&w, "bucket", json!({"name": "logs"})).await;
    let dep = w.deployment();
    let cx = RunContext {
        provider: Arc::new(TakenDuringRead {
            inner: w.provider.clone(),
            store: w.store.clone(),
            deployment: dep.clone(),
        }),
        ..w.context(fast_retries())
    };
    let req = ImportRequest::new("bucket", &id, "logs").unwrap();
    let err = import(&cx, &req, &options(), &mut |_| true)
        .await
        .unwrap_err();
    assert!(matches!(err, ImportError::LeaseLost(_)), "{err:?}");
    assert!(err.to_string().contains("taken by bob@ci-7"), "{err}");
    assert!(w.store.resources(&dep).unwrap().is_empty());
    assert!(w.store.runs(&dep).unwrap().is_empty());
    // The new holder's lease is left alone.
    assert_eq!(w.store.lease(&dep).unwrap().unwrap().run_id, "bobs-run");
}
