//! Applying a plan: a walk of the dependency graph with bounded
//! parallelism. Every provider call is journaled (intent before, outcome
//! after) and every success is written to the state at once, so the state
//! matches reality at any moment a run can die. On failure the run either
//! returns the deployment to its prior state (`rollback`) or keeps what
//! succeeded (`keep`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use cairn_template::value::SECRET_TEXT;
use cairn_template::{Diagnostics, Value};

use crate::evaluate::{Desired, Instance, KnownAttributes};
use crate::fence::Fence;
use crate::plan::{Action, Plan, ResourceChange, StateAttributes};
use crate::provider::{
    CreateRequest, Created, DeleteRequest, Json, Provider, ProviderError, UpdateRequest,
};
use crate::retry::{RetryPolicy, with_retries};
use crate::schema::{ResourceSchema, portable};
use crate::store::{
    JournalEntry, JournalOp, JournalOutcome, ResourceRecord, StateStore, Timestamp,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    Rollback,
    Keep,
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub parallelism: usize,
    pub on_failure: OnFailure,
    pub retry: RetryPolicy,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 32,
            on_failure: OnFailure::Rollback,
            retry: RetryPolicy::default(),
        }
    }
}

/// What happened, as the run goes; the CLI turns these into progress lines.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ApplyEvent {
    Started {
        address: String,
        action: Action,
    },
    Retrying {
        address: String,
        attempt: u32,
        delay_ms: u64,
        error: String,
    },
    Finished {
        address: String,
        action: Action,
        elapsed_ms: u64,
    },
    Failed {
        address: String,
        action: Action,
        error: String,
    },
    RollingBack {
        address: String,
    },
}

pub trait Observer: Send + Sync {
    fn on_event(&self, event: &ApplyEvent);
}

pub struct Silent;

