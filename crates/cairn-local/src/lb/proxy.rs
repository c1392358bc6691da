//! HTTP mode: a reverse proxy. Each client request picks a backend, goes out
//! on a kept (or new) HTTP/1.1 connection to it with hop-by-hop headers
//! dropped and `X-Forwarded-For`/`-Proto` added, and its response streams
//! back. The request counts as in flight until the response body is sent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1 as client;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::Shared;
use super::upstream::{InFlight, Upstream};
use super::worker::Worker;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Request bodies up to this size are buffered so an idempotent request can
/// be replayed on another backend.
const MAX_REPLAY: u64 = 64 * 1024;

/// How long a kept connection may take to be ready for the next request.
const POOLED_READY: Duration = Duration::from_secs(1);

/// Attempts per request: the first backend and one other.
const ATTEMPTS: usize = 2;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Serves one client connection (keep-alive) until it closes, or until `stop`
/// asks it to finish the request under way and close.
pub(super) async fn serve_http(
    shared: Arc<Shared>,
    worker: Arc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    // Made once per connection, not per request.
    let client_ip =
        HeaderValue::try_from(peer.ip().to_string()).expect("an address is a valid header");
    let service = service_fn(move |req| {
        let (shared, worker, client_ip) = (shared.clone(), worker.clone(), client_ip.clone());
        async move {
            let resp = handle(&shared, &worker, peer, &client_ip, req).await;
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = server::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "client connection ended: {e}");
    }
}

async fn handle(
    shared: &Shared,
    worker: &Worker,
    peer: SocketAddr,
    client_ip: &HeaderValue,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let mut outgoing = match Outgoing::new(req, peer, client_ip).await {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let mut tried: Vec<u64> = Vec::with_capacity(ATTEMPTS);
    let mut last_error = String::new();
    while tried.len() < ATTEMPTS {
        let Some(flight) = shared.pick(&tried) else {
            break;
        };
        let Some(req) = outgoing.next() else { break };
        let up = flight.upstream().clone();
        tried.push(up.id);
        let attempt = tokio::select! {
            r = forward(shared, worker, &up, req) => r,
            _ = up.killed(worker.index) => Err(Failure::Sent("cut at the end of the backend's drain".into())),
        };
        match attempt {
            Ok((resp, sender)) => return respond(resp, flight, worker.index, sender),
            Err(Failure::NotSent(req, e)) => {
                outgoing.give_back(*req);
                last_error = e;
            }
            Err(Failure::Sent(e)) => {
                last_error = e;
                if !outgoing.replayable() {
                    break;
                }
            }
        }
        tracing::debug!(backend = %up.addr, "request failed: {last_error}");
    }
    if tried.is_empty() {
        local(StatusCode::SERVICE_UNAVAILABLE, "no healthy backend\n")
    } else {
        tracing::warn!(%peer, "bad gateway: {last_error}");
        local(StatusCode::BAD_GATEWAY, "bad gateway: the backend failed\n")
    }
}

enum Failure {
    /// The request never left: it comes back for another backend.
    NotSent(Box<Request<RequestBody>>, String),
    /// The backend may have seen (part of) it.
    Sent(String),
}

/// Sends `req` on a kept connection to `up`, or a new one.
async fn forward(
    shared: &Shared,
    worker: &Worker,
    up: &Arc<Upstream>,
    mut req: Request<RequestBody>,
) -> Result<(Response<Incoming>, client::SendRequest<RequestBody>), Failure> {
    if !req.headers().contains_key(header::HOST) {
        req.headers_mut().insert(header::HOST, up.host.clone());
    }
    while let Some(mut sender) = up.take_idle(worker.index) {
        // Kept connections are ready once their last response ended; one
        // that is not soon is stuck (say, still sending a request body).
        if !matches!(timeout(POOLED_READY, sender.ready()).await, Ok(Ok(()))) {
            continue;
        }
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok((resp, sender)),
            // Closed by the backend before the request went out: next one.
            Err(mut e) => match e.take_message() {
                Some(back) => req = back,
                None => return Err(Failure::Sent(e.into_error().to_string())),
            },
        }
    }
    let stream = match shared.connect(up).await {
        Ok(s) => s,
        Err(e) => return Err(Failure::NotSent(Box::new(req), format!("connect: {e}"))),
    };
    let (mut sender, conn) = match client::handshake(TokioIo::new(stream)).await {
        Ok(pair) => pair,
        Err(e) => return Err(Failure::NotSent(Box::new(req), format!("handshake: {e}"))),
    };
    let addr = up.addr;
    worker.spawn_driver(up, async move {
        if let Err(e) = conn.await {
            tracing::debug!(backend = %addr, "backend connection ended: {e}");
        }
    });
    match sender.try_send_request(req).await {
        Ok(resp) => Ok((resp, sender)),
        Err(mut e) => match e.take_message() {
            Some(back) => Err(Failure::NotSent(Box::new(back), e.into_error().to_string())),
            None => Err(Failure::Sent(e.into_error().to_string())),
        },
    }
}

fn respond(
    resp: Response<Incoming>,
    flight: InFlight,
    worker: usize,
    sender: client::SendRequest<RequestBody>,
) -> Response<ResponseBody> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let killed = Box::pin(flight.upstream().killed(worker));
    Response::from_parts(
        parts,
        ResponseBody::Backend(Box::new(Relay {
            body,
            done: false,
            sender: Some(sender),
            worker,
            killed,
            flight,
        })),
    )
}

