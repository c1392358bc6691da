//! HTTP mode: a reverse proxy on the balancer's own HTTP/1.1 path (`http1`).
//! One task per client connection reads a request head into the
//! connection's buffer, picks a backend, writes the rewritten head (and a
//! body small enough to replay) on a kept connection to it or a new one,
//! relays a larger body by its framing, then writes the response head and
//! relays its body back the same way. Requests on one connection are served
//! one at a time, so pipelined ones are answered in order; what follows a
//! head stays in the buffer for the next turn. The request counts as in
//! flight until its response body is sent, and a backend's connection goes
//! back to this worker's pool only when both directions of the exchange
//! ended cleanly and the backend did not ask to close it.
//!
//! Why not hyper here: its server and client connections cost a task, a
//! channel hop and several allocations per request on each side; this path
//! allocates nothing per request once a connection's buffers are grown.
//! See the README's "Design decisions".

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::http1::{
    self, Body, BodyError, Framing, HeadError, MAX_HEAD, ReadBuf, RequestHead, ResponsePlan,
};
use super::shared::Shared;
use super::spread::Spread;
use super::upstream::{Upstream, lock};

/// Request bodies up to this size (of GET, HEAD, OPTIONS) are read whole
/// before they are sent, so the request can be replayed on another backend.
const MAX_REPLAY: usize = 64 * 1024;

/// A request that cannot be sent again (its body streamed) goes only on a
/// kept connection idle for at most this long, else on a new one. A
/// backend closes an idle connection when its keep-alive timeout fires; if
/// that crosses the request on the wire, the request is lost with the
/// connection, and one whose body was streamed cannot be retried: the
/// client would get a 502. Closes that already arrived are seen before
/// reuse (`take_kept`); the crossing can only happen at the backend's
/// timeout, and the shortest common one is gunicorn's 2 s (Node, Apache
/// and uvicorn: 5 s; nginx: 75 s). One second stays clear of it while a
/// busy backend's connections (reused within milliseconds) are still
/// reused; the price is a new connection for a streamed request after a
/// quiet second. Replayable requests take any kept connection: a lost one
/// is retried.
const FRESH_FOR_STREAMED: Duration = Duration::from_secs(1);

/// Attempts per request: the first backend and one other.
const ATTEMPTS: usize = 2;

/// As hyper's server had it: a client has this long to send a request head,
/// counted from when the balancer starts waiting for it, so an idle
/// keep-alive connection is closed after it too.
pub(super) const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// First sizes of a connection's buffers; they grow only for large heads or
/// buffered bodies.
const CLIENT_BUF: usize = 8 * 1024;
const BACKEND_BUF: usize = 16 * 1024;
/// Rewritten heads: most fit, a larger one grows the buffer.
const HEAD_BUF: usize = 2 * 1024;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// One worker (`super::worker`) as its HTTP connections see it.
pub(super) struct Worker {
    /// Which of the `Upstream` idle pools is this worker's.
    pub index: usize,
    /// Buffers of connections that ended, for the next ones (only this
    /// worker's thread takes the lock).
    pub spare: std::sync::Mutex<Vec<Buffers>>,
    /// Every worker's open connections.
    pub spread: Arc<Spread>,
}

impl Worker {
    pub(super) fn new(index: usize, spread: Arc<Spread>) -> Self {
        Self {
            index,
            spare: std::sync::Mutex::default(),
            spread,
        }
    }
}

/// A kept-alive client connection to be served on another worker from its
/// next request on (see `super::spread`).
pub(super) struct Move {
    pub stream: TcpStream,
    pub to: usize,
}

