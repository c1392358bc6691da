//! Thread per core: the balancer's traffic runs on `threads` workers, each a
//! thread with its own single-threaded tokio runtime that accepts on its own
//! listening socket and serves what it accepted. The sockets form one
//! SO_REUSEPORT group on the balancer's address (the caller's listener
//! joins it), so the kernel spreads new connections over the workers and
//! wakes only the one it picked; where that cannot be set up a worker holds
//! a duplicate of the caller's socket instead (every such worker is woken,
//! one wins the connection). The hash leaves the workers a few connections
//! apart, so a worker holding more hands kept-alive ones over to the
//! emptiest between two requests, through that one's inbox (`spread`).
//! A worker owns its connections to backends too (`Upstream` keeps one
//! idle pool per worker), so a request's client side and backend side run
//! in one task on one thread: nothing wakes a task on another core, as in
//! nginx's workers or HAProxy's threads. What the workers share (the table
//! with its picks, health, access, drains) stays behind the `Shared` locks
//! and atomics.
//!
//! With `threads` 0 the one worker runs on the caller's runtime instead (the
//! fallback when no thread can be started, and a setting tests use).
//!
//! Stopping: `stop` ends accepting, lets what is open finish for up to the
//! drain timeout, then cuts the rest; `cut` (the serve future was dropped)
//! ends everything at once. A worker's thread reports back once its runtime
//! is gone, so every socket it had is closed by then.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::Protocol;
use super::proxy::{self, Move, Worker};
use super::shared::{Shared, log_panic};
use super::spread::{Handed, Held, Spread};
use super::tcp;
use super::upstream::lock;

/// Closes the worker's kept backend connections however `run` ends (also
/// when its future is dropped): they belong to its runtime.
struct ClosePools<'a>(&'a Shared, usize);

impl Drop for ClosePools<'_> {
    fn drop(&mut self) {
        self.0.close_idle(self.1);
    }
}

/// The running workers of one `serve`.
pub(super) struct Workers {
    /// One per worker thread: closed when the thread's runtime is gone.
    threads: Vec<oneshot::Receiver<()>>,
    /// The worker on the caller's runtime, when no thread runs one.
    inline: JoinSet<()>,
    /// How many connections each worker holds.
    #[cfg(test)]
    pub(super) spread: Arc<Spread>,
}

impl Workers {
    /// Starts up to `threads` workers on `listener` (at least one: on the
    /// caller's runtime when no thread starts).
    pub fn start(
        shared: &Arc<Shared>,
        listener: std::net::TcpListener,
        threads: usize,
        stop: &CancellationToken,
        cut: &CancellationToken,
    ) -> Self {
        let sockets = sockets(listener, threads.max(1), Share::ReusePort);
        let (spread, inboxes) = Spread::new(sockets.len());
        let mut workers = Self {
            threads: Vec::new(),
            inline: JoinSet::new(),
            #[cfg(test)]
            spread: spread.clone(),
        };
        for (index, (socket, inbox)) in sockets.into_iter().zip(inboxes).enumerate() {
            let traffic = Traffic {
                shared: shared.clone(),
                worker: Arc::new(Worker::new(index, spread.clone())),
                socket,
                inbox,
            };
            let traffic = if threads == 0 {
                traffic
            } else {
                match spawn_thread(traffic, stop, cut) {
                    Ok(done) => {
                        workers.threads.push(done);
                        continue;
                    }
                    Err((e, traffic)) => {
                        tracing::warn!(
                            "load balancer: worker {index} runs on the daemon's runtime: no thread ({e})"
                        );
                        traffic
                    }
                }
            };
            workers
                .inline
                .spawn(run(traffic, stop.clone(), cut.clone()));
        }
        workers
    }

    /// Resolves once every worker has ended (after `stop` or `cut`).
    pub async fn wait(&mut self) {
        for done in self.threads.drain(..) {
            // An error only says the thread ended without reporting (it
            // panicked): it is gone all the same.
            let _ = done.await;
        }
        while let Some(done) = self.inline.join_next().await {
            log_panic(done);
        }
    }
}

/// How workers share the balancer's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Share {
    /// A socket each, in one SO_REUSEPORT group with the caller's.
    ReusePort,
    /// Duplicates of the caller's socket.
    Duplicate,
}

