//! Servers that tests start on loopback and stop again, each connection a
//! task of its own.
//! And `unbound`: whether a server stopped listening.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// A test server; `stop` closes its listener and its connections.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl TestServer {
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let abort = self.task.abort_handle();
        if timeout(Duration::from_secs(3), self.task).await.is_err() {
            abort.abort();
        }
    }
}

/// What a test server does with its open connections when it is stopped.
#[derive(Clone, Copy)]
pub(crate) enum OnStop {
    /// Waits for each to end (their handler watches the stop token), as a
    /// server shutting down gracefully does.
    Finish,
    /// Cuts them at once.
    Cut,
}

/// A server on `listener` until stopped: each connection it accepts goes
/// to a task of its own, `conn(stream, stop)` (called as it is accepted).
/// Stopping closes the listener, then deals with the open connections as
/// `on_stop` says.
pub(crate) fn test_server<F, Fut>(listener: TcpListener, on_stop: OnStop, conn: F) -> TestServer
where
    F: Fn(TcpStream, CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let stream = tokio::select! {
                _ = token.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(_) => continue,
                },
            };
            conns.spawn(conn(stream, token.clone()));
            while conns.try_join_next().is_some() {}
        }
        drop(listener);
        match on_stop {
            OnStop::Finish => while conns.join_next().await.is_some() {},
            OnStop::Cut => conns.shutdown().await,
        }
    });
    TestServer { addr, stop, task }
}

/// Whether nothing listens on `addr` any more, within 5 s: it can be bound
/// again. Polled, because a listener its server closed can live on for a
/// moment in a process that another test thread is starting: the child
/// holds a copy of every descriptor until its exec closes them (CLOEXEC).
/// That is the most likely cause of two CI failures of a check made once,
/// one a connect that was answered, one a bind that was refused.
pub(crate) fn unbound(addr: SocketAddr) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        // The closed connections of the server that listened there may sit
        // in TIME-WAIT on the port.
        socket.set_reuse_address(true).unwrap();
        if socket.bind(&addr.into()).is_ok() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
