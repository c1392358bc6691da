//! What a run needs besides the plan: its options, and the context its
//! steps share (provider, store, observer, clock, lease fence).

use std::sync::Arc;

use serde::Serialize;

use crate::fence::Fence;
use crate::provider::Provider;
use crate::retry::RetryPolicy;
use crate::store::{StateStore, StoreResult, Timestamp};

use super::events::Observer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    Rollback,
    Keep,
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub parallelism: usize,
    pub on_failure: OnFailure,
    pub retry: RetryPolicy,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 32,
            on_failure: OnFailure::Rollback,
            retry: RetryPolicy::default(),
        }
    }
}

/// Everything a run needs besides the plan.
#[derive(Clone)]
pub struct RunContext {
    pub deployment: String,
    pub run_id: String,
    pub provider: Arc<dyn Provider>,
    pub store: Arc<dyn StateStore>,
    pub observer: Arc<dyn Observer>,
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    pub options: ApplyOptions,
    /// Armed while the run holds the lease: no step starts once it is lost.
    pub fence: Fence,
}

impl RunContext {
    /// Runs a store call on a thread of its own. A write waits for its
    /// flush to disk; made from the async workers, it would hold one of
    /// them (two on two cores) for that time, and the writes of steps in
    /// flight could not wait together, which a store that commits writes
    /// in groups needs to flush them once.
    pub(super) async fn stored<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn StateStore) -> StoreResult<T> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&*store)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("a state store call did not finish: {e}")),
        }
    }

    /// [`Fence::check`] off the async workers (it reads the lease).
    pub(super) async fn still_holds_lease(&self) -> Result<(), String> {
        if !self.fence.needs_check() {
            return self
                .fence
                .check(&*self.store, &self.deployment, &self.run_id);
        }
        let cx = self.clone();
        match tokio::task::spawn_blocking(move || {
            cx.fence.check(&*cx.store, &cx.deployment, &cx.run_id)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => Err(format!("the lease check did not finish: {e}")),
        }
    }
}
