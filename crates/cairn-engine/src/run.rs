//! One deployment command from start to end: take the lease (renewed by a
//! heartbeat), reconcile the journal, create generated secrets, refresh,
//! plan, ask, record the run, apply, store the outputs, release.
//!
//! The CLI calls [`up`] for `up`, `destroy` and `rollback`; tests call it
//! with the fake provider.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use cairn_template::{Diagnostics, LoadError, LoadOptions, Loaded, Sources, Value, load};

use crate::apply::{ApplyReport, RunContext, apply};
use crate::evaluate::evaluate;
use crate::fence::Fence;
use crate::plan::{Plan, PlanError, PlanFailure, PlanOptions, plan_with};
use crate::provider::{Json, ReadRequest};
use crate::recover::{Reconciled, reconcile};
use crate::store::{Owner, ResourceRecord, RunRecord, StoreError};

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `up`, `destroy`, `rollback`, `apply`.
    pub command: String,
    pub plan: PlanOptions,
    pub refresh: bool,
    pub owner: Owner,
    pub lease_ttl: Duration,
    /// Refuse unless the state's serial is still this (a saved plan).
    pub expect_serial: Option<i64>,
    /// Refuse unless planning again gives these changes (a saved plan).
    pub expect_changes: Option<Vec<crate::plan::ResourceChange>>,
    /// Also delete live resources tagged for the deployment that the state
    /// does not know.
    pub prune: bool,
    /// Whether a lease's holder is known to be gone (on this host, its
    /// process no longer runs): its lease is taken over at once instead of
    /// at its expiry. The CLI passes [`crate::holder::holder_is_gone`].
    pub holder_gone: fn(&Owner) -> bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum RunOutcome {
    /// Nothing to do.
    NoChanges { plan: Plan },
    /// The confirmation said no.
    Declined { plan: Plan },
    Applied {
        serial: i64,
        plan: Plan,
        report: ApplyReport,
        outputs: Json,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("template errors")]
    Template {
        sources: Sources,
        diagnostics: Diagnostics,
    },
    #[error("the plan was refused: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused(Vec<PlanError>),
    #[error(
        "the state changed since the plan was made (serial {expected}, now {found}); plan again"
    )]
    StalePlan { expected: i64, found: i64 },
    #[error(
        "planning again gives other changes than the saved plan (the template, its inputs or the live resources changed); plan again"
    )]
    PlanChanged,
    #[error("{0}")]
    Provider(String),
    /// The run lost its lease and stopped; `report` says what it did.
    #[error("{reason}")]
    LeaseLost {
        reason: String,
        report: Box<ApplyReport>,
    },
}

impl From<LoadError> for RunError {
    fn from(e: LoadError) -> Self {
        RunError::Template {
            sources: e.sources,
            diagnostics: e.diagnostics,
        }
    }
}

/// A random secret of `length` characters from an unambiguous alphabet.
pub fn generate_secret(length: usize, special: bool) -> Result<String, String> {
    const PLAIN: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    const SPECIAL: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.~!%";
    let alphabet = if special { SPECIAL } else { PLAIN };
    let mut out = String::with_capacity(length);
    let mut buf = [0u8; 64];
    while out.len() < length {
        getrandom::fill(&mut buf).map_err(|e| format!("no randomness: {e}"))?;
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - 256 % alphabet.len();
        for &b in buf.iter().filter(|&&b| (b as usize) < limit) {
            if out.len() == length {
                break;
            }
            out.push(alphabet[b as usize % alphabet.len()] as char);
        }
    }
    Ok(out)
}

/// The load options with the secrets earlier runs generated.
fn with_generated(cx: &RunContext, opts: &LoadOptions) -> Result<LoadOptions, RunError> {
    let mut opts = opts.clone();
    opts.generated = cx
        .store
        .generated_secrets(&cx.deployment)?
        .into_iter()
        .collect();
    Ok(opts)
}

