//! Jobs: one `cairn run` or `cairn state apply` over many hosts, with a
//! result per host, kept in the state store ([`JobStore`]) so that
//! `cairn jobs show ID` answers after the fact, as Salt's job cache does.
//!
//! [`execute`] runs a job's per-host work with bounded concurrency and
//! stops starting hosts once `--max-fail` is passed ([`MaxFail`]); the
//! hosts it never started are reported, not dropped.

mod execute;
mod outcome;
mod record;

pub use execute::{MaxFail, execute};
pub use outcome::{
    apply_state_file, apply_state_file_with, failed, module_result, state_result, unreachable,
};
pub use record::{HostResult, HostStatus, JobId, JobRecord, JobSummary, Tally, new_id};

use miette::Diagnostic;
use thiserror::Error;

#[derive(Debug, Error, Diagnostic)]
#[error("job store: {0}")]
#[diagnostic(code(cairn::orch::job_store))]
pub struct JobStoreError(pub String);

/// Where jobs are kept: the state store (SQLite today, PostgreSQL next).
pub trait JobStore: Send + Sync {
    /// Records a job as started (its hosts' results empty) or finished;
    /// writing the same id again replaces it.
    fn save_job(&self, job: &JobRecord) -> Result<(), JobStoreError>;

    /// The most recent jobs first.
    fn jobs(&self, limit: usize) -> Result<Vec<JobSummary>, JobStoreError>;

    /// One job with every host's result.
    fn job(&self, id: &str) -> Result<Option<JobRecord>, JobStoreError>;
}
