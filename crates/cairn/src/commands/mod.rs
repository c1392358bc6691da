//! One module per command; each turns arguments into a library call and
//! hands the JSON result to [`crate::output`].

mod agents;
mod connect;
mod deploy;
mod eval;
mod graph;
mod heal;
mod hosts;
mod import;
mod init;
mod inventory;
mod jobs;
mod local;
mod migrate;
mod release;
mod state;
mod state_files;
mod template_options;
mod test;
mod validate;

use crate::cli::{Cli, Command};
use crate::report::{CliError, Status};

/// `cairn-agent`: the agent in this process.
pub fn run_agent(args: &crate::cli::AgentArgs) -> Result<Status, CliError> {
    agents::run_agent(args)
}

pub fn run(cli: &Cli) -> Result<Status, CliError> {
    match &cli.command {
        Command::Validate(t) => validate::run(t, &cli.global),
        Command::Eval { expr, template } => eval::run(expr, template, &cli.global),
        Command::Graph { template, format } => graph::run(template, *format, &cli.global),
        Command::Plan {
            template,
            change,
            detailed_exitcode,
            out,
        } => deploy::plan(
            template,
            change,
            *detailed_exitcode,
            out.as_deref(),
            &cli.global,
        ),
        Command::Apply {
            file,
            params,
            apply,
        } => deploy::apply_saved(file, params, apply, &cli.global),
        Command::Rollback {
            template,
            to,
            apply,
        } => deploy::rollback(template, *to, apply, &cli.global),
        Command::Drift {
            template,
            detailed_exitcode,
        } => deploy::drift(template, *detailed_exitcode, &cli.global),
        Command::Import {
            kind,
            id,
            name,
            write,
            template,
        } => import::run(template, kind, id, name, *write, &cli.global),
        Command::Up {
            template,
            change,
            apply,
        } => deploy::up(template, change, apply, false, &cli.global),
        Command::Destroy {
            template,
            apply,
            prune,
            refresh,
        } => {
            // Pulumi's choice, not Terraform's: a destroy uses nothing a
            // refresh learns (live values), and what is gone already is
            // found by its delete (not found = done), so reading every
            // resource first only doubles the calls.
            let change = crate::cli::ChangeArgs {
                targets: vec![],
                excludes: vec![],
                replace: vec![],
                no_refresh: !*refresh,
                prune: *prune,
            };
            deploy::up(template, &change, apply, true, &cli.global)
        }
        Command::Test(args) => test::run(args, &cli.global),
        Command::Local { action } => local::run(action, &cli.global),
        Command::List {
            template,
            all_deployments: false,
        } => state::list(template, &cli.global),
        Command::List {
            template,
            all_deployments: true,
        } => state::list_deployments(template, &cli.global),
        Command::Show {
            template,
            address,
            secret,
        } => state::show(template, address.as_deref(), *secret, &cli.global),
        Command::Output {
            name,
            secret,
            template,
        } => state::output(template, name.as_deref(), *secret, &cli.global),
        Command::History(t) => state::history(t, &cli.global),
        Command::Lock { action } => state::lock(action, &cli.global),
        Command::Inventory(args) => inventory::run(args, &cli.global),
        Command::Run(args) => jobs::run(args, &cli.global),
        Command::State {
            action: crate::cli::StateAction::Apply { hosts, file, vars },
        } => state_files::state_apply(hosts, file, vars, &cli.global),
        Command::State {
            action:
                crate::cli::StateAction::Migrate {
                    from,
                    to,
                    deployment,
                    all: _,
                    force,
                },
        } => migrate::migrate(from, to, deployment.as_deref(), *force, &cli.global),
        Command::Jobs { action } => jobs::jobs(action.as_ref(), &cli.global),
        Command::Connections { action } => connect::connections(action.as_ref(), &cli.global),
        Command::Artifact { action } => release::artifact(action, &cli.global),
        Command::Release { action, args } => release::release(action.as_ref(), args, &cli.global),
        Command::Releases { app, dir } => release::releases(app.as_deref(), dir, &cli.global),
        Command::Heal(args) => heal::heal(args, &cli.global),
        Command::Master(args) => agents::master(args, &cli.global),
        Command::Agent(args) => agents::agent(args, cli.global.verbose),
        Command::Keys { action, master } => agents::keys(action.as_ref(), master, &cli.global),
        Command::Events(args) => agents::events(args, &cli.global),
        Command::Init => init::init(),
        Command::Service(args) => init::service(args, &cli.global),
        Command::Util {
            tool:
                crate::cli::UtilTool::HttpEcho {
                    port,
                    text,
                    address,
                },
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)?;
            rt.block_on(cairn_local::echo::run(
                std::net::SocketAddr::new(*address, *port),
                text.clone(),
            ))
            .map_err(|e| {
                CliError::Failure(anyhow::anyhow!("http-echo on {address}:{port}: {e}"))
            })?;
            Ok(Status::Success)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "cairn", &mut std::io::stdout());
            Ok(Status::Success)
        }
    }
}

pub use template_options::{deployment_override, load_options};