/// Loads the template with this deployment's generated secrets, creating
/// and storing those that do not exist yet.
pub fn load_with_secrets(cx: &RunContext, opts: &LoadOptions) -> Result<Loaded, RunError> {
    let mut opts = with_generated(cx, opts)?;
    let loaded = load(&opts)?;
    if loaded.params.to_generate.is_empty() {
        return Ok(loaded);
    }
    for name in &loaded.params.to_generate {
        let g = loaded.template.parameters[name].generate.clone();
        let (length, special) = g.map_or((32, false), |g| (g.length, g.special));
        let value = generate_secret(length, special).map_err(RunError::Provider)?;
        cx.store
            .put_generated_secret(&cx.deployment, name, &value)?;
        opts.generated.insert(name.clone(), value);
    }
    Ok(load(&opts)?)
}

/// The template's files as read (path → text) and their digest, for history.
fn snapshot(loaded: &Loaded) -> (BTreeMap<String, String>, String) {
    // The template document only: environment and parameter files may hold
    // secret values in plain text, and the parameters are recorded apart
    // (redacted) anyway.
    let file = loaded.sources.get(loaded.template.file);
    let files = BTreeMap::from([(file.name.clone(), file.text.to_string())]);
    let mut h = Sha256::new();
    for (k, v) in &files {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    let digest = hex::encode(h.finalize());
    (files, digest)
}

/// A recorded resource as the target has it now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    pub address: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub status: DriftStatus,
    /// The properties (and `tags.NAME`) whose live value differs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<PropertyDrift>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftStatus {
    Changed,
    /// Gone from the target.
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PropertyDrift {
    pub path: String,
    /// As cairn last applied it.
    pub recorded: Json,
    /// As the target reports it now.
    pub actual: Json,
}

/// The records as the target has them now, and what moved.
#[derive(Debug, Default)]
pub struct Observed {
    /// Refreshed records of what still exists.
    pub records: Vec<ResourceRecord>,
    /// Addresses of records whose resource is gone.
    pub gone: Vec<String>,
    pub drift: Vec<Drift>,
}

/// Reads every record's resource from the target. Live attributes replace
/// recorded ones; a property or tag changed behind cairn's back replaces the
/// recorded value too, so the plan that follows puts it back. Secret values
/// are neither compared nor reported.
pub async fn observe(cx: &RunContext, records: Vec<ResourceRecord>) -> Result<Observed, RunError> {
    let reads = read_all(cx, &records).await;
    let mut out = Observed::default();
    for (mut r, read) in records.into_iter().zip(reads) {
        let live = match read {
            Ok(Some(o)) => o,
            Ok(None) | Err(crate::provider::ProviderError::NotFound(_)) => {
                out.drift.push(Drift {
                    address: r.address.clone(),
                    kind: r.kind.clone(),
                    id: r.id.clone(),
                    status: DriftStatus::Deleted,
                    properties: Vec::new(),
                });
                out.gone.push(r.address);
                continue;
            }
            Err(e) => return Err(RunError::Provider(format!("reading {}: {e}", r.address))),
        };
        if let (Json::Object(a), Json::Object(new)) = (&mut r.attributes, live.attributes) {
            for (k, v) in new {
                if !r.secrets.contains_key(&format!("attributes.{k}")) {
                    a.insert(k, v);
                }
            }
        }
        let mut moved = Vec::new();
        if let (Json::Object(recorded), Json::Object(actual)) = (&mut r.properties, live.properties)
        {
            // Only what cairn recorded: a target may report more than the
            // template can say, and that is not drift.
            let schema = crate::schema::lookup(&r.kind);
            for (k, before) in recorded.iter_mut() {
                if r.secrets.contains_key(&format!("properties.{k}")) {
                    continue;
                }
                // A target that does not report a property says nothing about it.
                let Some(now) = actual.get(k).filter(|v| !v.is_null()) else {
                    continue;
                };
                let prop = schema.and_then(|s| s.property(k));
                let left_to_target = prop.is_some_and(|p| {
                    p.chosen && (before.is_null() || p.default_value().as_ref() == Some(before))
                });
                if left_to_target || same_value(before, now) {
                    continue;
                }
                moved.push(PropertyDrift {
                    path: k.clone(),
                    recorded: std::mem::replace(before, now.clone()),
                    actual: now.clone(),
                });
            }
        }
        // A target that reports no tags (or cannot tag this type) says nothing about them.
        if !live.tags.is_empty() {
            let recorded: Vec<(String, String)> =
                r.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            for (k, before) in recorded {
                let now = live.tags.get(&k);
                if now != Some(&before) {
                    moved.push(PropertyDrift {
                        path: format!("tags.{k}"),
                        recorded: Json::String(before),
                        actual: now.map_or(Json::Null, |v| Json::String(v.clone())),
                    });
                    match now {
                        Some(v) => r.tags.insert(k, v.clone()),
                        None => r.tags.remove(&k),
                    };
                }
            }
        }
        if !moved.is_empty() {
            out.drift.push(Drift {
                address: r.address.clone(),
                kind: r.kind.clone(),
                id: r.id.clone(),
                status: DriftStatus::Changed,
                properties: moved,
            });
        }
        out.records.push(r);
    }
    Ok(out)
}

/// Equal as a target means it: lists compare as multisets, because targets
/// report rules, addresses and members in an order of their own.
fn same_value(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Array(x), Json::Array(y)) => {
            if x.len() != y.len() {
                return false;
            }
            let mut unused: Vec<&Json> = y.iter().collect();
            x.iter()
                .all(|v| match unused.iter().position(|w| same_value(v, w)) {
                    Some(i) => {
                        unused.swap_remove(i);
                        true
                    }
                    None => false,
                })
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

/// Reads every record's resource, as many at once as the apply's
/// parallelism allows, each with the apply's retries; results in order.
async fn read_all(
    cx: &RunContext,
    records: &[ResourceRecord],
) -> Vec<crate::provider::ProviderResult<Option<crate::provider::Observed>>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(cx.options.parallelism.max(1)));
    let mut running = tokio::task::JoinSet::new();
    for (i, r) in records.iter().enumerate() {
        let (provider, limit, policy) =
            (cx.provider.clone(), limit.clone(), cx.options.retry.clone());
        let kind = match r.typed_kind() {
            Ok(kind) => kind,
            Err(e) => {
                let e = crate::provider::ProviderError::Permanent(format!("{}: {e}", r.address));
                running.spawn(async move { (i, Err(e)) });
                continue;
            }
        };
        let req = ReadRequest {
            deployment: cx.deployment.clone(),
            address: r.address.clone(),
            kind,
            id: r.id.clone(),
        };
        running.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let read = crate::retry::with_retries(
                &policy,
                || provider.read(req.clone()),
                |attempt, delay, e| {
                    tracing::debug!(
                        "reading {}: retry {attempt} in {delay:?} ({e})",
                        req.address
                    )
                },
            )
            .await;
            (i, read)
        });
    }
    let mut out: Vec<_> = (0..records.len())
        .map(|_| Err(crate::provider::ProviderError::Transient("not read".into())))
        .collect();
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok((i, read)) => out[i] = read,
            Err(e) => tracing::error!("a read task failed: {e}"),
        }
    }
    out
}

