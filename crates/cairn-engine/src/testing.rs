//! Test doubles for the engine's own tests and for the crates above it: a
//! fake cloud implementing [`Provider`] (with failure injection) and an
//! in-memory [`StateStore`]. Real targets are tested against real services.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::{BackendControl, BackendRef, BackendState, DrainReport, backends_of};
use crate::provider::*;
use crate::schema::{Kind, ResourceSchema, lookup};
use crate::store::*;

#[derive(Debug, Clone, PartialEq)]
pub struct FakeResource {
    pub kind: Kind,
    pub address: String,
    pub properties: Json,
    pub tags: BTreeMap<String, String>,
    pub token: String,
}

/// An in-memory cloud. Creates are idempotent per token, like client tokens.
#[derive(Default)]
pub struct FakeProvider {
    cloud: Mutex<BTreeMap<String, FakeResource>>,
    next: AtomicU64,
    pub calls: AtomicU64,
    /// Addresses whose create fails for good.
    pub fail_create: Mutex<HashSet<String>>,
    /// The next N calls fail with a throttle (then succeed).
    pub throttle_next: AtomicU64,
    /// Every call takes this long (so a test can kill a run mid-call).
    pub latency: Mutex<Duration>,
    /// Every change made, in order: `create web[0] server-3`,
    /// `update lb load_balancer-2`, `delete web[0] server-1`.
    pub changes: Mutex<Vec<String>>,
    /// Every create call as it came: the address and whether the engine
    /// said an earlier attempt may exist.
    pub create_calls: Mutex<Vec<(String, bool)>>,
    /// Backend control: every call in order, `drain lb-2 10.9.0.1:8080`,
    /// `restore ...` (`state` calls are not logged).
    pub backend_calls: Mutex<Vec<String>>,
    /// Drained backends: (balancer id, `address:port`).
    pub drained: Mutex<HashSet<(String, String)>>,
    /// Backend addresses whose drain fails for good.
    pub fail_drain: Mutex<HashSet<String>>,
    /// Backend addresses the balancer's health check fails (never
    /// `Healthy`, drained or not).
    pub unhealthy: Mutex<HashSet<String>>,
}

impl FakeProvider {
    pub fn new() -> FakeProvider {
        FakeProvider::default()
    }

    /// What exists, by id: the target's own inventory.
    pub fn inventory(&self) -> BTreeMap<String, FakeResource> {
        self.cloud.lock().unwrap().clone()
    }

    /// Changes a resource behind cairn's back (for drift tests).
    pub fn tamper(&self, id: &str, property: &str, value: Json) {
        if let Some(r) = self.cloud.lock().unwrap().get_mut(id)
            && let Json::Object(m) = &mut r.properties
        {
            m.insert(property.to_string(), value);
        }
    }

    fn log(&self, op: &str, address: &str, id: &str) {
        self.changes
            .lock()
            .unwrap()
            .push(format!("{op} {address} {id}"));
    }

    async fn call(&self) -> ProviderResult<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let latency = *self.latency.lock().unwrap();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let throttled = self
            .throttle_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if throttled {
            return Err(ProviderError::Throttled {
                retry_after: Some(Duration::from_millis(5)),
                message: "slow down".into(),
            });
        }
        Ok(())
    }

    fn attributes(kind: Kind, id: &str, n: u64) -> Json {
        let mut m = serde_json::Map::new();
        m.insert("id".into(), Json::String(id.into()));
        {
            let s = kind.schema();
            for a in s.attributes.iter().filter(|a| a.name != "id") {
                let v = match a.name {
                    "address" | "private_ip" | "public_ip" => {
                        Json::String(format!("10.9.{}.{}", n / 250, n % 250 + 1))
                    }
                    "port" => Json::from(8080),
                    "endpoint" => Json::String(format!("db-{n}.fake:5432")),
                    other => Json::String(format!("{other}-{id}")),
                };
                m.insert(a.name.to_string(), v);
            }
        }
        Json::Object(m)
    }
}

impl FakeProvider {
    /// `address:port` of a backend of the balancer `lb_id`, or the error a
    /// real target gives: NotFound for the balancer, Permanent for a
    /// backend not in its `backends`.
    fn backend_key(&self, lb_id: &str, backend: &BackendRef) -> ProviderResult<String> {
        let cloud = self.cloud.lock().unwrap();
        let lb = cloud
            .get(lb_id)
            .filter(|r| r.kind == "load_balancer")
            .ok_or_else(|| ProviderError::NotFound(format!("load balancer {lb_id}")))?;
        let listed = backends_of(&lb.properties)
            .iter()
            .any(|b| b.address == backend.address && b.port == backend.port);
        if !listed {
            return Err(ProviderError::Permanent(format!(
                "{backend} is not a backend of load balancer {lb_id}"
            )));
        }
        Ok(format!("{}:{}", backend.address, backend.port))
    }
}

