//! Public addresses as the cloud holds them: an `ip_address` associated
//! with a server answers for it, forwarded by a `PublicAddress` (see
//! `forward`) with `process` isolation, translated by the kernel with
//! `runc` isolation (see `isolation::public`), where only the association
//! is checked here.

use std::net::Ipv4Addr;

use cairn_engine::provider::{Json, ProviderResult};

use super::base::Cloud;
use super::firewall;
use super::forward::PublicAddress;
use super::model::CloudState;
use super::props::{permanent, prop_str};

impl Cloud {
    /// Points a public address at the server its properties name, or at
    /// none; the same server keeps its connections.
    pub(super) async fn associate(
        &self,
        id: &str,
        public: Ipv4Addr,
        p: &Json,
    ) -> ProviderResult<()> {
        let target = match prop_str(p, "server") {
            None => None,
            Some(server) => {
                let st = self.lock();
                let s = st
                    .resources
                    .get(server)
                    .filter(|r| r.kind == "server")
                    .ok_or_else(|| {
                        permanent(format!("there is no server {server} in the local cloud"))
                    })?;
                let ip =
                    s.ip.ok_or_else(|| permanent(format!("the server {server} has no address")))?;
                Some((ip, firewall::ingress(&st, &s.properties).0))
            }
        };
        if self.hosts.is_some() {
            // The kernel translates it: the cloud's table, replaced once
            // this change is recorded.
            return Ok(());
        }
        let old = self.publics.lock().expect("publics lock").remove(id);
        let old = match (old, &target) {
            (Some(old), Some((ip, ingress))) if old.server == *ip => {
                old.set_ingress(ingress.clone());
                self.publics
                    .lock()
                    .expect("publics lock")
                    .insert(id.to_string(), old);
                return Ok(());
            }
            (old, _) => old,
        };
        if let Some(old) = old {
            old.stop().await;
        }
        if let Some((ip, ingress)) = target {
            let started = PublicAddress::start(public, ip, ingress);
            self.publics
                .lock()
                .expect("publics lock")
                .insert(id.to_string(), started);
        }
        Ok(())
    }

    /// Stops the public addresses that forward to a server being deleted:
    /// its address may be handed to another server next.
    pub(super) async fn disassociate_server(&self, server: Ipv4Addr) {
        let ids: Vec<String> = self
            .publics
            .lock()
            .expect("publics lock")
            .iter()
            .filter(|(_, p)| p.server == server)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.disassociate(&id).await;
        }
    }

    pub(super) async fn disassociate(&self, id: &str) {
        let old = self.publics.lock().expect("publics lock").remove(id);
        if let Some(old) = old {
            old.stop().await;
        }
    }

    /// Brings every public address's rules in line with its server's
    /// firewalls (called with the state locked, like the balancers' access).
    pub(super) fn refresh_public_access(&self, state: &CloudState) {
        for (id, running) in self.publics.lock().expect("publics lock").iter() {
            let server = state
                .resources
                .get(id)
                .and_then(|r| prop_str(&r.properties, "server"))
                .and_then(|s| state.resources.get(s));
            if let Some(server) = server {
                running.set_ingress(firewall::ingress(state, &server.properties).0);
            }
        }
    }
}

/// The public address associated with a server, if any.
pub fn public_ip_of(state: &CloudState, server: &str) -> Option<Ipv4Addr> {
    state
        .of_kind("ip_address")
        .find(|r| prop_str(&r.properties, "server") == Some(server))
        .and_then(|r| r.ip)
}