/// Refreshes the state from the target: live values are written, what is
/// gone is forgotten. Needs the lease.
async fn refresh(cx: &RunContext) -> Result<(), RunError> {
    let before = cx.store.resources(&cx.deployment)?;
    let observed = observe(cx, before.clone()).await?;
    for address in &observed.gone {
        tracing::warn!("{address} no longer exists; it leaves the state");
        cx.store.delete_resource(&cx.deployment, address)?;
    }
    for r in &observed.records {
        if before.iter().any(|b| b.address == r.address && b != r) {
            cx.store.put_resource(&cx.deployment, r)?;
        }
    }
    Ok(())
}

/// Live resources tagged for this deployment that the state does not know
/// (left by a crash before the journal could say, or made by hand with the
/// tags), as records to delete. Ordered so that what usually contains
/// others (networks, zones) goes after what it contains.
async fn orphans(
    cx: &RunContext,
    known: &[ResourceRecord],
) -> Result<Vec<ResourceRecord>, RunError> {
    let listed = crate::retry::with_retries(
        &cx.options.retry,
        || cx.provider.list(&cx.deployment),
        |attempt, delay, e| tracing::debug!("listing: retry {attempt} in {delay:?} ({e})"),
    )
    .await
    .map_err(|e| RunError::Provider(format!("listing the deployment's resources: {e}")))?;
    fn rank(kind: &str) -> u8 {
        match kind {
            "load_balancer" | "dns_record" | "ip_address" | "snapshot" | "image" => 4,
            "server" | "database" => 3,
            "firewall" | "volume" | "key_pair" => 2,
            "subnet" => 1,
            _ => 0,
        }
    }
    let mut found: Vec<ResourceRecord> = listed
        .into_iter()
        .filter(|l| !known.iter().any(|r| r.id == l.id && r.kind == l.kind))
        .map(|l| ResourceRecord {
            address: format!("orphan:{}:{}", l.kind, l.id),
            data_holding: l.kind.schema().data_holding,
            kind: l.kind.to_string(),
            id: l.id,
            properties: Json::Object(Default::default()),
            attributes: Json::Object(Default::default()),
            secrets: BTreeMap::new(),
            tags: BTreeMap::new(),
            depends_on: Vec::new(),
            prevent_destroy: false,
            create_before_destroy: false,
        })
        .collect();
    let names: Vec<(String, u8)> = found
        .iter()
        .map(|r| (r.address.clone(), rank(&r.kind)))
        .collect();
    for r in &mut found {
        let mine = rank(&r.kind);
        // The engine deletes dependents first: a server "depends on" the
        // orphaned network it may sit in.
        r.depends_on = names
            .iter()
            .filter(|(_, other)| *other < mine)
            .map(|(a, _)| a.clone())
            .collect();
    }
    Ok(found)
}

