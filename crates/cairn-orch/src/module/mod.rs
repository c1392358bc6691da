//! Modules: the units of change on a host (`cmd`, `file`, `pkg`,
//! `service`, `user`, `group`, `git`, `archive`, `http`, `facts`).
//!
//! Each module is a plan-then-apply pair: it reads the host through
//! [`Remote`] (one script), decides from what it read what would change (a
//! pure function a test can call with a made-up reading), and, unless this
//! is a dry run (`--check`), makes the change (one more script). What it
//! reports is an [`Outcome`]: changed or not, a structured diff, the output
//! of what it ran. Writes are atomic (a temporary file beside the target,
//! then a rename), so a host that drops mid-write keeps the old file.
//!
//! The same modules run over SSH, through the agent and against a local
//! shell: they know a host only as [`Remote`].
//!
//! A module whose read is a plain probe says so ([`Module::probe`]); a
//! state apply then runs the probes of a host's states together, in one
//! exec, and hands each module its output ([`Module::run_probed`]): an
//! exec costs a host more than the few processes a probe starts.
//!
//! [`load`] checks a module's arguments before any host is touched and
//! takes Ansible's names (`file`, `pkg`, `path=`) as well as Salt's
//! `module.function` ones (`file.managed`, `pkg.installed`, `name=`);
//! [`parse_kv`] reads the CLI's `key=value` words, and [`raw`] makes a
//! `cmd` of a raw command line.

use async_trait::async_trait;
use miette::Diagnostic;
use serde::Serialize;
use serde_json::{Map, Value as J};
use thiserror::Error;

use crate::remote::{Output, Remote, TransportError};

/// How a module is run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunContext {
    /// A dry run: read and plan, change nothing, report what would change.
    pub check: bool,
    /// Run the module's scripts as this user (`sudo -n -u`).
    pub become_user: Option<String>,
    /// A state this one `watch`es changed: a `service` that should run is
    /// restarted, a `cmd` runs even if its `creates`/`unless` says it need
    /// not (Salt's `mod_watch`). Other modules ignore it.
    pub watch_fired: bool,
}

/// What one module did (or, in a dry run, would do) on one host.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outcome {
    pub changed: bool,
    /// One line for people: `wrote /etc/motd (12 bytes)`, `already running`.
    pub summary: String,
    pub diff: Vec<Diff>,
    /// What the command a module ran printed (`cmd`, raw commands).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rc: Option<i32>,
    /// Structured results (`facts`' grains, `http`'s status).
    #[serde(skip_serializing_if = "J::is_null")]
    pub data: J,
}

/// One changed thing: a file's content, a mode, a package's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Diff {
    /// What changed: `/etc/motd`, `/etc/motd:mode`, `pkg:nginx`.
    pub what: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Diff {
    /// A unified diff of `before` and `after` for text, or `before -> after`.
    pub fn render(&self) -> String {
        diff::render(self)
    }
}

#[derive(Debug, Error, Diagnostic, Clone, PartialEq)]
pub enum ModuleError {
    /// Caught before any host is touched.
    #[error("no module named `{name}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    #[diagnostic(code(cairn::orch::module_unknown))]
    Unknown {
        name: String,
        suggestion: Option<String>,
    },

    /// Caught before any host is touched.
    #[error("{module}: {message}")]
    #[diagnostic(code(cairn::orch::module_args))]
    BadArgs { module: String, message: String },

    /// Ran, and failed on the host.
    #[error("{module}: {message}")]
    #[diagnostic(code(cairn::orch::module_failed))]
    Failed {
        module: String,
        message: String,
        stdout: String,
        stderr: String,
        rc: Option<i32>,
    },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Transport(#[from] TransportError),
}

impl ModuleError {
    /// The host is in a state the module will not change on its own (a
    /// directory where a file should go, a checkout with local edits):
    /// failed, with no command output to show.
    pub fn refused(module: &str, message: impl Into<String>) -> ModuleError {
        ModuleError::Failed {
            module: module.to_string(),
            message: message.into(),
            stdout: String::new(),
            stderr: String::new(),
            rc: None,
        }
    }
}

/// A module with its arguments checked, ready to run on any number of hosts.
#[async_trait]
pub trait Module: Send + Sync + std::fmt::Debug {
    /// `file`, `pkg`, ...
    fn name(&self) -> &str;

    async fn run(&self, host: &dyn Remote, ctx: &RunContext) -> Result<Outcome, ModuleError>;

    /// The script [`Module::run`] starts with to read the host, when it
    /// only reads, depends on nothing but the module's arguments, and may
    /// run even if the state is then skipped: a state apply then runs it
    /// ahead, in one exec with other states' probes, and hands its output
    /// to [`Module::run_probed`]. `None` (the default): the module reads
    /// the host itself, in `run`.
    fn probe(&self) -> Option<String> {
        None
    }