/// Listening sockets for `n` workers on `listener`'s address, the caller's
/// own among them. A socket that cannot be made as `share` asks is a
/// duplicate instead; fewer than `n` only when even that fails.
pub(super) fn sockets(
    listener: std::net::TcpListener,
    n: usize,
    share: Share,
) -> Vec<std::net::TcpListener> {
    // One worker needs no group.
    let mut share = if n > 1 { share } else { Share::Duplicate };
    let addr = listener.local_addr();
    if share == Share::ReusePort
        && let Err(e) = socket2::SockRef::from(&listener).set_reuse_port(true)
    {
        tracing::debug!("load balancer: workers share one socket (SO_REUSEPORT: {e})");
        share = Share::Duplicate;
    }
    let mut sockets = Vec::with_capacity(n);
    for _ in 1..n {
        if share == Share::ReusePort {
            match addr
                .as_ref()
                .map_err(|e| e.kind().into())
                .and_then(|&a| reuse_port(a))
            {
                Ok(s) => {
                    sockets.push(s);
                    continue;
                }
                Err(e) => {
                    tracing::debug!("load balancer: workers share one socket (SO_REUSEPORT: {e})");
                    share = Share::Duplicate;
                }
            }
        }
        match listener.try_clone() {
            Ok(s) => sockets.push(s),
            Err(e) => {
                tracing::warn!("load balancer: fewer worker threads ({e})");
                break;
            }
        }
    }
    sockets.push(listener);
    // Accepted sockets inherit TCP_NODELAY from their listener (Linux copies
    // the listening socket's options into each connection it accepts), so
    // one call here spares one per connection, a system call in ten of a
    // `Connection: close` request's. A socket where it failed gets it per
    // connection instead (`serve`).
    for s in &sockets {
        let _ = socket2::SockRef::from(s).set_tcp_nodelay(true);
    }
    sockets
}

/// A listening socket on `addr` in its SO_REUSEPORT group.
fn reuse_port(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    // As tokio's own listener: without it, the connections this socket
    // accepted and closed first (HTTP/1.0 answers) sit in TIME-WAIT on the
    // address, and a balancer started again within a minute (`cairn local
    // stop` + `start`) cannot bind it.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    // tokio's `TcpListener::bind` backlog, as the caller's socket has.
    socket.listen(1024)?;
    Ok(socket.into())
}

/// What one worker starts with.
struct Traffic {
    shared: Arc<Shared>,
    /// Its index, spare buffers and the spread it shares.
    worker: Arc<Worker>,
    /// Its own listening socket.
    socket: std::net::TcpListener,
    /// Connections other workers accepted for it.
    inbox: mpsc::UnboundedReceiver<Handed>,
}

type SpawnError = (std::io::Error, Traffic);

fn spawn_thread(
    traffic: Traffic,
    stop: &CancellationToken,
    cut: &CancellationToken,
) -> Result<oneshot::Receiver<()>, SpawnError> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return Err((e, traffic)),
    };
    let (done_tx, done_rx) = oneshot::channel();
    let name = format!("cairn-lb-{}", traffic.worker.index);
    // Both come back to the caller if the thread does not start.
    let handoff = Arc::new(Mutex::new(Some((runtime, traffic))));
    let (stop, cut, theirs) = (stop.clone(), cut.clone(), handoff.clone());
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let (runtime, traffic) = lock(&theirs).take().expect("handed over once");
        runtime.block_on(run(traffic, stop, cut));
        // Every connection, backend connection and timer of this
        // worker goes with its runtime, before the report.
        drop(runtime);
        let _ = done_tx.send(());
    });
    match spawned {
        Ok(_) => Ok(done_rx),
        Err(e) => {
            let (runtime, traffic) = lock(&handoff)
                .take()
                .expect("a thread that never started left them");
            // Not a blocking drop: this runs on the caller's runtime.
            runtime.shutdown_background();
            Err((e, traffic))
        }
    }
}

/// One worker: accepts and serves until `stop`, then drains until the drain
/// timeout, or until `cut`.
async fn run(traffic: Traffic, stop: CancellationToken, cut: CancellationToken) {
    let shared = traffic.shared.clone();
    let _pools = ClosePools(&shared, traffic.worker.index);
    tokio::select! {
        _ = serve(traffic, &stop) => {}
        _ = cut.cancelled() => {}
    }
}