fn plan_loaded(
    loaded: &Arc<Loaded>,
    prior: &[ResourceRecord],
    serial: i64,
    opts: &PlanOptions,
) -> Result<Plan, RunError> {
    let l = loaded.clone();
    plan_with(&mut move |k| evaluate(&l, k), prior, serial, opts)
        .map(|(plan, _)| plan)
        .map_err(|e| match e {
            PlanFailure::Template(diagnostics) => RunError::Template {
                sources: loaded.sources.clone(),
                diagnostics,
            },
            PlanFailure::Refused(errs) => RunError::Refused(errs),
        })
}

/// `cairn plan`: what `up` would do, without the lease and without writing
/// anything. The refresh (when asked) happens in memory.
pub async fn plan(
    cx: &RunContext,
    load_opts: &LoadOptions,
    opts: &RunOptions,
) -> Result<Plan, RunError> {
    // Secrets not generated yet stay unknown: a plan writes nothing.
    let loaded = Arc::new(load(&with_generated(cx, load_opts)?)?);
    let serial = cx.store.serial(&cx.deployment)?;
    let mut prior = cx.store.resources(&cx.deployment)?;
    if opts.refresh {
        prior = observe(cx, prior).await?.records;
    }
    if opts.prune {
        let found = orphans(cx, &prior).await?;
        prior.extend(found);
    }
    plan_loaded(&loaded, &prior, serial, &opts.plan)
}

/// `cairn drift`: every recorded resource against the target, read only.
pub async fn drift(cx: &RunContext) -> Result<Vec<Drift>, RunError> {
    let records = cx.store.resources(&cx.deployment)?;
    Ok(observe(cx, records).await?.drift)
}

/// A lease held: renewed by a heartbeat until dropped, then released (a
/// lease taken by another run meanwhile is left alone). Commands that must
/// not overlap a run (`cairn release`) hold it too.
pub struct LeaseHold {
    heartbeat: tokio::task::JoinHandle<()>,
    cx: RunContext,
}

impl Drop for LeaseHold {
    fn drop(&mut self) {
        self.heartbeat.abort();
        let _ = self
            .cx
            .store
            .release_lease(&self.cx.deployment, &self.cx.run_id);
    }
}

/// Who takes a deployment's lease, for what and for how long.
pub struct LeaseTerms<'a> {
    pub command: &'a str,
    pub owner: &'a Owner,
    pub ttl: Duration,
    /// See [`RunOptions::holder_gone`].
    pub holder_gone: fn(&Owner) -> bool,
}

impl RunOptions {
    fn lease_terms(&self) -> LeaseTerms<'_> {
        LeaseTerms {
            command: &self.command,
            owner: &self.owner,
            ttl: self.lease_ttl,
            holder_gone: self.holder_gone,
        }
    }
}

