//! Load balancer throughput and latency against a direct connection to the
//! same backend, all on loopback: `cairn util http-echo`'s server as the
//! backend, one balancer (health checks off, so probes do not compete), and
//! `bench_requests` as the client (keep-alive connections).
//!
//! `cargo bench -p cairn-local --bench lb [-- REQUESTS CONCURRENCY]`
//! (default 20,000 requests over 16 connections). Bounded: the requests are
//! counted, and the whole run stops after 120 s.

use std::time::Duration;

use cairn_local::lb::{Backend, BenchReport, HealthCheck, LbConfig, LoadBalancer, bench_requests};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let requests = args.first().copied().unwrap_or(20_000);
    let concurrency = args.get(1).copied().unwrap_or(16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let finished = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), run(requests, concurrency)).await
    });
    if finished.is_err() {
        eprintln!("the benchmark did not finish within 120 s");
        std::process::exit(1);
    }
}

async fn run(requests: usize, concurrency: usize) {
    let stop = CancellationToken::new();
    let backend = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend_addr = backend.local_addr().expect("backend address");
    let echo = tokio::spawn(cairn_local::echo::serve(
        backend,
        "hello".into(),
        stop.clone(),
    ));
    let front = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let front_addr = front.local_addr().expect("balancer address");
    let lb = LoadBalancer::new(LbConfig {
        backends: vec![Backend::new(backend_addr, 1)],
        health: HealthCheck::off(),
        ..LbConfig::default()
    });
    let serving = tokio::spawn({
        let (lb, stop) = (lb.clone(), stop.clone());
        async move { lb.serve(front, stop).await }
    });

    // Warm both paths (connections, allocator) before measuring.
    bench_requests(backend_addr, "/", 1_000, concurrency).await;
    bench_requests(front_addr, "/", 1_000, concurrency).await;
    println!("{requests} GET / over {concurrency} keep-alive connections, loopback");
    println!(
        "{:<22} {:>10} {:>9} {:>9} {:>9}",
        "path", "requests/s", "p50", "p99", "failures"
    );
    let direct = bench_requests(backend_addr, "/", requests, concurrency).await;
    row("direct to the backend", &direct);
    let via = bench_requests(front_addr, "/", requests, concurrency).await;
    row("through the balancer", &via);

    stop.cancel();
    let _ = serving.await;
    let _ = echo.await;
}

fn row(name: &str, r: &BenchReport) {
    println!(
        "{name:<22} {:>10.0} {:>7.0}µs {:>7.0}µs {:>9}",
        r.requests_per_sec,
        r.p50.as_secs_f64() * 1e6,
        r.p99.as_secs_f64() * 1e6,
        r.failures
    );
}
