//! The journaled provider calls. Each call's intent (with its client token)
//! is journaled before the call and its outcome after, and the entry is
//! closed only once the state records the result; the next run reconciles
//! any entry left open.

use std::collections::BTreeMap;

use cairn_template::Value;
use cairn_template::value::SECRET_TEXT;

use super::context::RunContext;
use super::events::ApplyEvent;
use super::record::{
    instance_properties, record_for, revealed_properties, secret_property_names, tags_of,
};
use crate::evaluate::Instance;
use crate::plan::ResourceChange;
use crate::provider::{
    CreateRequest, Created, DeleteRequest, Json, Provider, ProviderError, UpdateRequest,
};
use crate::retry::with_retries;
use crate::schema::ResourceSchema;
use crate::store::{JournalEntry, JournalOp, JournalOutcome, ResourceRecord};

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

/// One intended provider call, as the journal records it.
pub(super) struct Intent<'a> {
    pub(super) address: &'a str,
    pub(super) kind: &'a str,
    pub(super) op: JournalOp,
    pub(super) token: &'a str,
    /// The target id acted on (update, delete).
    pub(super) id: Option<&'a str>,
    /// An intent already written (the old half of a create-before-destroy).
    pub(super) written: Option<i64>,
}

/// One journaled provider call with retries.
pub(super) async fn journaled<T, F, Fut>(
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
        None => cx.stored(move |s| s.journal_intent(&entry)).await?,
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
    if let Err(reason) = cx.still_holds_lease().await {
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
            let _ = cx.stored(move |s| s.journal_outcome(seq, &outcome)).await;
            Err(e.to_string())
        }
    }
}

/// A successful call's journal entry, closed only after the state records
/// the result: an entry still open after a crash means "find what this call
/// did", and so no resource is ever outside both the state and the journal.
#[must_use]
pub(super) struct Closing {
    seq: i64,
    outcome: JournalOutcome,
}

impl Closing {
    /// Closes the entry when the call changed nothing the state records.
    pub(super) async fn close(self, cx: &RunContext) -> Result<(), String> {
        let Closing { seq, outcome } = self;
        cx.stored(move |s| s.journal_outcome(seq, &outcome)).await
    }

    /// Records what the call made or changed and closes its entry.
    pub(super) async fn record(
        self,
        cx: &RunContext,
        record: ResourceRecord,
    ) -> Result<(), String> {
        let Closing { seq, outcome } = self;
        let deployment = cx.deployment.clone();
        cx.stored(move |s| s.put_resource_and_close(&deployment, &record, seq, &outcome))
            .await
    }

    /// Forgets what the call deleted and closes its entry.
    pub(super) async fn forget(self, cx: &RunContext, address: &str) -> Result<(), String> {
        let Closing { seq, outcome } = self;
        let (deployment, address) = (cx.deployment.clone(), address.to_string());
        cx.stored(move |s| s.delete_resource_and_close(&deployment, &address, seq, &outcome))
            .await
    }
}

/// What a call's result says about the target id, for the journal.
pub(super) trait JournalId {
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

pub(super) async fn create(
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
        kind: instance.kind,
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
            kind: instance.kind.as_str(),
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
    closing
        .record(cx, record.clone())
        .await
        .map_err(|e| format!("created {} but could not record it: {e}", created.id))?;
    Ok(record)
}

/// Deletes a resource at the target, journaled; the caller updates the
/// state and then closes the entry.
pub(super) async fn journaled_delete(
    cx: &RunContext,
    r: &ResourceRecord,
    op_name: &str,
    written: Option<i64>,
) -> Result<Closing, String> {
    let token = token(&cx.deployment, &r.address, &cx.run_id, op_name);
    let req = DeleteRequest {
        deployment: cx.deployment.clone(),
        address: r.address.clone(),
        kind: r.typed_kind().map_err(|e| format!("{}: {e}", r.address))?,
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

pub(super) async fn delete(
    cx: &RunContext,
    r: &ResourceRecord,
    op_name: &str,
) -> Result<(), String> {
    journaled_delete(cx, r, op_name, None)
        .await?
        .forget(cx, &r.address)
        .await
}

/// Updates a resource at the target in place, journaled; the caller
/// records the result and then closes the entry.
pub(super) async fn journaled_update(
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
        kind: current
            .typed_kind()
            .map_err(|e| format!("{}: {e}", current.address))?,
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

pub(super) async fn update(
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
    closing.record(cx, record.clone()).await?;
    Ok(record)
}

pub(super) fn not_attempted(cx: &RunContext) -> JournalOutcome {
    JournalOutcome {
        ok: false,
        id: None,
        error: Some("not attempted".into()),
        finished_at: (cx.clock)(),
    }
}

/// With create-before-destroy, the old resource is deleted after the new
/// one took its address in the state.
pub(super) async fn old_delete_intent(
    cx: &RunContext,
    old: &ResourceRecord,
) -> Result<i64, String> {
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
    cx.stored(move |s| s.journal_intent(&entry)).await
}
