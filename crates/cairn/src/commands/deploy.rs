//! `cairn plan`, `up` and `destroy`: the engine's whole-command run over the
//! target's provider and the SQLite state.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use cairn_engine::apply::{ApplyEvent, ApplyOptions, Observer, OnFailure, RunContext};
use cairn_engine::evaluate::evaluate;
use cairn_engine::plan::{Action, Plan, PlanFailure, PlanOptions, plan_with};
use cairn_engine::provider::Provider;
use cairn_engine::run::{RunError, RunOptions, RunOutcome, up as run_up};
use cairn_engine::store::{Owner, StateStore};
use cairn_state::SqliteStore;

use super::state::{key_source, state_path};
use crate::cli::{ApplyArgs, ChangeArgs, GlobalArgs, OnFailureArg, TemplateArgs};
use crate::output::emit;
use crate::report::{CliError, Status};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn owner() -> Owner {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    Owner {
        user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
        host,
        pid: std::process::id(),
    }
}

/// Progress lines on stderr, only on a terminal.
struct Progress;

impl Observer for Progress {
    fn on_event(&self, e: &ApplyEvent) {
        let line = match e {
            ApplyEvent::Started { address, action } => format!("  {} {address} ...", sign(*action)),
            ApplyEvent::Finished {
                address,
                action,
                elapsed_ms,
            } => {
                format!(
                    "  {} {address} done in {:.1}s",
                    sign(*action),
                    *elapsed_ms as f64 / 1000.0
                )
            }
            ApplyEvent::Retrying {
                address,
                attempt,
                delay_ms,
                error,
            } => {
                format!("  ~ {address}: retry {attempt} in {delay_ms} ms ({error})")
            }
            ApplyEvent::Failed { address, error, .. } => format!("  ! {address} failed: {error}"),
            ApplyEvent::RollingBack { address } => format!("  < {address} rolling back"),
        };
        eprintln!("{line}");
    }
}

fn sign(a: Action) -> &'static str {
    match a {
        Action::Create => "+",
        Action::Update => "~",
        Action::Replace => "-/+",
        Action::Delete => "-",
        Action::NoOp => " ",
    }
}

/// The plan as people read it, on stderr before a confirmation.
fn describe(plan: &Plan) -> String {
    let mut s = String::new();
    for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        s.push_str(&format!("  {} {} ({})", sign(c.action), c.address, c.kind));
        if !c.replace_because.is_empty() {
            s.push_str(&format!(
                "  replaced because {} changed",
                c.replace_because.join(", ")
            ));
        }
        s.push('\n');
    }
    let m = &plan.summary;
    s.push_str(&format!(
        "Plan: {} to create, {} to update, {} to replace, {} to delete.\n",
        m.create, m.update, m.replace, m.delete
    ));
    s
}

struct Target {
    provider: Arc<dyn Provider>,
    store: Arc<SqliteStore>,
    deployment: String,
}

async fn target(t: &TemplateArgs, global: &GlobalArgs) -> Result<Target, CliError> {
    let (dir, deployment) = cairn_template::loader::locate_deployment(&t.dir, t.env.as_deref())?;
    let provider: Arc<dyn Provider> = match deployment.target.as_str() {
        "local" => {
            let dirs = super::local::local_dirs()?;
            Arc::new(super::local::ensure_started(&dirs, super::local::dns_address()?, None).await?)
        }
        other => {
            return Err(CliError::Usage(format!(
                "the `{other}` target is not part of this build of cairn yet; `local` is"
            )));
        }
    };
    let path = state_path(global, &dir)?;
    let store = SqliteStore::open(&path, key_source()?)
        .map_err(|e| CliError::failure(format!("opening the state {}: {e}", path.display())))?;
    Ok(Target {
        provider,
        store: Arc::new(store),
        deployment: deployment.name,
    })
}

fn plan_options(change: &ChangeArgs, destroy: bool, allow_data_loss: bool) -> PlanOptions {
    PlanOptions {
        targets: change.targets.clone(),
        excludes: change.excludes.clone(),
        destroy,
        allow_data_loss,
    }
}

