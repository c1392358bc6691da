//! The cloud's databases as its servers reach them.
//!
//! PostgreSQL runs in the daemon's namespace on a loopback address
//! (127.P.x.y), which no server can reach: 127.0.0.0/8 in a server is its
//! own. So in a `runc` cloud each database also answers at an address of
//! its own on the cloud's link, in the cloud namespace (from 169.254.x.253
//! down), where a listener of the daemon's takes each connection and
//! carries it to PostgreSQL. That address is its `endpoint`: the machine
//! reaches it on the link, a server through its gateway, and both arrive at
//! the cloud namespace's `input` hook, where the database's firewalls are
//! nftables rules like a server's (the machine is one more source, as for
//! servers). PostgreSQL itself is left as it is: it could listen on that
//! address only from inside the namespace, and its listen addresses are
//! fixed when it starts, before the namespace may exist.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use cairn_engine::provider::ProviderResult;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::hosts::{Hosts, host_err};
use super::listeners::Listener;
use crate::cloud::props::permanent;
use crate::cloud::relay::relay;
use crate::host::command::Cmd;
use crate::host::dial;

/// PostgreSQL's port, at the link address as on loopback.
pub const PORT: u16 = 5432;

impl Hosts {
    /// Chooses database `id`'s address on the link: `wanted` (the one it
    /// had before a restart) when it is on the link and free, else the
    /// highest free one (load balancers' sources are taken from the low
    /// end). The firewall can be applied with it before anything listens.
    pub async fn reserve_database_address(
        &self,
        id: &str,
        wanted: Option<Ipv4Addr>,
    ) -> ProviderResult<Ipv4Addr> {
        let cloud = self.net().await?;
        let mut link = self.link.lock().expect("link lock");
        if let Some(ip) = link.databases.get(id) {
            return Ok(*ip);
        }
        let used = link.taken();
        let base = u32::from(cloud.link.network());
        let usable = |ip: &Ipv4Addr| {
            let n = u32::from(*ip).wrapping_sub(base);
            cloud.link.contains(ip) && (10..255).contains(&n) && !used.contains(ip)
        };
        let ip = wanted
            .filter(usable)
            .or_else(|| {
                (10..255u32)
                    .rev()
                    .map(|n| Ipv4Addr::from(base + n))
                    .find(usable)
            })
            .ok_or_else(|| permanent("no address left on the cloud's link for a database"))?;
        link.databases.insert(id.to_string(), ip);
        Ok(ip)
    }

    /// Serves database `id` at its reserved address: the address added to
    /// the cloud namespace, a listener there carrying every connection to
    /// PostgreSQL at `backend`. On failure nothing of it stays (and the
    /// reservation goes).
    pub async fn serve_database(&self, id: &str, backend: SocketAddr) -> ProviderResult<()> {
        let served = self.listen_for_database(id, backend).await;
        if served.is_err() {
            self.stop_serving_database(id).await;
        }
        served
    }

    async fn listen_for_database(&self, id: &str, backend: SocketAddr) -> ProviderResult<()> {
        let cloud = self.net().await?;
        let address = self
            .link
            .lock()
            .expect("link lock")
            .databases
            .get(id)
            .copied()
            .ok_or_else(|| permanent(format!("database {id} has no address on the link")))?;
        let what = format!("database {id}'s address {address} in the cloud's namespace");
        Cmd::new("ip")
            .args([
                "-n",
                &cloud.netns,
                "addr",
                "replace",
                &format!("{address}/32"),
            ])
            .args(["dev", &cloud.cloud_if])
            .run()
            .await
            .map_err(|e| host_err(&what, e))?;
        let netns = std::path::PathBuf::from("/run/netns").join(&cloud.netns);
        let listener = dial::listen_in(&netns, SocketAddr::from((address, PORT)))
            .await
            .map_err(|e| permanent(format!("{what}: {e}")))?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(forward(listener, backend, stop.clone()));
        let old = self
            .db_listeners
            .lock()
            .expect("db listeners lock")
            .insert(id.to_string(), Listener { stop, task });
        if let Some(old) = old {
            old.stop.cancel();
        }
        Ok(())
    }

    /// Stops serving database `id` on the link and gives its address back.
    pub async fn stop_serving_database(&self, id: &str) {
        let listener = self
            .db_listeners
            .lock()
            .expect("db listeners lock")
            .remove(id);
        if let Some(l) = listener {
            l.stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), l.task).await;
        }
        self.staged_databases
            .lock()
            .expect("staged lock")
            .remove(id);
        let address = self.link.lock().expect("link lock").databases.remove(id);
        if let (Some(address), Some(cloud)) = (address, self.net_if_up().await) {
            let _ = Cmd::new("ip")
                .args(["-n", &cloud.netns, "addr", "del", &format!("{address}/32")])
                .args(["dev", &cloud.cloud_if])
                .output()
                .await;
        }
    }

    /// Stops every database listener (the addresses go with the namespace).
    pub(super) async fn stop_databases(&self) {
        let all: Vec<Listener> = self
            .db_listeners
            .lock()
            .expect("db listeners lock")
            .drain()
            .map(|(_, l)| l)
            .collect();
        for l in all {
            l.stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), l.task).await;
        }
        self.link.lock().expect("link lock").databases.clear();
    }
}

/// Carries every connection `listener` takes to `backend`, until `stop`.
async fn forward(listener: TcpListener, backend: SocketAddr, stop: CancellationToken) {
    let what = format!("the database forwarder to {backend}");
    relay(
        listener,
        stop,
        what,
        |_| true,
        move || TcpStream::connect(backend),
    )
    .await
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn connections_are_carried_to_the_backend_until_stopped() {
        let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend_addr = backend.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            while let Ok((mut s, _)) = backend.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 5];
                    if s.read_exact(&mut buf).await.is_ok() {
                        let _ = s.write_all(&buf).await;
                    }
                });
            }
        });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(forward(front, backend_addr, stop.clone()));
        let mut c = TcpStream::connect(front_addr).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        // Stopped: the open connection is closed, no new one is taken.
        stop.cancel();
        task.await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).await.unwrap_or(0), 0);
        assert!(crate::test_server::unbound(front_addr), "still listening");
        echo.abort();
    }

    #[tokio::test]
    async fn a_connection_is_reset_when_postgres_does_not_answer() {
        // A port nothing listens on: bound, then closed.
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = gone.local_addr().unwrap();
        drop(gone);
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(forward(front, backend, stop.clone()));
        let mut c = TcpStream::connect(front_addr).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
            .await
            .expect("the client learns at once");
        assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");
        stop.cancel();
        task.await.unwrap();
    }
}