impl Observer for Silent {
    fn on_event(&self, _: &ApplyEvent) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Updated,
    Replaced,
    Deleted,
    Unchanged,
    Failed,
    /// Not started because an earlier step failed.
    Skipped,
    /// Done, then undone by the rollback.
    RolledBack,
    /// Done, and the rollback of it failed: see `error`.
    RollbackFailed,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResourceResult {
    pub address: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub action: Action,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub created: usize,
    pub updated: usize,
    pub replaced: usize,
    pub deleted: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub ok: bool,
    pub rolled_back: bool,
    pub counts: Counts,
    pub elapsed_ms: u64,
    pub resources: Vec<ResourceResult>,
    /// Why the run stopped starting steps: it lost the deployment's lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_lost: Option<String>,
}

/// Everything a run needs besides the plan.
#[derive(Clone)]
pub struct RunContext {
    pub deployment: String,
    pub run_id: String,
    pub provider: Arc<dyn Provider>,
    pub store: Arc<dyn StateStore>,
    pub observer: Arc<dyn Observer>,
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    pub options: ApplyOptions,
    /// Armed while the run holds the lease: no step starts once it is lost.
    pub fence: Fence,
}

/// The net effect of one node: before and after, for the state and rollback.
#[derive(Debug, Clone)]
struct Step {
    before: Option<ResourceRecord>,
    after: Option<ResourceRecord>,
}

struct NodeResult {
    index: usize,
    step: Step,
    error: Option<String>,
    elapsed: Duration,
    /// A create-before-destroy replacement's old half, to delete later,
    /// with its journaled delete intent.
    deferred: Option<i64>,
    /// The result of deleting an old half, not of the node itself.
    old_half: bool,
    /// Not started: the lease was lost while the node waited its turn.
    not_started: Option<String>,
}

impl NodeResult {
    fn not_started(index: usize, reason: String, old_half: bool) -> NodeResult {
        NodeResult {
            index,
            step: Step {
                before: None,
                after: None,
            },
            error: None,
            elapsed: Duration::ZERO,
            deferred: None,
            old_half,
            not_started: Some(reason),
        }
    }
}

/// The old half of a create-before-destroy replacement. It stays until
/// what depends on the resource has been updated to use the new half (a
/// load balancer's backends), like Terraform's deposed objects, so that
/// dependents never point at something already gone.
#[derive(Debug, Clone)]
enum OldHalf {
    None,
    /// Not recorded in the state (the address names the new half); its
    /// delete is journaled under this intent.
    Waiting(Box<ResourceRecord>, i64),
    Deleting,
    Gone,
}

/// A token that names one intended create: stable across retries and
/// recorded in the journal before the call.
///
/// `cairn-` and the first 16 hex digits of SHA-256 over
/// `cairn-token-v1`, the deployment, the address, the run id and the
/// operation, each followed by a NUL byte. The input is fixed here (not a
/// hasher whose algorithm may change with the Rust release), so a run
/// recovered by a later cairn finds what an earlier one made.
pub fn token(deployment: &str, address: &str, run_id: &str, op: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in ["cairn-token-v1", deployment, address, run_id, op] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    format!("cairn-{}", hex::encode(&h.finalize()[..8]))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeState {
    Pending,
    Running,
    Done,
    Failed,
}

/// Applies `plan`. `evaluate` re-evaluates the template with what is known
/// so far, so a resource's inputs use the attributes of what was created
/// before it in this run.
pub async fn apply(
    cx: &RunContext,
    plan: &Plan,
    prior: &[ResourceRecord],
    evaluate: &mut (dyn FnMut(&dyn KnownAttributes) -> Result<Desired, Diagnostics> + Send),
) -> ApplyReport {
    let started = Instant::now();
    let nodes: Vec<&ResourceChange> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .collect();
    let deps = dependencies(&nodes);
    let users = users(&nodes);
    let mut old_halves = vec![OldHalf::None; nodes.len()];
    let mut state = vec![NodeState::Pending; nodes.len()];
    let mut records: HashMap<String, ResourceRecord> = prior
        .iter()
        .map(|r| (r.address.clone(), r.clone()))
        .collect();
    let mut results: Vec<Option<ResourceResult>> = vec![None; nodes.len()];
    let mut done_steps: Vec<(usize, Step)> = Vec::new();
    let mut failed = false;
    let limit = Arc::new(Semaphore::new(cx.options.parallelism.max(1)));
    let mut running: JoinSet<NodeResult> = JoinSet::new();

    loop {
        if !failed && cx.fence.lost().is_some() {
            failed = true;
        }
        if !failed {
            let ready: Vec<usize> = (0..nodes.len())
                .filter(|&i| {
                    state[i] == NodeState::Pending
                        && deps[i].iter().all(|&d| {
                            // A delete also waits for the old halves of what
                            // used it (see `OldHalf`).
                            state[d] == NodeState::Done
                                && (nodes[i].action != Action::Delete
                                    || !matches!(
                                        old_halves[d],
                                        OldHalf::Waiting(..) | OldHalf::Deleting
                                    ))
                        })
                })
                .collect();
            if !ready.is_empty() {
                let snapshot: Vec<ResourceRecord> = records.values().cloned().collect();
                let needs_eval = ready.iter().any(|&i| nodes[i].action != Action::Delete);
                let desired = if needs_eval {
                    match evaluate(&StateAttributes::new(&snapshot)) {
                        Ok(d) => Some(d),
                        Err(e) => {
                            // The template evaluated at plan time; failing now
                            // means a provider returned something unusable.
                            for &i in &ready {
                                state[i] = NodeState::Failed;
                                results[i] = Some(result(
                                    nodes[i],
                                    Status::Failed,
                                    Some(format!("evaluation failed: {e}")),
                                    Duration::ZERO,
                                ));
                            }
                            failed = true;
                            None
                        }
                    }
                } else {
                    None
                };
                if !failed {
                    let instances: HashMap<&str, &Instance> = desired
                        .iter()
                        .flat_map(|d| d.instances())
                        .map(|i| (i.address.as_str(), i))
                        .collect();
                    for i in ready {
                        let change = nodes[i].clone();
                        let instance = instances.get(change.address.as_str()).map(|i| (*i).clone());
                        let before = records.get(&change.address).cloned();
                        state[i] = NodeState::Running;
                        cx.observer.on_event(&ApplyEvent::Started {
                            address: change.address.clone(),
                            action: change.action,
                        });
                        let cx2 = cx.clone();
                        let permit = limit.clone();
                        running.spawn(async move {
                            let _permit = permit.acquire_owned().await;
                            if let Err(reason) =
                                cx2.fence.check(&*cx2.store, &cx2.deployment, &cx2.run_id)
                            {
                                return NodeResult::not_started(i, reason, false);
                            }
                            let t = Instant::now();
                            let (step, error, deferred) =
                                run_node(&cx2, &change, instance.as_ref(), before).await;
                            NodeResult {
                                index: i,
                                step,
                                error,
                                elapsed: t.elapsed(),
                                deferred,
                                old_half: false,
                                not_started: None,
                            }
                        });
                    }
                }
            }
            for i in 0..nodes.len() {
                let ready = matches!(old_halves[i], OldHalf::Waiting(..))
                    && users[i].iter().all(|&m| state[m] == NodeState::Done);
                if !ready {
                    continue;
                }
                let OldHalf::Waiting(old, intent) =
                    std::mem::replace(&mut old_halves[i], OldHalf::Deleting)
                else {
                    continue;
                };
                let (cx2, permit) = (cx.clone(), limit.clone());
                running.spawn(async move {
                    let _permit = permit.acquire_owned().await;
                    if let Err(reason) = cx2.fence.check(&*cx2.store, &cx2.deployment, &cx2.run_id)
                    {
                        return NodeResult::not_started(i, reason, true);
                    }
                    let t = Instant::now();
                    let error = delete_old(&cx2, &old, Some(intent)).await.err();
                    NodeResult {
                        index: i,
                        step: Step {
                            before: None,
                            after: None,
                        },
                        error,
                        elapsed: t.elapsed(),
                        deferred: None,
                        old_half: true,
                        not_started: None,
                    }
                });
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let r = match joined {
            Ok(r) => r,
            Err(e) => {
                // A panicking provider: treat as a failure of an unknown node.
                failed = true;
                tracing::error!("a provider task panicked: {e}");
                continue;
            }
        };
        let change = nodes[r.index];
        if let Some(reason) = r.not_started {
            // Left as it was: the next holder of the lease plans it again.
            failed = true;
            if r.old_half {
                // Its delete intent stays open in the journal.
                old_halves[r.index] = OldHalf::Gone;
            } else {
                state[r.index] = NodeState::Failed;
                results[r.index] = Some(result(change, Status::Skipped, Some(reason), r.elapsed));
            }
            continue;
        }
        if r.old_half {
            old_halves[r.index] = OldHalf::Gone;
            if let Some(err) = r.error {
                // As before the split: the new half stays recorded and the
                // old one is left to the journal's recovery.
                failed = true;
                state[r.index] = NodeState::Failed;
                cx.observer.on_event(&ApplyEvent::Failed {
                    address: change.address.clone(),
                    action: change.action,
                    error: err.clone(),
                });
                results[r.index] = Some(result(change, Status::Failed, Some(err), r.elapsed));
            }
            continue;
        }
        apply_step_to(&mut records, &change.address, &r.step);
        if let (Some(intent), Some(old)) = (r.deferred, &r.step.before) {
            old_halves[r.index] = OldHalf::Waiting(Box::new(old.clone()), intent);
        }
        if let Some(err) = r.error {
            failed = true;
            state[r.index] = NodeState::Failed;
            cx.observer.on_event(&ApplyEvent::Failed {
                address: change.address.clone(),
                action: change.action,
                error: err.clone(),
            });
            results[r.index] = Some(result(change, Status::Failed, Some(err), r.elapsed));
            // A partly done node (a replace that deleted but did not create)
            // still needs rolling back.
            if r.step.before != r.step.after {
                done_steps.push((r.index, r.step));
            }
        } else {
            state[r.index] = NodeState::Done;
            cx.observer.on_event(&ApplyEvent::Finished {
                address: change.address.clone(),
                action: change.action,
                elapsed_ms: r.elapsed.as_millis() as u64,
            });
            results[r.index] = Some(result(change, done_status(change.action), None, r.elapsed));
            done_steps.push((r.index, r.step));
        }
    }

    // A run that lost the lease calls the provider no more, not even to
    // roll back: the journal and the state say what it did.
    let lease_lost = cx.fence.lost();
    let mut rolled_back = false;
    if failed && lease_lost.is_none() && cx.options.on_failure == OnFailure::Rollback {
        rolled_back = true;
        for (i, step) in done_steps.iter().rev() {
            let change = nodes[*i];
            cx.observer.on_event(&ApplyEvent::RollingBack {
                address: change.address.clone(),
            });
            let undo = match std::mem::replace(&mut old_halves[*i], OldHalf::Gone) {
                OldHalf::Waiting(old, intent) => undo_early_replace(cx, *old, intent, step).await,
                _ => undo_step(cx, change, step).await,
            };
            if let Some(r) = results[*i].as_mut() {
                match undo {
                    Ok(()) => {
                        if r.status != Status::Failed {
                            r.status = Status::RolledBack;
                        }
                    }
                    Err(e) => {
                        r.status = Status::RollbackFailed;
                        r.error = Some(e);
                        rolled_back = false;
                    }
                }
            }
        }
    }

    // Kept (or a failed rollback): old halves still waiting are recorded
    // nowhere, so they go now rather than be left to the next run.
    for (i, half) in old_halves.iter_mut().enumerate() {
        if lease_lost.is_some() {
            break;
        }
        if let OldHalf::Waiting(old, intent) = std::mem::replace(half, OldHalf::Gone)
            && let Err(e) = delete_old(cx, &old, Some(intent)).await
        {
            failed = true;
            if let Some(r) = results[i].as_mut() {
                r.status = Status::Failed;
                r.error = Some(e);
            }
        }
    }

    let resources: Vec<ResourceResult> = nodes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            results[i]
                .clone()
                .unwrap_or_else(|| result(c, Status::Skipped, None, Duration::ZERO))
        })
        .collect();
    let mut counts = Counts::default();
    for r in &resources {
        match r.status {
            Status::Created => counts.created += 1,
            Status::Updated => counts.updated += 1,
            Status::Replaced => counts.replaced += 1,
            Status::Deleted => counts.deleted += 1,
            Status::Failed | Status::RollbackFailed => counts.failed += 1,
            _ => {}
        }
    }
    ApplyReport {
        ok: !failed,
        rolled_back,
        counts,
        elapsed_ms: started.elapsed().as_millis() as u64,
        resources,
        lease_lost,
    }
}

fn done_status(action: Action) -> Status {
    match action {
        Action::Create => Status::Created,
        Action::Update => Status::Updated,
        Action::Replace => Status::Replaced,
        Action::Delete => Status::Deleted,
        Action::NoOp => Status::Unchanged,
    }
}

fn result(
    c: &ResourceChange,
    status: Status,
    error: Option<String>,
    elapsed: Duration,
) -> ResourceResult {
    ResourceResult {
        address: c.address.clone(),
        kind: c.kind.clone(),
        action: c.action,
        status,
        error,
        elapsed_ms: elapsed.as_millis() as u64,
    }
}

fn apply_step_to(records: &mut HashMap<String, ResourceRecord>, address: &str, step: &Step) {
    match &step.after {
        Some(r) => {
            records.insert(address.to_string(), r.clone());
        }
        None => {
            records.remove(address);
        }
    }
}

/// Node `i` waits for: (creates, updates, replaces) the nodes of resources it
/// depends on; (deletes) the deletes, replaces and updates of what depends
/// on it, so that a load balancer stops using a server before it goes.
#[cfg(test)]
pub(crate) fn dependencies_for_tests(nodes: &[&ResourceChange]) -> Vec<Vec<usize>> {
    dependencies(nodes)
}

/// For each node, the creates, updates and replaces of resources that
/// depend on it: what must use a replacement before its old half goes.
fn users(nodes: &[&ResourceChange]) -> Vec<Vec<usize>> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            nodes
                .iter()
                .enumerate()
                .filter(|(j, m)| {
                    *j != i
                        && m.action != Action::Delete
                        && m.depends_on.iter().any(|d| d == &n.resource)
                })
                .map(|(j, _)| j)
                .collect()
        })
        .collect()
}

