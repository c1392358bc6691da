//! Drain and restore on request: a rolling release takes one backend out of
//! rotation while its app restarts, without changing the configuration (the
//! backend stays in `backends`, keeps its health checks and its slot).
//!
//! The mark is set under the table lock, where every pick happens and
//! every in-flight count is taken, so once it is set the backend's count
//! only falls: the wait that follows sees every request that will ever go
//! to it before it is restored.

use std::net::SocketAddr;
use std::time::Duration;

use cairn_engine::backend::{BackendState, DrainReport};
use tokio::time::Instant;

use super::balancer::LoadBalancer;
use super::upstream::lock;

/// The address is not one of the balancer's configured backends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a backend of this load balancer")]
pub struct UnknownBackend(pub SocketAddr);

impl LoadBalancer {
    /// Stops picking `addr` and waits up to `timeout` for what is in flight
    /// to it (HTTP requests until their response body is sent, TCP
    /// connections) to end. A timeout cuts nothing: the report says what is
    /// left. Draining a drained backend waits again.
    pub async fn drain_backend(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<DrainReport, UnknownBackend> {
        let started = Instant::now();
        let up = {
            let t = lock(&self.shared.table);
            let up = t
                .upstreams
                .iter()
                .find(|u| u.addr == addr)
                .cloned()
                .ok_or(UnknownBackend(addr))?;
            if !up.set_drained(true) {
                tracing::info!(backend = %addr, in_flight = up.in_flight(), "backend drained on request");
            }
            up
        };
        let at_start = up.in_flight();
        let idle = up.wait_idle(started + timeout).await;
        let left = up.in_flight();
        let waited = started.elapsed();
        if idle {
            tracing::info!(backend = %addr, at_start, ?waited, "backend has nothing in flight");
        } else {
            tracing::warn!(backend = %addr, at_start, left, ?waited, "drain timeout passed with work in flight");
        }
        Ok(DrainReport {
            in_flight_at_start: Some(at_start as u64),
            in_flight_left: Some(if idle { 0 } else { left as u64 }),
            waited,
            timed_out: !idle,
        })
    }

    /// Puts a drained backend back. With health checks on it is out until
    /// its next passing probe, sent at once; with checks off it is in at
    /// once. Restoring a backend that is not drained changes nothing.
    pub fn restore_backend(&self, addr: SocketAddr) -> Result<(), UnknownBackend> {
        let t = lock(&self.shared.table);
        let up = t
            .upstreams
            .iter()
            .find(|u| u.addr == addr)
            .ok_or(UnknownBackend(addr))?;
        if up.is_drained() {
            if t.config.health.enabled() {
                up.recheck();
            }
            up.set_drained(false);
            tracing::info!(backend = %addr, "backend restored");
        }
        Ok(())
    }

    /// Whether `addr` takes new traffic, and if not, why. A backend an
    /// update removed that still has work in flight is `Draining`.
    pub fn backend_state(&self, addr: SocketAddr) -> Result<BackendState, UnknownBackend> {
        let t = lock(&self.shared.table);
        if let Some(up) = t.upstreams.iter().find(|u| u.addr == addr) {
            return Ok(match (up.is_drained(), up.in_flight(), up.is_healthy()) {
                (true, 0, _) => BackendState::Drained,
                (true, _, _) => BackendState::Draining,
                (false, _, true) => BackendState::Healthy,
                (false, _, false) => BackendState::Unhealthy,
            });
        }
        if t.draining.iter().any(|d| d.up.addr == addr) {
            return Ok(BackendState::Draining);
        }
        Err(UnknownBackend(addr))
    }
}
