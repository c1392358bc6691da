//! A `runc` cloud's networks: the cloud namespace and its link, made when
//! first needed, and a bridge in it per network, whose CIDR is reserved on
//! the machine by an `unreachable` route until the network is destroyed.

use cairn_engine::provider::ProviderResult;
use ipnet::{IpNet, Ipv4Net};

use super::hosts::{Hosts, host_err, v4};
use crate::cloud::model::LocalResource;
use crate::cloud::props::{parse_cidr, permanent, prop_str};
use crate::host::nat;
use crate::host::network::{self, CloudNet, Network, UNREACHABLE_METRIC};

impl Hosts {
    /// The cloud namespace and link, made when first needed. What a
    /// daemon that died left of them is removed first.
    pub(super) async fn net(&self) -> ProviderResult<CloudNet> {
        let mut slot = self.net.lock().await;
        if let Some(net) = slot.as_ref() {
            return Ok(net.clone());
        }
        let fail = |e| host_err("the cloud's network namespace", e);
        CloudNet::new(&self.id, Ipv4Net::default())
            .down()
            .await
            .map_err(fail)?;
        let link = network::choose_link(&self.id).await.map_err(fail)?;
        let net = CloudNet::new(&self.id, link);
        net.up().await.map_err(fail)?;
        if let Err(e) = self.serve_dns_on_link(&net).await {
            let _ = net.down().await;
            return Err(fail(e));
        }
        if let Err(e) = self.serve_master_on_link(&net).await {
            self.stop_dns_on_link().await;
            let _ = net.down().await;
            return Err(fail(e));
        }
        if let Some(block) = self.public_block_now()
            && let Err(e) = net.route_public(block).await
        {
            self.stop_master_on_link().await;
            self.stop_dns_on_link().await;
            let _ = net.down().await;
            return Err(fail(e));
        }
        *slot = Some(net.clone());
        Ok(net)
    }

    /// The cloud namespace, if it is up.
    pub(super) async fn net_if_up(&self) -> Option<CloudNet> {
        self.net.lock().await.clone()
    }

    pub(super) fn network(r: &LocalResource) -> ProviderResult<Network> {
        let cidr = v4(
            parse_cidr(prop_str(&r.properties, "cidr").unwrap_or_default())?,
            "network",
        )?;
        Network::new(&r.id, cidr).map_err(|e| host_err(&r.id, e))
    }

    /// A new network: its CIDR reserved on the machine (refused when it
    /// overlaps a route of the machine), its bridge in the cloud namespace.
    /// Nothing stays behind when it fails.
    pub async fn make_network(&self, id: &str, cidr: IpNet) -> ProviderResult<()> {
        let cidr = v4(cidr, "network")?;
        nat::check_free(cidr).map_err(permanent)?;
        let net = Network::new(id, cidr).map_err(|e| host_err(id, e))?;
        network::reserve_cidr(net.cidr)
            .await
            .map_err(|e| permanent(e.to_string()))?;
        let made = async {
            let cloud = self.net().await?;
            cloud
                .add_network(&net)
                .await
                .map_err(|e| host_err(&format!("network {id}"), e))
        }
        .await;
        if made.is_err() {
            let _ = network::release_cidr(net.cidr).await;
        }
        made
    }

    /// Brings a recorded network back: its CIDR reserved again if the
    /// route went (a reboot), its bridge made anew.
    pub(super) async fn restore_network(&self, r: &LocalResource) -> ProviderResult<()> {
        let net = Self::network(r)?;
        let routes = network::machine_routes()
            .await
            .map_err(|e| host_err(&r.id, e))?;
        let cidr = net.cidr.to_string();
        let reserved = routes.iter().any(|route| {
            route.kind.as_deref() == Some("unreachable")
                && route.dst == cidr
                && route.metric == Some(UNREACHABLE_METRIC)
        });
        if !reserved {
            network::reserve_cidr(net.cidr)
                .await
                .map_err(|e| host_err(&r.id, e))?;
        }
        let cloud = self.net().await?;
        cloud
            .remove_network(&net)
            .await
            .map_err(|e| host_err(&r.id, e))?;
        cloud
            .add_network(&net)
            .await
            .map_err(|e| host_err(&r.id, e))
    }

    /// Removes a destroyed network's bridge, route and reservation.
    pub async fn remove_network(&self, r: &LocalResource) -> ProviderResult<()> {
        let net = Self::network(r)?;
        if let Some(cloud) = self.net_if_up().await {
            cloud
                .remove_network(&net)
                .await
                .map_err(|e| host_err(&r.id, e))?;
        }
        network::release_cidr(net.cidr)
            .await
            .map_err(|e| host_err(&r.id, e))
    }
}