fn dependencies(nodes: &[&ResourceChange]) -> Vec<Vec<usize>> {
    let mut by_resource: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        by_resource.entry(n.resource.as_str()).or_default().push(i);
    }
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if n.action == Action::Delete {
                nodes
                    .iter()
                    .enumerate()
                    .filter(|(j, m)| {
                        *j != i
                            && matches!(m.action, Action::Delete | Action::Replace | Action::Update)
                            && m.depends_on.iter().any(|d| d == &n.resource)
                    })
                    .map(|(j, _)| j)
                    .collect()
            } else {
                n.depends_on
                    .iter()
                    .flat_map(|d| by_resource.get(d.as_str()).into_iter().flatten())
                    .copied()
                    .filter(|&j| j != i && nodes[j].action != Action::Delete)
                    .collect()
            }
        })
        .collect()
}

/// Splits an instance's values into public JSON and secrets by dotted path.
pub fn record_for(
    instance: &Instance,
    schema: &ResourceSchema,
    id: &str,
    attributes: &Json,
    depends_on: &[String],
) -> ResourceRecord {
    let mut properties = serde_json::Map::new();
    let mut secrets = BTreeMap::new();
    for (name, v) in &instance.properties {
        let json = v.to_json_revealed().unwrap_or(Json::Null);
        let secret = v.is_sensitive() || schema.property(name).is_some_and(|p| p.sensitive);
        if secret {
            secrets.insert(format!("properties.{name}"), json);
        } else {
            properties.insert(name.clone(), json);
        }
    }
    let mut attrs = serde_json::Map::new();
    if let Json::Object(a) = attributes {
        for (name, v) in a {
            if schema.attribute(name).is_some_and(|x| x.sensitive) {
                secrets.insert(format!("attributes.{name}"), v.clone());
            } else {
                attrs.insert(name.clone(), v.clone());
            }
        }
    }
    ResourceRecord {
        address: instance.address.clone(),
        kind: instance.kind.clone(),
        id: id.to_string(),
        properties: Json::Object(properties),
        attributes: Json::Object(attrs),
        secrets,
        tags: tags_of(instance),
        depends_on: depends_on.to_vec(),
        data_holding: schema.data_holding,
        prevent_destroy: instance.lifecycle.prevent_destroy,
        create_before_destroy: instance.lifecycle.create_before_destroy,
    }
}

