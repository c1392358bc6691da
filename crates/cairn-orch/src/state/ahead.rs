//! Reading a host ahead of its states: the probes of the states to come in
//! one exec, and, on each apply step, the next state's probe in the same
//! exec, after the step.
//!
//! A probe's output is good only while nothing has changed on the host
//! since it was taken: a directory made with its parents turns the next
//! file's "parent missing" into "parent there", a command may write
//! anything. Paths alone cannot tell which probes a change touched
//! (symlinks, bind mounts and hard links alias them), so any change makes
//! every reading taken before it stale: the host's `epoch` counts the
//! steps that may have changed it, and a reading is used only in the
//! epoch it was taken in. So the states see exactly what they would have
//! seen probing one at a time. A second apply that changes nothing costs
//! one exec; a first that changes every state costs one more than the
//! apply steps (the probe of each state after the first rides on the
//! step before it).
//!
//! A state whose module cannot say its probe before it runs (a `cmd` with
//! `unless`, which runs a command of the user's, should run only if the
//! state does; `pkg`, `service` and the others, several scripts each) runs
//! as on its own, and counts as a change unless it reported none.
//!
//! Where the transport keeps a shell open ([`Remote::shell`]: SSH, this
//! machine), the reads and the steps of probed states are its requests,
//! one after another, instead of an exec each: a host's states cost one
//! exec however many change (a new channel, session and login shell per
//! step were most of a change's cost on the host, and two round trips
//! each). A shell that breaks (lost, timed out) leaves the states after
//! it to execs of their own.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use tokio::sync::Mutex as AsyncMutex;

use super::batch::{Batch, Split};
use crate::module::{Module, ModuleError, Outcome, RunContext};
use crate::remote::{Exec, Output, Remote, TransportError};
use crate::transport::Shell;

/// The most probes in one exec: a file's probe may bring back 64 KiB.
const MOST: usize = 64;

/// What a host's run knows of its states' probes.
pub(crate) struct Ahead {
    /// By state index: the module's probe script, if it has one.
    probes: Vec<Option<String>>,
    /// By state index: a probe's output and the epoch it was taken in.
    read: Vec<Option<(u64, Output)>>,
    epoch: u64,
    /// A batch came back garbled: this host probes state by state.
    off: bool,
    /// The host's shell, once asked for (`None` inside: it has none).
    shell: Option<Option<AsyncMutex<Shell>>>,
}

impl Ahead {
    pub fn new(modules: &[Box<dyn Module>]) -> Ahead {
        Ahead {
            probes: modules.iter().map(|m| m.probe()).collect(),
            read: vec![None; modules.len()],
            epoch: 0,
            off: false,
            shell: None,
        }
    }

    /// Ends the host's shell, if one was opened.
    pub async fn finish(self) {
        if let Some(Some(shell)) = self.shell {
            shell.into_inner().close().await;
        }
    }

    /// The host's shell: asked for on first use. A transport that cannot
    /// start one now fails the state as its exec would have.
    async fn open_shell(
        &mut self,
        host: &dyn Remote,
        ctx: &RunContext,
    ) -> Result<(), TransportError> {
        if self.shell.is_none() {
            let shell = host.shell(ctx.become_user.clone()).await?;
            self.shell = Some(shell.map(AsyncMutex::new));
        }
        Ok(())
    }

    /// Runs state `order[0]` on `host`; `order[1..]` are the states after
    /// it, in run order (whose probes may be read in the same exec).
    pub async fn run(
        &mut self,
        module: &dyn Module,
        order: &[usize],
        host: &dyn Remote,
        ctx: &RunContext,
    ) -> Result<Outcome, ModuleError> {
        let i = order[0];
        if self.probes[i].is_none() || self.off {
            return self.run_alone(module, host, ctx).await;
        }
        if !self.fresh(i) {
            self.read_ahead(order, host, ctx).await?;
        }
        let Some((_, probed)) = self.read[i].take().filter(|(e, _)| *e == self.epoch) else {
            // The batch came back garbled: as if there were no batches.
            return self.run_alone(module, host, ctx).await;
        };
        let next = order[1..]
            .iter()
            .copied()
            .find(|&j| self.probes[j].is_some());
        let rider = Rider {
            host,
            shell: self.shell.as_ref().and_then(Option::as_ref),
            probe: next.and_then(|j| self.probes[j].clone()),
            execs: AtomicUsize::new(0),
            carried: Mutex::new(None),
        };
        let result = module.run_probed(&rider, ctx, probed).await;
        if rider.execs.load(Ordering::SeqCst) > 0 {
            // Its one exec is its apply step: the host may have changed.
            self.epoch += 1;
            if let (Some(j), Some(out)) = (next, rider.carried.into_inner().unwrap()) {
                self.read[j] = Some((self.epoch, out));
            }
        }
        result
    }

