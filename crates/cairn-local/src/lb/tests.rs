//! The balancer against real backends on 127.0.0.1: small hyper (or raw TCP)
//! servers that answer their own name. Every server a test starts, the test
//! stops; every client loop is bounded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

use super::bench::Client;
use super::*;
use crate::http::serve_http1;
use crate::test_server::{OnStop, TestServer, test_server, unbound};

mod drain;
mod wire;
mod workers;

/// The health check interval in these tests.
const TICK: Duration = Duration::from_millis(100);

fn checks() -> HealthCheck {
    HealthCheck {
        path: "/health".into(),
        interval: TICK,
        timeout: TICK,
        healthy: 2,
        unhealthy: 2,
        port: None,
    }
}

fn config(backends: &[(SocketAddr, u32)]) -> LbConfig {
    LbConfig {
        protocol: Protocol::Http,
        algorithm: Algorithm::WeightedRoundRobin,
        backends: backends.iter().map(|&(a, w)| Backend::new(a, w)).collect(),
        health: checks(),
        drain_timeout: Duration::from_secs(5),
    }
}

/// `config` with health checks off: every backend takes traffic at once.
fn unchecked(backends: &[(SocketAddr, u32)]) -> LbConfig {
    LbConfig {
        health: HealthCheck::off(),
        ..config(backends)
    }
}

/// `config` with every backend at weight 1, picked by `algorithm`.
fn even(addrs: &[SocketAddr], algorithm: Algorithm) -> LbConfig {
    let weighted: Vec<(SocketAddr, u32)> = addrs.iter().map(|&a| (a, 1)).collect();
    LbConfig {
        algorithm,
        ..config(&weighted)
    }
}

// ----- backends -----

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// An HTTP backend answering its name; `/slow` after 300 ms, `/slower` after
/// 2 s, `/headers` and `/echo` describe the request they got.
async fn http_backend(name: &str) -> TestServer {
    http_backend_on(bind().await, name)
}

fn http_backend_on(listener: TcpListener, name: &str) -> TestServer {
    let name: Arc<str> = name.into();
    test_server(listener, OnStop::Finish, move |stream, stop| {
        let name = name.clone();
        async move {
            let service = service_fn(move |req| answer(name.clone(), req));
            serve_http1(stream, service, stop).await
        }
    })
}

async fn answer(
    name: Arc<str>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let text = match req.uri().path() {
        "/slow" => {
            sleep(Duration::from_millis(300)).await;
            name.to_string()
        }
        "/slower" => {
            sleep(Duration::from_secs(2)).await;
            name.to_string()
        }
        "/headers" => format!(
            "xff={} proto={} host={} connection={}",
            header("x-forwarded-for"),
            header("x-forwarded-proto"),
            header("host"),
            header("connection"),
        ),
        "/echo" => {
            let method = req.method().clone();
            let target = req.uri().to_string();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            format!(
                "{name} {method} {target} {}",
                String::from_utf8_lossy(&body)
            )
        }
        _ => name.to_string(),
    };
    Ok(Response::new(Full::new(Bytes::from(text))))
}