/// Drains and restores at once (nothing is ever in flight), checking the
/// balancer and the backend like a real target.
#[async_trait::async_trait]
impl BackendControl for FakeProvider {
    async fn drain(
        &self,
        lb_id: &str,
        backend: &BackendRef,
        _timeout: Duration,
    ) -> ProviderResult<DrainReport> {
        self.call().await?;
        let key = self.backend_key(lb_id, backend)?;
        self.backend_calls
            .lock()
            .unwrap()
            .push(format!("drain {lb_id} {key}"));
        if self.fail_drain.lock().unwrap().contains(&backend.address) {
            return Err(ProviderError::Permanent(format!(
                "{key} cannot be drained here"
            )));
        }
        self.drained
            .lock()
            .unwrap()
            .insert((lb_id.to_string(), key));
        Ok(DrainReport {
            in_flight_at_start: Some(0),
            in_flight_left: Some(0),
            waited: Duration::ZERO,
            timed_out: false,
        })
    }

    async fn restore(&self, lb_id: &str, backend: &BackendRef) -> ProviderResult<()> {
        self.call().await?;
        let key = self.backend_key(lb_id, backend)?;
        self.backend_calls
            .lock()
            .unwrap()
            .push(format!("restore {lb_id} {key}"));
        self.drained
            .lock()
            .unwrap()
            .remove(&(lb_id.to_string(), key));
        Ok(())
    }

    async fn backend_state(
        &self,
        lb_id: &str,
        backend: &BackendRef,
    ) -> ProviderResult<BackendState> {
        self.call().await?;
        let key = self.backend_key(lb_id, backend)?;
        Ok(
            if self
                .drained
                .lock()
                .unwrap()
                .contains(&(lb_id.to_string(), key))
            {
                BackendState::Drained
            } else if self.unhealthy.lock().unwrap().contains(&backend.address) {
                BackendState::Unhealthy
            } else {
                BackendState::Healthy
            },
        )
    }
}

#[async_trait::async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> &str {
        "fake"
    }

    fn schema(&self, kind: &str) -> Option<&'static ResourceSchema> {
        lookup(kind)
    }

    async fn create(&self, req: CreateRequest) -> ProviderResult<Created> {
        self.create_calls
            .lock()
            .unwrap()
            .push((req.address.clone(), req.may_exist));
        self.call().await?;
        if self.fail_create.lock().unwrap().contains(&req.address) {
            return Err(ProviderError::Permanent(format!(
                "{} cannot be created here",
                req.address
            )));
        }
        let mut cloud = self.cloud.lock().unwrap();
        if let Some((id, r)) = cloud.iter().find(|(_, r)| r.token == req.token) {
            let n = id
                .rsplit('-')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return Ok(Created {
                id: id.clone(),
                attributes: Self::attributes(r.kind, id, n),
            });
        }
        let n = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let id = format!("{}-{n}", req.kind);
        self.log("create", &req.address, &id);
        cloud.insert(
            id.clone(),
            FakeResource {
                kind: req.kind,
                address: req.address,
                properties: req.properties,
                tags: req.tags,
                token: req.token,
            },
        );
        Ok(Created {
            attributes: Self::attributes(req.kind, &id, n),
            id,
        })
    }

    async fn read(&self, req: ReadRequest) -> ProviderResult<Option<Observed>> {
        self.call().await?;
        let cloud = self.cloud.lock().unwrap();
        Ok(cloud.get(&req.id).map(|r| {
            let n = req
                .id
                .rsplit('-')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            Observed {
                properties: r.properties.clone(),
                attributes: Self::attributes(r.kind, &req.id, n),
                tags: r.tags.clone(),
            }
        }))
    }

    async fn update(&self, req: UpdateRequest) -> ProviderResult<Json> {
        self.call().await?;
        let mut cloud = self.cloud.lock().unwrap();
        let r = cloud
            .get_mut(&req.id)
            .ok_or_else(|| ProviderError::NotFound(req.id.clone()))?;
        r.properties = req.properties;
        r.tags = req.tags;
        self.log("update", &req.address, &req.id);
        let n = req
            .id
            .rsplit('-')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(Self::attributes(req.kind, &req.id, n))
    }

    async fn delete(&self, req: DeleteRequest) -> ProviderResult<()> {
        self.call().await?;
        match self.cloud.lock().unwrap().remove(&req.id) {
            Some(_) => {
                self.log("delete", &req.address, &req.id);
                Ok(())
            }
            None => Err(ProviderError::NotFound(req.id)),
        }
    }

    async fn find(&self, req: FindRequest) -> ProviderResult<Option<Created>> {
        self.call().await?;
        let cloud = self.cloud.lock().unwrap();
        Ok(cloud
            .iter()
            .find(|(_, r)| r.token == req.token)
            .map(|(id, r)| {
                let n = id
                    .rsplit('-')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                Created {
                    id: id.clone(),
                    attributes: Self::attributes(r.kind, id, n),
                }
            }))
    }

    async fn list(&self, deployment: &str) -> ProviderResult<Vec<Listed>> {
        self.call().await?;
        let cloud = self.cloud.lock().unwrap();
        Ok(cloud
            .iter()
            .filter(|(_, r)| r.tags.get("cairn:deployment").map(String::as_str) == Some(deployment))
            .map(|(id, r)| Listed {
                kind: r.kind,
                id: id.clone(),
                address: r.tags.get("cairn:resource").cloned(),
            })
            .collect())
    }

    fn backend_control(&self) -> Option<&dyn BackendControl> {
        Some(self)
    }
}

