//! TCP mode: each client connection picks a backend and bytes are spliced
//! both ways until either side closes, or the backend's drain deadline cuts
//! it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use super::shared::Shared;

/// Backends tried per connection when connecting fails.
const ATTEMPTS: usize = 2;

pub(super) async fn splice(
    shared: Arc<Shared>,
    worker: usize,
    mut client: TcpStream,
    peer: SocketAddr,
) {
    let mut tried = Vec::with_capacity(ATTEMPTS);
    while tried.len() < ATTEMPTS {
        let Some(flight) = shared.pick(&tried) else {
            break;
        };
        let up = flight.upstream().clone();
        tried.push(up.id);
        let mut backend = match shared.connect(&up).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(backend = %up.addr, %peer, "connect failed: {e}");
                continue;
            }
        };
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut backend) => match r {
                Ok((up_bytes, down_bytes)) => tracing::debug!(
                    backend = %up.addr, %peer, up_bytes, down_bytes, "tcp connection closed"
                ),
                Err(e) => tracing::debug!(backend = %up.addr, %peer, "tcp connection ended: {e}"),
            },
            _ = up.killed(worker) => {
                tracing::info!(backend = %up.addr, %peer, "tcp connection cut at the drain deadline");
            }
        }
        return;
    }
    tracing::warn!(%peer, tried = tried.len(), "no healthy backend took the connection; closing it");
}