/// Serves one client connection (keep-alive) until it closes, or until `stop`
/// asks it to finish the request under way and close. Between two requests
/// it may leave for a worker that holds fewer connections: then the
/// connection comes back to be handed over.
pub(super) async fn serve_http(
    shared: Arc<Shared>,
    worker: Arc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) -> Option<Move> {
    let bufs = lock(&worker.spare).pop().unwrap_or_else(Buffers::new);
    let mut client_ip = ClientIp([0; 48], 0);
    let _ = write!(client_ip, "{}", peer.ip());
    let mut conn = Conn {
        shared: &shared,
        worker: &worker,
        peer,
        client: stream,
        client_buf: bufs.client,
        backend_buf: bufs.backend,
        request: bufs.request,
        response: bufs.response,
        client_ip,
        head_timeout: Duration::from_millis(shared.head_timeout_ms.load(Ordering::Relaxed)),
        answered: false,
        body_touched: false,
    };
    conn.client_buf.read_arrived(&conn.client);
    // One registration and one timer for the connection's life, not one per
    // request.
    let stopped = stop.cancelled();
    let deadline = tokio::time::sleep(conn.head_timeout);
    tokio::pin!(stopped, deadline);
    let mut moving = None;
    while let Some(head) = conn.read_head(stopped.as_mut(), deadline.as_mut()).await {
        if !conn.exchange(head, &stop).await || stop.is_cancelled() {
            break;
        }
        // Only with nothing of the next request read yet: the bytes in
        // this worker's buffer would not go with the socket.
        if conn.client_buf.is_empty() {
            let to = worker.spread.pick(worker.index);
            if to != worker.index {
                moving = Some(to);
                break;
            }
        }
    }
    let moved = match moving {
        Some(to) => Some(Move {
            stream: conn.client,
            to,
        }),
        None => {
            drop(conn.client);
            None
        }
    };
    let mut bufs = Buffers {
        client: conn.client_buf,
        backend: conn.backend_buf,
        request: conn.request,
        response: conn.response,
    };
    if bufs.reset() {
        let mut spare = lock(&worker.spare);
        if spare.len() < MAX_SPARE {
            spare.push(bufs);
        }
    }
    moved
}

/// Buffers a worker keeps between connections (see `Buffers`).
const MAX_SPARE: usize = 64;

/// One connection's buffers. Its worker keeps them when the connection
/// ends, so that a new connection (one per request with `Connection:
/// close`) allocates and zeroes nothing; buffers grown past their first
/// sizes are freed instead, so what a worker keeps stays small.
pub(super) struct Buffers {
    client: ReadBuf,
    backend: ReadBuf,
    request: Vec<u8>,
    response: Vec<u8>,
}

impl Buffers {
    fn new() -> Self {
        Self {
            client: ReadBuf::new(CLIENT_BUF, MAX_HEAD + MAX_REPLAY),
            backend: ReadBuf::new(BACKEND_BUF, MAX_HEAD),
            request: Vec::with_capacity(HEAD_BUF),
            response: Vec::with_capacity(HEAD_BUF),
        }
    }

    /// Empties them; whether they are at their first sizes, to be kept.
    fn reset(&mut self) -> bool {
        self.request.clear();
        self.response.clear();
        self.client.reset() == CLIENT_BUF
            && self.backend.reset() == BACKEND_BUF
            && self.request.capacity() <= HEAD_BUF
            && self.response.capacity() <= HEAD_BUF
    }
}

/// The client's address as text for `X-Forwarded-For`, on the stack.
struct ClientIp([u8; 48], usize);

impl ClientIp {
    fn as_bytes(&self) -> &[u8] {
        &self.0[..self.1]
    }
}

impl std::fmt::Write for ClientIp {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.1 + s.len();
        self.0
            .get_mut(self.1..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.1 = end;
        Ok(())
    }
}

/// One client connection and its reusable buffers.
struct Conn<'a> {
    shared: &'a Shared,
    worker: &'a Worker,
    peer: SocketAddr,
    client: TcpStream,
    client_buf: ReadBuf,
    /// Empty between exchanges: a backend connection goes back to the pool
    /// only when nothing of it is left unread.
    backend_buf: ReadBuf,
    /// The request head as it goes to a backend (and a replayable body).
    request: Vec<u8>,
    /// The response head as it goes to the client, and scratch space.
    response: Vec<u8>,
    client_ip: ClientIp,
    head_timeout: Duration,
    /// Whether any of the answer reached the client: after that a failure
    /// can only end the connection.
    answered: bool,
    /// Whether any of a streamed request body was read: after that the
    /// request cannot go to another backend.
    body_touched: bool,
}