/// Runs a deployment command. `confirm` sees the plan and says whether to go on.
pub async fn up(
    cx: &RunContext,
    load_opts: &LoadOptions,
    opts: &RunOptions,
    confirm: &mut (dyn FnMut(&Plan) -> bool + Send),
) -> Result<(RunOutcome, Vec<Reconciled>), RunError> {
    let started = Instant::now();
    let (cx, _lease) = hold_lease(cx, &opts.lease_terms())?;
    run_leased(&cx, load_opts, opts, confirm, started).await
}

/// [`up`] for a caller that holds the deployment's lease already: `cx` is
/// the fenced context [`hold_lease`] returned. `cairn heal` replaces a
/// server inside the lease it took to act, so that no release starts
/// between the replacement and the install on the new server.
pub async fn up_leased(
    cx: &RunContext,
    load_opts: &LoadOptions,
    opts: &RunOptions,
    confirm: &mut (dyn FnMut(&Plan) -> bool + Send),
) -> Result<(RunOutcome, Vec<Reconciled>), RunError> {
    run_leased(cx, load_opts, opts, confirm, Instant::now()).await
}

/// Takes the deployment's lease (see [`take_lease`]) and keeps it with a
/// heartbeat until the hold is dropped, which releases it. The context
/// returned is fenced: once a renewal fails, no step starts (see
/// [`crate::fence`]).
pub fn hold_lease(
    cx: &RunContext,
    terms: &LeaseTerms<'_>,
) -> Result<(RunContext, LeaseHold), StoreError> {
    take_lease(cx, terms)?;
    let cx = RunContext {
        fence: Fence::armed(),
        ..cx.clone()
    };
    let heartbeat = {
        let store = cx.store.clone();
        let fence = cx.fence.clone();
        let (deployment, run_id, ttl, clock) = (
            cx.deployment.clone(),
            cx.run_id.clone(),
            terms.ttl,
            cx.clock.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                if let Err(e) = store.renew_lease(&deployment, &run_id, ttl, clock()) {
                    let reason = format!("lost the lease of {deployment} ({e}): this run stopped");
                    tracing::error!("{reason}");
                    fence.lose(reason);
                    return;
                }
            }
        })
    };
    let hold = LeaseHold {
        heartbeat,
        cx: cx.clone(),
    };
    Ok((cx, hold))
}

/// Takes the deployment's lease: free, expired, or held by a run whose
/// process is known to be gone (see [`crate::holder`]). A lease whose
/// holder may be alive, or lives on another host, is refused until it
/// expires.
fn take_lease(cx: &RunContext, terms: &LeaseTerms<'_>) -> Result<(), StoreError> {
    let now = (cx.clock)();
    let held = match cx.store.acquire_lease(
        &cx.deployment,
        terms.owner,
        &cx.run_id,
        terms.command,
        terms.ttl,
        now,
    ) {
        Ok(_) => return Ok(()),
        Err(StoreError::Locked { lease, .. }) if (terms.holder_gone)(&lease.owner) => lease,
        Err(e) => return Err(e),
    };
    tracing::warn!(
        deployment = %cx.deployment,
        old_owner = %held.owner,
        old_run = %held.run_id,
        "taking over the lease at once: its holder's process is gone",
    );
    cx.store.take_over_lease(
        &cx.deployment,
        &held.run_id,
        terms.owner,
        &cx.run_id,
        terms.command,
        terms.ttl,
        now,
    )?;
    Ok(())
}

