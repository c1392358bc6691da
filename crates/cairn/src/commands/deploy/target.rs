//! Where a command runs: the deployment's target (its provider, starting
//! the local cloud when needed), its state, and the engine's run context
//! and options made from the command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_engine::apply::{ApplyOptions, OnFailure, RunContext};
use cairn_engine::plan::PlanOptions;
use cairn_engine::provider::Provider;
use cairn_engine::run::{RunError, RunOptions};
use cairn_engine::store::Owner;
use cairn_state::{Location, Store};

use super::super::state::{open_location, state_location};
use super::view::Progress;
use crate::cli::{ApplyArgs, ChangeArgs, GlobalArgs, OnFailureArg, TemplateArgs};
use crate::report::CliError;

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn owner() -> Owner {
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

pub(crate) struct Target {
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

pub(crate) async fn target(t: &TemplateArgs, global: &GlobalArgs) -> Result<Target, CliError> {
    let (dir, mut deployment) =
        cairn_template::loader::locate_deployment(&t.dir, t.env.as_deref())?;
    if let Some(name) = super::super::template_options::deployment_override() {
        deployment.name = name;
    }
    let provider: Arc<dyn Provider> = match deployment.target.as_str() {
        "local" => {
            let dirs = super::super::local::local_dirs()?;
            Arc::new(
                super::super::local::ensure_started(
                    &dirs,
                    super::super::local::dns_address()?,
                    None,
                    super::super::local::isolation_from_env()?,
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

pub(super) fn plan_options(
    change: &ChangeArgs,
    destroy: bool,
    allow_data_loss: bool,
) -> PlanOptions {
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

pub(crate) fn context(tg: &Target, apply: Option<&ApplyArgs>) -> Result<RunContext, CliError> {
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

pub(super) fn run_options(
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

pub(crate) fn run_error(e: RunError) -> CliError {
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