/// A TCP backend: says its name on a line, then echoes.
async fn tcp_backend(name: &str) -> TestServer {
    let name = format!("{name}\n");
    test_server(bind().await, OnStop::Cut, move |mut stream, _| {
        let name = name.clone();
        async move {
            if stream.write_all(name.as_bytes()).await.is_ok() {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        }
    })
}

/// A backend that passes `GET /health` and drops every other request's
/// connection without answering.
async fn crashing_backend() -> TestServer {
    test_server(bind().await, OnStop::Cut, |stream, _| async move {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if reader.read_line(&mut line).await.is_ok() && line.starts_with("GET /health ") {
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    })
}

/// A connection to `addr` and the first line it says (a TCP backend's
/// name, newline and all).
async fn greeted(addr: SocketAddr) -> (String, BufReader<TcpStream>) {
    let mut stream = BufReader::new(TcpStream::connect(addr).await.unwrap());
    let mut line = String::new();
    stream.read_line(&mut line).await.unwrap();
    (line, stream)
}

/// An address nothing listens on.
async fn dead_addr() -> SocketAddr {
    bind().await.local_addr().unwrap()
}

// ----- the balancer -----

struct Running {
    lb: LoadBalancer,
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// A balancer with a worker thread per core, serving on a fresh port.
async fn start(config: LbConfig) -> Running {
    serve_on_fresh_port(LoadBalancer::new(config)).await
}

/// `lb` serving on a fresh loopback port until `Running::stop`.
async fn serve_on_fresh_port(lb: LoadBalancer) -> Running {
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (lb, stop) = (lb.clone(), stop.clone());
        async move { lb.serve(listener, stop).await }
    });
    Running {
        lb,
        addr,
        stop,
        task,
    }
}

/// `start`, then waits until every backend in `config` is healthy.
async fn start_healthy(config: LbConfig) -> Running {
    let addrs: Vec<SocketAddr> = config.backends.iter().map(|b| b.addr).collect();
    let lb = start(config).await;
    lb.wait_healthy(&addrs).await;
    lb
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }

    fn backend(&self, addr: SocketAddr) -> Option<BackendStatus> {
        self.lb.status().into_iter().find(|b| b.addr == addr)
    }

    fn healthy(&self, addr: SocketAddr) -> bool {
        self.backend(addr).is_some_and(|b| b.healthy)
    }

    async fn wait_healthy(&self, addrs: &[SocketAddr]) {
        let took = eventually(Duration::from_secs(3), || {
            addrs.iter().all(|&a| self.healthy(a))
        })
        .await;
        assert!(
            took.is_some(),
            "backends never healthy: {:?}",
            self.lb.status()
        );
    }
}

/// Polls `f` every 5 ms until it holds (how long it took) or `limit` passes.
async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if f() {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        sleep(Duration::from_millis(5)).await;
    }
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    Client::new(addr)
        .request(Method::GET, path, "")
        .await
        .unwrap()
}

/// When a request started, and its body on a 200 or what went wrong.
struct Outcome {
    at: Instant,
    result: Result<String, String>,
}

/// Client loops, each on its own keep-alive connection, until stopped (or
/// 2,000 requests each).
struct Load {
    stop: CancellationToken,
    workers: JoinSet<Vec<Outcome>>,
}

fn load(addr: SocketAddr, workers: usize) -> Load {
    load_of(addr, workers, |_, _| "/")
}

/// `load` where worker `w`'s `i`th request is a GET of `path(w, i)`; a
/// failure names its path.
fn load_of(addr: SocketAddr, workers: usize, path: fn(usize, usize) -> &'static str) -> Load {
    let stop = CancellationToken::new();
    let mut set = JoinSet::new();
    for w in 0..workers {
        let stop = stop.clone();
        set.spawn(async move {
            let mut client = Client::new(addr);
            let mut outcomes = Vec::new();
            for i in 0..2_000 {
                if stop.is_cancelled() {
                    break;
                }
                let path = path(w, i);
                let at = Instant::now();
                let result = match client.request(Method::GET, path, "").await {
                    Ok((StatusCode::OK, body)) => Ok(body),
                    Ok((status, body)) => Err(format!("{path}: {status}: {body}")),
                    Err(e) => Err(format!("{path}: {e}")),
                };
                outcomes.push(Outcome { at, result });
                sleep(Duration::from_millis(5)).await;
            }
            outcomes
        });
    }
    Load { stop, workers: set }
}

impl Load {
    async fn finish(mut self) -> Vec<Outcome> {
        self.stop.cancel();
        let mut all = Vec::new();
        while let Some(w) = self.workers.join_next().await {
            all.extend(w.unwrap());
        }
        all.sort_by_key(|o| o.at);
        all
    }
}

fn failures(outcomes: &[Outcome]) -> Vec<&str> {
    outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(String::as_str))
        .collect()
}

fn answered_by<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>, name: &str) -> usize {
    outcomes
        .into_iter()
        .filter(|o| o.result.as_deref() == Ok(name))
        .count()
}

// ----- tests -----

