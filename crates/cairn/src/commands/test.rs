//! `cairn test DIR`: deploy the template to a fresh, uniquely named
//! deployment on the local target (its state in a temporary directory, so
//! the user's own deployments and state are never touched), run its
//! `tests:` (cairn-suite), report, and destroy it: after passing tests,
//! after failing ones, after an `up` that failed half-way, and after
//! SIGINT/SIGTERM (exit 130/143).
//!
//! Tests are evaluated like outputs, by the engine (`Desired::tests`), once
//! `up` has finished and every attribute they name is in the state: a
//! test's `{{ lb.address }}` is then the address the load balancer got.
//! Evaluating them in the engine rather than here keeps one evaluator, one
//! scope and one set of diagnostics for every value in a template, and lets
//! `cairn validate` check their references before anything is deployed.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cairn_engine::apply::RunContext;
use cairn_engine::evaluate::evaluate;
use cairn_engine::plan::{PlanOptions, StateAttributes};
use cairn_engine::provider::Provider;
use cairn_engine::run::{RunOptions, RunOutcome, load_with_secrets, up as run_up};
use cairn_engine::validate::validate;
use cairn_orch::Inventory;
use cairn_state::{Location, Store};
use cairn_suite::{Planned, Selection, TestResult, TestStatus};
use cairn_template::LoadOptions;
use cairn_template::loader::{Deployment, locate_deployment};
use serde_json::json;

use super::connect::Connector;
use super::deploy::{Target, context, owner};
use super::state::open_location;
use crate::cli::{
    ApplyArgs, ENV_DEPLOYMENT, Format, GlobalArgs, HostArgs, MasterDirArg, OnFailureArg, TestArgs,
    Via,
};
use crate::output::cell::duration;
use crate::output::{default_format, emit};
use crate::report::{CliError, Status};

/// How the run went before the destroy.
enum Ran {
    Tests(Vec<TestResult>),
    /// `up` failed (what it said); no test ran.
    UpFailed(String),
    /// A signal: its name and the exit code it maps to.
    Interrupted(&'static str, u8),
}

pub fn run(args: &TestArgs, global: &GlobalArgs) -> Result<Status, CliError> {
    let t = &args.template;
    let (_, located) = locate_deployment(&t.dir, t.env.as_deref())?;
    if located.target != "local" {
        return Err(CliError::Usage(format!(
            "`cairn test` deploys to the local target; environment `{}` deploys to {} \
             (use an environment on `target: local`, or none for dev)",
            located.env, located.target
        )));
    }
    let name = format!("{}-test-{}", located.name, suffix()?);
    let mut load = super::template_options::load_options(t);
    load.deployment = Some(name.clone());
    // A bad `tests:` entry, or a test naming what does not exist, is a
    // template error (exit 2) before anything is made.
    let loaded = cairn_template::load(&load)?;
    validate(&loaded).map_err(|diagnostics| CliError::Template {
        sources: loaded.sources.clone(),
        diagnostics,
    })?;
    if loaded.template.tests.is_empty() {
        return Err(CliError::Usage(format!(
            "{} has no `tests:` to run (see `cairn test --help`)",
            t.dir.display()
        )));
    }
    let work = std::env::temp_dir().join(format!("cairn-{name}"));
    std::fs::create_dir_all(&work)
        .map_err(|e| CliError::failure(format!("creating {}: {e}", work.display())))?;
    let deployment = Deployment {
        name: name.clone(),
        ..located
    };
    let rt = tokio::runtime::Runtime::new().map_err(CliError::failure)?;
    rt.block_on(session(args, global, &load, &deployment, &work))
}

/// A short random suffix: two runs of one template at once get two deployments.
fn suffix() -> Result<String, CliError> {
    let mut b = [0u8; 3];
    getrandom::fill(&mut b).map_err(|e| CliError::failure(format!("no randomness: {e}")))?;
    Ok(hex::encode(b))
}

fn progress(line: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("{line}");
    }
}

