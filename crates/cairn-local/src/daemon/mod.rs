//! The local cloud's daemon: it owns the [`Cloud`], serves DNS for its zones,
//! and answers a control API on loopback that only holders of the token in
//! its directory may use. `cairn local start` runs it in the background (`launch`).

mod api;
pub mod client;
pub mod launch;
pub mod pool;
mod published;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::cloud::{Cloud, Isolation, LocalDirs};
pub use published::{Published, published_path, token_path};

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub dirs: LocalDirs,
    /// Where DNS is served (default 127.0.0.1:8053; 5353 belongs to mDNS).
    pub dns: SocketAddr,
    /// Put first on every server's PATH (the directory of `cairn`).
    pub path: Vec<PathBuf>,
    /// The address block of a new cloud: 127.`pool`.0.0/16.
    pub pool: u8,
    /// How a new cloud runs its servers; an existing one refuses the other
    /// (`None`: whatever it was made with, `process` for a new one).
    pub isolation: Option<Isolation>,
    /// Serve the cloud's master and run an agent on every server (see
    /// `cloud::agents`).
    pub agents: bool,
}

pub const DEFAULT_DNS: &str = "127.0.0.1:8053";

/// A fresh random token, written 0600 before anything listens.
fn write_token(dirs: &LocalDirs) -> Result<String, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let token =
        crate::random::hex(32).map_err(|e| format!("no randomness for the daemon's token: {e}"))?;
    let path = token_path(dirs);
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(token.as_bytes()).map_err(|e| e.to_string())?;
    Ok(token)
}

/// Runs the daemon until `shutdown` is cancelled: claims the cloud's address
/// pool, binds DNS and the API (loopback only), restores the cloud,
/// publishes where they are, serves.
pub async fn run(config: DaemonConfig, shutdown: CancellationToken) -> Result<(), String> {
    if !config.dns.ip().is_loopback() {
        return Err(format!("DNS address {} is not on loopback", config.dns));
    }
    let cloud = Arc::new(Cloud::open_with(
        config.dirs.clone(),
        config.path.clone(),
        config.pool,
        config.isolation,
    )?);
    // Everything that can refuse to start comes before the restore, so a
    // refusal leaves no process of this cloud running.
    let claim = pool::claim(cloud.pool()).await.map_err(|e| e.to_string())?;
    let udp = UdpSocket::bind(config.dns).await.map_err(|e| {
        format!(
            "cannot serve DNS on {} (udp): {e}; is another program using it?",
            config.dns
        )
    })?;
    let tcp = TcpListener::bind(config.dns)
        .await
        .map_err(|e| format!("cannot serve DNS on {} (tcp): {e}", config.dns))?;
    let dns_addr = udp.local_addr().map_err(|e| e.to_string())?;
    let api = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let api_addr = api.local_addr().map_err(|e| e.to_string())?;
    // Before the servers come back, so their agents find it.
    if config.agents
        && let Err(e) = cloud.agents().serve().await
    {
        tracing::error!("servers run without agents: {e}");
    }
    let problems = cloud.restore().await;
    for problem in &problems {
        tracing::error!("restoring the local cloud: {problem}");
    }
    let holder = format!(
        "the local cloud in {}, pid {}",
        config.dirs.root.display(),
        std::process::id()
    );
    let claimed = tokio::spawn(pool::serve(claim, holder, shutdown.clone()));
    let token = write_token(&config.dirs)?;
    let published = Published {
        pid: std::process::id(),
        api: api_addr,
        dns: dns_addr,
        problems,
    };
    let text = serde_json::to_vec(&published).map_err(|e| e.to_string())?;
    let tmp = published_path(&config.dirs).with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, published_path(&config.dirs)).map_err(|e| e.to_string())?;
    tracing::info!("local cloud: api {api_addr}, dns {dns_addr}");

    let dns = tokio::spawn(crate::dns::serve(
        udp,
        tcp,
        cloud.zones().clone(),
        shutdown.clone(),
    ));
    let served = api::serve(api, cloud.clone(), token, shutdown.clone()).await;
    let _ = dns.await;
    cloud.shutdown().await;
    // The block is free again only once nothing of this cloud runs on it.
    drop(claimed.await);
    let _ = std::fs::remove_file(published_path(&config.dirs));
    served
}

#[cfg(test)]
mod tests;
