//! Undoing what a failed run did, and the old halves of
//! create-before-destroy replacements.

use super::calls::{
    Intent, delete, journaled, journaled_delete, journaled_update, not_attempted, token,
};
use super::context::RunContext;
use super::node::Step;
use super::record::{revealed_properties, secret_property_names};
use crate::plan::ResourceChange;
use crate::provider::{CreateRequest, Json};
use crate::schema::portable;
use crate::store::{JournalOp, ResourceRecord};

/// Deletes a replacement's old half, under its journaled intent when one
/// was `written` already.
pub(super) async fn delete_old(
    cx: &RunContext,
    old: &ResourceRecord,
    written: Option<i64>,
) -> Result<(), String> {
    // The old resource was no longer in the state (its address now names
    // the replacement), so there is nothing to write before closing.
    journaled_delete(cx, old, "replace-delete-old", written)
        .await?
        .close(cx)
        .await
}

/// Rolls back a create-before-destroy replacement whose old half was not
/// deleted yet: the new half goes, and the old one, still there, is
/// recorded at its address again.
pub(super) async fn undo_early_replace(
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
pub(super) async fn undo_step(
    cx: &RunContext,
    change: &ResourceChange,
    step: &Step,
) -> Result<(), String> {
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
            closing.record(cx, before.clone()).await
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
        kind: before
            .typed_kind()
            .map_err(|e| format!("{}: {e}", before.address))?,
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
    closing.record(cx, record.clone()).await?;
    Ok(record)
}