#[derive(Default)]
struct Memory {
    resources: BTreeMap<(String, String), ResourceRecord>,
    serials: HashMap<String, i64>,
    leases: HashMap<String, Lease>,
    journal: Vec<JournalEntry>,
    runs: Vec<RunRecord>,
    generated: BTreeMap<(String, String), String>,
    outputs: HashMap<String, (Json, BTreeMap<String, Json>)>,
}

/// A [`StateStore`] in memory, for engine tests.
#[derive(Default)]
pub struct MemoryStore {
    m: Mutex<Memory>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.m.lock().unwrap().journal.clone()
    }
}

impl MemoryStore {
    /// Writes `run_id`'s lease unless `refused` says the one held stays.
    #[allow(clippy::too_many_arguments)]
    fn hold(
        &self,
        deployment: &str,
        owner: &Owner,
        run_id: &str,
        operation: &str,
        ttl: Duration,
        now: Timestamp,
        refused: impl Fn(&Lease) -> bool,
    ) -> StoreResult<Lease> {
        let mut m = self.m.lock().unwrap();
        if let Some(l) = m.leases.get(deployment).filter(|l| refused(l)) {
            return Err(StoreError::Locked {
                deployment: deployment.into(),
                lease: Box::new(l.clone()),
                now,
            });
        }
        let lease = Lease {
            deployment: deployment.into(),
            owner: owner.clone(),
            run_id: run_id.into(),
            operation: operation.into(),
            acquired_at: now,
            expires_at: now + ttl.as_secs() as i64,
        };
        m.leases.insert(deployment.into(), lease.clone());
        Ok(lease)
    }
}

