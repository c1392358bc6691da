//! `cairn import`: adopting a resource that exists on the target into the
//! state, as a run like any other: under the deployment's lease (with its
//! heartbeat and fence), reading with the engine's retries, recorded in the
//! state and the history through the store.
//!
//! The engine says what the resource looks like as a declaration
//! ([`Imported::declared`]); writing that as YAML is the CLI's.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::apply::RunContext;
use crate::provider::{Json, ProviderError, ReadRequest};
use crate::retry::with_retries;
use crate::run::{LeaseTerms, hold_lease};
use crate::schema::{Kind, ResourceSchema, lookup, portable_kinds, target_kinds, target_of};
use crate::store::{Owner, ResourceRecord, RunRecord, StoreError};

/// What to adopt, checked: a portable type, the target's id, and a resource
/// name for the template.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    schema: &'static ResourceSchema,
    id: String,
    address: String,
}

impl ImportRequest {
    /// Checks the type and the name before anything is read or locked.
    pub fn new(kind: &str, id: &str, name: &str) -> Result<ImportRequest, ImportError> {
        let schema = lookup(kind).ok_or_else(|| ImportError::UnknownType(kind.to_string()))?;
        if !valid_name(name) {
            return Err(ImportError::InvalidName(name.to_string()));
        }
        Ok(ImportRequest {
            schema,
            id: id.to_string(),
            address: name.to_string(),
        })
    }

    pub fn kind(&self) -> &'static str {
        self.schema.kind
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The resource's name in the template, and so its address.
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// A resource name as a template declares it (no index, no module path).
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Who imports, for the lease and the history.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub owner: Owner,
    pub lease_ttl: Duration,
    /// See [`crate::run::RunOptions::holder_gone`].
    pub holder_gone: fn(&Owner) -> bool,
    /// For the history: the deployment's environment and target.
    pub environment: String,
    pub target: String,
}

/// The resource as the target has it, as cairn records it.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    pub record: ResourceRecord,
    /// The properties a template should declare: set, not secret, and not
    /// the type's default.
    pub declared: serde_json::Map<String, Json>,
    /// Secret properties: recorded, never declared in clear.
    pub withheld: Vec<String>,
}