async fn session(
    args: &TestArgs,
    global: &GlobalArgs,
    load: &LoadOptions,
    deployment: &Deployment,
    work: &Path,
) -> Result<Status, CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Caught from here on: a Ctrl-C must not kill the run before it has
    // destroyed what it made.
    let mut sigint = signal(SignalKind::interrupt()).map_err(CliError::failure)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(CliError::failure)?;
    let started = Instant::now();
    let dirs = super::local::local_dirs()?;
    let client = super::local::ensure_started(
        &dirs,
        super::local::dns_address()?,
        None,
        super::local::isolation_from_env()?,
    )
    .await?;
    let dns = client.published.dns;
    let provider: Arc<dyn Provider> = Arc::new(client);
    let state = work.join("state.db");
    let store: Arc<dyn Store> = Arc::from(open_location(&Location::Sqlite(state.clone()))?);
    let tg = Target {
        provider,
        store,
        deployment: deployment.name.clone(),
        state: state.clone(),
        target: deployment.target.clone(),
        environment: deployment.env.clone(),
    };
    let apply = ApplyArgs {
        yes: true,
        parallelism: args.parallelism.max(1),
        // Kept for a look: what `up` made stays when it fails.
        on_failure: if args.keep_on_failure {
            OnFailureArg::Keep
        } else {
            OnFailureArg::Rollback
        },
        allow_data_loss: true,
        lease_ttl: 30,
    };
    let cx = context(&tg, Some(&apply))?;
    progress(&format!("deploying {} ...", deployment.name));
    let ran = tokio::select! {
        ran = exercise(&cx, load, deployment, dns, &dirs) => ran,
        _ = sigint.recv() => Ran::Interrupted("SIGINT", 130),
        _ = sigterm.recv() => Ran::Interrupted("SIGTERM", 143),
    };
    let tests = &load_tests(load);
    let (results, result, up_error) = match &ran {
        Ran::Tests(r) => {
            let failed = r.iter().any(|r| r.status == TestStatus::Failed);
            (r.clone(), if failed { "failed" } else { "passed" }, None)
        }
        Ran::UpFailed(e) => (
            not_run(
                tests,
                TestStatus::Failed,
                &format!("not run: `up` failed: {e}"),
            ),
            "up_failed",
            Some(e.clone()),
        ),
        Ran::Interrupted(sig, _) => (
            not_run(
                tests,
                TestStatus::Skipped,
                &format!("not run: interrupted by {sig}"),
            ),
            "interrupted",
            None,
        ),
    };
    if let Some(e) = &up_error {
        eprintln!("error: deploying {} failed: {e}", deployment.name);
    }
    if let Ran::Interrupted(sig, _) = &ran {
        eprintln!("{sig}: destroying {} before exiting", deployment.name);
    }
    for r in &results {
        match r.status {
            TestStatus::Failed if up_error.is_none() => eprintln!(
                "FAILED {} ({}): {}",
                r.name,
                r.location,
                r.message.as_deref().unwrap_or_default()
            ),
            TestStatus::Skipped if matches!(ran, Ran::Tests(_)) => eprintln!(
                "SKIPPED {} ({}): {}",
                r.name,
                r.location,
                r.message.as_deref().unwrap_or_default()
            ),
            _ => {}
        }
    }
    let failed = result != "passed";
    let keep = args.keep_on_failure && failed && !matches!(ran, Ran::Interrupted(..));
    let destroyed = if keep {
        eprintln!(
            "kept {name} for a look (--keep-on-failure); its state is {state}. Destroy it with:\n  \
             {ENV_DEPLOYMENT}={name} cairn destroy {dir}{env} --state {state} --yes --allow-data-loss",
            name = deployment.name,
            state = state.display(),
            dir = args.template.dir.display(),
            env = args
                .template
                .env
                .as_deref()
                .map(|e| format!(" -e {e}"))
                .unwrap_or_default(),
        );
        Err("kept (--keep-on-failure)".to_string())
    } else {
        progress(&format!("destroying {} ...", deployment.name));
        // A second signal while destroying is ignored (the handlers are
        // still ours): stopping half-way would leave what this run made.
        destroy(&tg, &apply, load).await
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if let Err(e) = &destroyed
        && !keep
    {
        eprintln!(
            "error: destroying {} failed: {e}\n  its state is kept in {}",
            deployment.name,
            state.display()
        );
    } else if destroyed.is_ok() {
        let _ = std::fs::remove_dir_all(work);
    }
    let tally = cairn_suite::tally(&results);
    eprintln!(
        "{} passed, {} failed, {} skipped in {}; {} {}",
        tally.passed,
        tally.failed,
        tally.skipped,
        duration(elapsed_ms),
        deployment.name,
        if destroyed.is_ok() {
            "destroyed"
        } else if keep {
            "kept"
        } else {
            "NOT destroyed"
        }
    );
    if let Some(path) = &args.junit {
        let suite = args
            .template
            .dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| deployment.name.clone());
        let xml = cairn_suite::junit::render(&suite, &results, elapsed_ms as f64 / 1000.0);
        std::fs::write(path, xml)
            .map_err(|e| CliError::failure(format!("writing {}: {e}", path.display())))?;
    }
    let value = json!({
        "deployment": deployment.name,
        "environment": deployment.env,
        "result": result,
        "passed": tally.passed,
        "failed": tally.failed,
        "skipped": tally.skipped,
        "duration_ms": elapsed_ms,
        "destroyed": destroyed.is_ok(),
        "error": up_error,
        "tests": serde_json::to_value(&results).map_err(CliError::failure)?,
    });
    // A table shows the tests, one row each; data formats and --query get
    // the whole result.
    if default_format(global.output) == Format::Table && global.query.is_none() {
        emit(value["tests"].clone(), global)?;
    } else {
        emit(value, global)?;
    }
    Ok(match ran {
        Ran::Interrupted(_, code) => Status::Exited(code),
        _ if failed || (destroyed.is_err() && !keep) => Status::Failure,
        _ => Status::Success,
    })
}

