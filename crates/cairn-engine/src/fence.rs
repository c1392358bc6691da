//! The lease as a fence around provider calls.
//!
//! A run may call the provider only while it holds the deployment's lease.
//! The heartbeat renews the lease every third of its time to live, but a
//! lease can be lost between two beats (`cairn lock break` and another run
//! taking it, or a store that stops answering), so the apply also checks
//! the lease in the store before every step it starts. Once lost, a run
//! starts nothing more: calls already in flight finish and are journaled,
//! nothing is rolled back (that would be calling the provider too), and
//! the run ends with the reason. The journal lets the next holder
//! reconcile whatever those last calls did.

use std::sync::{Arc, OnceLock};

use crate::store::StateStore;

/// Shared between a run's heartbeat and its apply. The default fence is
/// open: commands that take no lease (plan, drift) are not fenced.
#[derive(Clone, Default)]
pub struct Fence(Option<Arc<OnceLock<String>>>);

impl Fence {
    /// A fence for a run that holds the lease.
    pub fn armed() -> Fence {
        Fence(Some(Arc::new(OnceLock::new())))
    }

    /// Records that the lease is lost; the first reason stays.
    pub fn lose(&self, reason: String) {
        if let Some(lost) = &self.0 {
            let _ = lost.set(reason);
        }
    }

    /// Why the lease is lost, if it is known to be.
    pub fn lost(&self) -> Option<String> {
        self.0.as_ref().and_then(|l| l.get().cloned())
    }

    /// Whether [`Fence::check`] reads the store: the fence is armed and the
    /// lease not known lost yet.
    pub fn needs_check(&self) -> bool {
        self.0.as_ref().is_some_and(|l| l.get().is_none())
    }

    /// Checks, before a step, that `run_id` still holds the lease in the
    /// store. An error is the reason the run must stop.
    pub fn check(
        &self,
        store: &dyn StateStore,
        deployment: &str,
        run_id: &str,
    ) -> Result<(), String> {
        if self.0.is_none() {
            return Ok(());
        }
        if let Some(reason) = self.lost() {
            return Err(reason);
        }
        let reason = match store.lease(deployment) {
            Ok(Some(lease)) if lease.run_id == run_id => return Ok(()),
            Ok(Some(lease)) => format!(
                "the lease of {deployment} was taken by {} (run {}): this run stopped",
                lease.owner, lease.run_id
            ),
            Ok(None) => format!("the lease of {deployment} was broken: this run stopped"),
            Err(e) => {
                format!("the lease of {deployment} could not be checked ({e}): this run stopped")
            }
        };
        self.lose(reason.clone());
        Err(reason)
    }
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Fence(open)"),
            Some(_) => write!(f, "Fence(lost: {:?})", self.lost()),
        }
    }
}
