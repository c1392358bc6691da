//! A `runc` cloud's load balancers' addresses: each on the machine's end
//! of the cloud's link, where it listens and connects to backends from.

use std::net::Ipv4Addr;

use cairn_engine::provider::ProviderResult;
use ipnet::Ipv4Net;

use super::hosts::{Hosts, host_err};
use crate::cloud::props::permanent;
use crate::host::command::Cmd;

impl Hosts {
    /// Load balancer `id`'s address on the machine's end of the link: it
    /// listens there and connects to backends from there. The machine has
    /// it as its own; servers reach it through their gateway and the link;
    /// the firewalls tell the balancer apart from the machine by it.
    /// `wanted` (its recorded address) when it is on the link and free,
    /// else the lowest free one from the link's 10th address up. Added to
    /// the link before it is returned, so a listener can bind at once.
    pub async fn lb_address(&self, id: &str, wanted: Option<Ipv4Addr>) -> ProviderResult<Ipv4Addr> {
        let cloud = self.net().await?;
        let address = {
            let mut link = self.link.lock().expect("link lock");
            if let Some(ip) = link.balancers.get(id) {
                return Ok(*ip);
            }
            let ip = pick_lb_address(cloud.link, &link.taken(), wanted).ok_or_else(|| {
                permanent("no address left on the cloud's link for a load balancer")
            })?;
            link.balancers.insert(id.to_string(), ip);
            ip
        };
        let added = Cmd::new("ip")
            .args(["addr", "replace"])
            .arg(format!("{address}/{}", cloud.link.prefix_len()))
            .args(["dev", &cloud.host_if])
            .run()
            .await;
        if let Err(e) = added {
            self.link.lock().expect("link lock").balancers.remove(id);
            return Err(host_err(
                &format!("load balancer {id}'s address {address}"),
                e,
            ));
        }
        Ok(address)
    }

    /// Takes a stopped or removed load balancer's address off the link.
    pub async fn release_lb_address(&self, id: &str) {
        let Some(ip) = self.link.lock().expect("link lock").balancers.remove(id) else {
            return;
        };
        if let Some(cloud) = self.net_if_up().await {
            let _ = Cmd::new("ip")
                .args(["addr", "del"])
                .arg(format!("{ip}/{}", cloud.link.prefix_len()))
                .args(["dev", &cloud.host_if])
                .output()
                .await;
        }
    }
}

/// A load balancer's address on `link`: `wanted` when it is one of the
/// link's host addresses from the 10th up and not in `used` (the low ones
/// are the machine's and the cloud namespace's ends), else the lowest
/// free one from the 10th up; `None` when the link is full.
fn pick_lb_address(link: Ipv4Net, used: &[Ipv4Addr], wanted: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
    let base = u32::from(link.network());
    let usable = |ip: &Ipv4Addr| {
        let n = u32::from(*ip).wrapping_sub(base);
        link.contains(ip) && n >= 10 && *ip != link.broadcast() && !used.contains(ip)
    };
    wanted.filter(usable).or_else(|| {
        (10..u32::from(link.broadcast()).wrapping_sub(base))
            .map(|n| Ipv4Addr::from(base + n))
            .find(usable)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_balancer_keeps_its_link_address_when_free_else_takes_the_lowest_from_the_tenth() {
        let link: Ipv4Net = "169.254.7.0/24".parse().unwrap();
        let at = |n: u8| Ipv4Addr::new(169, 254, 7, n);
        assert_eq!(pick_lb_address(link, &[], None), Some(at(10)));
        assert_eq!(
            pick_lb_address(link, &[at(10), at(254)], None),
            Some(at(11))
        );
        // Its address before a restart, when it is still free.
        assert_eq!(pick_lb_address(link, &[at(10)], Some(at(42))), Some(at(42)));
        // Taken meanwhile, one of the link's ends, off the link (the link
        // moved, or an earlier cairn's loopback address): a new one.
        assert_eq!(pick_lb_address(link, &[at(42)], Some(at(42))), Some(at(10)));
        assert_eq!(pick_lb_address(link, &[], Some(at(1))), Some(at(10)));
        assert_eq!(pick_lb_address(link, &[], Some(at(255))), Some(at(10)));
        let elsewhere = Ipv4Addr::new(169, 254, 8, 42);
        assert_eq!(pick_lb_address(link, &[], Some(elsewhere)), Some(at(10)));
        let loopback = Ipv4Addr::new(127, 43, 0, 5);
        assert_eq!(pick_lb_address(link, &[], Some(loopback)), Some(at(10)));
        // A full link: none.
        let all: Vec<Ipv4Addr> = (10..=254).map(at).collect();
        assert_eq!(pick_lb_address(link, &all, None), None);
        assert_eq!(pick_lb_address(link, &all[1..], None), Some(at(10)));
    }
}
