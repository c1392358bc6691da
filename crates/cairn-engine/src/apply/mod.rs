//! Applying a plan: a walk of the dependency graph with bounded
//! parallelism. Every provider call is journaled (intent before, outcome
//! after) and every success is written to the state at once, so the state
//! matches reality at any moment a run can die. On failure the run either
//! returns the deployment to its prior state (`rollback`) or keeps what
//! succeeded (`keep`).
//!
//! The parts, each readable alone:
//! - `walk`: the graph walk (readiness, evaluation, spawning, joining,
//!   rollback, counting), driven by `apply` below;
//! - `order`: which nodes wait for which;
//! - `node`: one node's change and its named outcome;
//! - `calls`: the journaled provider calls and the idempotency token;
//! - `rollback`: undoing steps, and the old halves of replacements;
//! - `record`: public and secret values between instances and records.

mod calls;
mod node;
mod order;
mod record;
mod rollback;
mod walk;

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use cairn_template::Diagnostics;

use crate::evaluate::{Desired, KnownAttributes};
use crate::fence::Fence;
use crate::plan::{Action, Plan};
use crate::provider::Provider;
use crate::retry::RetryPolicy;
use crate::store::{ResourceRecord, StateStore, StoreResult, Timestamp};

pub use calls::{delete_if_present, token};
pub use record::{record_for, revealed_properties};

use walk::Walk;

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

impl RunContext {
    /// Runs a store call on a thread of its own. A write waits for its
    /// flush to disk; made from the async workers, it would hold one of
    /// them (two on two cores) for that time, and the writes of steps in
    /// flight could not wait together, which a store that commits writes
    /// in groups needs to flush them once.
    pub(super) async fn stored<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn StateStore) -> StoreResult<T> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&*store)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("a state store call did not finish: {e}")),
        }
    }

    /// [`Fence::check`] off the async workers (it reads the lease).
    pub(super) async fn still_holds_lease(&self) -> Result<(), String> {
        if !self.fence.needs_check() {
            return self
                .fence
                .check(&*self.store, &self.deployment, &self.run_id);
        }
        let cx = self.clone();
        match tokio::task::spawn_blocking(move || {
            cx.fence.check(&*cx.store, &cx.deployment, &cx.run_id)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => Err(format!("the lease check did not finish: {e}")),
        }
    }
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
    let mut walk = Walk::new(cx, plan, prior);
    loop {
        walk.start(evaluate);
        let Some(joined) = walk.join_next().await else {
            break;
        };
        walk.take(joined);
    }

    // A run that lost the lease calls the provider no more, not even to
    // roll back: the journal and the state say what it did.
    let lease_lost = cx.fence.lost();
    let mut rolled_back = false;
    if walk.failed() && lease_lost.is_none() && cx.options.on_failure == OnFailure::Rollback {
        rolled_back = walk.roll_back().await;
    }
    if lease_lost.is_none() {
        walk.delete_waiting_old_halves().await;
    }
    walk.report(started, rolled_back, lease_lost)
}

#[cfg(test)]
pub(crate) fn dependencies_for_tests(nodes: &[&crate::plan::ResourceChange]) -> Vec<Vec<usize>> {
    order::dependencies(nodes)
}
