//! Names for a `runc` cloud's servers: the cloud's zones served on the
//! machine's end of the link (servers cannot reach the machine's
//! loopback, where the daemon's own DNS listener is), and each server's
//! `/etc/resolv.conf` pointing at it.

use std::net::Ipv4Addr;

use super::hosts::Hosts;
use crate::host::HostError;
use crate::host::network::CloudNet;

/// A server's `/etc/resolv.conf`: the cloud's DNS on the link first (its
/// zones; it refuses other names, and the resolver moves on), then the
/// machine's own resolvers (public names, reachable from networks with
/// `internet: true`), with short timeouts so a closed network fails fast.
pub(super) fn resolv_conf(link: Ipv4Addr, machine: &[String]) -> String {
    let mut out = format!("# written by cairn at every start\nnameserver {link}\n");
    for ns in machine
        .iter()
        .filter(|n| n.parse::<Ipv4Addr>().is_ok_and(|a| !a.is_loopback()))
    {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    out.push_str("options timeout:2 attempts:1\n");
    out
}

/// The machine's `nameserver` lines (loopback ones are useless in a
/// server and left out by [`resolv_conf`]).
pub(super) fn machine_nameservers() -> Vec<String> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|a| a.trim().to_string())
        .collect()
}

impl Hosts {
    /// Serves the cloud's zones to its servers at the machine's end of the
    /// link, port 53 (a resolv.conf names no port): servers cannot reach
    /// the machine's loopback, where the daemon's own DNS listener is.
    pub(super) async fn serve_dns_on_link(&self, cloud: &CloudNet) -> Result<(), HostError> {
        let addr = std::net::SocketAddr::from((cloud.host_address(), 53));
        let udp = tokio::net::UdpSocket::bind(addr)
            .await
            .map_err(|e| HostError::io(format!("serve DNS to servers on {addr} (udp)"), e))?;
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| HostError::io(format!("serve DNS to servers on {addr} (tcp)"), e))?;
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(crate::dns::serve(
            udp,
            tcp,
            self.zones.clone(),
            stop.clone(),
        ));
        if let Some((old, _)) = self
            .link_dns
            .lock()
            .expect("link dns lock")
            .replace((stop, task))
        {
            old.cancel();
        }
        Ok(())
    }

    /// Stops the DNS listener on the link, if it runs.
    pub(super) async fn stop_dns_on_link(&self) {
        let running = self.link_dns.lock().expect("link dns lock").take();
        if let Some((stop, task)) = running {
            stop.cancel();
            let _ = task.await;
        }
    }
}
