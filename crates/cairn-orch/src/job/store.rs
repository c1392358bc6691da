//! Where jobs are kept, as the state store sees them.

use miette::Diagnostic;
use thiserror::Error;

use super::record::{JobRecord, JobSummary};

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
