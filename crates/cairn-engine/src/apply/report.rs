//! What a run did, resource by resource and in sum.

use serde::Serialize;

use crate::plan::Action;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Updated,
    Replaced,
    Deleted,
    Unchanged,
    Failed,
    /// Not started because an earlier step failed.
    Skipped,
    /// Done, then undone by the rollback.
    RolledBack,
    /// Done, and the rollback of it failed: see `error`.
    RollbackFailed,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResourceResult {
    pub address: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub action: Action,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub created: usize,
    pub updated: usize,
    pub replaced: usize,
    pub deleted: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub ok: bool,
    pub rolled_back: bool,
    pub counts: Counts,
    pub elapsed_ms: u64,
    pub resources: Vec<ResourceResult>,
    /// Why the run stopped starting steps: it lost the deployment's lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_lost: Option<String>,
}