fn tags_of(instance: &Instance) -> BTreeMap<String, String> {
    instance
        .tags
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// A record's properties with its secret ones put back, for a provider.
/// The record's properties kept as secrets.
fn secret_property_names(r: &ResourceRecord) -> Vec<String> {
    r.secrets
        .keys()
        .filter_map(|path| path.strip_prefix("properties."))
        .map(str::to_string)
        .collect()
}

pub fn revealed_properties(r: &ResourceRecord) -> Json {
    let mut p = match &r.properties {
        Json::Object(o) => o.clone(),
        _ => serde_json::Map::new(),
    };
    for (path, v) in &r.secrets {
        if let Some(name) = path.strip_prefix("properties.") {
            p.insert(name.to_string(), v.clone());
        }
    }
    Json::Object(p)
}

fn instance_properties(i: &Instance) -> Result<Json, String> {
    Value::Map(i.properties.clone())
        .to_json_revealed()
        .ok_or_else(|| {
            format!(
                "{}: a property is still unknown when it should be known",
                i.address
            )
        })
}

/// One journaled provider call with retries.
/// One intended provider call, as the journal records it.
struct Intent<'a> {
    address: &'a str,
    kind: &'a str,
    op: JournalOp,
    token: &'a str,
    /// The target id acted on (update, delete).
    id: Option<&'a str>,
    /// An intent already written (the old half of a create-before-destroy).
    written: Option<i64>,
}