async fn serve(traffic: Traffic, stop: &CancellationToken) {
    let Traffic {
        shared,
        worker,
        socket,
        mut inbox,
    } = traffic;
    let (worker, index) = (&worker, worker.index);
    let listener = match TcpListener::from_std(socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(worker = index, "load balancer worker cannot listen: {e}");
            return;
        }
    };
    let local = listener
        .local_addr()
        .map_or_else(|e| format!("(unknown address: {e})"), |a| a.to_string());
    let inherits_nodelay = socket2::SockRef::from(&listener)
        .tcp_nodelay()
        .unwrap_or(false);
    let mut conns = JoinSet::new();
    let conn_stop = CancellationToken::new();
    let mut accepts = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    accepts += 1;
                    if !lock(&shared.access).allows(peer.ip()) {
                        refuse(stream, peer);
                        continue;
                    }
                    if !inherits_nodelay {
                        // Requests and responses are small writes that
                        // must not wait for Nagle's algorithm.
                        let _ = stream.set_nodelay(true);
                    }
                    let held = worker.spread.hold(index);
                    spawn_connection(&shared, worker, &mut conns, stream, peer, held, &conn_stop);
                }
                Err(e) => {
                    // Out of descriptors and the like: back off, don't spin.
                    tracing::warn!(address = %local, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(Handed { stream, peer, held }) = inbox.recv() => match TcpStream::from_std(stream) {
                Ok(stream) => spawn_connection(&shared, worker, &mut conns, stream, peer, held, &conn_stop),
                Err(e) => tracing::warn!(%peer, "a connection handed over cannot be served: {e}"),
            },
            Some(done) = conns.join_next() => log_panic(done),
        }
    }
    drop(listener);
    // Connections handed over but not yet taken close with the inbox, as
    // those still in the listener's queue do.
    drop(inbox);
    tracing::debug!(
        worker = index,
        accepted = accepts,
        moved_between_workers = worker.spread.moved(),
        "load balancer worker stopped accepting"
    );
    let deadline = Instant::now() + lock(&shared.table).config.drain_timeout;
    conn_stop.cancel();
    let finished = tokio::time::timeout_at(deadline, async {
        while let Some(done) = conns.join_next().await {
            log_panic(done);
        }
    })
    .await
    .is_ok();
    if !finished {
        tracing::warn!(address = %local, cut = conns.len(), "drain deadline passed; cutting connections");
        conns.shutdown().await;
    }
}

fn refuse(stream: TcpStream, peer: SocketAddr) {
    tracing::debug!(%peer, "connection refused by the load balancer's firewalls");
    // A reset, not an orderly close: the client learns at once that it was
    // refused rather than reading an empty answer.
    let _ = stream.set_zero_linger();
}

/// Gives a kept-alive connection to worker `to`. Where that cannot be done
/// (it stopped, as this one is about to) the connection closes between two
/// requests, which a keep-alive client is ready for.
fn hand_over(spread: &Arc<Spread>, stream: TcpStream, peer: SocketAddr, to: usize) {
    match stream.into_std() {
        Ok(stream) => {
            if spread.hand(to, stream, peer).is_err() {
                tracing::debug!(%peer, "a connection closes: worker {to} stopped");
            }
        }
        Err(e) => tracing::warn!(%peer, "a connection cannot be handed over: {e}"),
    }
}

fn spawn_connection(
    shared: &Arc<Shared>,
    worker: &Arc<Worker>,
    conns: &mut JoinSet<()>,
    stream: TcpStream,
    peer: SocketAddr,
    held: Held,
    stop: &CancellationToken,
) {
    let protocol = lock(&shared.table).config.protocol;
    let shared = shared.clone();
    match protocol {
        Protocol::Http => {
            let serve = proxy::serve_http(shared, worker.clone(), stream, peer, stop.clone());
            let spread = worker.spread.clone();
            conns.spawn(async move {
                let moved = serve.await;
                drop(held);
                if let Some(Move { stream, to }) = moved {
                    hand_over(&spread, stream, peer, to);
                }
            })
        }
        Protocol::Tcp => {
            let splice = tcp::splice(shared, worker.index, stream, peer);
            conns.spawn(async move {
                splice.await;
                drop(held);
            })
        }
    };
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use super::*;

    /// Connections accepted through each socket, after `clients` connect;
    /// each accepted with TCP_NODELAY set.
    fn spread(share: Share, clients: usize) -> Vec<usize> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let sockets = sockets(listener, 3, share);
        assert_eq!(sockets.len(), 3);
        for s in &sockets {
            assert_eq!(s.local_addr().unwrap(), addr);
        }
        let held: Vec<_> = (0..clients)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let counts = sockets
            .iter()
            .map(|s| {
                let mut n = 0;
                // Bounded: at most every client once.
                for _ in 0..=clients {
                    match s.accept() {
                        Ok((conn, _)) => {
                            // Inherited from the listener: no call per
                            // connection.
                            assert!(socket2::SockRef::from(&conn).tcp_nodelay().unwrap());
                            n += 1;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("accept: {e}"),
                    }
                }
                n
            })
            .collect();
        drop(held);
        counts
    }

    #[test]
    fn reuse_port_sockets_each_get_connections() {
        let counts = spread(Share::ReusePort, 60);
        assert_eq!(counts.iter().sum::<usize>(), 60, "{counts:?}");
        // Spread by a hash of the client's address and port: 60 in one of
        // three would be a 1 in 10^28 chance.
        assert!(counts.iter().filter(|&&n| n > 0).count() > 1, "{counts:?}");
    }

    #[test]
    fn duplicates_share_one_queue() {
        let counts = spread(Share::Duplicate, 20);
        // One queue: the first socket drains it.
        assert_eq!(counts, vec![20, 0, 0]);
    }
}
