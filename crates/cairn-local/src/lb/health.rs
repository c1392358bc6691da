//! Active health checks: one task per backend probes it every interval. The
//! settings are read before every probe, so an update applies from the next
//! one; `serve` starts and aborts these tasks as backends come and go.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper::client::conn::http1;
use hyper::header;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::config::Protocol;
use super::shared::Shared;
use super::upstream::Upstream;

pub(super) async fn run(shared: Arc<Shared>, up: Arc<Upstream>) {
    // The first probe goes out at once, so a new backend is put in as soon
    // as it answers.
    while let Some((check, protocol)) = shared.health() {
        let started = Instant::now();
        let target = SocketAddr::new(up.addr.ip(), check.port.unwrap_or(up.addr.port()));
        let outcome = match tokio::time::timeout(
            check.timeout,
            probe(&shared, protocol, target, &check.path),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", check.timeout)),
        };
        match &outcome {
            Ok(()) => shared.record(&up, true, ""),
            Err(why) => {
                tracing::debug!(backend = %up.addr, "health check failed: {why}");
                shared.record(&up, false, why);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(started + check.interval) => {}
            _ = up.probe_requested() => {}
        }
    }
}

/// One probe: a TCP connect, or an HTTP `GET path` answered 2xx or 3xx.
async fn probe(
    shared: &Shared,
    protocol: Protocol,
    target: SocketAddr,
    path: &str,
) -> Result<(), String> {
    let stream = shared
        .connect_to(target)
        .await
        .map_err(|e| format!("connecting to {target}: {e}"))?;
    if protocol == Protocol::Tcp {
        return Ok(());
    }
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {target}: {e}"))?;
    let req = Request::get(path)
        .header(header::HOST, target.to_string())
        .header(header::USER_AGENT, "cairn-lb-health-check")
        .header(header::CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| format!("health check request for {path:?}: {e}"))?;
    let send = sender.send_request(req);
    tokio::pin!(send, conn);
    // The connection has to be driven for the response to arrive; if it ends
    // first, the response (or the error) is already waiting in `send`.
    let resp = tokio::select! {
        biased;
        r = &mut send => r,
        _ = &mut conn => send.await,
    }
    .map_err(|e| format!("GET {path} on {target}: {e}"))?;
    let status = resp.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("GET {path} on {target} answered {status}"))
    }
}
