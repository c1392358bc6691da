//! The `cairn` command line: clap commands, output formats, JMESPath
//! queries, diagnostics rendering. Every command is a thin call into a
//! library crate; this crate owns only how things are asked for and shown.

pub mod cli;
pub mod commands;
pub mod output;
pub mod report;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

pub use report::{CliError, Status};

/// `cairn-agent`'s main: the agent alone (see [`cli::AgentCli`]).
pub fn agent_main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match cli::AgentCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                Status::Usage.code()
            } else {
                0
            });
        }
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
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                Status::Usage.code()
            } else {
                0
            });
        }
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
