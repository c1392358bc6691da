//! Drain and restore of one backend of a running load balancer, for the
//! release executor (through the daemon's API). The mark lives in the
//! running balancer only, not in the cloud's record: a daemon restart
//! rebuilds every balancer with no backend drained, which is why the
//! executor restores every backend it drained.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use cairn_engine::backend::{BackendControl, BackendRef, BackendState, DrainReport};
use cairn_engine::provider::{ProviderError, ProviderResult};

use super::base::Cloud;
use super::props::permanent;
use crate::lb::{LoadBalancer, UnknownBackend};

impl Cloud {
    /// The running balancer of the `load_balancer` resource `lb_id`.
    fn running_lb(&self, lb_id: &str) -> ProviderResult<LoadBalancer> {
        if let Some(running) = self.lbs.lock().expect("lbs lock").get(lb_id) {
            return Ok(running.lb.clone());
        }
        Err(
            match self.lock().resources.get(lb_id).map(|r| r.kind.clone()) {
                Some(kind) if kind != "load_balancer" => {
                    permanent(format!("{lb_id} is a {kind}, not a load balancer"))
                }
                Some(_) => ProviderError::Transient(format!(
                    "load balancer {lb_id} is not running (the local cloud is starting or stopping)"
                )),
                None => ProviderError::NotFound(format!(
                    "load balancer {lb_id} is not in the local cloud"
                )),
            },
        )
    }
}

/// Where the balancer sends the backend's traffic. The local target lists
/// backends by address, so `server_id` is not needed.
fn backend_addr(backend: &BackendRef) -> ProviderResult<SocketAddr> {
    let ip: IpAddr = backend.address.parse().map_err(|_| {
        permanent(format!(
            "backend `{}` is not an IP address; the local load balancer lists its backends by address",
            backend.address
        ))
    })?;
    Ok(SocketAddr::new(ip, backend.port))
}

fn unknown(lb_id: &str, UnknownBackend(addr): UnknownBackend) -> ProviderError {
    permanent(format!("{addr} is not a backend of load balancer {lb_id}"))
}

#[async_trait::async_trait]
impl BackendControl for Cloud {
    async fn drain(
        &self,
        lb_id: &str,
        backend: &BackendRef,
        timeout: Duration,
    ) -> ProviderResult<DrainReport> {
        let addr = backend_addr(backend)?;
        self.running_lb(lb_id)?
            .drain_backend(addr, timeout)
            .await
            .map_err(|e| unknown(lb_id, e))
    }

    async fn restore(&self, lb_id: &str, backend: &BackendRef) -> ProviderResult<()> {
        let addr = backend_addr(backend)?;
        self.running_lb(lb_id)?
            .restore_backend(addr)
            .map_err(|e| unknown(lb_id, e))
    }

    async fn backend_state(
        &self,
        lb_id: &str,
        backend: &BackendRef,
    ) -> ProviderResult<BackendState> {
        let addr = backend_addr(backend)?;
        self.running_lb(lb_id)?
            .backend_state(addr)
            .map_err(|e| unknown(lb_id, e))
    }
}
