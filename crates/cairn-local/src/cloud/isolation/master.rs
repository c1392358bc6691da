//! The cloud's master as a `runc` cloud's servers reach it: on the
//! machine's end of the link, port 4506, where a listener of the daemon's
//! carries each connection to the master on its loopback address (a
//! server's 127.0.0.0/8 is its own). The link can move when the cloud
//! starts again, so each server is told where at every start (its
//! environment, `CAIRN_MASTER`), as its `/etc/resolv.conf` is written.
//!
//! Only bytes are carried: the agent and the master authenticate each
//! other end to end (mutual TLS, both keys pinned), so the listener needs
//! no trust and no firewall rule of its own; the servers' firewalls guard
//! what comes in to them, and this is a connection they make.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::hosts::Hosts;
use crate::cloud::agents::{AGENT_DIR, MASTER_PORT};
use crate::cloud::relay::relay;
use crate::host::HostError;
use crate::host::network::CloudNet;

impl Hosts {
    /// Where servers reach the master: the machine's end of the link.
    pub(super) fn master_on_link(cloud: &CloudNet) -> SocketAddr {
        SocketAddr::from((cloud.host_address(), MASTER_PORT))
    }

    /// What a server's init needs to run its agent (`cairn init` starts it
    /// as the built-in service `cairn-agent` when these are set and the
    /// key is in [`AGENT_DIR`]); nothing while the master is not served.
    pub(super) fn agent_env(&self, cloud: &CloudNet) -> Vec<String> {
        if !self.agents.serving() {
            return Vec::new();
        }
        vec![
            format!("CAIRN_MASTER={}", Self::master_on_link(cloud)),
            format!("CAIRN_MASTER_FINGERPRINT={}", self.agents.fingerprint()),
        ]
    }

    /// Enrols server `id` with a key in its root (mounted), when the
    /// master is served.
    pub(super) fn enrol_agent(&self, id: &str, rootfs: &std::path::Path) -> Result<(), String> {
        if !self.agents.serving() {
            return Ok(());
        }
        self.agents
            .enrol(id, &rootfs.join(AGENT_DIR.trim_start_matches('/')))
            .map(|_| ())
    }

    /// Carries connections from the link to the master, while it is
    /// served.
    pub(super) async fn serve_master_on_link(&self, cloud: &CloudNet) -> Result<(), HostError> {
        if !self.agents.serving() {
            return Ok(());
        }
        let addr = Self::master_on_link(cloud);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| HostError::io(format!("serve the master to servers on {addr}"), e))?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(forward(listener, self.agents.listen(), stop.clone()));
        let old = self
            .link_master
            .lock()
            .expect("link master lock")
            .replace((stop, task));
        if let Some((old, _)) = old {
            old.cancel();
        }
        Ok(())
    }

    /// Stops the listener on the link, if it runs (its connections go
    /// with it).
    pub(super) async fn stop_master_on_link(&self) {
        let running = self.link_master.lock().expect("link master lock").take();
        if let Some((stop, task)) = running {
            stop.cancel();
            let _ = task.await;
        }
    }
}

async fn forward(listener: TcpListener, master: SocketAddr, stop: CancellationToken) {
    let what = format!("the master's listener on the link (to {master})");
    relay(
        listener,
        stop,
        what,
        |_| true,
        move || TcpStream::connect(master),
    )
    .await
}
