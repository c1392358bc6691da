//! The graph walk: which nodes are ready, evaluating the template for
//! them, running them (and the old halves of replacements) at most
//! `parallelism` at a time, taking their results as they finish, and at the
//! end undoing or counting what was done.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};

use cairn_template::Diagnostics;

use super::context::RunContext;
use super::events::ApplyEvent;
use super::node::{NodeOutcome, Step, run_node};
use super::order::{dependencies, heights, users};
use super::report::{ApplyReport, Counts, ResourceResult, Status};
use super::rollback::{delete_old, undo_early_replace, undo_step};
use crate::evaluate::{Desired, Instance, KnownAttributes};
use crate::plan::{Action, Plan, ResourceChange, StateAttributes};
use crate::store::ResourceRecord;

/// Re-evaluates the template with what is known so far.
pub(super) type Evaluate<'e> =
    dyn FnMut(&dyn KnownAttributes) -> Result<Desired, Diagnostics> + Send + 'e;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeState {
    Pending,
    Running,
    Done,
    Failed,
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

/// What a task hands back to the walk when it ends.
pub(super) struct Joined {
    index: usize,
    elapsed: Duration,
    ran: Ran,
}

enum Ran {
    /// The node's own change.
    Node(Box<NodeOutcome>),
    /// The delete of the node's old half, not the node itself.
    OldHalf(Result<(), String>),
    /// Not started: the lease was lost while the task waited its turn.
    NotStarted { reason: String, old_half: bool },
}

/// The walk's state; [`super::apply`] drives it.
pub(super) struct Walk<'a> {
    cx: &'a RunContext,
    /// The plan's changes that do something, in plan order.
    nodes: Vec<&'a ResourceChange>,
    /// For each node, the nodes it waits for (see [`dependencies`]).
    deps: Vec<Vec<usize>>,
    /// For each node, what must move on before its old half goes.
    users: Vec<Vec<usize>>,
    /// For each node, its longest chain of waiters (see [`heights`]): of
    /// the nodes ready at once, the tallest take the free slots first.
    height: Vec<usize>,
    state: Vec<NodeState>,
    old_halves: Vec<OldHalf>,
    /// The state as the walk goes: what the template is evaluated against.
    records: HashMap<String, ResourceRecord>,
    results: Vec<Option<ResourceResult>>,
    /// The steps that did something, in the order they ended: a rollback
    /// undoes them last first.
    done_steps: Vec<(usize, Step)>,
    /// Something failed or the lease was lost: no new task starts.
    failed: bool,
    limit: Arc<Semaphore>,
    running: JoinSet<Joined>,
}