    /// [`Module::run`] from `probed`, what [`Module::probe`]'s script did
    /// on this host (its status and stderr too), with nothing changed
    /// there since: the same outcome and the same errors as `run`, without
    /// the probe's exec. It makes at most one exec, its apply step, so the
    /// caller can tell from it whether the host may have changed.
    async fn run_probed(
        &self,
        host: &dyn Remote,
        ctx: &RunContext,
        probed: Output,
    ) -> Result<Outcome, ModuleError> {
        let _ = probed;
        self.run(host, ctx).await
    }
}

/// Module arguments as given: `key=value` words on the command line, or a
/// state's mapping. Values stay JSON; each module coerces (`yes`/`true`).
pub type Args = Map<String, J>;

pub mod archive;
mod args;
pub mod cmd;
pub mod diff;
pub mod facts;
pub mod file;
pub mod git;
pub mod group;
mod host;
pub mod http;
pub mod pkg;
pub mod service;
pub mod user;

#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

pub use args::parse_kv;

/// The modules there are.
pub const MODULES: &[&str] = &[
    "archive", "cmd", "facts", "file", "git", "group", "http", "pkg", "service", "user",
];

/// Salt's `module.function` names: which module, and the arguments the
/// function stands for (Salt's `file.managed` is `file` with
/// `state=managed`).
/// (Salt's name, module, arguments it implies).
type SaltName = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const SALT: &[SaltName] = &[
    ("file.managed", "file", &[("state", "managed")]),
    ("file.absent", "file", &[("state", "absent")]),
    ("file.directory", "file", &[("state", "directory")]),
    ("file.symlink", "file", &[("state", "symlink")]),
    ("file.touch", "file", &[("state", "touch")]),
    ("file.exists", "file", &[("state", "file")]),
    ("pkg.installed", "pkg", &[("state", "installed")]),
    ("pkg.latest", "pkg", &[("state", "latest")]),
    ("pkg.removed", "pkg", &[("state", "removed")]),
    ("pkg.purged", "pkg", &[("state", "removed")]),
    ("service.running", "service", &[("state", "running")]),
    ("service.dead", "service", &[("state", "stopped")]),
    ("service.enabled", "service", &[("enabled", "true")]),
    ("service.disabled", "service", &[("enabled", "false")]),
    ("cmd.run", "cmd", &[]),
    ("user.present", "user", &[("state", "present")]),
    ("user.absent", "user", &[("state", "absent")]),
    ("group.present", "group", &[("state", "present")]),
    ("group.absent", "group", &[("state", "absent")]),
    ("git.latest", "git", &[]),
    ("archive.extracted", "archive", &[]),
    ("http.query", "http", &[]),
    (
        "http.wait_for_successful_query",
        "http",
        &[("wait", "true")],
    ),
];

/// Checks `args` for the module `name` (`file`, or Salt's `file.managed`)
/// and returns it ready to run; nothing touches a host.
pub fn load(name: &str, args: &Args) -> Result<Box<dyn Module>, ModuleError> {
    let (module, args) = match SALT.iter().find(|(salt, _, _)| *salt == name) {
        Some((_, module, implied)) => {
            let mut args = args.clone();
            for (k, v) in *implied {
                match args.get(*k) {
                    Some(J::String(given)) if given != v => {
                        return Err(ModuleError::BadArgs {
                            module: name.to_string(),
                            message: format!("`{k}={given}` contradicts {name} (which is {k}={v})"),
                        });
                    }
                    _ => {
                        args.insert(k.to_string(), J::String(v.to_string()));
                    }
                }
            }
            (*module, args)
        }
        None => (name, args.clone()),
    };
    let args = &args;
    Ok(match module {
        "archive" => Box::new(archive::Archive::new(args)?),
        "cmd" | "shell" => Box::new(cmd::Cmd::new(args)?),
        "facts" | "setup" | "grains.items" => Box::new(facts::Facts::new(args)?),
        "file" => Box::new(file::File::new(args)?),
        "http" => Box::new(http::Http::new(args)?),
        "git" => Box::new(git::Git::new(args)?),
        "group" => Box::new(group::Group::new(args)?),
        "user" => Box::new(user::User::new(args)?),
        "pkg" | "apt" => Box::new(pkg::Pkg::new(args)?),
        "service" => Box::new(service::Service::new(args)?),
        _ => {
            let candidates = MODULES
                .iter()
                .chain(SALT.iter().map(|(s, _, _)| s))
                .copied();
            return Err(ModuleError::Unknown {
                name: name.to_string(),
                suggestion: args::nearest(name, candidates),
            });
        }
    })
}

/// A raw command (`cairn run T -- CMD...`): `cmd` with the words joined by
/// spaces, as ssh joins its command words, so `-- 'ls | wc -l'` keeps its
/// pipe. Always changed, as Ansible's `shell` is.
pub fn raw(words: &[String]) -> Result<Box<dyn Module>, ModuleError> {
    let mut args = Args::new();
    args.insert("cmd".into(), J::String(words.join(" ")));
    Ok(Box::new(cmd::Cmd::new(&args)?))
}