async fn journaled<T, F, Fut>(
    cx: &RunContext,
    intent: Intent<'_>,
    call: F,
) -> Result<(T, Closing), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
    T: JournalId,
{
    let Intent {
        address,
        kind,
        op,
        token,
        id,
        written,
    } = intent;
    let entry = JournalEntry {
        seq: 0,
        deployment: cx.deployment.clone(),
        run_id: cx.run_id.clone(),
        address: address.to_string(),
        kind: kind.to_string(),
        op,
        token: token.to_string(),
        id: id.map(str::to_string),
        started_at: (cx.clock)(),
        outcome: None,
    };
    let seq = match written {
        Some(seq) => seq,
        None => cx.store.journal_intent(&entry).map_err(|e| e.to_string())?,
    };
    let observer = cx.observer.clone();
    let r = with_retries(&cx.options.retry, call, |attempt, delay, err| {
        observer.on_event(&ApplyEvent::Retrying {
            address: address.to_string(),
            attempt,
            delay_ms: delay.as_millis() as u64,
            error: err.to_string(),
        })
    })
    .await;
    // A run that lost the lease while the call was in flight records
    // nothing: the new holder may already have reconciled this entry, and
    // a late write would overwrite what it decided. The entry stays open
    // for it unless it was closed already.
    if let Err(reason) = cx.fence.check(&*cx.store, &cx.deployment, &cx.run_id) {
        return Err(format!(
            "{reason}; what this call did is left to the journal for the next holder"
        ));
    }
    let outcome = JournalOutcome {
        ok: r.is_ok(),
        id: r.as_ref().ok().and_then(JournalId::journal_id),
        error: r.as_ref().err().map(|e| e.to_string()),
        finished_at: (cx.clock)(),
    };
    match r {
        Ok(v) => Ok((v, Closing { seq, outcome })),
        Err(e) => {
            // Nothing was done: the entry can be closed at once.
            let _ = cx.store.journal_outcome(seq, &outcome);
            Err(e.to_string())
        }
    }
}

/// A successful call's journal entry, closed only after the state records
/// the result: an entry still open after a crash means "find what this call
/// did", and so no resource is ever outside both the state and the journal.
#[must_use]
struct Closing {
    seq: i64,
    outcome: JournalOutcome,
}

impl Closing {
    fn close(self, cx: &RunContext) -> Result<(), String> {
        cx.store
            .journal_outcome(self.seq, &self.outcome)
            .map_err(|e| e.to_string())
    }
}

