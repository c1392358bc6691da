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
//! - `record`: public and secret values between instances and records;
//! - `context`: the options and the context a run's steps share;
//! - `events`: what a run tells its observer as it goes;
//! - `report`: what a run did.

mod calls;
mod context;
mod events;
mod node;
mod order;
mod record;
mod report;
mod rollback;
mod walk;

use std::time::Instant;

use cairn_template::Diagnostics;

use crate::evaluate::{Desired, KnownAttributes};
use crate::plan::Plan;
use crate::store::ResourceRecord;

pub use calls::{delete_if_present, token};
pub use context::{ApplyOptions, OnFailure, RunContext};
pub use events::{ApplyEvent, Observer, Silent};
pub use record::{record_for, revealed_properties};
pub use report::{ApplyReport, Counts, ResourceResult, Status};

use walk::Walk;

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
