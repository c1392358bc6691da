//! Exit codes, errors and how they are shown. Exit codes live here only.

use std::io::IsTerminal;

use cairn_template::diagnostic::Rendered;
use cairn_template::{Diagnostics, Sources};

/// Process exit codes (the design's CLI section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failure,
    /// Usage or template error.
    Usage,
    /// `plan --detailed-exitcode` found changes.
    Changes,
    /// The exit code of a command run inside a server (`local exec`),
    /// passed through.
    Exited(u8),
}

impl Status {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Status::Success => 0,
            Status::Failure => 1,
            Status::Usage => 2,
            Status::Changes => 3,
            Status::Exited(code) => code,
        }
    }
}

#[derive(Debug)]
pub enum CliError {
    /// A template problem: rendered with source snippets, exit 2.
    Template {
        sources: Sources,
        diagnostics: Diagnostics,
    },
    /// Bad arguments or a bad query, exit 2.
    Usage(String),
    /// Anything else, exit 1.
    Failure(anyhow::Error),
}

impl CliError {
    /// A failure (exit 1) with this message.
    pub fn failure(e: impl std::fmt::Display) -> CliError {
        CliError::Failure(anyhow::anyhow!("{e}"))
    }

    /// The error as text inside another message (a heal incident's
    /// trail, a test's report), which goes on after it: without colour,
    /// a failure with its causes.
    pub fn into_message(self) -> String {
        match self {
            CliError::Usage(m) => m,
            CliError::Failure(e) => format!("{e:#}"),
            CliError::Template {
                sources,
                diagnostics,
            } => render_diagnostics(&sources, &diagnostics, false),
        }
    }

    pub fn status(&self) -> Status {
        match self {
            CliError::Template { .. } | CliError::Usage(_) => Status::Usage,
            CliError::Failure(_) => Status::Failure,
        }
    }
}

impl From<cairn_template::LoadError> for CliError {
    fn from(e: cairn_template::LoadError) -> Self {
        CliError::Template {
            sources: e.sources,
            diagnostics: e.diagnostics,
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Failure(e)
    }
}

pub fn use_color(no_color_flag: bool) -> bool {
    !no_color_flag
        && std::env::var_os(crate::cli::ENV_NO_COLOR).is_none_or(|v| v.is_empty())
        && std::io::stderr().is_terminal()
}

/// The full text of a template error, as printed on stderr.
pub fn render_diagnostics(sources: &Sources, diagnostics: &Diagnostics, color: bool) -> String {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    for d in diagnostics.iter() {
        let rendered = Rendered::new(d, sources);
        let _ = handler.render_report(&mut out, &rendered);
        out.push('\n');
    }
    let n = diagnostics.len();
    out.push_str(&format!(
        "error: {n} problem{} found\n",
        if n == 1 { "" } else { "s" }
    ));
    out
}

pub fn print_error(e: &CliError, color: bool) {
    match e {
        CliError::Template {
            sources,
            diagnostics,
        } => {
            eprint!("{}", render_diagnostics(sources, diagnostics, color));
        }
        CliError::Usage(msg) => eprintln!("error: {msg}"),
        CliError::Failure(err) => eprintln!("error: {err:#}"),
    }
}

pub fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
