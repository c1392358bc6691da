//! A small HTTP/1.1 keep-alive client, and a throughput benchmark built on
//! it (for `cairn` benchmarks and this module's tests).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The outcome of `bench_requests`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    pub requests: usize,
    /// Requests that got an error or a status other than 2xx.
    pub failures: usize,
    pub elapsed: Duration,
    pub requests_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Sends `requests` GETs of `path` to `addr` over `concurrency` keep-alive
/// connections and reports throughput and latency percentiles.
pub async fn bench_requests(
    addr: SocketAddr,
    path: &str,
    requests: usize,
    concurrency: usize,
) -> BenchReport {
    let issued = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    let started = Instant::now();
    for _ in 0..concurrency.max(1) {
        let issued = issued.clone();
        let path = path.to_string();
        workers.spawn(async move {
            let mut client = Client::new(addr);
            let mut latencies = Vec::new();
            while issued.fetch_add(1, Ordering::Relaxed) < requests {
                let t = Instant::now();
                if let Ok((status, _)) = client.request(Method::GET, &path, "").await
                    && status.is_success()
                {
                    latencies.push(t.elapsed());
                }
            }
            latencies
        });
    }
    let mut latencies = Vec::with_capacity(requests);
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(l) => latencies.extend(l),
            Err(e) => {
                tracing::error!("benchmark worker failed: {e}");
            }
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    BenchReport {
        requests,
        failures: requests.saturating_sub(latencies.len()),
        elapsed,
        requests_per_sec: latencies.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// An HTTP/1.1 client on one keep-alive connection, reconnecting after an
/// error or a close.
pub(super) struct Client {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// The connection's driver; dropping the client cuts it.
    driver: JoinSet<()>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            sender: None,
            driver: JoinSet::new(),
        }
    }

    /// Sends one request and reads the whole response as text.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: &str,
    ) -> Result<(StatusCode, String), String> {
        let result = self.try_request(method, path, body).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn try_request(
        &mut self,
        method: Method,
        path: &str,
        body: &str,
    ) -> Result<(StatusCode, String), String> {
        let mut reusable = None;
        if let Some(mut s) = self.sender.take()
            && s.ready().await.is_ok()
        {
            reusable = Some(s);
        }
        let mut sender = match reusable {
            Some(s) => s,
            None => {
                let stream = TcpStream::connect(self.addr)
                    .await
                    .map_err(|e| format!("connect {}: {e}", self.addr))?;
                let _ = stream.set_nodelay(true);
                let (sender, conn) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("handshake: {e}"))?;
                // One connection at a time: the previous driver goes.
                self.driver.abort_all();
                while self.driver.try_join_next().is_some() {}
                self.driver.spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.to_string())
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("response body: {e}"))?
            .to_bytes();
        self.sender = Some(sender);
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }
}
