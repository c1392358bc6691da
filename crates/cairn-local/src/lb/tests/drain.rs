//! Drain and restore on request, against real backends that count what
//! reaches them: what a rolling release does to each host.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use cairn_engine::backend::BackendState;
use hyper::body::{Body, Frame};

use super::*;

/// What reached one backend, counted on the backend's side; health probes
/// are not counted.
#[derive(Default)]
struct Counts {
    arrived: AtomicUsize,
    /// Requests whose answer (body included) is not yet all written.
    active: AtomicUsize,
    /// When the last answer was written.
    last_done: std::sync::Mutex<Option<Instant>>,
}

impl Counts {
    fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }
    fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
    fn last_done(&self) -> Option<Instant> {
        *self.last_done.lock().unwrap()
    }
}

/// Counts a request as active until dropped.
struct Active(Arc<Counts>);

impl Active {
    fn new(counts: &Arc<Counts>) -> Active {
        counts.arrived.fetch_add(1, Ordering::SeqCst);
        counts.active.fetch_add(1, Ordering::SeqCst);
        Active(counts.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        *self.0.last_done.lock().unwrap() = Some(Instant::now());
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body: `text` after `delay` (headers go out at once), holding
/// the request's `Active` until the body is written.
struct Delayed {
    text: Option<Bytes>,
    delay: Pin<Box<tokio::time::Sleep>>,
    active: Option<Active>,
}

impl Body for Delayed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.text.is_none() {
            self.active = None;
            return Poll::Ready(None);
        }
        if self.delay.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(self.text.take().map(|t| Ok(Frame::data(t))))
    }
}

/// An HTTP backend answering its name: `/` at once, `/slow` after 300 ms,
/// `/slowbody` with its headers at once and its body after 300 ms,
/// `/slower` after 2 s; `/health` passes and is not counted.
async fn counting_backend(name: &str) -> (TestServer, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    (
        counting_backend_on(bind().await, name, counts.clone()),
        counts,
    )
}

fn counting_backend_on(listener: TcpListener, name: &str, counts: Arc<Counts>) -> TestServer {
    let name = Bytes::from(name.to_string());
    test_server(listener, OnStop::Finish, move |stream, stop| {
        let (name, counts) = (name.clone(), counts.clone());
        async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let (name, counts) = (name.clone(), counts.clone());
                async move {
                    let path = req.uri().path().to_string();
                    let active = (path != "/health").then(|| Active::new(&counts));
                    let delay = match path.as_str() {
                        "/slow" => {
                            sleep(Duration::from_millis(300)).await;
                            Duration::ZERO
                        }
                        "/slower" => {
                            sleep(Duration::from_secs(2)).await;
                            Duration::ZERO
                        }
                        "/slowbody" => Duration::from_millis(300),
                        _ => Duration::ZERO,
                    };
                    Ok::<_, Infallible>(Response::new(Delayed {
                        text: Some(name),
                        delay: Box::pin(sleep(delay)),
                        active,
                    }))
                }
            });
            serve_http1(stream, service, stop).await
        }
    })
}

/// Client loops like `load`, where every eighth request is slow (`/slow`
/// or `/slowbody` in turn), so slow requests are often in flight.
fn mixed_load(addr: SocketAddr, workers: usize) -> Load {
    load_of(addr, workers, |w, i| match (i + w) % 16 {
        7 => "/slow",
        15 => "/slowbody",
        _ => "/",
    })
}

fn in_flight(lb: &Running, addr: SocketAddr) -> usize {
    lb.backend(addr).map_or(0, |b| b.in_flight)
}