async fn run_leased(
    cx: &RunContext,
    load_opts: &LoadOptions,
    opts: &RunOptions,
    confirm: &mut (dyn FnMut(&Plan) -> bool + Send),
    started: Instant,
) -> Result<(RunOutcome, Vec<Reconciled>), RunError> {
    let reconciled = reconcile(cx).await.map_err(RunError::Provider)?;
    let loaded = Arc::new(load_with_secrets(cx, load_opts)?);
    // A saved plan was made against this serial; the refresh below may move it.
    if let Some(expected) = opts.expect_serial {
        let found = cx.store.serial(&cx.deployment)?;
        if expected != found {
            return Err(RunError::StalePlan { expected, found });
        }
    }
    if opts.refresh {
        refresh(cx).await?;
    }
    let serial = cx.store.serial(&cx.deployment)?;
    let mut prior = cx.store.resources(&cx.deployment)?;
    if opts.prune {
        let found = orphans(cx, &prior).await?;
        prior.extend(found);
    }
    let plan = plan_loaded(&loaded, &prior, serial, &opts.plan)?;
    if let Some(saved) = &opts.expect_changes
        && *saved != plan.changes
    {
        return Err(RunError::PlanChanged);
    }
    if !plan.has_changes() {
        return Ok((RunOutcome::NoChanges { plan }, reconciled));
    }
    if !confirm(&plan) {
        return Ok((RunOutcome::Declined { plan }, reconciled));
    }
    let (files, digest) = snapshot(&loaded);
    let mut run = RunRecord {
        serial: 0,
        deployment: cx.deployment.clone(),
        run_id: cx.run_id.clone(),
        command: opts.command.clone(),
        owner: opts.owner.clone(),
        environment: loaded.env.name.clone(),
        target: loaded.env.target.clone(),
        started_at: (cx.clock)(),
        finished_at: None,
        template_digest: digest,
        template_files: files,
        parameters: loaded.params.redacted(),
        plan: serde_json::to_value(&plan).unwrap_or_default(),
        outcome: "running".into(),
        duration_ms: None,
        outputs: Json::Null,
    };
    let serial_no = cx.store.begin_run(&run)?;
    let l = loaded.clone();
    let report = apply(cx, &plan, &prior, &mut move |k| evaluate(&l, k)).await;

    // Outputs from what now exists; secret ones stored apart.
    let records = cx.store.resources(&cx.deployment)?;
    let mut public = serde_json::Map::new();
    let mut secret = BTreeMap::new();
    if !opts.plan.destroy {
        let known = crate::plan::StateAttributes::new(&records);
        if let Ok(desired) = evaluate(&loaded, &known) {
            for (name, o) in &desired.outputs {
                if o.secret || o.value.is_sensitive() {
                    secret.insert(
                        name.clone(),
                        o.value.to_json_revealed().unwrap_or(Json::Null),
                    );
                    public.insert(
                        name.clone(),
                        Value::Sensitive(Box::new(Value::Null)).to_json_redacted(),
                    );
                } else {
                    public.insert(name.clone(), o.value.to_json_redacted());
                }
            }
        }
    }
    let public = Json::Object(public);
    // The outputs are the lease holder's to write.
    if report.lease_lost.is_none() {
        cx.store.put_outputs(&cx.deployment, &public, &secret)?;
    }
    run.finished_at = Some((cx.clock)());
    run.duration_ms = Some(started.elapsed().as_millis() as i64);
    run.outcome = if report.ok {
        "succeeded"
    } else if report.rolled_back {
        "rolled_back"
    } else {
        "failed"
    }
    .into();
    if report.lease_lost.is_some() {
        run.outcome = "lease_lost".into();
    }
    run.outputs = public.clone();
    cx.store.finish_run(&cx.deployment, serial_no, &run)?;
    if let Some(reason) = report.lease_lost.clone() {
        return Err(RunError::LeaseLost {
            reason,
            report: Box::new(report),
        });
    }
    Ok((
        RunOutcome::Applied {
            serial: serial_no,
            plan,
            report,
            outputs: public,
        },
        reconciled,
    ))
}

#[cfg(test)]
mod tests {
    use super::same_value;
    use serde_json::json;

    #[test]
    fn lists_compare_as_multisets_and_objects_by_key() {
        assert!(same_value(&json!([1, 2, 2]), &json!([2, 1, 2])));
        assert!(!same_value(&json!([1, 2, 2]), &json!([2, 1, 1])));
        assert!(!same_value(&json!([1, 2]), &json!([1, 2, 3])));
        assert!(same_value(
            &json!([{"port": 80, "from": ["a", "b"]}, {"port": 22}]),
            &json!([{"port": 22}, {"from": ["b", "a"], "port": 80}])
        ));
        assert!(!same_value(&json!({"a": 1}), &json!({"a": 1, "b": null})));
        assert!(!same_value(&json!("1"), &json!(1)));
    }
}