impl<'a> Walk<'a> {
    pub(super) fn new(cx: &'a RunContext, plan: &'a Plan, prior: &[ResourceRecord]) -> Walk<'a> {
        let nodes: Vec<&ResourceChange> = plan
            .changes
            .iter()
            .filter(|c| c.action != Action::NoOp)
            .collect();
        let deps = dependencies(&nodes);
        Walk {
            cx,
            height: heights(&deps),
            deps,
            users: users(&nodes),
            state: vec![NodeState::Pending; nodes.len()],
            old_halves: vec![OldHalf::None; nodes.len()],
            records: prior
                .iter()
                .map(|r| (r.address.clone(), r.clone()))
                .collect(),
            results: vec![None; nodes.len()],
            done_steps: Vec::new(),
            failed: false,
            limit: Arc::new(Semaphore::new(cx.options.parallelism.max(1))),
            running: JoinSet::new(),
            nodes,
        }
    }

    /// Whether a node failed, a task panicked or the lease was lost.
    pub(super) fn failed(&self) -> bool {
        self.failed
    }

    /// Starts what can start: the ready nodes, then the old halves whose
    /// users have moved on. Nothing starts once something failed or the
    /// lease is known lost.
    pub(super) fn start(&mut self, evaluate: &mut Evaluate<'_>) {
        if !self.failed && self.cx.fence.lost().is_some() {
            self.failed = true;
        }
        if self.failed {
            return;
        }
        // Every ready node starts now, on one evaluation of the template,
        // and waits for a slot in its task (the walk taking them in as
        // they come would evaluate the template once per node).
        let ready = self.ready();
        if !ready.is_empty() {
            self.start_nodes(ready, evaluate);
        }
        self.start_old_halves();
    }

    /// The next task to end; `None` once none is running.
    pub(super) async fn join_next(&mut self) -> Option<Result<Joined, JoinError>> {
        self.running.join_next().await
    }

    /// Pending nodes whose dependencies are done, the tallest first (plan
    /// order among equals).
    fn ready(&self) -> Vec<usize> {
        let mut ready: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                self.state[i] == NodeState::Pending
                    && self.deps[i].iter().all(|&d| {
                        // A delete also waits for the old halves of what
                        // used it (see `OldHalf`).
                        self.state[d] == NodeState::Done
                            && (self.nodes[i].action != Action::Delete
                                || !matches!(
                                    self.old_halves[d],
                                    OldHalf::Waiting(..) | OldHalf::Deleting
                                ))
                    })
            })
            .collect();
        ready.sort_by_key(|&i| std::cmp::Reverse(self.height[i]));
        ready
    }

    /// Evaluates the template against the walk's state (deletes need no
    /// evaluation) and starts `ready`.
    fn start_nodes(&mut self, ready: Vec<usize>, evaluate: &mut Evaluate<'_>) {
        let needs_eval = ready
            .iter()
            .any(|&i| self.nodes[i].action != Action::Delete);
        let desired = if needs_eval {
            let snapshot: Vec<ResourceRecord> = self.records.values().cloned().collect();
            match evaluate(&StateAttributes::new(&snapshot)) {
                Ok(d) => Some(d),
                Err(e) => {
                    // The template evaluated at plan time; failing now
                    // means a provider returned something unusable.
                    for &i in &ready {
                        self.state[i] = NodeState::Failed;
                        self.results[i] = Some(result(
                            self.nodes[i],
                            Status::Failed,
                            Some(format!("evaluation failed: {e}")),
                            Duration::ZERO,
                        ));
                    }
                    self.failed = true;
                    return;
                }
            }
        } else {
            None
        };
        let instances: HashMap<&str, &Instance> = desired
            .iter()
            .flat_map(|d| d.instances())
            .map(|i| (i.address.as_str(), i))
            .collect();
        for i in ready {
            let change = self.nodes[i].clone();
            let instance = instances.get(change.address.as_str()).map(|i| (*i).clone());
            let before = self.records.get(&change.address).cloned();
            self.state[i] = NodeState::Running;
            self.cx.observer.on_event(&ApplyEvent::Started {
                address: change.address.clone(),
                action: change.action,
            });
            self.spawn(i, false, async move |cx| {
                Ran::Node(Box::new(
                    run_node(&cx, &change, instance.as_ref(), before).await,
                ))
            });
        }
    }

    /// Starts deleting the old halves whose users are all done.
    fn start_old_halves(&mut self) {
        for i in 0..self.nodes.len() {
            let ready = matches!(self.old_halves[i], OldHalf::Waiting(..))
                && self.users[i]
                    .iter()
                    .all(|&m| self.state[m] == NodeState::Done);
            if !ready {
                continue;
            }
            let OldHalf::Waiting(old, intent) =
                std::mem::replace(&mut self.old_halves[i], OldHalf::Deleting)
            else {
                continue;
            };
            self.spawn(i, true, async move |cx| {
                Ran::OldHalf(delete_old(&cx, &old, Some(intent)).await)
            });
        }
    }

    /// Runs `work` for node `index` once the parallelism allows and if the
    /// run still holds the lease.
    fn spawn<F, Fut>(&mut self, index: usize, old_half: bool, work: F)
    where
        F: FnOnce(RunContext) -> Fut + Send + 'static,
        Fut: Future<Output = Ran> + Send,
    {
        // A slot free now is taken here, in the order the walk starts nodes
        // (the tallest first), not in whatever order the runtime first
        // polls the tasks; the others wait for one, first come first
        // served.
        let (cx, limit) = (self.cx.clone(), self.limit.clone());
        let free = limit.clone().try_acquire_owned().ok();
        self.running.spawn(async move {
            let _permit = match free {
                Some(p) => Ok(p),
                None => limit.acquire_owned().await,
            };
            if let Err(reason) = cx.still_holds_lease().await {
                return Joined {
                    index,
                    elapsed: Duration::ZERO,
                    ran: Ran::NotStarted { reason, old_half },
                };
            }
            let t = Instant::now();
            let ran = work(cx).await;
            Joined {
                index,
                elapsed: t.elapsed(),
                ran,
            }
        });
    }

    /// Takes in a task that ended.
    pub(super) fn take(&mut self, joined: Result<Joined, JoinError>) {
        let joined = match joined {
            Ok(j) => j,
            Err(e) => {
                // A panicking provider: treat as a failure of an unknown node.
                self.failed = true;
                tracing::error!("a provider task panicked: {e}");
                return;
            }
        };
        let Joined {
            index: i,
            elapsed,
            ran,
        } = joined;
        match ran {
            Ran::NotStarted { reason, old_half } => {
                // Left as it was: the next holder of the lease plans it again.
                self.failed = true;
                if old_half {
                    // Its delete intent stays open in the journal.
                    self.old_halves[i] = OldHalf::Gone;
                } else {
                    self.state[i] = NodeState::Failed;
                    self.results[i] = Some(result(
                        self.nodes[i],
                        Status::Skipped,
                        Some(reason),
                        elapsed,
                    ));
                }
            }
            Ran::OldHalf(deleted) => {
                self.old_halves[i] = OldHalf::Gone;
                if let Err(err) = deleted {
                    // As before the split: the new half stays recorded and
                    // the old one is left to the journal's recovery.
                    self.fail(i, err, elapsed);
                }
            }
            Ran::Node(outcome) => self.node_ended(i, *outcome, elapsed),
        }
    }

    fn node_ended(&mut self, i: usize, outcome: NodeOutcome, elapsed: Duration) {
        let NodeOutcome {
            step,
            error,
            deferred_delete,
        } = outcome;
        let change = self.nodes[i];
        match &step.after {
            Some(r) => {
                self.records.insert(change.address.clone(), r.clone());
            }
            None => {
                self.records.remove(&change.address);
            }
        }
        if let (Some(intent), Some(old)) = (deferred_delete, &step.before) {
            self.old_halves[i] = OldHalf::Waiting(Box::new(old.clone()), intent);
        }
        if let Some(err) = error {
            self.fail(i, err, elapsed);
            // A partly done node (a replace that deleted but did not create)
            // still needs rolling back.
            if step.before != step.after {
                self.done_steps.push((i, step));
            }
        } else {
            self.state[i] = NodeState::Done;
            self.cx.observer.on_event(&ApplyEvent::Finished {
                address: change.address.clone(),
                action: change.action,
                elapsed_ms: elapsed.as_millis() as u64,
            });
            self.results[i] = Some(result(change, done_status(change.action), None, elapsed));
            self.done_steps.push((i, step));
        }
    }

    fn fail(&mut self, i: usize, error: String, elapsed: Duration) {
        let change = self.nodes[i];
        self.failed = true;
        self.state[i] = NodeState::Failed;
        self.cx.observer.on_event(&ApplyEvent::Failed {
            address: change.address.clone(),
            action: change.action,
            error: error.clone(),
        });
        self.results[i] = Some(result(change, Status::Failed, Some(error), elapsed));
    }

    /// Undoes the done steps, last first. Whether all of them were undone.
    pub(super) async fn roll_back(&mut self) -> bool {
        let mut all = true;
        for (i, step) in self.done_steps.iter().rev() {
            let change = self.nodes[*i];
            self.cx.observer.on_event(&ApplyEvent::RollingBack {
                address: change.address.clone(),
            });
            let undo = match std::mem::replace(&mut self.old_halves[*i], OldHalf::Gone) {
                OldHalf::Waiting(old, intent) => {
                    undo_early_replace(self.cx, *old, intent, step).await
                }
                _ => undo_step(self.cx, change, step).await,
            };
            if let Some(r) = self.results[*i].as_mut() {
                match undo {
                    Ok(()) => {
                        if r.status != Status::Failed {
                            r.status = Status::RolledBack;
                        }
                    }
                    Err(e) => {
                        r.status = Status::RollbackFailed;
                        r.error = Some(e);
                        all = false;
                    }
                }
            }
        }
        all
    }

    /// Kept (or a failed rollback): old halves still waiting are recorded
    /// nowhere, so they go now rather than be left to the next run.
    pub(super) async fn delete_waiting_old_halves(&mut self) {
        for (i, half) in self.old_halves.iter_mut().enumerate() {
            if let OldHalf::Waiting(old, intent) = std::mem::replace(half, OldHalf::Gone)
                && let Err(e) = delete_old(self.cx, &old, Some(intent)).await
            {
                self.failed = true;
                if let Some(r) = self.results[i].as_mut() {
                    r.status = Status::Failed;
                    r.error = Some(e);
                }
            }
        }
    }

    /// The report: every node's result (skipped when it never started)
    /// and the counts.
    pub(super) fn report(
        self,
        started: Instant,
        rolled_back: bool,
        lease_lost: Option<String>,
    ) -> ApplyReport {
        let resources: Vec<ResourceResult> = self
            .nodes
            .iter()
            .zip(self.results)
            .map(|(c, r)| r.unwrap_or_else(|| result(c, Status::Skipped, None, Duration::ZERO)))
            .collect();
        ApplyReport {
            ok: !self.failed,
            rolled_back,
            counts: counts(&resources),
            elapsed_ms: started.elapsed().as_millis() as u64,
            resources,
            lease_lost,
        }
    }
}

fn counts(resources: &[ResourceResult]) -> Counts {
    let mut counts = Counts::default();
    for r in resources {
        match r.status {
            Status::Created => counts.created += 1,
            Status::Updated => counts.updated += 1,
            Status::Replaced => counts.replaced += 1,
            Status::Deleted => counts.deleted += 1,
            Status::Failed | Status::RollbackFailed => counts.failed += 1,
            _ => {}
        }
    }
    counts
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
