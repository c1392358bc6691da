//! Running a state file's states on one host, one at a time, with Salt's
//! requisite semantics:
//!
//! - `require`: run only if every target succeeded; otherwise the state is
//!   skipped (requisite failed).
//! - `watch`: as `require`, and if a target changed the module runs with
//!   [`RunContext::watch_fired`] (Salt's `mod_watch`: a service restarts).
//! - `onchanges`: run only if a target changed; otherwise skipped (no
//!   changes), which counts as success for those that require this state.
//!   A failed target skips it as a failed `require` would: what a failed
//!   state changed is no reason to react.
//! - `onfail`: run only if a target failed; otherwise skipped (nothing
//!   failed), again a success.
//!
//! A state skipped because a requisite failed counts as failed for its own
//! dependents, so a failure skips everything downstream of it and fires the
//! `onfail` handlers watching any of it, as in Salt.
//!
//! In a dry run (`--check`) a module's "would change" counts as a change,
//! so watchers and `onchanges` handlers report what they would do.

use std::time::Duration;

use serde::{Serialize, Serializer};

use super::ahead::Ahead;
use super::error::{StateError, StateErrorKind};
use super::file::StateFile;
use super::resolved::RequisiteKind;
use crate::module::{Args, Module, ModuleError, Outcome, RunContext};
use crate::remote::Remote;

/// Builds a module from a state's `module.function` and arguments, checking
/// them; `crate::module::load` is one, tests bring their own.
pub trait Loader: Sync {
    fn load(&self, name: &str, args: &Args) -> Result<Box<dyn Module>, ModuleError>;
}

impl<F> Loader for F
where
    F: Fn(&str, &Args) -> Result<Box<dyn Module>, ModuleError> + Sync,
{
    fn load(&self, name: &str, args: &Args) -> Result<Box<dyn Module>, ModuleError> {
        self(name, args)
    }
}

/// A state file with every module built: nothing can be misspelt any more,
/// and nothing has touched a host yet.
#[derive(Debug)]
pub struct Prepared<'a> {
    file: &'a StateFile,
    /// By state index (file order).
    modules: Vec<Box<dyn Module>>,
}

impl StateFile {
    /// Builds every state's module, so a typo in any of them fails before
    /// the first one runs. The error points at the first bad state.
    pub fn prepare(&self, loader: &dyn Loader) -> Result<Prepared<'_>, StateError> {
        let modules = self
            .states
            .iter()
            .map(|s| {
                loader.load(&s.module, &s.args).map_err(|e| {
                    let (message, label) = match &e {
                        ModuleError::Unknown { .. } => (e.to_string(), "unknown module"),
                        _ => (e.to_string(), "in this state"),
                    };
                    StateError::at(
                        StateErrorKind::Module,
                        format!("state `{}`: {message}", s.id),
                        &self.sources[s.file],
                        s.module_span.clone(),
                        label,
                    )
                    .caused_by(e)
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Prepared {
            file: self,
            modules,
        })
    }
}

/// Prepares then runs a state file on one host (see [`Prepared::apply`]).
pub async fn apply(
    file: &StateFile,
    host: &dyn Remote,
    loader: &dyn Loader,
    ctx: &RunContext,
) -> Result<HostReport, StateError> {
    Ok(file.prepare(loader)?.apply(host, ctx).await)
}

/// What became of one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateResult {
    Changed,
    Unchanged,
    Failed,
    Skipped,
}

/// Why a state did not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Skip {
    /// A `require`, `watch` or `onchanges` target failed (or was skipped
    /// for the same reason).
    RequisiteFailed { requisite: String },
    /// No `onchanges` target changed.
    NoChanges,
    /// No `onfail` target failed.
    NothingFailed,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::RequisiteFailed { requisite } => {
                write!(f, "skipped (requisite failed: {requisite})")
            }
            Skip::NoChanges => f.write_str("skipped (no changes)"),
            Skip::NothingFailed => f.write_str("skipped (nothing failed)"),
        }
    }
}

/// One state's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateReport {
    pub id: String,
    /// As written: `file.managed`.
    pub module: String,
    pub result: StateResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Skip>,
    /// A watched state changed (or, in a dry run, would change).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub watch_fired: bool,
    /// What the module reported; on failure, what its command printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(serialize_with = "seconds", rename = "duration_s")]
    pub duration: Duration,
}

impl StateReport {
    /// Succeeded for those that `require` it: changed, unchanged, or not
    /// needed (an `onchanges`/`onfail` that did not fire).
    fn failed(&self) -> bool {
        match self.result {
            StateResult::Failed => true,
            StateResult::Skipped => matches!(self.skipped, Some(Skip::RequisiteFailed { .. })),
            StateResult::Changed | StateResult::Unchanged => false,
        }
    }

