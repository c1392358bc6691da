//! Carrying TCP connections from a listener of the daemon to where a
//! service really listens: a public address to its server, a database's
//! link address to PostgreSQL, the link to the cloud's master. Only bytes
//! are carried; what is allowed in is decided per connection by `admit`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Accepts on `listener` until `stop`, and carries each connection whose
/// source `admit` allows to what `dial` opens, until either side closes
/// or `stop`. A source not admitted, or one whose far side cannot be
/// reached, is reset at once (the client learns, as from the balancer).
/// `what` names the relay in logs.
pub(super) async fn relay<D, Fut>(
    listener: TcpListener,
    stop: CancellationToken,
    what: String,
    admit: impl Fn(SocketAddr) -> bool,
    dial: D,
) where
    D: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = std::io::Result<TcpStream>> + Send,
{
    let mut carried = JoinSet::new();
    loop {
        let (mut inbound, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors, say: wait rather than spin.
                Err(e) => {
                    tracing::warn!("{what}: accepting: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = carried.join_next(), if !carried.is_empty() => continue,
        };
        if !admit(peer) {
            tracing::debug!(%peer, "{what}: connection refused by the firewalls");
            let _ = inbound.set_zero_linger();
            continue;
        }
        let (stop, dial, what) = (stop.clone(), dial.clone(), what.clone());
        carried.spawn(async move {
            let mut outbound = match dial().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%peer, "{what}: connection not carried: {e}");
                    let _ = inbound.set_zero_linger();
                    return;
                }
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            tokio::select! {
                () = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            }
        });
    }
    carried.shutdown().await;
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn echo() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn carries_admitted_connections_resets_refused_ones_and_stops() {
        let (backend, echo_task) = echo().await;
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = front.local_addr().unwrap();
        let stop = CancellationToken::new();
        let admitted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let gate = admitted.clone();
        let task = tokio::spawn(relay(
            front,
            stop.clone(),
            "test relay".into(),
            move |_| gate.load(std::sync::atomic::Ordering::SeqCst),
            move || TcpStream::connect(backend),
        ));

        let mut c = TcpStream::connect(at).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");

        admitted.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut refused = TcpStream::connect(at).await.unwrap();
        let mut buf = [0u8; 1];
        let r = refused.read(&mut buf).await;
        assert!(
            matches!(r, Ok(0)) || r.is_err(),
            "a refused source got data: {r:?}"
        );

        // Stopping ends the relay and the connections it carries.
        stop.cancel();
        task.await.unwrap();
        let mut buf = [0u8; 1];
        let r = c.read(&mut buf).await;
        assert!(matches!(r, Ok(0)) || r.is_err(), "{r:?}");
        assert!(
            crate::test_server::unbound(at),
            "the listener is still open"
        );
        echo_task.abort();
    }

    #[tokio::test]
    async fn a_far_side_that_cannot_be_reached_resets_the_client() {
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = gone.local_addr().unwrap();
        drop(gone);
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = front.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(relay(
            front,
            stop.clone(),
            "test relay".into(),
            |_| true,
            move || TcpStream::connect(dead),
        ));
        let mut c = TcpStream::connect(at).await.unwrap();
        let mut buf = [0u8; 1];
        let r = c.read(&mut buf).await;
        assert!(matches!(r, Ok(0)) || r.is_err(), "{r:?}");
        stop.cancel();
        task.await.unwrap();
    }
}