pub fn plan(
    t: &TemplateArgs,
    change: &ChangeArgs,
    detailed: bool,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let rt = tokio::runtime::Runtime::new().map_err(CliError::failure)?;
    let plan = rt.block_on(async {
        let tg = target(t, global).await?;
        let mut opts = super::load_options(t);
        opts.generated = tg
            .store
            .generated_secrets(&tg.deployment)
            .map_err(CliError::failure)?
            .into_iter()
            .collect();
        let loaded = cairn_template::load(&opts)?;
        let prior = tg
            .store
            .resources(&tg.deployment)
            .map_err(CliError::failure)?;
        let serial = tg.store.serial(&tg.deployment).map_err(CliError::failure)?;
        plan_with(
            &mut |k| evaluate(&loaded, k),
            &prior,
            serial,
            &plan_options(change, false, true),
        )
        .map_err(|e| match e {
            PlanFailure::Template(diagnostics) => CliError::Template {
                sources: loaded.sources.clone(),
                diagnostics,
            },
            PlanFailure::Refused(errs) => CliError::Usage(
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        })
    })?;
    let (plan, _) = plan;
    let changes = plan.has_changes();
    emit(
        serde_json::to_value(&plan).map_err(CliError::failure)?,
        global,
    )?;
    Ok(if detailed && changes {
        Status::Changes
    } else {
        Status::Success
    })
}

pub fn up(
    t: &TemplateArgs,
    change: &ChangeArgs,
    apply: &ApplyArgs,
    destroy: bool,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !apply.yes && !interactive {
        return Err(CliError::Usage(format!(
            "`{}` changes infrastructure and there is no terminal to confirm on; pass --yes",
            if destroy { "destroy" } else { "up" }
        )));
    }
    let rt = tokio::runtime::Runtime::new().map_err(CliError::failure)?;
    rt.block_on(async {
        let tg = target(t, global).await?;
        let mut run_id = [0u8; 8];
        getrandom::fill(&mut run_id).map_err(|e| CliError::failure(format!("no randomness for a run id: {e}")))?;
        let cx = RunContext {
            deployment: tg.deployment.clone(),
            run_id: run_id.iter().map(|b| format!("{b:02x}")).collect(),
            provider: tg.provider.clone(),
            store: tg.store.clone(),
            observer: if std::io::stderr().is_terminal() {
                Arc::new(Progress)
            } else {
                Arc::new(cairn_engine::apply::Silent)
            },
            clock: Arc::new(now),
            options: ApplyOptions {
                parallelism: apply.parallelism.max(1),
                on_failure: match apply.on_failure {
                    OnFailureArg::Rollback => OnFailure::Rollback,
                    OnFailureArg::Keep => OnFailure::Keep,
                },
                ..ApplyOptions::default()
            },
        };
        let opts = RunOptions {
            command: if destroy { "destroy" } else { "up" }.into(),
            plan: plan_options(change, destroy, apply.allow_data_loss),
            refresh: !change.no_refresh,
            owner: owner(),
            lease_ttl: Duration::from_secs(30),
            expect_serial: None,
        };
        let yes = apply.yes;
        let mut confirm = move |plan: &Plan| {
            eprint!("{}", describe(plan));
            if yes {
                return true;
            }
            eprint!("Apply these changes? Only `yes` goes on: ");
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer).is_ok() && answer.trim() == "yes"
        };
        let load = super::load_options(t);
        let (outcome, reconciled) = run_up(&cx, &load, &opts, &mut confirm).await.map_err(|e| match e {
            RunError::Template { sources, diagnostics } => CliError::Template { sources, diagnostics },
            RunError::Refused(errs) => CliError::Usage(errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
            other => CliError::failure(other),
        })?;
        for r in &reconciled {
            eprintln!("recovered {} ({:?}): {}", r.address, r.op, r.finding);
        }
        let (status, value) = match &outcome {
            RunOutcome::NoChanges { .. } => {
                eprintln!("No changes: the deployment matches the template.");
                (Status::Success, serde_json::json!({"result": "no_changes"}))
            }
            RunOutcome::Declined { .. } => (Status::Failure, serde_json::json!({"result": "declined"})),
            RunOutcome::Applied { serial, report, outputs, .. } => {
                let c = &report.counts;
                eprintln!(
                    "{}: {} created, {} updated, {} replaced, {} deleted, {} failed in {:.1}s{}",
                    if report.ok { "Done" } else { "Failed" },
                    c.created,
                    c.updated,
                    c.replaced,
                    c.deleted,
                    c.failed,
                    report.elapsed_ms as f64 / 1000.0,
                    if report.rolled_back { "; rolled back to the previous deployment" } else { "" }
                );
                (
                    if report.ok { Status::Success } else { Status::Failure },
                    serde_json::json!({
                        "result": if report.ok { "applied" } else if report.rolled_back { "rolled_back" } else { "failed" },
                        "run": serial,
                        "counts": report.counts,
                        "resources": report.resources,
                        "outputs": outputs,
                    }),
                )
            }
        };
        emit(value, global)?;
        Ok(status)
    })
}