/// Why an attempt on one backend failed.
#[derive(Debug)]
enum Failure {
    /// Never sent (no connection): another backend gets it.
    NotSent(String),
    /// A kept connection the backend had closed: nothing was answered and
    /// the request can be sent again whole on another connection.
    Stale(String),
    /// The backend may have seen (part of) it.
    Sent(String),
    /// The client's connection failed or sent a broken body.
    Client(String),
    /// After the answer began: the client's connection can only be closed.
    Broken(String),
}

/// A relay's failure, by side.
#[derive(Debug)]
enum RelayError {
    Read(io::Error),
    Framing(BodyError),
    Write(io::Error),
}

impl<'a> Conn<'a> {
    /// The next request head, or `None` once the connection is to close
    /// (closed by the client, timed out, stopping while idle, or a head the
    /// balancer refused and answered).
    async fn read_head(
        &mut self,
        mut stopped: Pin<&mut WaitForCancellationFuture<'_>>,
        mut deadline: Pin<&mut Sleep>,
    ) -> Option<RequestHead> {
        // Moved only when it is over a thirtieth stale (a second of 30),
        // so back-to-back requests do not touch the timer each time.
        let now = Instant::now();
        let timeout = self.head_timeout;
        if deadline.deadline() < now + timeout - timeout / 30 {
            deadline.as_mut().reset(now + timeout);
        }
        loop {
            if !self.client_buf.is_empty() {
                let parsed = http1::parse_request(
                    self.client_buf.filled(),
                    self.client_ip.as_bytes(),
                    &mut self.request,
                );
                match parsed {
                    Ok(Some(head)) => {
                        self.client_buf.consume(head.len);
                        return Some(head);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.refuse(&e).await;
                        return None;
                    }
                }
            }
            let idle = self.client_buf.is_empty();
            tokio::select! {
                biased;
                read = self.client_buf.read_socket(&mut self.client) => match read {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                        self.refuse(&HeadError::TooLarge).await;
                        return None;
                    }
                    Err(e) => {
                        tracing::debug!(peer = %self.peer, "client connection ended: {e}");
                        return None;
                    }
                },
                _ = deadline.as_mut() => {
                    tracing::debug!(peer = %self.peer, "no request head within {:?}", self.head_timeout);
                    return None;
                }
                _ = stopped.as_mut(), if idle => return None,
            }
        }
    }

    /// Answers a head the balancer will not forward, and the connection
    /// closes after it: where its body would end is unknown. The answer is
    /// in the client's version when its request line says it (an HTTP/1.0
    /// client may not read a 1.1 answer), else in 1.1.
    async fn refuse(&mut self, e: &HeadError) {
        tracing::debug!(peer = %self.peer, "refused a request: {e}");
        let minor = http1::request_minor(self.client_buf.filled()).unwrap_or(1);
        http1::write_local(
            &mut self.response,
            minor,
            e.status(),
            &format!("{e}\n"),
            false,
        );
        let _ = self.client.write_all(&self.response).await;
    }

    /// Forwards one request and relays its answer; whether the client's
    /// connection carries on.
    async fn exchange(&mut self, head: RequestHead, stop: &CancellationToken) -> bool {
        let base = self.request.len();
        self.answered = false;
        self.body_touched = false;
        // A small body of a request safe to repeat is read whole first, so
        // it can be replayed; any other is streamed once.
        let (replay, buffered) = match head.framing {
            Framing::Empty => (true, 0),
            Framing::Length(n) if n == 0 || (head.idempotent && n <= MAX_REPLAY as u64) => {
                let n = n as usize;
                if !self.buffer_body(n, &head).await {
                    return false;
                }
                (true, n)
            }
            _ => (false, 0),
        };
        let mut tried = [0u64; ATTEMPTS];
        let mut attempts = 0;
        let mut last_error = String::new();
        while attempts < ATTEMPTS {
            let Some(flight) = self.shared.pick(&tried[..attempts]) else {
                break;
            };
            let up = flight.upstream();
            tried[attempts] = up.id;
            attempts += 1;
            let killed = up.killed(self.worker.index);
            let outcome = tokio::select! {
                r = self.attempt(up, &head, base, replay, buffered, stop) => Some(r),
                _ = killed => None,
            };
            let outcome = outcome.unwrap_or_else(|| {
                let why = "cut at the end of the backend's drain".to_string();
                Err(if self.answered {
                    Failure::Broken(why)
                } else {
                    Failure::Sent(why)
                })
            });
            // The request stays in flight until here: its answer is sent.
            drop(flight);
            // Whatever a failed exchange left unread goes with its connection.
            self.backend_buf.consume(self.backend_buf.len());
            match outcome {
                Ok(keep) => {
                    self.client_buf.consume(buffered);
                    if keep || head.keep_alive || !replay {
                        let written = self.client.write_all(&self.response).await.is_ok();
                        return written && keep;
                    }
                    self.write_last().await;
                    return false;
                }
                Err(Failure::Broken(e)) => {
                    tracing::debug!(peer = %self.peer, "answer cut short: {e}");
                    return false;
                }
                Err(Failure::Client(e)) => {
                    tracing::debug!(peer = %self.peer, "client connection failed: {e}");
                    return false;
                }
                Err(Failure::NotSent(e) | Failure::Stale(e)) => last_error = e,
                Err(Failure::Sent(e)) => {
                    last_error = e;
                    if !replay {
                        break;
                    }
                }
            }
            tracing::debug!(peer = %self.peer, "request failed: {last_error}");
        }
        // Without the whole body read, where the next request starts is
        // unknown: such a connection closes after the answer.
        let keep = head.keep_alive && replay && !stop.is_cancelled();
        let (status, text) = if attempts == 0 {
            ((503, "Service Unavailable"), "no healthy backend\n")
        } else {
            tracing::warn!(peer = %self.peer, "bad gateway: {last_error}");
            ((502, "Bad Gateway"), "bad gateway: the backend failed\n")
        };
        http1::write_local(&mut self.response, head.minor, status, text, keep);
        self.client_buf.consume(buffered);
        self.client.write_all(&self.response).await.is_ok() && keep
    }

    /// Writes the answer's last bytes on a connection that closes right
    /// after them because the client asked (`Connection: close`, or
    /// HTTP/1.0 without keep-alive) and sent all it had to. Sent with
    /// MSG_MORE, they wait in the socket for the close, whose FIN the
    /// kernel then puts on the same segment (`tcp_send_fin` tacks it onto
    /// an unsent one): the client gets its answer and the end of the stream
    /// in one packet, where a write and a close send two, and both ends
    /// handle a packet and a wake-up less for each such request. Only with
    /// the client's bytes all read (one that asked to close sends no more):
    /// a close with unread data resets the connection, and the kernel would
    /// drop the answer still waiting with it.
    async fn write_last(&mut self) {
        if self.client_buf.is_empty() {
            let socket = socket2::SockRef::from(&self.client);
            match socket.send_with_flags(&self.response, nix::libc::MSG_MORE) {
                Ok(n) if n == self.response.len() => return,
                // The rest as usual: a plain write sends what waits too.
                Ok(n) => {
                    let _ = self.client.write_all(&self.response[n..]).await;
                    return;
                }
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return,
                Err(_) => {}
            }
        }
        let _ = self.client.write_all(&self.response).await;
    }

    /// Reads a body of `n` bytes into the client buffer (after the head,
    /// which is consumed). False: the client went away.
    async fn buffer_body(&mut self, n: usize, head: &RequestHead) -> bool {
        if head.expect_continue
            && self.client_buf.len() < n
            && self.client.write_all(CONTINUE).await.is_err()
        {
            return false;
        }
        while self.client_buf.len() < n {
            match self.client_buf.read_socket(&mut self.client).await {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(peer = %self.peer, "reading a request body: {e}");
                    return false;
                }
            }
        }
        true
    }

    /// The request on one backend: on a kept connection, or a new one. A
    /// kept connection the backend closed while it sat idle fails before
    /// any answer; the request then goes again on the next kept connection
    /// or a new one, when it can be sent again whole.
    async fn attempt(
        &mut self,
        up: &Arc<Upstream>,
        head: &RequestHead,
        base: usize,
        replay: bool,
        buffered: usize,
        stop: &CancellationToken,
    ) -> Result<bool, Failure> {
        let host = (!head.has_host).then(|| up.host.as_bytes());
        http1::finish_request(&mut self.request, base, host);
        // Head and body in one write.
        self.request
            .extend_from_slice(&self.client_buf.filled()[..buffered]);
        let max_idle = (!replay).then_some(FRESH_FOR_STREAMED);
        loop {
            let (backend, kept) = match take_kept(up, self.worker.index, max_idle) {
                Some(s) => (s, true),
                None => match self.shared.connect(up).await {
                    Ok(s) => (s, false),
                    Err(e) => return Err(Failure::NotSent(format!("connect: {e}"))),
                },
            };
            match self
                .exchange_on(backend, up, head, replay, kept, stop)
                .await
            {
                Err(Failure::Stale(e)) if kept => {
                    tracing::debug!(backend = %up.addr, "kept connection closed by the backend: {e}");
                }
                Err(Failure::Stale(e)) => return Err(Failure::Sent(e)),
                outcome => return outcome,
            }
        }
    }

    /// One exchange on one backend connection, which goes back to the pool
    /// when it ended cleanly.
    async fn exchange_on(
        &mut self,
        mut backend: TcpStream,
        up: &Upstream,
        head: &RequestHead,
        replay: bool,
        kept: bool,
        stop: &CancellationToken,
    ) -> Result<bool, Failure> {
        debug_assert!(self.backend_buf.is_empty());
        if let Err(e) = backend.write_all(&self.request).await {
            // Nothing of a streamed body was read yet either.
            return Err(if kept {
                Failure::Stale(format!("sending the request: {e}"))
            } else {
                Failure::NotSent(format!("sending the request: {e}"))
            });
        }
        // Whether the backend answered before the whole body was sent.
        let mut early = false;
        if !replay {
            self.body_touched = true;
            if head.expect_continue
                && self.client_buf.is_empty()
                && let Err(e) = self.client.write_all(CONTINUE).await
            {
                return Err(Failure::Client(e.to_string()));
            }
            let mut body = Body::new(head.framing);
            let (mut from, mut to) = backend.split();
            let mut peek = [0u8; 1];
            // Nothing of an earlier exchange is to go out before the body.
            self.response.clear();
            let mut wrote = false;
            let sent = tokio::select! {
                r = relay(&mut body, &mut self.client, &mut self.client_buf, &mut to, &mut self.response, To::Backend, &mut wrote) => Some(r),
                // An answer (or a close) before the body is all sent: relay
                // it, and end both connections after it.
                _ = from.peek(&mut peek) => None,
            };
            match sent {
                None => early = true,
                Some(Ok(())) => {}
                Some(Err(RelayError::Write(e))) => {
                    return Err(Failure::Sent(format!("sending the request body: {e}")));
                }
                Some(Err(RelayError::Read(e))) => {
                    return Err(Failure::Client(format!("reading the request body: {e}")));
                }
                Some(Err(RelayError::Framing(e))) => {
                    // The backend has part of it; the client hears why.
                    let text = format!("{e}\n");
                    http1::write_local(
                        &mut self.response,
                        head.minor,
                        (400, "Bad Request"),
                        &text,
                        false,
                    );
                    let _ = self.client.write_all(&self.response).await;
                    return Err(Failure::Client(format!("request body: {e}")));
                }
            }
        }
        let plan = ResponsePlan {
            minor: head.minor,
            is_head: head.is_head,
            keep_alive: head.keep_alive && !early && !stop.is_cancelled(),
        };
        let resp = loop {
            if !self.backend_buf.is_empty() {
                match http1::parse_response(self.backend_buf.filled(), plan, &mut self.response) {
                    Ok(Some(r)) if r.informational => {
                        self.backend_buf.consume(r.len);
                        continue;
                    }
                    Ok(Some(r)) => break r,
                    Ok(None) => {}
                    Err(e) => {
                        self.backend_buf.consume(self.backend_buf.len());
                        return Err(Failure::Sent(format!("response from {}: {e}", up.addr)));
                    }
                }
            }
            let nothing_yet = self.backend_buf.is_empty();
            let why = match self.backend_buf.read_socket(&mut backend).await {
                Ok(0) => "closed before answering".to_string(),
                Ok(_) => continue,
                Err(e) => format!("reading the response: {e}"),
            };
            self.backend_buf.consume(self.backend_buf.len());
            return Err(if nothing_yet && !self.body_touched {
                Failure::Stale(why)
            } else {
                Failure::Sent(why)
            });
        };
        self.backend_buf.consume(resp.len);
        // The head waits in `response` for the body bytes already read:
        // they go out together, in one write.
        let mut body = Body::new(resp.framing);
        let relayed = relay(
            &mut body,
            &mut backend,
            &mut self.backend_buf,
            &mut self.client,
            &mut self.response,
            To::Client {
                dechunk: resp.dechunk,
            },
            &mut self.answered,
        )
        .await;
        match relayed {
            Ok(()) => {}
            // Nothing reached the client yet: it can still hear 502.
            Err(RelayError::Framing(e)) if !self.answered => {
                return Err(Failure::Sent(format!(
                    "response body from {}: {e}",
                    up.addr
                )));
            }
            Err(e) => {
                return Err(Failure::Broken(format!("relaying the response: {e:?}")));
            }
        }
        // The answer's last bytes (or all of it) are still in `response`:
        // the caller writes them once the request is out of flight, as
        // hyper did, so that a client which has its whole answer never
        // sees the backend still busy.
        if self.backend_buf.is_empty() && resp.reusable && !early && !up.is_retired() {
            up.put_idle(self.worker.index, backend);
        }
        Ok(resp.keep_alive)
    }
}

