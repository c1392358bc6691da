//! A loopback HTTP proxy that sits between cairn and moto and makes a share
//! of the calls fail the ways AWS calls fail: 500 and 503, throttling (429
//! with Retry-After, in each service's own error format), connections reset
//! before the request reaches the service or after it was carried out, and
//! latency. Faults are drawn from a seeded generator, so a failing run can
//! be repeated.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Internal500,
    Unavailable503,
    Throttled429,
    /// The connection closes before the request is forwarded.
    ResetBefore,
    /// The request is carried out, then the connection closes without the
    /// answer: the dangerous case for creates without idempotency.
    ResetAfter,
    Latency,
}

const FAULTS: [Fault; 6] = [
    Fault::Internal500,
    Fault::Unavailable503,
    Fault::Throttled429,
    Fault::ResetBefore,
    Fault::ResetAfter,
    Fault::Latency,
];

#[derive(Debug, Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub faulted: AtomicU64,
    pub by_kind: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Counts {
    pub fn summary(&self) -> String {
        format!(
            "{} requests, {} faulted {:?}",
            self.requests.load(Ordering::SeqCst),
            self.faulted.load(Ordering::SeqCst),
            self.by_kind.lock().unwrap()
        )
    }
}

struct Shared {
    upstream: SocketAddr,
    /// Faults per thousand requests.
    rate: u64,
    rng: Mutex<crate::Lcg>,
    counts: Arc<Counts>,
}

impl Shared {
    fn draw(&self, below: u64) -> u64 {
        self.rng.lock().unwrap().below(below)
    }

    fn pick(&self) -> Option<Fault> {
        if self.draw(1000) >= self.rate {
            return None;
        }
        Some(FAULTS[self.draw(FAULTS.len() as u64) as usize])
    }
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts on 127.0.0.1 (a free port) in front of `upstream`, faulting
    /// `per_mille` of the requests. It runs on a thread of its own, so
    /// async and blocking tests alike can use it.
    pub fn start(upstream: SocketAddr, per_mille: u64, seed: u64) -> FaultProxy {
        let counts = Arc::new(Counts::default());
        let shared = Arc::new(Shared {
            upstream,
            rate: per_mille,
            rng: Mutex::new(crate::Lcg(seed)),
            counts: counts.clone(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, addr) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                bound.send(listener.local_addr().unwrap()).unwrap();
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let shared = shared.clone();
                                async move { handle(&shared, req).await }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        });
        FaultProxy {
            addr: addr.recv().unwrap(),
            counts,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Which AWS service a signed request is for, from its SigV4 credential scope.
fn service_of(req: &Request<Incoming>) -> String {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown")
        .to_string()
}

/// An error answer in the service's own protocol, so that the SDK reads its
/// code as it would from AWS.
fn error_answer(service: &str, status: StatusCode, code: &str) -> Response<Full<Bytes>> {
    let message = "injected by the test's fault proxy";
    let (content_type, body) = match service {
        "ec2" => (
            "text/xml",
            format!(
                "<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault</RequestID></Response>"
            ),
        ),
        "secretsmanager" => (
            "application/x-amz-json-1.1",
            format!("{{\"__type\":\"{code}\",\"message\":\"{message}\"}}"),
        ),
        "s3" => (
            "application/xml",
            format!("<Error><Code>{code}</Code><Message>{message}</Message></Error>"),
        ),
        _ => (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Receiver</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
            ),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    if status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
    }
    r
}

fn throttle_code(service: &str) -> &'static str {
    match service {
        "ec2" => "RequestLimitExceeded",
        "secretsmanager" => "ThrottlingException",
        "s3" => "SlowDown",
        _ => "Throttling",
    }
}

async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    shared.counts.requests.fetch_add(1, Ordering::SeqCst);
    let fault = shared.pick();
    if let Some(f) = fault {
        shared.counts.faulted.fetch_add(1, Ordering::SeqCst);
        *shared
            .counts
            .by_kind
            .lock()
            .unwrap()
            .entry(format!("{f:?}"))
            .or_default() += 1;
    }
    let service = service_of(&req);
    match fault {
        Some(Fault::Internal500) => {
            return Ok(error_answer(
                &service,
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
            ));
        }
        Some(Fault::Unavailable503) => {
            return Ok(error_answer(
                &service,
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
            ));
        }
        Some(Fault::Throttled429) => {
            return Ok(error_answer(
                &service,
                StatusCode::TOO_MANY_REQUESTS,
                throttle_code(&service),
            ));
        }
        Some(Fault::ResetBefore) => {
            return Err(std::io::Error::other("reset before forwarding"));
        }
        Some(Fault::Latency) => {
            tokio::time::sleep(Duration::from_millis(200 + shared.draw(800))).await;
        }
        Some(Fault::ResetAfter) | None => {}
    }
    let answer = forward(shared.upstream, req).await?;
    if fault == Some(Fault::ResetAfter) {
        return Err(std::io::Error::other("reset after the call was made"));
    }
    Ok(answer)
}

async fn forward(
    upstream: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = whole(body).await?;
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let upstream_req = Request::from_parts(parts, Full::new(body));
    let answer = sender
        .send_request(upstream_req)
        .await
        .map_err(std::io::Error::other)?;
    let (parts, body) = answer.into_parts();
    Ok(Response::from_parts(parts, Full::new(whole(body).await?)))
}

async fn whole(body: Incoming) -> Result<Bytes, std::io::Error> {
    Ok(body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes())
}

/// The proxy itself, against a tiny upstream of the test's own.
#[test]
fn the_fault_proxy_forwards_and_faults_at_the_rate_asked() {
    use std::io::{Read, Write};
    // An upstream that answers every request with "ok".
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    upstream.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        while !stop2.load(Ordering::SeqCst) {
            match upstream.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    let proxy = FaultProxy::start(up_addr, 500, 7);
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..100 {
        let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(
            b"POST / HTTP/1.1\r\nhost: x\r\nauthorization: AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/ec2/aws4_request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        if out.starts_with("HTTP/1.1 200") && out.ends_with("ok") {
            ok += 1;
        } else {
            failed += 1;
            assert!(
                out.is_empty()
                    || out.contains("RequestLimitExceeded")
                    || out.contains("InternalError")
                    || out.contains("ServiceUnavailable"),
                "{out}"
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    server.join().unwrap();
    let faulted = proxy.counts.faulted.load(Ordering::SeqCst);
    assert_eq!(proxy.counts.requests.load(Ordering::SeqCst), 100);
    // Latency faults still answer; every other fault fails the call.
    let latency = proxy
        .counts
        .by_kind
        .lock()
        .unwrap()
        .get("Latency")
        .copied()
        .unwrap_or(0);
    assert_eq!(failed, faulted - latency, "{}", proxy.counts.summary());
    assert!((30..=70).contains(&faulted), "{}", proxy.counts.summary());
    assert_eq!(ok + failed, 100);
}