#[tokio::test]
async fn a_drained_backend_finishes_its_requests_takes_no_new_ones_and_comes_back() {
    let (a, a_counts) = counting_backend("a").await;
    let (b, b_counts) = counting_backend("b").await;
    let a_addr = a.addr;
    let lb = start_healthy(even(&[a.addr, b.addr], Algorithm::RoundRobin)).await;
    let traffic = mixed_load(lb.addr, 4);
    sleep(Duration::from_millis(200)).await;

    // Slow requests of both kinds, sure to be in flight to a at the drain.
    let mut slow = JoinSet::new();
    for i in 0..8 {
        let addr = lb.addr;
        let path = if i % 2 == 0 { "/slow" } else { "/slowbody" };
        slow.spawn(async move { get(addr, path).await });
    }
    let loaded = eventually(Duration::from_secs(2), || in_flight(&lb, a_addr) >= 4).await;
    assert!(loaded.is_some(), "{:?}", lb.lb.status());

    let report = lb
        .lb
        .drain_backend(a_addr, Duration::from_secs(5))
        .await
        .unwrap();
    // On the backend's side: everything that reached a has been answered,
    // bodies included, by the time the drain returns.
    let arrived_at_drain = a_counts.arrived();
    assert_eq!(
        a_counts.active(),
        0,
        "a still busy after the drain returned"
    );
    assert!(
        report.in_flight_at_start.is_some_and(|n| n >= 4),
        "{report:?}"
    );
    assert_eq!(report.in_flight_left, Some(0), "{report:?}");
    assert!(!report.timed_out);
    assert_eq!(lb.lb.backend_state(a_addr), Ok(BackendState::Drained));
    let status = lb.backend(a_addr).unwrap();
    assert!(status.drained && !status.healthy, "{status:?}");
    eprintln!(
        "drained a with {:?} in flight in {:?}",
        report.in_flight_at_start, report.waited
    );
    while let Some(done) = slow.join_next().await {
        let (status, body) = done.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // Nothing new reaches a while b takes it all.
    let b_before = b_counts.arrived();
    let b_took = eventually(Duration::from_secs(3), || {
        b_counts.arrived() >= b_before + 20
    })
    .await;
    assert!(b_took.is_some(), "b took little traffic");
    assert_eq!(
        a_counts.arrived(),
        arrived_at_drain,
        "a got requests after its drain"
    );

    // The release restarts a: the balancer's checks fail meanwhile, and it
    // comes back only through a passing one after the restore.
    a.stop().await;
    let failing = eventually(Duration::from_secs(2), || {
        lb.backend(a_addr).is_some_and(|s| s.consecutive_fail >= 2)
    })
    .await;
    assert!(failing.is_some(), "{:?}", lb.lb.status());
    assert_eq!(lb.lb.backend_state(a_addr), Ok(BackendState::Drained));
    let a = counting_backend_on(
        TcpListener::bind(a_addr).await.unwrap(),
        "a",
        a_counts.clone(),
    );
    lb.lb.restore_backend(a_addr).unwrap();
    let back = eventually(Duration::from_secs(2), || {
        lb.lb.backend_state(a_addr) == Ok(BackendState::Healthy)
    })
    .await
    .expect("a restored backend is put back by its health check");
    let restored = a_counts.arrived();
    let retaken = eventually(Duration::from_secs(3), || {
        a_counts.arrived() >= restored + 10
    })
    .await;

    let outcomes = traffic.finish().await;
    assert_eq!(failures(&outcomes), Vec::<&str>::new());
    assert!(
        retaken.is_some(),
        "a took {} requests after its restore",
        a_counts.arrived() - restored
    );
    eprintln!(
        "{} requests through the drain and restore, none failed; back {back:?} after the restore",
        outcomes.len()
    );

    lb.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_drain_that_times_out_cuts_nothing_and_reports_what_is_left() {
    let (a, _) = counting_backend("a").await;
    let (b, _) = counting_backend("b").await;
    let lb = start_healthy(even(&[a.addr, b.addr], Algorithm::RoundRobin)).await;

    let mut slower = JoinSet::new();
    for _ in 0..2 {
        let addr = lb.addr;
        slower.spawn(async move { get(addr, "/slower").await });
    }
    let loaded = eventually(Duration::from_secs(2), || in_flight(&lb, a.addr) == 1).await;
    assert!(loaded.is_some(), "{:?}", lb.lb.status());
    let report = lb
        .lb
        .drain_backend(a.addr, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(report.timed_out, "{report:?}");
    assert_eq!(
        (report.in_flight_at_start, report.in_flight_left),
        (Some(1), Some(1))
    );
    assert!(report.waited >= Duration::from_millis(200), "{report:?}");
    assert_eq!(lb.lb.backend_state(a.addr), Ok(BackendState::Draining));
    // Draining again waits again, and this time long enough.
    let again = lb
        .lb
        .drain_backend(a.addr, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        !again.timed_out && again.in_flight_left == Some(0),
        "{again:?}"
    );
    // The request to a ran on past the first timeout to its answer.
    let mut bodies = Vec::new();
    while let Some(done) = slower.join_next().await {
        let (status, body) = done.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        bodies.push(body);
    }
    bodies.sort();
    assert_eq!(bodies, ["a", "b"]);

    lb.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn unknown_backends_are_refused_and_drain_and_restore_are_idempotent() {
    let (a, _) = counting_backend("a").await;
    let (b, b_counts) = counting_backend("b").await;
    let cfg = config(&[(a.addr, 1), (b.addr, 1)]);
    let lb = start_healthy(cfg.clone()).await;

    let stranger = dead_addr().await;
    assert_eq!(
        lb.lb.drain_backend(stranger, Duration::from_secs(1)).await,
        Err(UnknownBackend(stranger))
    );
    assert_eq!(
        lb.lb.restore_backend(stranger),
        Err(UnknownBackend(stranger))
    );
    assert_eq!(lb.lb.backend_state(stranger), Err(UnknownBackend(stranger)));
    assert_eq!(
        UnknownBackend(stranger).to_string(),
        format!("{stranger} is not a backend of this load balancer")
    );

    // Restoring what is not drained changes nothing.
    lb.lb.restore_backend(a.addr).unwrap();
    assert_eq!(lb.lb.backend_state(a.addr), Ok(BackendState::Healthy));
    for _ in 0..2 {
        let r = lb
            .lb
            .drain_backend(a.addr, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!((r.in_flight_at_start, r.timed_out), (Some(0), false));
    }
    // An update that keeps the backend keeps its mark.
    lb.lb.update(cfg.clone());
    assert_eq!(lb.lb.backend_state(a.addr), Ok(BackendState::Drained));
    let before = b_counts.arrived();
    for _ in 0..6 {
        assert_eq!(get(lb.addr, "/").await, (StatusCode::OK, "b".into()));
    }
    assert_eq!(b_counts.arrived(), before + 6);
    // Every backend drained: nothing takes traffic.
    lb.lb
        .drain_backend(b.addr, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(get(lb.addr, "/").await.0, StatusCode::SERVICE_UNAVAILABLE);
    for _ in 0..2 {
        lb.lb.restore_backend(a.addr).unwrap();
        lb.lb.restore_backend(b.addr).unwrap();
    }
    lb.wait_healthy(&[a.addr, b.addr]).await;
    // A backend an update removed is not one to drain or restore.
    lb.lb.update(config(&[(b.addr, 1)]));
    assert_eq!(lb.lb.restore_backend(a.addr), Err(UnknownBackend(a.addr)));

    // With checks off a restored backend is in at once.
    lb.lb.update(unchecked(&[(a.addr, 1)]));
    lb.lb
        .drain_backend(a.addr, Duration::from_secs(1))
        .await
        .unwrap();
    lb.lb.restore_backend(a.addr).unwrap();
    assert_eq!(lb.lb.backend_state(a.addr), Ok(BackendState::Healthy));
    assert_eq!(get(lb.addr, "/").await, (StatusCode::OK, "a".into()));

    lb.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_drained_tcp_backend_keeps_its_connection_until_the_client_closes_it() {
    let a = tcp_backend("a").await;
    let b = tcp_backend("b").await;
    let mut cfg = even(&[a.addr, b.addr], Algorithm::RoundRobin);
    cfg.protocol = Protocol::Tcp;
    cfg.health = HealthCheck::off();
    let lb = start(cfg).await;

    // Two connections, one to each; find the one on a.
    let mut conns = Vec::new();
    for _ in 0..2 {
        let (name, s) = greeted(lb.addr).await;
        conns.push((name.trim().to_string(), s));
    }
    let i = conns.iter().position(|(n, _)| n == "a").expect("one on a");
    let (_, mut on_a) = conns.swap_remove(i);
    let drain = tokio::spawn({
        let lb = lb.lb.clone();
        let a = a.addr;
        async move { lb.drain_backend(a, Duration::from_secs(10)).await }
    });
    sleep(Duration::from_millis(200)).await;
    assert!(
        !drain.is_finished(),
        "the drain did not wait for the connection"
    );
    // The open connection still works; new ones go to b.
    on_a.get_mut().write_all(b"still here\n").await.unwrap();
    let mut echoed = String::new();
    on_a.read_line(&mut echoed).await.unwrap();
    assert_eq!(echoed, "still here\n");
    for _ in 0..3 {
        assert_eq!(greeted(lb.addr).await.0, "b\n");
    }
    drop(on_a);
    let report = timeout(Duration::from_secs(5), drain)
        .await
        .expect("the drain ends once the connection is closed")
        .unwrap()
        .unwrap();
    assert_eq!(
        (report.in_flight_at_start, report.in_flight_left),
        (Some(1), Some(0))
    );

    drop(conns);
    lb.stop().await;
    a.stop().await;
    b.stop().await;
}

/// Drain latency: with nothing in flight, and with N slow (300 ms) requests
/// in flight; the figures go to stderr for the report.
#[tokio::test]
async fn drain_latency_figures() {
    let (a, a_counts) = counting_backend("a").await;
    let (b, _) = counting_backend("b").await;
    let lb = start_healthy(even(&[a.addr, b.addr], Algorithm::RoundRobin)).await;

    let mut idle = Vec::new();
    for _ in 0..20 {
        let r = lb
            .lb
            .drain_backend(a.addr, Duration::from_secs(1))
            .await
            .unwrap();
        idle.push(r.waited);
        lb.lb.restore_backend(a.addr).unwrap();
        lb.wait_healthy(&[a.addr]).await;
    }
    idle.sort();
    assert!(idle[19] < Duration::from_millis(50), "{idle:?}");
    eprintln!(
        "drain, 0 in flight: median {:?}, max {:?} (20 drains)",
        idle[10], idle[19]
    );

    for n in [1usize, 10, 50] {
        let mut slow = JoinSet::new();
        for _ in 0..2 * n {
            let addr = lb.addr;
            slow.spawn(async move { get(addr, "/slow").await });
        }
        let loaded = eventually(Duration::from_secs(3), || in_flight(&lb, a.addr) >= n).await;
        assert!(loaded.is_some(), "{:?}", lb.lb.status());
        let r = lb
            .lb
            .drain_backend(a.addr, Duration::from_secs(5))
            .await
            .unwrap();
        let returned = Instant::now();
        assert_eq!(a_counts.active(), 0);
        assert!(!r.timed_out && r.waited < Duration::from_secs(2), "{r:?}");
        // How long after a wrote its last answer the drain returned: the
        // relay of that answer to the client plus the drain's own overhead.
        let after_last = returned - a_counts.last_done().unwrap();
        eprintln!(
            "drain, {:?} slow requests in flight: waited {:?}, returned {after_last:?} after a's last answer",
            r.in_flight_at_start, r.waited
        );
        while let Some(done) = slow.join_next().await {
            assert_eq!(done.unwrap().0, StatusCode::OK);
        }
        lb.lb.restore_backend(a.addr).unwrap();
        lb.wait_healthy(&[a.addr]).await;
    }

    lb.stop().await;
    a.stop().await;
    b.stop().await;
}
