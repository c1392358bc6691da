//! A `runc` cloud's public addresses: a block of the cloud's own in
//! 198.18.0.0/15, claimed with the first address and released with the
//! last, routed into the cloud namespace while that is up (the firewall
//! table translates each address to its server's).

use std::net::Ipv4Addr;

use cairn_engine::provider::{ProviderError, ProviderResult};
use ipnet::Ipv4Net;

use super::hosts::{Hosts, host_err};
use crate::cloud::model::CloudState;
use crate::host::network;

impl Hosts {
    /// A public address, reserved by `reserve` in the cloud's public block
    /// (which it picks a free address of, under the cloud's lock). The
    /// first claims the block: an `unreachable` route that keeps it on the
    /// machine until the last public address goes, and its route into the
    /// cloud namespace.
    pub async fn public_address(
        &self,
        reserve: impl FnOnce(Ipv4Net) -> ProviderResult<Ipv4Addr>,
    ) -> ProviderResult<Ipv4Addr> {
        let _claim = self.public_claim.lock().await;
        let block = match self.public_block_now() {
            Some(block) => block,
            None => {
                let block = network::claim_public_block(&self.id)
                    .await
                    .map_err(|e| host_err("the cloud's public addresses", e))?;
                *self.public_block.lock().expect("public block lock") = Some(block);
                if let Some(cloud) = self.net_if_up().await
                    && let Err(e) = cloud.route_public(block).await
                {
                    *self.public_block.lock().expect("public block lock") = None;
                    let _ = network::release_cidr(block).await;
                    return Err(host_err("the cloud's public addresses", e));
                }
                tracing::info!(%block, "public addresses' block claimed");
                block
            }
        };
        reserve(block)
    }

    /// Releases the public block once `used` (asked under the claim) says
    /// no address of it is recorded or being made.
    pub async fn release_public_block_if_unused(
        &self,
        used: impl FnOnce(Ipv4Net) -> bool,
    ) -> ProviderResult<()> {
        let _claim = self.public_claim.lock().await;
        let Some(block) = self.public_block_now() else {
            return Ok(());
        };
        if used(block) {
            return Ok(());
        }
        let fail = |e| ProviderError::Transient(format!("the cloud's public addresses: {e}"));
        if let Some(cloud) = self.net_if_up().await {
            cloud.unroute_public(block).await.map_err(fail)?;
        }
        network::release_cidr(block).await.map_err(fail)?;
        *self.public_block.lock().expect("public block lock") = None;
        tracing::info!(%block, "public addresses' block released");
        Ok(())
    }

    /// Takes the recorded public addresses' block back (its `unreachable`
    /// route again if the machine lost it).
    pub(super) async fn restore_public_block(&self, state: &CloudState) -> Vec<String> {
        let (block, mut problems) = recorded_public_block(state);
        let Some(block) = block else {
            return problems;
        };
        let _claim = self.public_claim.lock().await;
        match network::reclaim_public_block(block).await {
            Ok(()) => *self.public_block.lock().expect("public block lock") = Some(block),
            Err(e) => problems.push(format!("the cloud's public addresses {block}: {e}")),
        }
        problems
    }
}

/// The block of the recorded public addresses, and a problem for each
/// made by an earlier cairn on the machine's loopback (no longer
/// answering).
fn recorded_public_block(state: &CloudState) -> (Option<Ipv4Net>, Vec<String>) {
    let mut problems = Vec::new();
    let mut block = None;
    for r in state.of_kind("ip_address") {
        let Some(ip) = r.ip else { continue };
        if !network::PUBLIC_RANGE.contains(&ip) {
            problems.push(format!(
                "{}: public address {ip} was made by an earlier cairn on the machine's loopback \
                 and no longer answers; make it again (`cairn destroy` and `cairn up` of its \
                 deployment)",
                r.id
            ));
            continue;
        }
        let of_ip = Ipv4Net::new(ip, network::PUBLIC_BLOCK_LEN)
            .map(|n| n.trunc())
            .unwrap_or_default();
        block.get_or_insert(of_ip);
    }
    (block, problems)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cloud::model::put;

    #[test]
    fn the_public_block_is_the_recorded_addresses_and_loopback_ones_are_reported() {
        let mut st = CloudState::default();
        assert_eq!(recorded_public_block(&st), (None, vec![]));
        put(&mut st, "p1", "ip_address", json!({}), Some("198.19.3.7"));
        put(&mut st, "p2", "ip_address", json!({}), Some("198.19.3.9"));
        put(&mut st, "old", "ip_address", json!({}), Some("127.43.0.5"));
        let (block, problems) = recorded_public_block(&st);
        assert_eq!(block, Some("198.19.3.0/24".parse().unwrap()));
        assert_eq!(
            problems,
            [
                "old: public address 127.43.0.5 was made by an earlier cairn on the machine's \
              loopback and no longer answers; make it again (`cairn destroy` and `cairn up` of \
              its deployment)"
            ]
        );
    }
}
