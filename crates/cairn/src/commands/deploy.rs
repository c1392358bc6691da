//! `cairn plan`, `up` and `destroy`: the engine's whole-command run over the
//! target's provider and the SQLite state.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use cairn_engine::apply::{ApplyEvent, ApplyOptions, Observer, OnFailure, RunContext};
use cairn_engine::plan::{Action, Plan, PlanOptions};
use cairn_engine::provider::Provider;
use cairn_engine::run::{DriftStatus, RunError, RunOptions, RunOutcome, up as run_up};
use cairn_engine::store::Owner;
use cairn_state::{Location, Store};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::state::{open_location, state_location};
use crate::cli::Format;
use crate::cli::{ApplyArgs, ChangeArgs, GlobalArgs, OnFailureArg, TemplateArgs};
use crate::output::cell::duration;
use crate::output::{default_format, emit};
use crate::report::{CliError, Status};

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(super) fn owner() -> Owner {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    Owner {
        user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
        host,
        pid: std::process::id(),
        process: cairn_engine::holder::this_process(),
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
                    "  {} {address} done in {}",
                    sign(*action),
                    duration(*elapsed_ms)
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

/// The plan as people read it: each change with its property diff
/// (secrets as `(secret)`, unknowns as `(known after apply)`), then a count.
fn describe(plan: &Plan) -> String {
    let show = |v: &Option<serde_json::Value>| match v {
        None => "null".to_string(),
        // The markers read as words, not as string values.
        Some(serde_json::Value::String(t))
            if t == cairn_template::value::UNKNOWN_TEXT
                || t == cairn_template::value::SECRET_TEXT =>
        {
            t.clone()
        }
        Some(v) => without_nulls(v).to_string(),
    };
    let mut s = String::new();
    for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        s.push_str(&format!("  {} {} ({})", sign(c.action), c.address, c.kind));
        if c.replace_requested {
            s.push_str("  replaced on request (--replace)");
        } else if !c.replace_because.is_empty() {
            s.push_str(&format!(
                "  replaced because {} changed",
                c.replace_because.join(", ")
            ));
        }
        s.push('\n');
        for d in &c.diff {
            let line = match c.action {
                Action::Create => format!("{}: {}", d.path, show(&d.after)),
                _ => format!("{}: {} -> {}", d.path, show(&d.before), show(&d.after)),
            };
            let forces = if d.force_new {
                "  (forces replacement)"
            } else {
                ""
            };
            s.push_str(&format!("      {line}{forces}\n"));
        }
    }
    let m = &plan.summary;
    s.push_str(&format!(
        "Plan: {} to create, {} to update, {} to replace, {} to delete.\n",
        m.create, m.update, m.replace, m.delete
    ));
    s
}

/// A value with its objects' unset members left out: a firewall rule reads
/// `{"protocol":"tcp","port":80,"from":"0.0.0.0/0"}`, not every default.
fn without_nulls(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

pub(super) struct Target {
    pub provider: Arc<dyn Provider>,
    pub store: Arc<dyn Store>,
    pub deployment: String,
    /// The state (a file, or a PostgreSQL URL without its password), so
    /// that a saved plan can name it.
    pub state: PathBuf,
    /// `local`, `aws`.
    pub target: String,
    pub environment: String,
}

pub(super) async fn target(t: &TemplateArgs, global: &GlobalArgs) -> Result<Target, CliError> {
    let (dir, mut deployment) =
        cairn_template::loader::locate_deployment(&t.dir, t.env.as_deref())?;
    if let Some(name) = super::deployment_override() {
        deployment.name = name;
    }
    let provider: Arc<dyn Provider> = match deployment.target.as_str() {
        "local" => {
            let dirs = super::local::local_dirs()?;
            Arc::new(
                super::local::ensure_started(
                    &dirs,
                    super::local::dns_address()?,
                    None,
                    super::local::isolation_from_env()?,
                )
                .await?,
            )
        }
        #[cfg(feature = "aws")]
        "aws" => {
            let settings = cairn_aws::AwsSettings::from_environment(
                deployment.region.as_deref(),
                deployment.settings.as_ref(),
            )
            .map_err(|e| CliError::Usage(e.to_string()))?;
            Arc::new(
                cairn_aws::AwsProvider::connect(&settings)
                    .await
                    .map_err(|e| CliError::Usage(e.to_string()))?,
            )
        }
        #[cfg(not(feature = "aws"))]
        "aws" => {
            return Err(CliError::Usage(
                "this build of cairn has no aws target (built without the `aws` feature)".into(),
            ));
        }
        other => {
            return Err(CliError::Usage(format!(
                "the `{other}` target is not part of this build of cairn yet; `local` is"
            )));
        }
    };
    let location = state_location(global, &dir)?;
    let store: Arc<dyn Store> = Arc::from(open_location(&location)?);
    let state = match &location {
        Location::Sqlite(path) => std::path::absolute(path).unwrap_or(path.clone()),
        Location::Postgres(url) => PathBuf::from(url.to_string()),
    };
    Ok(Target {
        provider,
        store,
        deployment: deployment.name,
        state,
        target: deployment.target,
        environment: deployment.env,
    })
}

fn plan_options(change: &ChangeArgs, destroy: bool, allow_data_loss: bool) -> PlanOptions {
    PlanOptions {
        targets: change.targets.clone(),
        excludes: change.excludes.clone(),
        destroy,
        allow_data_loss,
        replace: change.replace.clone(),
    }
}

fn run_id() -> Result<String, CliError> {
    let mut id = [0u8; 8];
    getrandom::fill(&mut id)
        .map_err(|e| CliError::failure(format!("no randomness for a run id: {e}")))?;
    Ok(hex::encode(id))
}

pub(super) fn context(tg: &Target, apply: Option<&ApplyArgs>) -> Result<RunContext, CliError> {
    Ok(RunContext {
        deployment: tg.deployment.clone(),
        run_id: run_id()?,
        provider: tg.provider.clone(),
        store: tg.store.clone(),
        observer: if apply.is_some() && std::io::stderr().is_terminal() {
            Arc::new(Progress)
        } else {
            Arc::new(cairn_engine::apply::Silent)
        },
        clock: Arc::new(now),
        fence: Default::default(),
        options: match apply {
            Some(a) => ApplyOptions {
                parallelism: a.parallelism.max(1),
                on_failure: match a.on_failure {
                    OnFailureArg::Rollback => OnFailure::Rollback,
                    OnFailureArg::Keep => OnFailure::Keep,
                },
                ..ApplyOptions::default()
            },
            None => ApplyOptions::default(),
        },
    })
}

fn run_options(
    command: &str,
    change: &ChangeArgs,
    destroy: bool,
    apply: Option<&ApplyArgs>,
) -> RunOptions {
    RunOptions {
        command: command.into(),
        plan: plan_options(change, destroy, apply.is_none_or(|a| a.allow_data_loss)),
        refresh: !change.no_refresh,
        owner: owner(),
        lease_ttl: Duration::from_secs(apply.map_or(30, |a| a.lease_ttl.max(1))),
        expect_serial: None,
        expect_changes: None,
        prune: change.prune,
        holder_gone: cairn_engine::holder::holder_is_gone,
    }
}

pub(super) fn run_error(e: RunError) -> CliError {
    match e {
        RunError::Template {
            sources,
            diagnostics,
        } => CliError::Template {
            sources,
            diagnostics,
        },
        RunError::Refused(errs) => CliError::Usage(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        other => CliError::failure(other),
    }
}

/// A plan saved by `plan --out`: the inputs to plan again with, and the
/// changes that planning again must reproduce.
#[derive(Debug, Serialize, Deserialize)]
struct SavedPlan {
    /// Format version.
    cairn_plan: u32,
    dir: PathBuf,
    env: Option<String>,
    /// `-p` values of parameters that are not secret.
    params: Vec<String>,
    param_files: Vec<PathBuf>,
    state: PathBuf,
    targets: Vec<String>,
    excludes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    replace: Vec<String>,
    refresh: bool,
    prune: bool,
    plan: Plan,
}

const SAVED_PLAN_FORMAT: u32 = 1;

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

pub fn plan(
    t: &TemplateArgs,
    change: &ChangeArgs,
    detailed: bool,
    out: Option<&std::path::Path>,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let rt = tokio::runtime::Runtime::new().map_err(CliError::failure)?;
    let load = super::load_options(t);
    let (plan, tg) = rt.block_on(async {
        let tg = target(t, global).await?;
        let cx = context(&tg, None)?;
        let plan = cairn_engine::run::plan(&cx, &load, &run_options("plan", change, false, None))
            .await
            .map_err(run_error)?;
        Ok::<_, CliError>((plan, tg))
    })?;
    if let Some(out) = out {
        // Which `-p` values are secret is the template's to say.
        let mut with_generated = load.clone();
        with_generated.generated = tg
            .store
            .generated_secrets(&tg.deployment)
            .map_err(CliError::failure)?
            .into_iter()
            .collect();
        let loaded = cairn_template::load(&with_generated)?;
        let public = |arg: &String| {
            let name = arg.split_once('=').map_or(arg.as_str(), |(n, _)| n);
            loaded
                .params
                .values
                .get(name)
                .is_some_and(|v| !v.is_sensitive())
        };
        let saved = SavedPlan {
            cairn_plan: SAVED_PLAN_FORMAT,
            dir: absolute(&t.dir),
            env: t.env.clone(),
            params: t.params.iter().filter(|a| public(a)).cloned().collect(),
            param_files: t.param_files.iter().map(|p| absolute(p)).collect(),
            state: tg.state.clone(),
            targets: change.targets.clone(),
            excludes: change.excludes.clone(),
            replace: change.replace.clone(),
            refresh: !change.no_refresh,
            prune: change.prune,
            plan: plan.clone(),
        };
        let text = serde_json::to_string_pretty(&saved).map_err(CliError::failure)?;
        std::fs::write(out, text).map_err(|e| {
            CliError::failure(format!("writing the plan to {}: {e}", out.display()))
        })?;
        eprintln!(
            "Saved the plan to {}; `cairn apply {}` applies exactly this.",
            out.display(),
            out.display()
        );
    }
    let changes = plan.has_changes();
    // On a terminal (or with -o table) the plan reads like a diff; data
    // formats and --query get the plan itself.
    if global.query.is_none() && default_format(global.output) == Format::Table {
        print!("{}", describe(&plan));
    } else {
        emit(
            serde_json::to_value(&plan).map_err(CliError::failure)?,
            global,
        )?;
    }
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
    let command = if destroy { "destroy" } else { "up" };
    let opts = run_options(command, change, destroy, Some(apply));
    execute(t, global, super::load_options(t), opts, apply)
}

/// `cairn apply FILE`.
pub fn apply_saved(
    file: &std::path::Path,
    params: &[String],
    apply: &ApplyArgs,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Usage(format!("cannot read the plan {}: {e}", file.display())))?;
    let saved: SavedPlan = serde_json::from_str(&text).map_err(|e| {
        CliError::Usage(format!(
            "{} is not a plan saved by `cairn plan --out`: {e}",
            file.display()
        ))
    })?;
    if saved.cairn_plan != SAVED_PLAN_FORMAT {
        return Err(CliError::Usage(format!(
            "{} is a plan of format {}; this cairn reads format {SAVED_PLAN_FORMAT}",
            file.display(),
            saved.cairn_plan
        )));
    }
    let t = TemplateArgs {
        dir: saved.dir.clone(),
        env: saved.env.clone(),
        params: saved.params.iter().chain(params).cloned().collect(),
        param_files: saved.param_files.clone(),
    };
    let mut global_for_plan = global.clone();
    if global_for_plan.state.is_none() {
        global_for_plan.state = Some(saved.state.display().to_string());
    }
    let change = ChangeArgs {
        targets: saved.targets.clone(),
        excludes: saved.excludes.clone(),
        replace: saved.replace.clone(),
        no_refresh: !saved.refresh,
        prune: saved.prune,
    };
    let mut opts = run_options("apply", &change, false, Some(apply));
    opts.expect_serial = Some(saved.plan.state_serial);
    opts.expect_changes = Some(saved.plan.changes.clone());
    // The plan was reviewed when it was made: applying it is the confirmation.
    let apply = ApplyArgs {
        yes: true,
        ..apply.clone()
    };
    execute(&t, &global_for_plan, super::load_options(&t), opts, &apply)
}

/// `cairn rollback --to N`: the template document and parameter values run
/// N used, planned and applied like `up`.
pub fn rollback(
    t: &TemplateArgs,
    to: i64,
    apply: &ApplyArgs,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let o = super::state::open(t, global)?;
    let run = o
        .store
        .run(&o.deployment, to)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    if run.outcome != "succeeded" || run.command == "destroy" || run.command == "import" {
        return Err(CliError::Usage(format!(
            "run {to} of {} was a `{}` that {}; roll back to a successful up, apply or rollback (see `cairn history`)",
            o.deployment, run.command, run.outcome
        )));
    }
    let Some(text) = run.template_files.values().next().cloned() else {
        return Err(CliError::Usage(format!(
            "run {to} recorded no template to return to"
        )));
    };
    // Run N's parameter values rank above the environment file's (which may
    // have changed since); secret ones were never recorded and come as they
    // do for `up` (generated ones from the state, others from -p or CAIRN_PARAM_*).
    let mut values = serde_json::Map::new();
    if let serde_json::Value::Object(m) = &run.parameters {
        for (k, v) in m {
            if v.as_str() != Some(cairn_template::value::SECRET_TEXT) {
                values.insert(k.clone(), serde_json::json!({ "value": v }));
            }
        }
    }
    let (dir, _) = cairn_template::loader::locate_deployment(&t.dir, t.env.as_deref())?;
    let params_file = dir
        .join(".cairn")
        .join(format!("rollback-{}-{to}.params.json", std::process::id()));
    if let Some(parent) = params_file.parent() {
        std::fs::create_dir_all(parent).map_err(CliError::failure)?;
    }
    std::fs::write(
        &params_file,
        serde_json::to_string_pretty(&serde_json::json!({ "parameters": values }))
            .map_err(CliError::failure)?,
    )
    .map_err(|e| CliError::failure(format!("writing {}: {e}", params_file.display())))?;
    let mut load = super::load_options(t);
    load.template_text = Some(text);
    load.param_files.insert(0, params_file.clone());
    let change = ChangeArgs {
        targets: vec![],
        excludes: vec![],
        replace: vec![],
        no_refresh: false,
        prune: false,
    };
    let opts = run_options("rollback", &change, false, Some(apply));
    let result = execute(t, global, load, opts, apply);
    let _ = std::fs::remove_file(&params_file);
    result
}

/// `cairn drift`.
pub fn drift(t: &TemplateArgs, detailed: bool, global: &GlobalArgs) -> Result<Status, CliError> {
    let rt = tokio::runtime::Runtime::new().map_err(CliError::failure)?;
    let found = rt.block_on(async {
        let tg = target(t, global).await?;
        let cx = context(&tg, None)?;
        cairn_engine::run::drift(&cx).await.map_err(run_error)
    })?;
    if found.is_empty() {
        eprintln!("No drift: every resource is as cairn last applied it.");
    } else {
        for d in &found {
            match d.status {
                DriftStatus::Deleted => eprintln!("  - {} ({}) was deleted", d.address, d.id),
                DriftStatus::Changed => {
                    for p in &d.properties {
                        eprintln!(
                            "  ~ {}.{}: {} -> {}",
                            d.address, p.path, p.recorded, p.actual
                        );
                    }
                }
            }
        }
        eprintln!(
            "{} resource(s) drifted; `cairn up` puts them back as the template says.",
            found.len()
        );
    }
    let drifted = !found.is_empty();
    emit(
        serde_json::to_value(&found).map_err(CliError::failure)?,
        global,
    )?;
    Ok(if detailed && drifted {
        Status::Changes
    } else {
        Status::Success
    })
}

/// Runs a deployment command through the engine and reports it.
fn execute(
    t: &TemplateArgs,
    global: &GlobalArgs,
    load: cairn_template::LoadOptions,
    opts: RunOptions,
    apply: &ApplyArgs,
) -> Result<Status, CliError> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !apply.yes && !interactive {
        return Err(CliError::Usage(format!(
            "`{}` changes infrastructure and there is no terminal to confirm on; pass --yes",
            opts.command
        )));
    }
    let rt = tokio::runtime::Runtime::new().map_err(CliError::failure)?;
    rt.block_on(async {
        let tg = target(t, global).await?;
        let cx = context(&tg, Some(apply))?;
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
        let (outcome, reconciled) = run_up(&cx, &load, &opts, &mut confirm)
            .await
            .map_err(run_error)?;
        for r in &reconciled {
            eprintln!("recovered {} ({:?}): {}", r.address, r.op, r.finding);
        }
        let (status, value) = match &outcome {
            RunOutcome::NoChanges { .. } => {
                eprintln!("No changes: the deployment matches the template.");
                (Status::Success, serde_json::json!({"result": "no_changes"}))
            }
            RunOutcome::Declined { .. } => {
                (Status::Failure, serde_json::json!({"result": "declined"}))
            }
            RunOutcome::Applied {
                serial,
                report,
                outputs,
                ..
            } => {
                let c = &report.counts;
                eprintln!(
                    "{}: {} created, {} updated, {} replaced, {} deleted, {} failed in {}{}",
                    if report.ok { "Done" } else { "Failed" },
                    c.created,
                    c.updated,
                    c.replaced,
                    c.deleted,
                    c.failed,
                    duration(report.elapsed_ms),
                    if report.rolled_back {
                        "; rolled back to the previous deployment"
                    } else {
                        ""
                    }
                );
                // Why, on stderr too: `-o none` (scripts, CI) shows no table.
                for r in &report.resources {
                    if let Some(e) = &r.error {
                        eprintln!("  {} ({}): {e}", r.address, r.kind);
                    }
                }
                (
                    if report.ok {
                        Status::Success
                    } else {
                        Status::Failure
                    },
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