fn local(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::Local(Some(Bytes::from_static(
        text.as_bytes(),
    ))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A client request made ready for backends, once.
enum Outgoing {
    /// No body, or a small buffered one: can be sent again.
    Replay {
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Option<Bytes>,
    },
    /// A streamed body: sent at most once (it is handed back if it never
    /// left).
    Stream(Option<Request<RequestBody>>),
}

impl Outgoing {
    async fn new(
        req: Request<Incoming>,
        peer: SocketAddr,
        client_ip: &HeaderValue,
    ) -> Result<Self, Response<ResponseBody>> {
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        // The balancer already answered any `Expect: 100-continue` itself.
        headers.remove(header::EXPECT);
        forwarded_for(&mut headers, client_ip);
        let uri = origin_form(&parts.uri);
        let method = parts.method;
        let small = body.size_hint().upper().is_some_and(|n| n <= MAX_REPLAY);
        let idempotent = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        if body.is_end_stream() {
            return Ok(Self::Replay {
                method,
                uri,
                headers,
                body: None,
            });
        }
        if idempotent && small {
            let bytes = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    tracing::debug!(%peer, "reading the request body: {e}");
                    return Err(local(StatusCode::BAD_REQUEST, "unreadable request body\n"));
                }
            };
            return Ok(Self::Replay {
                method,
                uri,
                headers,
                body: (!bytes.is_empty()).then_some(bytes),
            });
        }
        let mut req = Request::new(RequestBody::Stream(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = headers;
        Ok(Self::Stream(Some(req)))
    }

    fn next(&mut self) -> Option<Request<RequestBody>> {
        match self {
            Self::Replay {
                method,
                uri,
                headers,
                body,
            } => {
                let mut req = Request::new(RequestBody::Full(body.clone()));
                *req.method_mut() = method.clone();
                *req.uri_mut() = uri.clone();
                *req.version_mut() = Version::HTTP_11;
                *req.headers_mut() = headers.clone();
                Some(req)
            }
            Self::Stream(req) => req.take(),
        }
    }

    fn give_back(&mut self, req: Request<RequestBody>) {
        if let Self::Stream(slot) = self {
            *slot = Some(req);
        }
    }

    fn replayable(&self) -> bool {
        matches!(self, Self::Replay { .. })
    }
}

/// `/path?query`, whatever form the client used.
fn origin_form(uri: &Uri) -> Uri {
    uri.path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()))
}

/// Appends the client's address to `X-Forwarded-For` (joining any it had),
/// and sets `X-Forwarded-Proto` when missing.
fn forwarded_for(headers: &mut HeaderMap, client_ip: &HeaderValue) {
    let prior: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if prior.is_empty() {
        headers.insert(X_FORWARDED_FOR, client_ip.clone());
    } else {
        let ip = client_ip.to_str().unwrap_or_default();
        let value = format!("{}, {ip}", prior.join(", "));
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    headers
        .entry(X_FORWARDED_PROTO)
        .or_insert(HeaderValue::from_static("http"));
}

/// Drops the headers that describe one connection, not the message: those
/// the `Connection` header names and the standard hop-by-hop set.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// The body of a request to a backend.
pub(super) enum RequestBody {
    Full(Option<Bytes>),
    Stream(Incoming),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Stream(body) => body.size_hint(),
        }
    }
}

/// The body of a response to a client.
pub(super) enum ResponseBody {
    /// The balancer's own answer (502, 503).
    Local(Option<Bytes>),
    Backend(Box<Relay>),
}

/// A backend's response body on its way to the client. It holds the request's
/// in-flight count until it is done, gives the connection back for reuse when
/// the body ended cleanly, and fails when the backend's drain deadline cuts
/// it.
pub(super) struct Relay {
    body: Incoming,
    done: bool,
    sender: Option<client::SendRequest<RequestBody>>,
    /// Whose pool the connection goes back to.
    worker: usize,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
    flight: InFlight,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let relay = match self.get_mut() {
            Self::Local(bytes) => return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Backend(relay) => relay,
        };
        if relay.done {
            return Poll::Ready(None);
        }
        if relay.killed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(
                Err("the backend was cut at its drain deadline".into()),
            ));
        }
        match ready!(Pin::new(&mut relay.body).poll_frame(cx)) {
            None => {
                relay.done = true;
                Poll::Ready(None)
            }
            Some(Ok(frame)) => {
                relay.done = relay.body.is_end_stream();
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Local(bytes) => bytes.is_none(),
            Self::Backend(relay) => relay.done || relay.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Local(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Self::Backend(relay) => relay.body.size_hint(),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Only a connection whose response was read to the end is reusable;
        // a half-read one is closed by dropping its sender.
        if (self.done || self.body.is_end_stream())
            && let Some(sender) = self.sender.take()
            && !self.flight.upstream().is_retired()
        {
            self.flight.upstream().put_idle(self.worker, sender);
        }
    }
}