/// What a call's result says about the target id, for the journal.
trait JournalId {
    fn journal_id(&self) -> Option<String>;
}

impl JournalId for Created {
    fn journal_id(&self) -> Option<String> {
        Some(self.id.clone())
    }
}
impl JournalId for Json {
    fn journal_id(&self) -> Option<String> {
        None
    }
}
impl JournalId for () {
    fn journal_id(&self) -> Option<String> {
        None
    }
}

async fn create(
    cx: &RunContext,
    instance: &Instance,
    schema: &ResourceSchema,
    depends_on: &[String],
    op_name: &str,
) -> Result<ResourceRecord, String> {
    let properties = instance_properties(instance)?;
    let token = token(&cx.deployment, &instance.address, &cx.run_id, op_name);
    let req = CreateRequest {
        deployment: cx.deployment.clone(),
        address: instance.address.clone(),
        kind: instance.kind.clone(),
        properties,
        tags: tags_of(instance),
        target: instance
            .target
            .get(cx.provider.name())
            .and_then(Value::to_json_revealed),
        token: token.clone(),
        sensitive: instance
            .properties
            .iter()
            .filter(|(_, v)| v.is_sensitive())
            .map(|(k, _)| k.clone())
            .collect(),
        may_exist: false,
    };
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let (created, closing) = journaled(
        cx,
        Intent {
            address: &instance.address,
            kind: &instance.kind,
            op: JournalOp::Create,
            token: &token,
            id: None,
            written: None,
        },
        || {
            // Only a retry of this call can find an earlier attempt's work.
            let mut req = req.clone();
            req.may_exist = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0;
            cx.provider.create(req)
        },
    )
    .await?;
    let record = record_for(
        instance,
        schema,
        &created.id,
        &created.attributes,
        depends_on,
    );
    cx.store
        .put_resource(&cx.deployment, &record)
        .map_err(|e| format!("created {} but could not record it: {e}", created.id))?;
    closing.close(cx)?;
    Ok(record)
}

/// Deletes a resource at the target, journaled; the caller updates the
/// state and then closes the entry.
async fn journaled_delete(
    cx: &RunContext,
    r: &ResourceRecord,
    op_name: &str,
    written: Option<i64>,
) -> Result<Closing, String> {
    let token = token(&cx.deployment, &r.address, &cx.run_id, op_name);
    let req = DeleteRequest {
        deployment: cx.deployment.clone(),
        address: r.address.clone(),
        kind: r.kind.clone(),
        id: r.id.clone(),
        properties: revealed_properties(r),
        token: token.clone(),
    };
    let intent = Intent {
        address: &r.address,
        kind: &r.kind,
        op: JournalOp::Delete,
        token: &token,
        id: Some(&r.id),
        written,
    };
    let ((), closing) = journaled(cx, intent, || {
        delete_if_present(cx.provider.as_ref(), req.clone())
    })
    .await?;
    Ok(closing)
}

/// Deleting what is already gone is done, not an error.
pub async fn delete_if_present(
    provider: &dyn Provider,
    req: DeleteRequest,
) -> Result<(), ProviderError> {
    match provider.delete(req).await {
        Err(ProviderError::NotFound(_)) => Ok(()),
        other => other,
    }
}

async fn delete(cx: &RunContext, r: &ResourceRecord, op_name: &str) -> Result<(), String> {
    let closing = journaled_delete(cx, r, op_name, None).await?;
    cx.store
        .delete_resource(&cx.deployment, &r.address)
        .map_err(|e| e.to_string())?;
    closing.close(cx)
}