#[tokio::test]
async fn weighted_round_robin_splits_3_to_1() {
    let a = http_backend("a").await;
    let b = http_backend("b").await;
    let lb = start_healthy(config(&[(a.addr, 3), (b.addr, 1)])).await;

    let mut client = Client::new(lb.addr);
    let mut to_a = 0;
    for _ in 0..400 {
        let (status, body) = client.request(Method::GET, "/", "").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        to_a += usize::from(body == "a");
    }
    assert!((285..=315).contains(&to_a), "a got {to_a} of 400");

    lb.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn stopped_backend_is_taken_out_and_put_back() {
    let a = http_backend("a").await;
    let b = http_backend("b").await;
    let a_addr = a.addr;
    let lb = start_healthy(config(&[(a.addr, 1), (b.addr, 1)])).await;
    let traffic = load(lb.addr, 3);
    sleep(Duration::from_millis(200)).await;

    let stopped = Instant::now();
    a.stop().await;
    let out = eventually(Duration::from_secs(2), || !lb.healthy(a_addr))
        .await
        .expect("a stopped backend is taken out");
    let window = 2 * TICK;
    assert!(out <= window + TICK, "taken out after {out:?}");
    let after_window = stopped + window + TICK;
    sleep(Duration::from_millis(400)).await;

    let a = http_backend_on(TcpListener::bind(a_addr).await.unwrap(), "a");
    let back = eventually(Duration::from_secs(2), || lb.healthy(a_addr))
        .await
        .expect("a recovered backend is put back");
    assert!(back <= 3 * TICK + TICK, "put back after {back:?}");
    let returned = Instant::now();
    sleep(Duration::from_millis(300)).await;

    let outcomes = traffic.finish().await;
    let late: Vec<&Outcome> = outcomes.iter().filter(|o| o.at >= after_window).collect();
    let late_failures: Vec<&str> = late
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(String::as_str))
        .collect();
    assert!(
        late_failures.is_empty(),
        "failed after the window: {late_failures:?}"
    );
    assert!(
        late.len() > 50,
        "only {} requests after the window",
        late.len()
    );
    eprintln!(
        "{} requests, {} failed inside the window, out after {out:?}, back after {back:?}",
        outcomes.len(),
        failures(&outcomes).len()
    );
    assert!(
        answered_by(outcomes.iter().filter(|o| o.at >= returned), "a") > 0,
        "a took no traffic after it came back"
    );

    lb.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn health_checks_alone_take_a_backend_out_within_two_intervals() {
    let a = http_backend("a").await;
    let a_addr = a.addr;
    let lb = start_healthy(config(&[(a.addr, 1)])).await;

    // No traffic: only the probes can notice.
    a.stop().await;
    let out = eventually(Duration::from_secs(2), || !lb.healthy(a_addr))
        .await
        .expect("taken out");
    assert!(out <= 2 * TICK + TICK / 2, "taken out after {out:?}");
    let status = lb.backend(a_addr).unwrap();
    assert_eq!((status.consecutive_ok, status.consecutive_fail), (0, 2));
    assert_eq!(get(lb.addr, "/").await.0, StatusCode::SERVICE_UNAVAILABLE);

    // Back after `healthy` (2) passes in a row.
    let a = http_backend_on(TcpListener::bind(a_addr).await.unwrap(), "a");
    let back = eventually(Duration::from_secs(2), || lb.healthy(a_addr))
        .await
        .expect("put back");
    assert!(back <= 2 * TICK + TICK / 2, "put back after {back:?}");
    assert!(lb.backend(a_addr).unwrap().consecutive_ok >= 2);
    assert_eq!(get(lb.addr, "/").await, (StatusCode::OK, "a".into()));

    lb.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn checks_off_then_on_again_restarts_the_probes() {
    let a = http_backend("a").await;
    let mut cfg = config(&[(a.addr, 1), (dead_addr().await, 1)]);
    let lb = start(cfg.clone()).await;
    lb.wait_healthy(&[a.addr]).await;
    let dead = cfg.backends[1].addr;
    assert!(!lb.healthy(dead));

    cfg.health = HealthCheck::off();
    lb.lb.update(cfg.clone());
    assert!(lb.healthy(dead), "with checks off every backend is in");
    // Let the serve loop stop the probes.
    sleep(2 * TICK).await;

    cfg.health = checks();
    lb.lb.update(cfg);
    let out = eventually(Duration::from_secs(2), || !lb.healthy(dead)).await;
    assert!(out.is_some(), "probes resumed: {:?}", lb.lb.status());
    assert!(lb.healthy(a.addr));

    lb.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn removed_backend_finishes_its_slow_requests() {
    let a = http_backend("a").await;
    let b = http_backend("b").await;
    let mut cfg = even(&[a.addr, b.addr], Algorithm::RoundRobin);
    let lb = start_healthy(cfg.clone()).await;

    let mut slow = JoinSet::new();
    for _ in 0..8 {
        let addr = lb.addr;
        slow.spawn(async move { get(addr, "/slow").await });
    }
    let all_in = eventually(Duration::from_secs(2), || {
        lb.lb.status().iter().map(|b| b.in_flight).sum::<usize>() == 8
    })
    .await;
    assert!(all_in.is_some(), "{:?}", lb.lb.status());

    cfg.backends.remove(0);
    lb.lb.update(cfg);
    let a_status = lb.backend(a.addr).expect("a is listed while draining");
    assert!(a_status.draining && !a_status.healthy, "{a_status:?}");
    assert_eq!(a_status.in_flight, 4);
    for _ in 0..4 {
        assert_eq!(get(lb.addr, "/").await, (StatusCode::OK, "b".into()));
    }

    let mut by_a = 0;
    while let Some(done) = slow.join_next().await {
        let (status, body) = done.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        by_a += usize::from(body == "a");
    }
    assert_eq!(by_a, 4, "a answered its requests after it was removed");
    let gone = eventually(Duration::from_secs(1), || lb.backend(a.addr).is_none()).await;
    assert!(gone.is_some(), "{:?}", lb.lb.status());

    lb.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn drain_timeout_cuts_what_is_left() {
    let a = http_backend("a").await;
    let b = http_backend("b").await;
    let mut cfg = unchecked(&[(a.addr, 1)]);
    cfg.drain_timeout = Duration::from_millis(200);
    let lb = start(cfg.clone()).await;

    let addr = lb.addr;
    let post = tokio::spawn(async move {
        Client::new(addr)
            .request(Method::POST, "/slower", "x")
            .await
    });
    assert!(
        eventually(Duration::from_secs(1), || lb
            .backend(a.addr)
            .is_some_and(|s| s.in_flight == 1))
        .await
        .is_some()
    );
    cfg.backends = vec![Backend::new(b.addr, 1)];
    lb.lb.update(cfg);
    let (status, _) = tokio::time::timeout(Duration::from_secs(30), post)
        .await
        .expect("the request to the removed backend is answered")
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(get(lb.addr, "/").await, (StatusCode::OK, "b".into()));
    assert!(
        eventually(Duration::from_secs(1), || lb.backend(a.addr).is_none())
            .await
            .is_some()
    );

    lb.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn scaling_2_to_4_to_1_under_load_fails_nothing() {
    let mut servers = Vec::new();
    for name in ["b0", "b1", "b2", "b3"] {
        servers.push(http_backend(name).await);
    }
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let weighted = |n: usize| addrs[..n].iter().map(|&a| (a, 1)).collect::<Vec<_>>();
    let lb = start(config(&weighted(2))).await;
    lb.wait_healthy(&addrs[..2]).await;
    let traffic = load(lb.addr, 4);
    sleep(Duration::from_millis(300)).await;

    lb.lb.update(config(&weighted(4)));
    assert!(
        !lb.healthy(addrs[2]) && !lb.healthy(addrs[3]),
        "new backends wait for their first check"
    );
    lb.wait_healthy(&addrs).await;
    let scaled_up = Instant::now();
    sleep(Duration::from_millis(300)).await;

    lb.lb.update(config(&weighted(1)));
    let scaled_down = Instant::now();
    sleep(Duration::from_millis(300)).await;

    let outcomes = traffic.finish().await;
    assert_eq!(failures(&outcomes), Vec::<&str>::new());
    let middle = || {
        outcomes
            .iter()
            .filter(|o| o.at >= scaled_up && o.at < scaled_down)
    };
    for name in ["b2", "b3"] {
        assert!(answered_by(middle(), name) > 0, "{name} took no traffic");
    }
    let last: Vec<&Outcome> = outcomes.iter().filter(|o| o.at >= scaled_down).collect();
    assert!(
        last.len() > 20,
        "only {} requests after scaling down",
        last.len()
    );
    assert_eq!(answered_by(last.iter().copied(), "b0"), last.len());
    eprintln!("{} requests, none failed", outcomes.len());

    lb.stop().await;
    for s in servers {
        s.stop().await;
    }
}

#[tokio::test]
async fn tcp_mode_splices_both_ways() {
    let a = tcp_backend("a").await;
    let b = tcp_backend("b").await;
    let mut cfg = even(&[a.addr, b.addr], Algorithm::RoundRobin);
    cfg.protocol = Protocol::Tcp;
    let lb = start_healthy(cfg).await;

    let mut names = Vec::new();
    for i in 0..2 {
        let (name, mut stream) = greeted(lb.addr).await;
        names.push(name.trim().to_string());
        let ping = format!("ping {i}\n");
        stream.get_mut().write_all(ping.as_bytes()).await.unwrap();
        stream.get_mut().shutdown().await.unwrap();
        let mut echoed = String::new();
        timeout(Duration::from_secs(2), stream.read_to_string(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed, ping);
    }
    names.sort();
    assert_eq!(names, ["a", "b"]);

    let (a_addr, b_addr) = (a.addr, b.addr);
    a.stop().await;
    b.stop().await;
    let down = eventually(Duration::from_secs(2), || {
        !lb.healthy(a_addr) && !lb.healthy(b_addr)
    })
    .await;
    assert!(down.is_some());
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    let mut rest = Vec::new();
    let n = timeout(Duration::from_secs(2), stream.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "no backend: the connection is closed");

    lb.stop().await;
}

#[tokio::test]
async fn no_healthy_backend_answers_503() {
    let lb = start(config(&[(dead_addr().await, 1)])).await;
    sleep(3 * TICK).await;
    assert_eq!(
        get(lb.addr, "/").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no healthy backend\n".into()
        )
    );
    let backend = lb.lb.status()[0].clone();
    assert!(
        !backend.healthy && backend.consecutive_fail >= 2,
        "{backend:?}"
    );
    lb.lb.update(config(&[]));
    assert_eq!(get(lb.addr, "/").await.0, StatusCode::SERVICE_UNAVAILABLE);
    lb.stop().await;

    // Probes go to `health.port` when set: a live backend whose check port
    // is dead takes no traffic.
    let a = http_backend("a").await;
    let mut cfg = config(&[(a.addr, 1)]);
    cfg.health.port = Some(dead_addr().await.port());
    let lb = start(cfg).await;
    sleep(3 * TICK).await;
    assert!(!lb.healthy(a.addr));
    assert_eq!(get(lb.addr, "/").await.0, StatusCode::SERVICE_UNAVAILABLE);
    lb.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn forwards_method_path_headers_and_body() {
    let a = http_backend("a").await;
    let lb = start(unchecked(&[(a.addr, 1)])).await;

    let mut client = Client::new(lb.addr);
    let (status, body) = client
        .request(Method::POST, "/echo?x=1", "hello")
        .await
        .unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "a POST /echo?x=1 hello")
    );
    let (_, body) = client
        .request(Method::PUT, "/echo", &"z".repeat(100_000))
        .await
        .unwrap();
    assert_eq!(body.len(), "a PUT /echo ".len() + 100_000);
    let (_, body) = client.request(Method::GET, "/headers", "").await.unwrap();
    assert_eq!(
        body,
        format!("xff=127.0.0.1 proto=http host={} connection=-", lb.addr)
    );

    // Keep-alive: two requests on one client connection, then a close.
    let mut raw = TcpStream::connect(lb.addr).await.unwrap();
    raw.write_all(
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut text = String::new();
    timeout(Duration::from_secs(2), raw.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");

    lb.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn retries_once_only_what_is_safe_to_repeat() {
    let bad = crashing_backend().await;
    let good = http_backend("good").await;
    let lb = start_healthy(even(&[bad.addr, good.addr], Algorithm::RoundRobin)).await;

    let mut client = Client::new(lb.addr);
    for _ in 0..4 {
        let (status, body) = client.request(Method::GET, "/", "").await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "good"));
        let (status, _) = client.request(Method::POST, "/", "").await.unwrap();
        assert_eq!(status, StatusCode::OK, "a bodiless POST is retried");
    }
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(client.request(Method::POST, "/", "x").await.unwrap().0);
    }
    let bad_gateway = statuses
        .iter()
        .filter(|&&s| s == StatusCode::BAD_GATEWAY)
        .count();
    assert_eq!(bad_gateway, 2, "{statuses:?}");

    lb.stop().await;
    bad.stop().await;
    good.stop().await;
}

#[tokio::test]
async fn least_connections_avoids_the_busy_backend() {
    let a = http_backend("a").await;
    let b = http_backend("b").await;
    let lb = start_healthy(even(&[a.addr, b.addr], Algorithm::LeastConnections)).await;

    let addr = lb.addr;
    let slow = tokio::spawn(async move { get(addr, "/slow").await });
    assert!(
        eventually(Duration::from_secs(1), || lb
            .lb
            .status()
            .iter()
            .any(|b| b.in_flight == 1))
        .await
        .is_some()
    );
    let busy = lb
        .lb
        .status()
        .into_iter()
        .find(|b| b.in_flight == 1)
        .unwrap();
    let idle = if busy.addr == a.addr { "b" } else { "a" };
    let mut client = Client::new(lb.addr);
    for _ in 0..10 {
        assert_eq!(client.request(Method::GET, "/", "").await.unwrap().1, idle);
    }
    assert_eq!(slow.await.unwrap().0, StatusCode::OK);

    lb.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_returns() {
    let a = http_backend("a").await;
    let lb = start(unchecked(&[(a.addr, 1)])).await;

    // An idle keep-alive client must not hold shutdown up.
    let mut idle = Client::new(lb.addr);
    assert_eq!(idle.request(Method::GET, "/", "").await.unwrap().1, "a");
    let addr = lb.addr;
    let slow = tokio::spawn(async move { get(addr, "/slow").await });
    assert!(
        eventually(Duration::from_secs(1), || lb
            .backend(a.addr)
            .is_some_and(|b| b.in_flight == 1))
        .await
        .is_some()
    );
    // Bounded: a drain that never ends fails the test instead of hanging it.
    tokio::time::timeout(Duration::from_secs(30), lb.stop())
        .await
        .expect("the shutdown's drain never ended");
    assert_eq!(slow.await.unwrap(), (StatusCode::OK, "a".into()));
    assert!(unbound(addr), "still listening");
    a.stop().await;
}

#[tokio::test]
async fn benchmark_reports_throughput() {
    let a = http_backend("a").await;
    let lb = start(unchecked(&[(a.addr, 1)])).await;
    let report = bench_requests(lb.addr, "/", 300, 4).await;
    assert_eq!(report.failures, 0, "{report:?}");
    assert!(
        report.requests_per_sec > 0.0 && report.p99 >= report.p50,
        "{report:?}"
    );
    eprintln!("{report:?}");
    lb.stop().await;
    a.stop().await;
}

/// `GET /` from a chosen loopback source address (as a server on its own
/// 127.P.x.y address would connect), the whole answer as text.
async fn get_from(source: &str, addr: SocketAddr) -> std::io::Result<String> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse().unwrap(), 0))?;
    let mut stream = socket.connect(addr).await?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut out = String::new();
    timeout(Duration::from_secs(3), stream.read_to_string(&mut out))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    Ok(out)
}

#[tokio::test]
async fn firewalls_refuse_sources_they_do_not_allow() {
    let a = http_backend("a").await;
    let lb = start(unchecked(&[(a.addr, 1)])).await;
    let allowed = "127.0.0.1";
    let other = "127.77.0.9";

    lb.lb
        .set_access(Access::Only(vec!["127.0.0.1/32".parse().unwrap()]));
    let answer = get_from(allowed, lb.addr).await.unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let refused = get_from(other, lb.addr).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{refused:?}"
    );

    // Rules that match no source refuse everyone; a keep-alive connection
    // opened before the change runs on.
    let mut kept = Client::new(lb.addr);
    assert_eq!(kept.request(Method::GET, "/", "").await.unwrap().0, 200);
    lb.lb.set_access(Access::Only(vec![]));
    assert!(get_from(allowed, lb.addr).await.is_err());
    assert_eq!(kept.request(Method::GET, "/", "").await.unwrap().0, 200);

    lb.lb.set_access(Access::Open);
    let answer = get_from(other, lb.addr).await.unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");

    // The same check guards the TCP splice.
    let t = tcp_backend("t").await;
    let mut cfg = unchecked(&[(t.addr, 1)]);
    cfg.protocol = Protocol::Tcp;
    let tcp = start(cfg).await;
    tcp.lb
        .set_access(Access::Only(vec!["127.0.0.1/32".parse().unwrap()]));
    let greeting = |source: &'static str| async move {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source.parse().unwrap(), 0))?;
        let mut stream = BufReader::new(socket.connect(tcp.addr).await?);
        let mut line = String::new();
        timeout(Duration::from_secs(3), stream.read_line(&mut line))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
        Ok::<_, std::io::Error>(line)
    };
    let refused = greeting(other).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{refused:?}"
    );
    assert_eq!(greeting(allowed).await.unwrap(), "t\n");

    drop(kept);
    tcp.stop().await;
    t.stop().await;
    lb.stop().await;
    a.stop().await;
}