#[derive(Debug)]
pub enum ImportOutcome {
    /// In the state and the history (at this serial).
    Recorded {
        imported: Box<Imported>,
        serial: i64,
    },
    /// `accept` said no: nothing was recorded.
    Declined,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "`{0}` is not a resource type; types: {types}",
        types = portable_kinds().into_iter().chain(target_kinds()).collect::<Vec<_>>().join(", ")
    )]
    UnknownType(String),
    #[error("`{kind}` exists only on the {only} target; this environment deploys to {target}")]
    TargetMismatch {
        kind: String,
        only: String,
        target: String,
    },
    #[error("{0}: a resource name is letters, digits and _, not starting with a digit")]
    InvalidName(String),
    #[error(
        "the state of {deployment} already has {address} ({id}); import adopts what cairn does not manage yet"
    )]
    AlreadyManaged {
        deployment: String,
        address: String,
        id: String,
    },
    #[error("the {target} target has no {kind} with id {id}")]
    NotFound {
        target: String,
        kind: String,
        id: String,
    },
    #[error("reading {kind} {id}: {error}")]
    Read {
        kind: String,
        id: String,
        error: ProviderError,
    },
    /// The lease was lost before anything was recorded.
    #[error("{0}")]
    LeaseLost(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Adopts `req` into the deployment's state. `accept` sees what would be
/// recorded and says whether to go on (the CLI writes the declaration into
/// the template there, so that a template it cannot write leaves the state
/// as it was).
pub async fn import(
    cx: &RunContext,
    req: &ImportRequest,
    opts: &ImportOptions,
    accept: &mut (dyn FnMut(&Imported) -> bool + Send),
) -> Result<ImportOutcome, ImportError> {
    let terms = LeaseTerms {
        command: "import",
        owner: &opts.owner,
        ttl: opts.lease_ttl,
        holder_gone: opts.holder_gone,
    };
    // Refused before the lease: nothing to hold it for.
    if let Some(only) = target_of(req.schema.kind)
        && only != opts.target
    {
        return Err(ImportError::TargetMismatch {
            kind: req.schema.kind.to_string(),
            only: only.to_string(),
            target: opts.target.clone(),
        });
    }
    let (cx, _lease) = hold_lease(cx, &terms)?;
    import_leased(&cx, req, opts, accept).await
}

async fn import_leased(
    cx: &RunContext,
    req: &ImportRequest,
    opts: &ImportOptions,
    accept: &mut (dyn FnMut(&Imported) -> bool + Send),
) -> Result<ImportOutcome, ImportError> {
    let known = cx.store.resources(&cx.deployment)?;
    if let Some(r) = known
        .iter()
        .find(|r| r.address == req.address || r.id == req.id)
    {
        return Err(ImportError::AlreadyManaged {
            deployment: cx.deployment.clone(),
            address: r.address.clone(),
            id: r.id.clone(),
        });
    }
    let imported = read(cx, req, &opts.target).await?;
    if !accept(&imported) {
        return Ok(ImportOutcome::Declined);
    }
    // The lease may have gone while the target answered: the state is the
    // holder's to write.
    cx.fence
        .check(&*cx.store, &cx.deployment, &cx.run_id)
        .map_err(ImportError::LeaseLost)?;
    cx.store.put_resource(&cx.deployment, &imported.record)?;
    let serial = record_in_history(cx, opts, &imported.record)?;
    Ok(ImportOutcome::Recorded {
        imported: Box::new(imported),
        serial,
    })
}

/// Reads the resource, with the apply's retries, and splits what the
/// target reports into the record's public and secret parts, keeping only
/// what the type declares.
async fn read(cx: &RunContext, req: &ImportRequest, target: &str) -> Result<Imported, ImportError> {
    let schema = req.schema;
    let read = ReadRequest {
        deployment: cx.deployment.clone(),
        address: req.address.clone(),
        kind: Kind::of(schema),
        id: req.id.clone(),
    };
    let not_found = || ImportError::NotFound {
        target: target.to_string(),
        kind: schema.kind.to_string(),
        id: req.id.clone(),
    };
    let live = match with_retries(
        &cx.options.retry,
        || cx.provider.read(read.clone()),
        |attempt, delay, e| {
            tracing::debug!(
                "reading {} {}: retry {attempt} in {delay:?} ({e})",
                schema.kind,
                req.id
            )
        },
    )
    .await
    {
        Ok(Some(live)) => live,
        Ok(None) => return Err(not_found()),
        Err(error) => {
            return Err(ImportError::Read {
                kind: schema.kind.to_string(),
                id: req.id.clone(),
                error,
            });
        }
    };

    let mut properties = serde_json::Map::new();
    let mut secrets = BTreeMap::new();
    let mut declared = serde_json::Map::new();
    let mut withheld = Vec::new();
    for p in schema.properties {
        let v = live.properties.get(p.name).cloned().unwrap_or(Json::Null);
        if p.sensitive {
            secrets.insert(format!("properties.{}", p.name), v);
            withheld.push(p.name.to_string());
            continue;
        }
        let default = p.default.and_then(|d| serde_json::from_str::<Json>(d).ok());
        if !v.is_null() && Some(&v) != default.as_ref() {
            declared.insert(p.name.to_string(), v.clone());
        }
        properties.insert(p.name.to_string(), v);
    }
    let mut attributes = serde_json::Map::new();
    if let Json::Object(a) = &live.attributes {
        for (k, v) in a {
            if schema.attribute(k).is_some_and(|x| x.sensitive) {
                secrets.insert(format!("attributes.{k}"), v.clone());
            } else {
                attributes.insert(k.clone(), v.clone());
            }
        }
    }
    let record = ResourceRecord {
        address: req.address.clone(),
        kind: schema.kind.to_string(),
        id: req.id.clone(),
        properties: Json::Object(properties),
        attributes: Json::Object(attributes),
        secrets,
        // As the target has them: the next `up` adds this deployment's tags.
        tags: live.tags,
        depends_on: Vec::new(),
        data_holding: schema.data_holding,
        prevent_destroy: false,
        create_before_destroy: false,
    };
    Ok(Imported {
        record,
        declared,
        withheld,
    })
}

/// The import as a finished run in the deployment's history.
fn record_in_history(
    cx: &RunContext,
    opts: &ImportOptions,
    record: &ResourceRecord,
) -> Result<i64, StoreError> {
    let at = (cx.clock)();
    let mut run = RunRecord {
        serial: 0,
        deployment: cx.deployment.clone(),
        run_id: cx.run_id.clone(),
        command: "import".into(),
        owner: opts.owner.clone(),
        environment: opts.environment.clone(),
        target: opts.target.clone(),
        started_at: at,
        finished_at: Some(at),
        template_digest: String::new(),
        template_files: BTreeMap::new(),
        parameters: serde_json::json!({}),
        plan: serde_json::json!({
            "import": {"address": record.address, "type": record.kind, "id": record.id}
        }),
        outcome: "succeeded".into(),
        duration_ms: Some(0),
        outputs: Json::Null,
    };
    let serial = cx.store.begin_run(&run)?;
    run.serial = serial;
    cx.store.finish_run(&cx.deployment, serial, &run)?;
    Ok(serial)
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names_are_identifiers() {
        assert!(valid_name("assets_2"));
        assert!(!valid_name("2x"));
        assert!(!valid_name("web[0]"));
        assert!(!valid_name(""));
    }
}
