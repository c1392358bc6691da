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
use crate::plan::{Plan, PlanError, PlanFailure, PlanOptions, plan_with};
use crate::provider::{Json, ReadRequest};
use crate::recover::{Reconciled, reconcile};
use crate::store::{Owner, RunRecord, StoreError};

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
    #[error("{0}")]
    Provider(String),
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

/// Loads the template with this deployment's generated secrets, creating
/// and storing those that do not exist yet.
pub fn load_with_secrets(cx: &RunContext, opts: &LoadOptions) -> Result<Loaded, RunError> {
    let mut opts = opts.clone();
    opts.generated = cx
        .store
        .generated_secrets(&cx.deployment)?
        .into_iter()
        .collect();
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
    let digest = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    (files, digest)
}

/// Refreshes recorded attributes from the target; forgets what is gone.
async fn refresh(cx: &RunContext) -> Result<(), RunError> {
    for mut r in cx.store.resources(&cx.deployment)? {
        let read = cx
            .provider
            .read(ReadRequest {
                deployment: cx.deployment.clone(),
                address: r.address.clone(),
                kind: r.kind.clone(),
                id: r.id.clone(),
            })
            .await;
        match read {
            Ok(Some(o)) => {
                if let (Json::Object(a), Json::Object(new)) = (&mut r.attributes, o.attributes) {
                    for (k, v) in new {
                        if !r.secrets.contains_key(&format!("attributes.{k}")) {
                            a.insert(k, v);
                        }
                    }
                }
                cx.store.put_resource(&cx.deployment, &r)?;
            }
            Ok(None) | Err(crate::provider::ProviderError::NotFound(_)) => {
                tracing::warn!(
                    "{} ({}) no longer exists; it leaves the state",
                    r.address,
                    r.id
                );
                cx.store.delete_resource(&cx.deployment, &r.address)?;
            }
            Err(e) => return Err(RunError::Provider(format!("refreshing {}: {e}", r.address))),
        }
    }
    Ok(())
}

/// Renews the lease until dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
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
    let now = (cx.clock)();
    cx.store.acquire_lease(
        &cx.deployment,
        &opts.owner,
        &cx.run_id,
        &opts.command,
        opts.lease_ttl,
        now,
    )?;
    let _heartbeat = {
        let store = cx.store.clone();
        let (deployment, run_id, ttl, clock) = (
            cx.deployment.clone(),
            cx.run_id.clone(),
            opts.lease_ttl,
            cx.clock.clone(),
        );
        Heartbeat(tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                if let Err(e) = store.renew_lease(&deployment, &run_id, ttl, clock()) {
                    tracing::error!("lost the lease of {deployment}: {e}");
                    return;
                }
            }
        }))
    };
    let result = run_leased(cx, load_opts, opts, confirm, started).await;
    let _ = cx.store.release_lease(&cx.deployment, &cx.run_id);
    result
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
    if opts.refresh {
        refresh(cx).await?;
    }
    let serial = cx.store.serial(&cx.deployment)?;
    if let Some(expected) = opts.expect_serial
        && expected != serial
    {
        return Err(RunError::StalePlan {
            expected,
            found: serial,
        });
    }
    let prior = cx.store.resources(&cx.deployment)?;
    let l = loaded.clone();
    let (plan, _) = plan_with(&mut move |k| evaluate(&l, k), &prior, serial, &opts.plan).map_err(
        |e| match e {
            PlanFailure::Template(diagnostics) => RunError::Template {
                sources: loaded.sources.clone(),
                diagnostics,
            },
            PlanFailure::Refused(errs) => RunError::Refused(errs),
        },
    )?;
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
    cx.store.put_outputs(&cx.deployment, &public, &secret)?;
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
    run.outputs = public.clone();
    cx.store.finish_run(&cx.deployment, serial_no, &run)?;
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
