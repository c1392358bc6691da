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
//!
//! [`Remote`]: crate::remote::Remote

pub mod archive;
mod args;
pub mod cmd;
mod contract;
pub mod diff;
mod error;
pub mod facts;
pub mod file;
pub mod git;
pub mod group;
mod host;
pub mod http;
mod names;
mod outcome;
pub mod pkg;
pub mod service;
pub mod user;

#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

pub use args::{Args, parse_kv};
pub use contract::{Module, RunContext};
pub use error::ModuleError;
pub use names::{MODULES, load, raw};
pub use outcome::{Diff, Outcome};
