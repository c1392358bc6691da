//! What every module is: the [`Module`] trait, and how one is run
//! ([`RunContext`]).

use async_trait::async_trait;

use super::error::ModuleError;
use super::outcome::Outcome;
use crate::remote::{Output, Remote};

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
