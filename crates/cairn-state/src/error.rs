//! Turning SQLite and JSON failures into [`StoreError`]s that say what the
//! store was doing.

use cairn_engine::store::{StoreError, StoreResult};

pub(crate) trait Context<T> {
    /// `what`: the operation, as in "state storage: {what}: {cause}".
    fn ctx(self, what: &str) -> StoreResult<T>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn ctx(self, what: &str) -> StoreResult<T> {
        self.map_err(|e| StoreError::Storage(format!("{what}: {e}")))
    }
}

impl<T> Context<T> for Result<T, serde_json::Error> {
    fn ctx(self, what: &str) -> StoreResult<T> {
        self.map_err(|e| StoreError::Storage(format!("{what}: malformed JSON: {e}")))
    }
}

/// A job import that would overwrite one the target store already holds.
pub(crate) fn job_already(id: &str) -> StoreError {
    StoreError::Storage(format!(
        "the target already holds job {id} (pass --force to replace it)"
    ))
}
