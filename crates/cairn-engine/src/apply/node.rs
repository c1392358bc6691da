//! One node of the walk: carrying out one resource's change.

use crate::evaluate::Instance;
use crate::plan::{Action, ResourceChange};
use crate::schema::portable;
use crate::store::ResourceRecord;

use super::calls::{create, delete, not_attempted, old_delete_intent, update};
use super::context::RunContext;

/// The net effect of one node: before and after, for the state and rollback.
#[derive(Debug, Clone)]
pub(super) struct Step {
    pub(super) before: Option<ResourceRecord>,
    pub(super) after: Option<ResourceRecord>,
}

impl Step {
    /// Nothing changed.
    pub(super) fn unchanged(before: Option<ResourceRecord>) -> Step {
        Step {
            after: before.clone(),
            before,
        }
    }
}

/// What one node did.
#[derive(Debug)]
pub(super) struct NodeOutcome {
    /// What is true afterwards, even when the node failed half-way.
    pub(super) step: Step,
    pub(super) error: Option<String>,
    /// A create-before-destroy replacement's old half, to delete later:
    /// its journaled delete intent (the old record is `step.before`).
    pub(super) deferred_delete: Option<i64>,
}

impl NodeOutcome {
    fn done(before: Option<ResourceRecord>, after: Option<ResourceRecord>) -> NodeOutcome {
        NodeOutcome {
            step: Step { before, after },
            error: None,
            deferred_delete: None,
        }
    }

    fn failed(step: Step, error: String) -> NodeOutcome {
        NodeOutcome {
            step,
            error: Some(error),
            deferred_delete: None,
        }
    }
}

/// Carries out one change; the outcome's step says what is true afterwards
/// even when it failed half-way.
pub(super) async fn run_node(
    cx: &RunContext,
    change: &ResourceChange,
    instance: Option<&Instance>,
    before: Option<ResourceRecord>,
) -> NodeOutcome {
    let schema = portable(&change.kind).or_else(|| cx.provider.schema(&change.kind));
    let unchanged = Step::unchanged(before.clone());
    let Some(schema) = schema else {
        return NodeOutcome::failed(unchanged, format!("no schema for type {}", change.kind));
    };
    match change.action {
        Action::NoOp => NodeOutcome::done(before.clone(), before),
        Action::Delete => {
            let Some(b) = &before else {
                return NodeOutcome::done(None, None);
            };
            match delete(cx, b, "delete").await {
                Ok(()) => NodeOutcome::done(before, None),
                Err(e) => NodeOutcome::failed(unchanged, e),
            }
        }
        Action::Create | Action::Update | Action::Replace => {
            let Some(instance) = instance else {
                return NodeOutcome::failed(
                    unchanged,
                    format!("{} is no longer in the template", change.address),
                );
            };
            match (change.action, &before) {
                (Action::Update, Some(b)) => match update(cx, b, instance, schema, change).await {
                    Ok(r) => NodeOutcome::done(before, Some(r)),
                    Err(e) => NodeOutcome::failed(unchanged, e),
                },
                (Action::Replace, Some(b)) if change.create_before_destroy => {
                    // Journal the old one's delete first: once the new one is
                    // recorded at this address, only the journal knows the old.
                    let intent = match old_delete_intent(cx, b).await {
                        Ok(seq) => seq,
                        Err(e) => return NodeOutcome::failed(unchanged, e),
                    };
                    match create(cx, instance, schema, &change.depends_on, "replace").await {
                        Err(e) => {
                            let outcome = not_attempted(cx);
                            let _ = cx.stored(move |s| s.close_journal(intent, &outcome)).await;
                            NodeOutcome::failed(unchanged, e)
                        }
                        // The old half goes once what uses it has moved on
                        // (see `walk::OldHalf`).
                        Ok(new) => NodeOutcome {
                            deferred_delete: Some(intent),
                            ..NodeOutcome::done(before, Some(new))
                        },
                    }
                }
                (Action::Replace, Some(b)) => match delete(cx, b, "replace-delete").await {
                    Err(e) => NodeOutcome::failed(unchanged, e),
                    Ok(()) => {
                        match create(cx, instance, schema, &change.depends_on, "replace").await {
                            Ok(new) => NodeOutcome::done(before, Some(new)),
                            // Deleted but not created: still to roll back.
                            Err(e) => NodeOutcome::failed(
                                Step {
                                    before,
                                    after: None,
                                },
                                e,
                            ),
                        }
                    }
                },
                _ => match create(cx, instance, schema, &change.depends_on, "create").await {
                    Ok(r) => NodeOutcome::done(before, Some(r)),
                    Err(e) => NodeOutcome::failed(unchanged, e),
                },
            }
        }
    }
}
