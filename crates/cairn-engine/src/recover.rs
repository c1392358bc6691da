//! Reconciling the journal before planning. An entry without an outcome is a
//! provider call a killed run may or may not have made; this finds out what
//! it did, by its token or id, and cleans up so that nothing is orphaned or
//! duplicated. Pulumi leaves such pending operations to the user; cairn
//! settles them itself.

use std::collections::HashMap;

use serde::Serialize;

use crate::apply::RunContext;
use crate::provider::{DeleteRequest, FindRequest, ProviderError, ReadRequest};
use crate::schema::Kind;
use crate::store::{JournalOp, JournalOutcome};

#[derive(Debug, Clone, Serialize)]
pub struct Reconciled {
    pub address: String,
    pub op: JournalOp,
    pub token: String,
    /// What was found and done.
    pub finding: String,
}

pub async fn reconcile(cx: &RunContext) -> Result<Vec<Reconciled>, String> {
    let open = cx
        .store
        .open_journal(&cx.deployment)
        .map_err(|e| e.to_string())?;
    if open.is_empty() {
        return Ok(Vec::new());
    }
    let records = cx
        .store
        .resources(&cx.deployment)
        .map_err(|e| e.to_string())?;
    let by_id: HashMap<&str, &str> = records
        .iter()
        .map(|r| (r.id.as_str(), r.address.as_str()))
        .collect();
    let mut out = Vec::new();
    for e in open {
        let kind = e
            .typed_kind()
            .map_err(|err| format!("recovering {}: {err}", e.address))?;
        let finding = match e.op {
            JournalOp::Create => {
                let found = cx
                    .provider
                    .find(FindRequest {
                        deployment: e.deployment.clone(),
                        address: e.address.clone(),
                        kind,
                        token: e.token.clone(),
                    })
                    .await
                    .map_err(|err| format!("recovering {}: {err}", e.address))?;
                match found {
                    None => "the create never happened".to_string(),
                    Some(c) if by_id.contains_key(c.id.as_str()) => {
                        format!("{} was created and recorded", c.id)
                    }
                    Some(c) => {
                        // Made but never recorded: remove it; the plan creates
                        // it again with the template's current values.
                        delete_orphan(cx, &e.address, kind, &c.id, &e.token).await?;
                        format!("{} was created but not recorded; deleted it", c.id)
                    }
                }
            }
            JournalOp::Delete => {
                let id = e.id.clone().unwrap_or_default();
                let live = cx
                    .provider
                    .read(ReadRequest {
                        deployment: e.deployment.clone(),
                        address: e.address.clone(),
                        kind,
                        id: id.clone(),
                    })
                    .await;
                let exists = match live {
                    Ok(o) => o.is_some(),
                    Err(ProviderError::NotFound(_)) => false,
                    Err(err) => return Err(format!("recovering {}: {err}", e.address)),
                };
                match (exists, by_id.get(id.as_str())) {
                    (false, Some(address)) => {
                        cx.store
                            .delete_resource(&cx.deployment, address)
                            .map_err(|x| x.to_string())?;
                        format!("{id} was deleted; removed it from the state")
                    }
                    (false, None) => format!("{id} was deleted"),
                    (true, Some(_)) => format!("{id} still exists and stays in the state"),
                    (true, None) => {
                        // A replaced resource's old half: nothing records it.
                        delete_orphan(cx, &e.address, kind, &id, &e.token).await?;
                        format!("{id} was meant to be deleted and was not recorded; deleted it")
                    }
                }
            }
            JournalOp::Update => {
                "the update may be half done; the next plan reads and repeats it".to_string()
            }
        };
        cx.store
            .close_journal(
                e.seq,
                &JournalOutcome {
                    ok: false,
                    id: None,
                    error: Some(format!("interrupted; recovered: {finding}")),
                    finished_at: (cx.clock)(),
                },
            )
            .map_err(|x| x.to_string())?;
        tracing::info!(address = %e.address, "recovered an interrupted {:?}: {finding}", e.op);
        out.push(Reconciled {
            address: e.address,
            op: e.op,
            token: e.token,
            finding,
        });
    }
    Ok(out)
}

async fn delete_orphan(
    cx: &RunContext,
    address: &str,
    kind: Kind,
    id: &str,
    token: &str,
) -> Result<(), String> {
    let req = DeleteRequest {
        deployment: cx.deployment.clone(),
        address: address.to_string(),
        kind,
        id: id.to_string(),
        properties: serde_json::Value::Null,
        token: format!("{token}-recover"),
    };
    crate::retry::with_retries(
        &cx.options.retry,
        || crate::apply::delete_if_present(cx.provider.as_ref(), req.clone()),
        |_, _, _| {},
    )
    .await
    .map_err(|e| format!("recovering {address}: deleting {id}: {e}"))
}