impl StateStore for MemoryStore {
    fn resources(&self, deployment: &str) -> StoreResult<Vec<ResourceRecord>> {
        let m = self.m.lock().unwrap();
        Ok(m.resources
            .iter()
            .filter(|((d, _), _)| d == deployment)
            .map(|(_, r)| r.clone())
            .collect())
    }
    fn put_resource(&self, deployment: &str, record: &ResourceRecord) -> StoreResult<()> {
        let mut m = self.m.lock().unwrap();
        m.resources
            .insert((deployment.into(), record.address.clone()), record.clone());
        *m.serials.entry(deployment.into()).or_default() += 1;
        Ok(())
    }
    fn delete_resource(&self, deployment: &str, address: &str) -> StoreResult<()> {
        let mut m = self.m.lock().unwrap();
        // Only a real removal moves the serial (a saved plan stays valid).
        if m.resources
            .remove(&(deployment.into(), address.into()))
            .is_some()
        {
            *m.serials.entry(deployment.into()).or_default() += 1;
        }
        Ok(())
    }
    fn serial(&self, deployment: &str) -> StoreResult<i64> {
        Ok(self
            .m
            .lock()
            .unwrap()
            .serials
            .get(deployment)
            .copied()
            .unwrap_or(0))
    }
    fn deployments(&self) -> StoreResult<Vec<String>> {
        let m = self.m.lock().unwrap();
        let mut v: Vec<String> = m.resources.keys().map(|(d, _)| d.clone()).collect();
        v.dedup();
        Ok(v)
    }
    fn acquire_lease(
        &self,
        deployment: &str,
        owner: &Owner,
        run_id: &str,
        operation: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<Lease> {
        let held_on = |l: &Lease| l.expires_at > now && l.run_id != run_id;
        self.hold(deployment, owner, run_id, operation, ttl, now, held_on)
    }
    fn take_over_lease(
        &self,
        deployment: &str,
        from_run_id: &str,
        owner: &Owner,
        run_id: &str,
        operation: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<Lease> {
        // As the real stores' `may_take_over`: refused only when a third run
        // took it first (a free lease, or one this run already holds, is
        // taken).
        let taken_first = |l: &Lease| l.run_id != from_run_id && l.run_id != run_id;
        self.hold(deployment, owner, run_id, operation, ttl, now, taken_first)
    }
    fn renew_lease(
        &self,
        deployment: &str,
        run_id: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<Lease> {
        let mut m = self.m.lock().unwrap();
        match m.leases.get_mut(deployment) {
            Some(l) if l.run_id == run_id => {
                l.expires_at = now + ttl.as_secs() as i64;
                Ok(l.clone())
            }
            _ => Err(StoreError::LeaseLost {
                deployment: deployment.into(),
            }),
        }
    }
    fn release_lease(&self, deployment: &str, run_id: &str) -> StoreResult<()> {
        let mut m = self.m.lock().unwrap();
        if m.leases.get(deployment).is_some_and(|l| l.run_id == run_id) {
            m.leases.remove(deployment);
        }
        Ok(())
    }
    fn lease(&self, deployment: &str) -> StoreResult<Option<Lease>> {
        Ok(self.m.lock().unwrap().leases.get(deployment).cloned())
    }
    fn break_lease(&self, deployment: &str) -> StoreResult<Option<Lease>> {
        Ok(self.m.lock().unwrap().leases.remove(deployment))
    }
    fn journal_intent(&self, entry: &JournalEntry) -> StoreResult<i64> {
        let mut m = self.m.lock().unwrap();
        let seq = m.journal.len() as i64 + 1;
        let mut e = entry.clone();
        e.seq = seq;
        m.journal.push(e);
        Ok(seq)
    }
    fn journal_outcome(&self, seq: i64, outcome: &JournalOutcome) -> StoreResult<()> {
        let mut m = self.m.lock().unwrap();
        if let Some(e) = m.journal.get_mut(seq as usize - 1) {
            e.outcome = Some(outcome.clone());
        }
        Ok(())
    }
    fn open_journal(&self, deployment: &str) -> StoreResult<Vec<JournalEntry>> {
        let m = self.m.lock().unwrap();
        Ok(m.journal
            .iter()
            .filter(|e| e.deployment == deployment && e.outcome.is_none())
            .cloned()
            .collect())
    }
    fn close_journal(&self, seq: i64, outcome: &JournalOutcome) -> StoreResult<()> {
        self.journal_outcome(seq, outcome)
    }
    fn begin_run(&self, run: &RunRecord) -> StoreResult<i64> {
        let mut m = self.m.lock().unwrap();
        let serial = m
            .runs
            .iter()
            .filter(|r| r.deployment == run.deployment)
            .count() as i64
            + 1;
        let mut r = run.clone();
        r.serial = serial;
        m.runs.push(r);
        Ok(serial)
    }
    fn finish_run(&self, deployment: &str, serial: i64, run: &RunRecord) -> StoreResult<()> {
        let mut m = self.m.lock().unwrap();
        if let Some(r) = m
            .runs
            .iter_mut()
            .find(|r| r.deployment == deployment && r.serial == serial)
        {
            *r = run.clone();
            r.serial = serial;
        }
        Ok(())
    }
    fn runs(&self, deployment: &str) -> StoreResult<Vec<RunRecord>> {
        Ok(self
            .m
            .lock()
            .unwrap()
            .runs
            .iter()
            .filter(|r| r.deployment == deployment)
            .cloned()
            .collect())
    }
    fn run(&self, deployment: &str, serial: i64) -> StoreResult<RunRecord> {
        self.runs(deployment)?
            .into_iter()
            .find(|r| r.serial == serial)
            .ok_or(StoreError::NoSuchRun {
                deployment: deployment.into(),
                serial,
            })
    }
    fn generated_secrets(&self, deployment: &str) -> StoreResult<BTreeMap<String, String>> {
        let m = self.m.lock().unwrap();
        Ok(m.generated
            .iter()
            .filter(|((d, _), _)| d == deployment)
            .map(|((_, n), v)| (n.clone(), v.clone()))
            .collect())
    }
    fn put_generated_secret(&self, deployment: &str, name: &str, value: &str) -> StoreResult<()> {
        self.m
            .lock()
            .unwrap()
            .generated
            .insert((deployment.into(), name.into()), value.into());
        Ok(())
    }
    fn put_outputs(
        &self,
        deployment: &str,
        public: &Json,
        secrets: &BTreeMap<String, Json>,
    ) -> StoreResult<()> {
        self.m
            .lock()
            .unwrap()
            .outputs
            .insert(deployment.into(), (public.clone(), secrets.clone()));
        Ok(())
    }
    fn outputs(&self, deployment: &str) -> StoreResult<(Json, BTreeMap<String, Json>)> {
        Ok(self
            .m
            .lock()
            .unwrap()
            .outputs
            .get(deployment)
            .cloned()
            .unwrap_or((Json::Null, BTreeMap::new())))
    }
}