/// Updates a resource at the target in place, journaled; the caller
/// records the result and then closes the entry.
async fn journaled_update(
    cx: &RunContext,
    current: &ResourceRecord,
    properties: Json,
    tags: BTreeMap<String, String>,
    change: &ResourceChange,
    op_name: &str,
) -> Result<(Json, Closing), String> {
    let token = token(&cx.deployment, &current.address, &cx.run_id, op_name);
    let req = UpdateRequest {
        deployment: cx.deployment.clone(),
        address: current.address.clone(),
        kind: current.kind.clone(),
        id: current.id.clone(),
        prior: revealed_properties(current),
        properties,
        tags,
        changed: change.diff.iter().map(|d| d.path.clone()).collect(),
        token: token.clone(),
        // What was secret stays sealed; what became secret is shown so in the diff.
        sensitive: secret_property_names(current)
            .into_iter()
            .chain(
                change
                    .diff
                    .iter()
                    .filter(|d| d.after.as_ref().and_then(Json::as_str) == Some(SECRET_TEXT))
                    .map(|d| d.path.clone()),
            )
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let intent = Intent {
        address: &current.address,
        kind: &current.kind,
        op: JournalOp::Update,
        token: &token,
        id: Some(&current.id),
        written: None,
    };
    journaled(cx, intent, || cx.provider.update(req.clone())).await
}

async fn update(
    cx: &RunContext,
    before: &ResourceRecord,
    instance: &Instance,
    schema: &ResourceSchema,
    change: &ResourceChange,
) -> Result<ResourceRecord, String> {
    let (attributes, closing) = journaled_update(
        cx,
        before,
        instance_properties(instance)?,
        tags_of(instance),
        change,
        "update",
    )
    .await?;
    let mut merged = before.attributes.clone();
    if let (Json::Object(m), Json::Object(new)) = (&mut merged, &attributes) {
        for (k, v) in new {
            m.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &before.secrets {
        if let Some(a) = k.strip_prefix("attributes.")
            && let Json::Object(m) = &mut merged
        {
            m.entry(a.to_string()).or_insert(v.clone());
        }
    }
    let record = record_for(instance, schema, &before.id, &merged, &change.depends_on);
    cx.store
        .put_resource(&cx.deployment, &record)
        .map_err(|e| e.to_string())?;
    closing.close(cx)?;
    Ok(record)
}

/// Carries out one change; the step says what is true afterwards even when
/// it failed half-way.
async fn run_node(
    cx: &RunContext,
    change: &ResourceChange,
    instance: Option<&Instance>,
    before: Option<ResourceRecord>,
) -> (Step, Option<String>, Option<i64>) {
    let schema = portable(&change.kind).or_else(|| cx.provider.schema(&change.kind));
    let unchanged = Step {
        before: before.clone(),
        after: before.clone(),
    };
    let Some(schema) = schema else {
        return (
            unchanged,
            Some(format!("no schema for type {}", change.kind)),
            None,
        );
    };
    match change.action {
        Action::NoOp => (unchanged, None, None),
        Action::Delete => {
            let Some(b) = &before else {
                return (unchanged, None, None);
            };
            match delete(cx, b, "delete").await {
                Ok(()) => (
                    Step {
                        before,
                        after: None,
                    },
                    None,
                    None,
                ),
                Err(e) => (unchanged, Some(e), None),
            }
        }
        Action::Create | Action::Update | Action::Replace => {
            let Some(instance) = instance else {
                return (
                    unchanged,
                    Some(format!("{} is no longer in the template", change.address)),
                    None,
                );
            };
            match (change.action, &before) {
                (Action::Update, Some(b)) => match update(cx, b, instance, schema, change).await {
                    Ok(r) => (
                        Step {
                            before,
                            after: Some(r),
                        },
                        None,
                        None,
                    ),
                    Err(e) => (unchanged, Some(e), None),
                },
                (Action::Replace, Some(b)) if change.create_before_destroy => {
                    // Journal the old one's delete first: once the new one is
                    // recorded at this address, only the journal knows the old.
                    let intent = match old_delete_intent(cx, b) {
                        Ok(seq) => seq,
                        Err(e) => return (unchanged, Some(e), None),
                    };
                    match create(cx, instance, schema, &change.depends_on, "replace").await {
                        Err(e) => {
                            let _ = cx.store.close_journal(intent, &not_attempted(cx));
                            (unchanged, Some(e), None)
                        }
                        // The old half goes once what uses it has moved on
                        // (see `OldHalf`).
                        Ok(new) => (
                            Step {
                                before,
                                after: Some(new),
                            },
                            None,
                            Some(intent),
                        ),
                    }
                }
                (Action::Replace, Some(b)) => match delete(cx, b, "replace-delete").await {
                    Err(e) => (unchanged, Some(e), None),
                    Ok(()) => {
                        match create(cx, instance, schema, &change.depends_on, "replace").await {
                            Ok(new) => (
                                Step {
                                    before,
                                    after: Some(new),
                                },
                                None,
                                None,
                            ),
                            Err(e) => (
                                Step {
                                    before,
                                    after: None,
                                },
                                Some(e),
                                None,
                            ),
                        }
                    }
                },
                _ => match create(cx, instance, schema, &change.depends_on, "create").await {
                    Ok(r) => (
                        Step {
                            before,
                            after: Some(r),
                        },
                        None,
                        None,
                    ),
                    Err(e) => (unchanged, Some(e), None),
                },
            }
        }
    }
}

/// With create-before-destroy, the old resource is deleted after the new
/// one took its address in the state.
fn old_delete_intent(cx: &RunContext, old: &ResourceRecord) -> Result<i64, String> {
    let entry = JournalEntry {
        seq: 0,
        deployment: cx.deployment.clone(),
        run_id: cx.run_id.clone(),
        address: old.address.clone(),
        kind: old.kind.clone(),
        op: JournalOp::Delete,
        token: token(
            &cx.deployment,
            &old.address,
            &cx.run_id,
            "replace-delete-old",
        ),
        id: Some(old.id.clone()),
        started_at: (cx.clock)(),
        outcome: None,
    };
    cx.store.journal_intent(&entry).map_err(|e| e.to_string())
}

fn not_attempted(cx: &RunContext) -> JournalOutcome {
    JournalOutcome {
        ok: false,
        id: None,
        error: Some("not attempted".into()),
        finished_at: (cx.clock)(),
    }
}

async fn delete_old(
    cx: &RunContext,
    old: &ResourceRecord,
    written: Option<i64>,
) -> Result<(), String> {
    // The old resource was no longer in the state (its address now names
    // the replacement), so there is nothing to write before closing.
    journaled_delete(cx, old, "replace-delete-old", written)
        .await?
        .close(cx)
}

/// Rolls back a create-before-destroy replacement whose old half was not
/// deleted yet: the new half goes, and the old one, still there, is
/// recorded at its address again.
async fn undo_early_replace(
    cx: &RunContext,
    old: ResourceRecord,
    intent: i64,
    step: &Step,
) -> Result<(), String> {
    if let Some(new) = &step.after {
        delete(cx, new, "rollback-delete").await?;
    }
    cx.store
        .put_resource(&cx.deployment, &old)
        .map_err(|e| e.to_string())?;
    cx.store
        .close_journal(intent, &not_attempted(cx))
        .map_err(|e| e.to_string())
}

/// Returns one step to its `before`.
async fn undo_step(cx: &RunContext, change: &ResourceChange, step: &Step) -> Result<(), String> {
    match (&step.before, &step.after) {
        (None, Some(after)) => delete(cx, after, "rollback-delete").await,
        (Some(before), Some(after)) if before.id == after.id => {
            let (_, closing) = journaled_update(
                cx,
                after,
                revealed_properties(before),
                before.tags.clone(),
                change,
                "rollback-update",
            )
            .await?;
            cx.store
                .put_resource(&cx.deployment, before)
                .map_err(|e| e.to_string())?;
            closing.close(cx)
        }
        (Some(before), after) => {
            // Replaced or deleted: make the prior resource again, then remove
            // the replacement if there is one.
            let recreated = recreate(cx, before).await?;
            if let Some(a) = after
                && a.id != recreated.id
            {
                delete_old(cx, a, None).await?;
            }
            Ok(())
        }
        (None, None) => Ok(()),
    }
}

/// Creates a resource again from its record (rollback of a delete/replace).
async fn recreate(cx: &RunContext, before: &ResourceRecord) -> Result<ResourceRecord, String> {
    let token = token(
        &cx.deployment,
        &before.address,
        &cx.run_id,
        "rollback-create",
    );
    let req = CreateRequest {
        deployment: cx.deployment.clone(),
        address: before.address.clone(),
        kind: before.kind.clone(),
        properties: revealed_properties(before),
        tags: before.tags.clone(),
        target: None,
        token: token.clone(),
        sensitive: secret_property_names(before),
        may_exist: true,
    };
    let (created, closing) = journaled(
        cx,
        Intent {
            address: &before.address,
            kind: &before.kind,
            op: JournalOp::Create,
            token: &token,
            id: None,
            written: None,
        },
        || cx.provider.create(req.clone()),
    )
    .await?;
    let mut record = before.clone();
    record.id = created.id.clone();
    let schema = portable(&before.kind);
    let mut attrs = serde_json::Map::new();
    if let Json::Object(a) = &created.attributes {
        for (k, v) in a {
            if schema
                .and_then(|s| s.attribute(k))
                .is_some_and(|x| x.sensitive)
            {
                record.secrets.insert(format!("attributes.{k}"), v.clone());
            } else {
                attrs.insert(k.clone(), v.clone());
            }
        }
    }
    record.attributes = Json::Object(attrs);
    cx.store
        .put_resource(&cx.deployment, &record)
        .map_err(|e| e.to_string())?;
    closing.close(cx)?;
    Ok(record)
}