    async fn run_alone(
        &mut self,
        module: &dyn Module,
        host: &dyn Remote,
        ctx: &RunContext,
    ) -> Result<Outcome, ModuleError> {
        let result = module.run(host, ctx).await;
        let quiet = matches!(&result, Ok(o) if !o.changed);
        if !ctx.check && !quiet {
            self.epoch += 1;
        }
        result
    }

    fn fresh(&self, i: usize) -> bool {
        matches!(&self.read[i], Some((e, _)) if *e == self.epoch)
    }

    /// Reads, in one exec, the probes of `order[0]` and of up to [`MOST`]
    /// states after it that have none fresh. A host that cannot run the
    /// exec fails the state as its own probe would have.
    async fn read_ahead(
        &mut self,
        order: &[usize],
        host: &dyn Remote,
        ctx: &RunContext,
    ) -> Result<(), ModuleError> {
        let wanted: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&j| self.probes[j].is_some() && !self.fresh(j))
            .take(MOST)
            .collect();
        let scripts: Vec<&str> = wanted
            .iter()
            .filter_map(|&j| self.probes[j].as_deref())
            .collect();
        let Some(batch) = Batch::new(None, &scripts) else {
            self.off = true;
            return Ok(());
        };
        let exec = Exec::new(batch.script()).become_user(ctx.become_user.clone());
        self.open_shell(host, ctx).await?;
        let shell = self.shell.as_ref().and_then(Option::as_ref);
        let out = exec_in(shell, host, exec).await?;
        match batch.split(&out) {
            Some(split) => {
                for (j, out) in wanted.into_iter().zip(split.probes) {
                    self.read[j] = Some((self.epoch, out));
                }
            }
            None => {
                tracing::debug!(
                    host = host.name(),
                    "a batch of probes came back garbled; probing state by state"
                );
                self.off = true;
            }
        }
        Ok(())
    }
}

/// `exec` in the host's shell when there is one that can run it, else an
/// exec of its own.
async fn exec_in(
    shell: Option<&AsyncMutex<Shell>>,
    host: &dyn Remote,
    exec: Exec,
) -> Result<Output, TransportError> {
    if let Some(shell) = shell {
        let mut shell = shell.lock().await;
        if shell.fits(&exec) {
            let out = shell.run(exec).await;
            // The shell was killed at the step's timeout; what the step
            // started carries the step's mark, and goes too.
            if let (Err(TransportError::CommandTimeout { .. }), Some(mark)) =
                (&out, shell.last_mark())
            {
                let reap = Exec::reaper(mark, shell.become_user().map(str::to_string));
                if let Err(e) = host.exec(reap).await {
                    tracing::warn!(host = host.name(), error = %e, "the timed-out step's processes may still run");
                }
            }
            return out;
        }
    }
    host.exec(exec).await
}

/// The host as a probed module sees it: its first exec (its apply step)
/// carries the next state's probe, run after it in the same exec.
struct Rider<'a> {
    host: &'a dyn Remote,
    shell: Option<&'a AsyncMutex<Shell>>,
    probe: Option<String>,
    execs: AtomicUsize,
    carried: Mutex<Option<Output>>,
}

#[async_trait]
impl Remote for Rider<'_> {
    fn name(&self) -> &str {
        self.host.name()
    }

    async fn exec(&self, exec: Exec) -> Result<Output, TransportError> {
        let first = self.execs.fetch_add(1, Ordering::SeqCst) == 0;
        let batch = match (&self.probe, first) {
            (Some(probe), true) => Batch::new(Some(&exec.script), &[probe]),
            _ => None,
        };
        let Some(batch) = batch else {
            return exec_in(self.shell, self.host, exec).await;
        };
        let out = exec_in(
            self.shell,
            self.host,
            Exec {
                script: batch.script().to_string(),
                ..exec
            },
        )
        .await?;
        match batch.split(&out) {
            Some(Split {
                lead: Some(lead),
                mut probes,
            }) => {
                *self.carried.lock().unwrap() = probes.pop();
                Ok(lead)
            }
            // Not framed as it should be: the step's status is the exec's
            // all the same (the script exits with it), and its output is
            // all there, with the probe's after it.
            _ => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests;