/// The tests' names, kinds and places, for reporting tests that never ran.
fn load_tests(load: &LoadOptions) -> Vec<(String, String, String)> {
    let Ok(loaded) = cairn_template::load(load) else {
        return vec![];
    };
    loaded
        .template
        .tests
        .values()
        .map(|t| {
            (
                t.name.text.clone(),
                t.kind.text.clone(),
                loaded.sources.location(t.name.span),
            )
        })
        .collect()
}

fn not_run(tests: &[(String, String, String)], status: TestStatus, why: &str) -> Vec<TestResult> {
    tests
        .iter()
        .map(|(name, kind, location)| TestResult {
            name: name.clone(),
            kind: kind.clone(),
            location: location.clone(),
            status,
            attempts: 0,
            duration_ms: 0,
            message: Some(why.to_string()),
        })
        .collect()
}

fn run_options(command: &str, destroy: bool) -> RunOptions {
    RunOptions {
        command: command.into(),
        plan: PlanOptions {
            targets: vec![],
            excludes: vec![],
            destroy,
            allow_data_loss: true,
            replace: vec![],
        },
        // A fresh deployment has nothing to refresh; a destroy reads what
        // is left, in case `up` stopped half-way.
        refresh: destroy,
        owner: owner(),
        lease_ttl: std::time::Duration::from_secs(30),
        expect_serial: None,
        expect_changes: None,
        prune: false,
        holder_gone: cairn_engine::holder::holder_is_gone,
    }
}

/// `up`, then every test against what it made.
async fn exercise(
    cx: &RunContext,
    load: &LoadOptions,
    deployment: &Deployment,
    dns: std::net::SocketAddr,
    dirs: &cairn_local::cloud::LocalDirs,
) -> Ran {
    match run_up(cx, load, &run_options("up", false), &mut |_| true).await {
        Ok((RunOutcome::Applied { report, .. }, _)) if !report.ok => {
            let failures: Vec<String> = report
                .resources
                .iter()
                .filter_map(|r| Some(format!("{}: {}", r.address, r.error.as_deref()?)))
                .collect();
            return Ran::UpFailed(if failures.is_empty() {
                "the apply failed".into()
            } else {
                failures.join("; ")
            });
        }
        Ok(_) => {}
        Err(e) => return Ran::UpFailed(e.to_string()),
    }
    let planned = match planned_tests(cx, load) {
        Ok(p) => p,
        Err(e) => return Ran::UpFailed(e),
    };
    progress(&format!("running {} test(s) ...", planned.len()));
    let hosts = match DeploymentHosts::new(cx, deployment, dirs) {
        Ok(h) => h,
        Err(e) => return Ran::UpFailed(e),
    };
    let context = cairn_suite::Context {
        dns_server: Some(dns),
        hosts: Arc::new(hosts),
    };
    Ran::Tests(cairn_suite::run_all(planned, Arc::new(context)).await)
}

