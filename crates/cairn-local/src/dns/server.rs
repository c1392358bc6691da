//! The DNS listeners: hickory's `Server` over a request handler that answers
//! each query from the catalog current when the query arrives.

use std::{future::Future, pin::Pin, time::Duration};

use hickory_server::{
    Server,
    net::{NetError, runtime::Time},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::error::DnsError;
use super::zones::Zones;

/// A TCP client that sends nothing for this long is disconnected (hickory's
/// own default).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Responses queued per TCP connection (hickory's own default).
const TCP_RESPONSE_BUFFER: usize = 32;

/// How long shutdown waits for the listeners to stop before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `zones` authoritatively on the already-bound `udp` socket and `tcp`
/// listener until `shutdown` is cancelled, then stops accepting, lets the
/// listeners finish (at most [`SHUTDOWN_GRACE`]) and returns `Ok`. Returns an
/// error if a listener fails before that.
///
/// Answers carry AA and each record set's TTL; a name in a zone that does not
/// exist is NXDOMAIN and an existing name without the asked type is NOERROR
/// with no answers, both with the zone's SOA in the authority section; a
/// CNAME is followed inside the zone; a name outside every zone is REFUSED.
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    zones: Zones,
    shutdown: CancellationToken,
) -> Result<(), DnsError> {
    tracing::info!(
        udp = ?udp.local_addr().ok(),
        tcp = ?tcp.local_addr().ok(),
        "DNS server listening"
    );
    let mut server = Server::new(ZonesHandler { zones });
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);

    tokio::select! {
        () = shutdown.cancelled() => {}
        // The listeners only end on their own when they fail.
        result = server.block_until_done() => {
            tracing::error!(?result, "DNS listeners stopped unexpectedly");
            return Err(DnsError::Server(result.err().unwrap_or_else(|| {
                NetError::from("the DNS listeners stopped without being asked to")
            })));
        }
    }

    match tokio::time::timeout(SHUTDOWN_GRACE, server.shutdown_gracefully()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "DNS listener failed while stopping"),
        Err(_) => tracing::warn!(
            grace = ?SHUTDOWN_GRACE,
            "DNS listeners did not stop in time; dropping them"
        ),
    }
    // Dropping `server` aborts whatever is left in its task set.
    tracing::info!("DNS server stopped");
    Ok(())
}

/// Hands each request to the catalog current at its arrival. The `Arc` it
/// takes keeps that catalog alive for the query even if an edit replaces it
/// meanwhile.
struct ZonesHandler {
    zones: Zones,
}

// `RequestHandler` is declared with `#[async_trait]`; this crate does not
// depend on `async-trait`, so the impl spells out the signature that macro
// generates.
impl RequestHandler for ZonesHandler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let catalog = self.zones.catalog();
        Box::pin(async move {
            catalog
                .handle_request::<R, T>(request, response_handle)
                .await
        })
    }
}