    fn changed(&self) -> bool {
        self.result == StateResult::Changed
    }
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// One host's run of a state file, states in the order they ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostReport {
    pub host: String,
    pub check: bool,
    pub states: Vec<StateReport>,
}

impl HostReport {
    pub fn count(&self, result: StateResult) -> usize {
        self.states.iter().filter(|s| s.result == result).count()
    }

    /// Whether no state failed (skipped ones do not count against it).
    pub fn succeeded(&self) -> bool {
        self.count(StateResult::Failed) == 0
    }

    pub fn get(&self, id: &str) -> Option<&StateReport> {
        self.states.iter().find(|s| s.id == id)
    }
}

impl Prepared<'_> {
    /// Runs the states on `host` one at a time in [`StateFile::states`]
    /// order. Never fails as a whole: what went wrong is in each state's
    /// report, and states that do not depend on a failed one still run.
    /// The states' probes are read ahead in as few scripts as exactness
    /// allows, in one shell kept open where the transport has one (see
    /// `ahead.rs`).
    pub async fn apply(&self, host: &dyn Remote, ctx: &RunContext) -> HostReport {
        let states = &self.file.states;
        let mut done: Vec<Option<StateReport>> = vec![None; states.len()];
        let mut reports = Vec::with_capacity(states.len());
        let mut ahead = Ahead::new(&self.modules);
        for (pos, &i) in self.file.order.iter().enumerate() {
            let state = &states[i];
            // Tokio's clock, not the wall clock: durations only, and paused
            // tests see none pass.
            let started = tokio::time::Instant::now();
            let report_of = |j: usize| {
                done[j]
                    .as_ref()
                    .expect("requisites run first: the order guarantees it")
            };
            let mut skip = None;
            let mut fired = false;
            let (mut onchanges, mut changed) = (false, false);
            let (mut onfail, mut failed) = (false, false);
            for r in &state.requisites {
                let target = report_of(r.index);
                match r.kind {
                    RequisiteKind::Require | RequisiteKind::Watch | RequisiteKind::Onchanges
                        if target.failed() =>
                    {
                        skip.get_or_insert(Skip::RequisiteFailed {
                            requisite: r.target.clone(),
                        });
                    }
                    RequisiteKind::Require => {}
                    RequisiteKind::Watch => fired |= target.changed(),
                    RequisiteKind::Onchanges => {
                        onchanges = true;
                        changed |= target.changed();
                    }
                    RequisiteKind::Onfail => {
                        onfail = true;
                        failed |= target.failed();
                    }
                }
            }
            if skip.is_none() && onchanges && !changed {
                skip = Some(Skip::NoChanges);
            }
            if skip.is_none() && onfail && !failed {
                skip = Some(Skip::NothingFailed);
            }
            let report = match skip {
                Some(skip) => StateReport {
                    id: state.id.clone(),
                    module: state.module.clone(),
                    result: StateResult::Skipped,
                    skipped: Some(skip),
                    watch_fired: false,
                    outcome: None,
                    error: None,
                    duration: Duration::ZERO,
                },
                None => {
                    let run_ctx = RunContext {
                        watch_fired: fired,
                        ..ctx.clone()
                    };
                    let result = ahead
                        .run(&*self.modules[i], &self.file.order[pos..], host, &run_ctx)
                        .await;
                    let duration = started.elapsed();
                    let (result, outcome, error) = match result {
                        // A watcher in a dry run would fire: that is a
                        // change to report even if the module's plan, made
                        // without the restart, saw none.
                        Ok(o) if o.changed || (fired && ctx.check) => {
                            (StateResult::Changed, Some(o), None)
                        }
                        Ok(o) => (StateResult::Unchanged, Some(o), None),
                        Err(e) => {
                            let outcome = match &e {
                                ModuleError::Failed {
                                    stdout, stderr, rc, ..
                                } => Some(Outcome {
                                    stdout: stdout.clone(),
                                    stderr: stderr.clone(),
                                    rc: *rc,
                                    ..Outcome::default()
                                }),
                                _ => None,
                            };
                            (StateResult::Failed, outcome, Some(e.to_string()))
                        }
                    };
                    StateReport {
                        id: state.id.clone(),
                        module: state.module.clone(),
                        result,
                        skipped: None,
                        watch_fired: fired,
                        outcome,
                        error,
                        duration,
                    }
                }
            };
            done[i] = Some(report.clone());
            reports.push(report);
        }
        ahead.finish().await;
        HostReport {
            host: host.name().to_string(),
            check: ctx.check,
            states: reports,
        }
    }
}
