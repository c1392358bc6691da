//! A `runc` cloud's namespace over the daemon's life: held by every create
//! and delete, taken down when nothing lives in it, brought back with what
//! the record holds at a start, stopped at the daemon's stop.

use std::time::Duration;

use cairn_engine::provider::{ProviderError, ProviderResult};

use super::hosts::Hosts;
use crate::cloud::model::{CloudState, LocalResource};
use crate::host::network::ServerNet;
use crate::host::runtime::Server;

impl Hosts {
    /// Takes the cloud namespace and link down once `state` has nothing
    /// that lives in them (no network, server or load balancer left), so a
    /// destroyed deployment leaves no namespace, link or table behind.
    pub async fn down_if_idle(&self, snapshot: impl FnOnce() -> CloudState) -> ProviderResult<()> {
        let _alone = self.shape.write().await;
        let state = snapshot();
        let busy = state.resources.values().any(|r| {
            matches!(
                r.kind.as_str(),
                "network" | "server" | "load_balancer" | "database"
            )
        });
        if busy {
            return Ok(());
        }
        self.close_way_out().await;
        self.stop_dns_on_link().await;
        self.stop_master_on_link().await;
        let mut slot = self.net.lock().await;
        if let Some(cloud) = slot.take() {
            cloud
                .down()
                .await
                .map_err(|e| ProviderError::Transient(format!("the cloud's namespace: {e}")))?;
        }
        Ok(())
    }

    /// Held for a create or delete from its start until it is recorded.
    pub async fn changing(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.shape.read().await
    }

    /// Brings back the networks and servers of `state` after a restart,
    /// and their firewall. Problems are returned, one per resource.
    pub async fn restore(&self, state: &CloudState) -> Vec<String> {
        // Before the namespace comes up, which routes the block into it.
        let mut problems = self.restore_public_block(state).await;
        let networks: Vec<&LocalResource> = state.of_kind("network").collect();
        let servers: Vec<&LocalResource> = state.of_kind("server").collect();
        if networks.is_empty() && servers.is_empty() {
            return problems;
        }
        for r in networks {
            if let Err(e) = self.restore_network(r).await {
                problems.push(format!("{}: {e}", r.id));
            }
        }
        // The rules first, so that no server is open for a moment.
        if let Err(e) = self.apply_firewall(|| state.clone()).await {
            problems.push(e.to_string());
        }
        for r in servers {
            if let Err(e) = self.restore_server(state, r).await {
                problems.push(format!("{}: {e}", r.id));
            }
        }
        problems
    }

    /// Stops every server (their layers stay) and takes the cloud
    /// namespace and link down; the networks' `unreachable` routes stay
    /// until they are destroyed.
    pub async fn shutdown(&self) {
        let servers: Vec<(Server, ServerNet)> = self
            .servers
            .lock()
            .expect("servers lock")
            .drain()
            .map(|(_, v)| v)
            .collect();
        self.close_way_out().await;
        self.stop_dns_on_link().await;
        self.stop_master_on_link().await;
        self.stop_databases().await;
        let cloud = self.net.lock().await.take();
        for (server, snet) in servers {
            if let Err(e) = server.stop(Duration::from_secs(5)).await {
                tracing::warn!("stopping {}: {e}", server.spec().id);
            }
            if let Some(cloud) = &cloud
                && let Err(e) = cloud.remove_server(&snet).await
            {
                tracing::warn!("removing {}'s namespace: {e}", server.spec().id);
            }
        }
        if let Some(cloud) = cloud
            && let Err(e) = cloud.down().await
        {
            tracing::warn!("taking the cloud's network namespace down: {e}");
        }
        self.link.lock().expect("link lock").balancers.clear();
    }
}