/// A kept connection of `worker`'s to `up` that still looks open (and, with
/// `max_idle`, was idle no longer): one the backend closed (or wrote to out
/// of turn) while it sat idle is dropped. The check costs no system call
/// unless the socket was reported readable.
fn take_kept(up: &Upstream, worker: usize, max_idle: Option<Duration>) -> Option<TcpStream> {
    while let Some(stream) = up.take_idle(worker, max_idle) {
        let mut cx = Context::from_waker(Waker::noop());
        let open = match stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readiness can be left over from the last read of the answer:
            // a read that would block proves the connection idle and clears it.
            Poll::Ready(Ok(())) => matches!(
                stream.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        };
        if open {
            return Some(stream);
        }
    }
    None
}

/// Where `relay` sends a body.
#[derive(Debug, Clone, Copy)]
enum To {
    /// A request body, as it came.
    Backend,
    /// An answer's body: its data alone with `dechunk` (for HTTP/1.0
    /// clients), and its last bytes left for the caller to write once the
    /// request is out of flight.
    Client { dechunk: bool },
}

/// Relays the rest of `body` from `src` (what `buf` holds first) to `dst`,
/// after what `scratch` holds (a response head waiting for the body's first
/// bytes, to go out in one write). For `To::Client`, the body's last bytes
/// are left in `scratch` for the caller to write. `wrote` is set before the
/// first write to `dst`.
async fn relay<W>(
    body: &mut Body,
    src: &mut TcpStream,
    buf: &mut ReadBuf,
    dst: &mut W,
    scratch: &mut Vec<u8>,
    to: To,
    wrote: &mut bool,
) -> Result<(), RelayError>
where
    W: AsyncWrite + Unpin,
{
    let (dechunk, hold_last) = match to {
        To::Backend => (false, false),
        To::Client { dechunk } => (dechunk, true),
    };
    loop {
        if !buf.is_empty() {
            if dechunk {
                let n = body
                    .take(buf.filled(), Some(scratch))
                    .map_err(RelayError::Framing)?;
                buf.consume(n);
            } else {
                let n = body.take(buf.filled(), None).map_err(RelayError::Framing)?;
                let bytes = &buf.filled()[..n];
                if scratch.is_empty() && !(hold_last && body.is_done()) {
                    // Nothing waits and the caller holds nothing back:
                    // straight from the read buffer.
                    *wrote = true;
                    dst.write_all(bytes).await.map_err(RelayError::Write)?;
                } else {
                    scratch.extend_from_slice(bytes);
                }
                buf.consume(n);
            }
        }
        if hold_last && body.is_done() {
            return Ok(());
        }
        if !scratch.is_empty() {
            *wrote = true;
            dst.write_all(scratch).await.map_err(RelayError::Write)?;
            scratch.clear();
        }
        if body.is_done() {
            return Ok(());
        }
        match buf.read_socket(src).await {
            Ok(0) => return body.eof().map_err(RelayError::Framing),
            Ok(_) => {}
            Err(e) => return Err(RelayError::Read(e)),
        }
    }
}
