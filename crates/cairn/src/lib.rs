//! The `cairn` command line: clap commands, output formats, JMESPath
//! queries, diagnostics rendering. Every command is a thin call into a
//! library crate; this crate owns only how things are asked for and shown.
//!
//! Files import one way, as in every crate of the workspace (checked by
//! `scripts/module-graph crates/cairn/src`):
//!
//! ```text
//! lib        main, agent_main
//!   │
//! commands   a file or folder per command (deploy/, release, heal/,
//!   │          jobs, state_files, connect, ...); one that builds on
//!   │          another imports it (heal → release → deploy); what every
//!   │          command loads a template with is template_options
//!   ▼
//! output (formats, --query) · report (CliError, Status, diagnostics)
//!   ▼
//! cli        clap's arguments
//! ```

pub mod cli;
pub mod commands;
pub mod output;
pub mod report;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

pub use report::{CliError, Status};

/// The command line as `C` reads it; on `--help`, `--version` or a usage
/// error, what clap printed and the exit code to leave with.
fn parse<C, I, T>(args: I) -> Result<C, ExitCode>
where
    C: Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    C::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        ExitCode::from(if e.use_stderr() {
            Status::Usage.code()
        } else {
            0
        })
    })
}

/// `cairn-agent`'s main: the agent alone (see [`cli::AgentCli`]).
pub fn agent_main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match parse::<cli::AgentCli, _, _>(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    report::init_tracing(cli.verbose);
    match commands::run_agent(&cli.agent) {
        Ok(status) => ExitCode::from(status.code()),
        Err(e) => {
            let status = e.status();
            report::print_error(&e, report::use_color(false));
            ExitCode::from(status.code())
        }
    }
}

/// Parses arguments, runs the command, renders any error, maps the exit code.
pub fn main_with<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match parse::<cli::Cli, _, _>(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    report::init_tracing(cli.global.verbose);
    let color = report::use_color(cli.global.no_color);
    match commands::run(&cli) {
        Ok(status) => ExitCode::from(status.code()),
        Err(e) => {
            let status = e.status();
            report::print_error(&e, color);
            ExitCode::from(status.code())
        }
    }
}