/// Each test evaluated against the state `up` left: every attribute known.
fn planned_tests(cx: &RunContext, load: &LoadOptions) -> Result<Vec<Planned>, String> {
    let records = cx
        .store
        .resources(&cx.deployment)
        .map_err(|e| e.to_string())?;
    let loaded = load_with_secrets(cx, load).map_err(|e| e.to_string())?;
    let desired = evaluate(&loaded, &StateAttributes::new(&records))
        .map_err(|d| crate::report::render_diagnostics(&loaded.sources, &d, false))?;
    Ok(loaded
        .template
        .tests
        .iter()
        .map(|(name, decl)| {
            let spec = match desired.tests.get(name).map(|v| v.to_json_revealed()) {
                Some(Some(body)) => cairn_suite::spec::parse(name, &body).map_err(|e| e.0),
                _ => Err("it refers to values the deployment did not produce \
                          (still unknown after `up`)"
                    .to_string()),
            };
            Planned {
                name: name.clone(),
                kind: decl.kind.text.clone(),
                location: loaded.sources.location(decl.name.span),
                spec,
            }
        })
        .collect())
}

async fn destroy(tg: &Target, apply: &ApplyArgs, load: &LoadOptions) -> Result<(), String> {
    // A run of its own (a new run id): the `up` above may have been
    // dropped half-way, and its journal is reconciled first.
    let cx = context(tg, Some(apply)).map_err(CliError::into_message)?;
    match run_up(&cx, load, &run_options("destroy", true), &mut |_| true).await {
        Ok((RunOutcome::Applied { report, .. }, _)) if !report.ok => Err(report
            .resources
            .iter()
            .filter_map(|r| Some(format!("{}: {}", r.address, r.error.as_deref()?)))
            .collect::<Vec<_>>()
            .join("; ")),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// The deployment's servers for `command` tests, reached as `cairn run`
/// reaches them.
struct DeploymentHosts {
    inventory: Inventory,
    connector: Connector,
    /// Why commands cannot run on this cloud's servers, if they cannot.
    unavailable: Option<String>,
}

impl DeploymentHosts {
    fn new(
        cx: &RunContext,
        deployment: &Deployment,
        dirs: &cairn_local::cloud::LocalDirs,
    ) -> Result<DeploymentHosts, String> {
        let records = cx
            .store
            .resources(&cx.deployment)
            .map_err(|e| e.to_string())?;
        let inventory = cairn_orch::inventory::deployment::from_records(
            &deployment.name,
            &deployment.env,
            &records,
        );
        let isolation =
            cairn_local::cloud::read_isolation(&dirs.state()).map_err(|e| e.to_string())?;
        let unavailable = (isolation.as_deref() != Some("runc")).then(|| {
            "the local cloud runs its servers as processes (`process` isolation): there is no \
             host to run a command on; run the cloud with `cairn local start --isolation runc` \
             (or CAIRN_LOCAL_ISOLATION=runc) to test commands"
                .to_string()
        });
        let args = HostArgs {
            target: String::new(),
            inventory: vec![],
            dir: PathBuf::from("."),
            env: Some(deployment.env.clone()),
            known_hosts: None,
            user: None,
            private_key: None,
            r#become: false,
            become_user: None,
            forks: 256,
            max_fail: None,
            connect_timeout: 10,
            timeout: 300,
            check: false,
            keep_connections: None,
            via: Some(Via::Ssh),
            master: MasterDirArg {
                master_dir: None,
                local: false,
            },
        };
        let connector = Connector::new(&args, Some(deployment)).map_err(CliError::into_message)?;
        Ok(DeploymentHosts {
            inventory,
            connector,
            unavailable,
        })
    }
}

impl cairn_suite::Hosts for DeploymentHosts {
    fn select(&self, expression: &str) -> Selection {
        if let Some(why) = &self.unavailable {
            return Selection::Unavailable(why.clone());
        }
        let target = match cairn_orch::Target::parse(expression) {
            Ok(t) => t,
            Err(e) => return Selection::Error(format!("`{expression}`: {e}")),
        };
        Selection::Hosts(
            self.inventory
                .select(&target)
                .into_iter()
                .map(|h| self.connector.remote(&self.inventory.connection(h)))
                .collect(),
        )
    }
}
