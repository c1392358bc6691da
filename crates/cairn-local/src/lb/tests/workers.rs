//! Worker threads: the pick stays one sequence across them, a worker on the
//! caller's runtime serves as well, and stopping (or dropping `serve`)
//! leaves no connection open on either side.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// `start` with a chosen number of worker threads.
async fn start_with(config: LbConfig, threads: usize) -> Running {
    serve_on_fresh_port(LoadBalancer::with_threads(config, threads)).await
}

/// An HTTP backend answering "c" that counts its open connections.
async fn counting_backend() -> (TestServer, Arc<AtomicUsize>) {
    let open = Arc::new(AtomicUsize::new(0));
    let count = open.clone();
    let server = test_server(bind().await, OnStop::Cut, move |stream, stop| {
        count.fetch_add(1, Ordering::SeqCst);
        let count = count.clone();
        async move {
            let service = service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"c"))))
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
            count.fetch_sub(1, Ordering::SeqCst);
        }
    });
    (server, open)
}

#[tokio::test]
async fn sequential_requests_share_one_backend_connection() {
    let (backend, _open) = counting_backend().await;
    let accepted = Arc::new(AtomicUsize::new(0));
    // A front that counts the connections it forwards to the backend.
    let front = bind().await;
    let front_addr = front.local_addr().unwrap();
    let relay = tokio::spawn({
        let (accepted, to) = (accepted.clone(), backend.addr);
        async move {
            let mut pipes = JoinSet::new();
            // Bounded: one per request at most, and a spare.
            for _ in 0..21 {
                let Ok((mut inbound, _)) = front.accept().await else {
                    break;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                pipes.spawn(async move {
                    let mut outbound = TcpStream::connect(to).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
            pipes.shutdown().await;
        }
    });
    let lb = start_with(unchecked(&[(front_addr, 1)]), 1).await;

    let mut client = Client::new(lb.addr);
    for _ in 0..20 {
        let (status, body) = client.request(Method::GET, "/", "").await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "c"),
            "after {} accepted",
            accepted.load(Ordering::SeqCst)
        );
    }
    // Each request took the kept connection back from the last one.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    drop(client);
    lb.stop().await;
    relay.abort();
    let _ = relay.await;
    backend.stop().await;
}

/// Requests on `n` connections at once, each connection kept open until all
/// have their answer (so that they spread over the workers).
async fn parallel_requests(addr: SocketAddr, n: usize) -> Vec<Client> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        set.spawn(async move {
            let mut client = Client::new(addr);
            let answer = client.request(Method::GET, "/", "").await;
            (client, answer)
        });
    }
    let mut clients = Vec::new();
    while let Some(done) = set.join_next().await {
        let (client, answer) = done.unwrap();
        assert_eq!(answer.unwrap().0, StatusCode::OK);
        clients.push(client);
    }
    clients
}

#[tokio::test]
async fn split_is_exact_across_worker_threads() {
    let a = http_backend("a").await;
    let b = http_backend("b").await;
    let lb = start_with(unchecked(&[(a.addr, 3), (b.addr, 1)]), 4).await;

    // A new connection per request: they land on any of the 4 workers, and
    // the one smooth weighted sequence still gives 3 of every 4 to a.
    let mut to_a = 0;
    for _ in 0..400 {
        let (status, body) = get(lb.addr, "/").await;
        assert_eq!(status, StatusCode::OK);
        to_a += usize::from(body == "a");
    }
    assert_eq!(to_a, 300);

    lb.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_worker_on_the_callers_runtime_serves_and_stops() {
    let a = http_backend("a").await;
    let lb = start_with(unchecked(&[(a.addr, 1)]), 0).await;
    let report = bench_requests(lb.addr, "/", 200, 4).await;
    assert_eq!(report.failures, 0, "{report:?}");
    let addr = lb.addr;
    lb.stop().await;
    assert!(unbound(addr), "still listening");
    a.stop().await;
}

#[tokio::test]
async fn stopping_closes_every_connection_of_every_worker() {
    let (c, open) = counting_backend().await;
    let lb = start_with(unchecked(&[(c.addr, 1)]), 3).await;

    // 24 connections at once: backend connections kept on several workers.
    let clients = parallel_requests(lb.addr, 24).await;
    assert!(open.load(Ordering::SeqCst) > 0);
    let addr = lb.addr;
    lb.stop().await;
    assert!(unbound(addr), "still listening");
    // `serve` returned after every worker's runtime was gone; the backend
    // sees the last FIN shortly after.
    let closed = eventually(Duration::from_secs(3), || open.load(Ordering::SeqCst) == 0).await;
    assert!(
        closed.is_some(),
        "{} backend connections left open",
        open.load(Ordering::SeqCst)
    );
    drop(clients);
    c.stop().await;
}

#[tokio::test]
async fn dropping_serve_cuts_every_worker() {
    let (c, open) = counting_backend().await;
    let lb = start_with(unchecked(&[(c.addr, 1)]), 2).await;
    let clients = parallel_requests(lb.addr, 8).await;
    assert!(open.load(Ordering::SeqCst) > 0);

    lb.task.abort();
    let _ = lb.task.await;
    let gone = eventually(Duration::from_secs(3), || open.load(Ordering::SeqCst) == 0).await;
    assert!(
        gone.is_some(),
        "{} backend connections left open",
        open.load(Ordering::SeqCst)
    );
    assert!(unbound(lb.addr), "still listening after serve was dropped");
    drop(clients);
    // The same balancer can serve again.
    let again = serve_on_fresh_port(lb.lb.clone()).await;
    assert_eq!(get(again.addr, "/").await, (StatusCode::OK, "c".into()));
    again.stop().await;
    c.stop().await;
}

/// A client connection idle between requests is closed as soon as the
/// balancer stops, on every worker, not at the drain timeout: each waits
/// on its worker's stop, which must wake it.
#[tokio::test]
async fn stopping_closes_idle_connections_at_once_not_at_the_drain_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let a = http_backend("a").await;
    let mut cfg = unchecked(&[(a.addr, 1)]);
    cfg.drain_timeout = Duration::from_secs(60);
    let lb = start_with(cfg, 3).await;
    // Raw connections, each answered once and then left idle; 12 of them
    // land on more than one worker (the kernel spreads them by port).
    let mut idle = Vec::new();
    for _ in 0..12 {
        let mut s = TcpStream::connect(lb.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: lb\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.ends_with(b"\r\n\r\na") {
            let n = timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            assert!(n > 0, "closed before answering: {answer:?}");
            answer.extend_from_slice(&buf[..n]);
        }
        idle.push(s);
    }
    // `Running::stop` allows 10 s, the drain timeout is 60 s.
    lb.stop().await;
    for mut s in idle {
        let mut buf = [0u8; 16];
        let n = timeout(Duration::from_secs(1), s.read(&mut buf))
            .await
            .expect("the idle connection was closed")
            .unwrap_or(0);
        assert_eq!(n, 0, "no end of stream: {:?}", &buf[..n]);
    }
    a.stop().await;
}

/// Two workers on a fresh port in front of one counting backend, worker 0
/// as if it held 30 connections already: the kernel's hash gives it about
/// half of what comes, and what is kept alive it must pass on.
struct Uneven {
    backend: TestServer,
    workers: super::super::worker::Workers,
    spread: Arc<super::super::spread::Spread>,
    pretend: Vec<super::super::spread::Held>,
    stop: CancellationToken,
    addr: SocketAddr,
}

impl Uneven {
    async fn start() -> Self {
        let (backend, _open) = counting_backend().await;
        let lb = LoadBalancer::with_threads(unchecked(&[(backend.addr, 1)]), 2);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let workers = super::super::worker::Workers::start(
            &lb.shared,
            listener,
            2,
            &stop,
            &CancellationToken::new(),
        );
        let spread = workers.spread.clone();
        let pretend = (0..30).map(|_| spread.hold(0)).collect();
        Self {
            backend,
            workers,
            spread,
            pretend,
            stop,
            addr,
        }
    }

    async fn stop(mut self) {
        drop(self.pretend);
        self.stop.cancel();
        self.workers.wait().await;
        self.backend.stop().await;
    }
}

#[tokio::test]
async fn a_worker_holding_more_connections_moves_kept_ones_to_the_emptier() {
    let uneven = Uneven::start().await;
    let spread = uneven.spread.clone();
    let mut clients = Vec::new();
    for i in 0..30 {
        let mut client = Client::new(uneven.addr);
        let (status, body) = client.request(Method::GET, "/", "").await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "c"), "client {i}");
        clients.push(client);
    }
    // Worker 1 ends up with (nearly) all 30; left to the hash it would
    // keep about 15.
    let even = || {
        let counts = spread.counts();
        counts.iter().sum::<usize>() == 60 && counts.iter().all(|n| (29..=31).contains(n))
    };
    let evened = eventually(Duration::from_secs(5), even).await;
    assert!(evened.is_some(), "{:?}", spread.counts());
    assert!(spread.moved() >= 1);
    // Served again on the same connections, wherever they went.
    for (i, client) in clients.iter_mut().enumerate() {
        let (status, body) = client.request(Method::GET, "/", "").await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "c"), "client {i}");
    }
    assert!(even(), "{:?}", spread.counts());

    drop(clients);
    let emptied = eventually(Duration::from_secs(5), || spread.counts() == [30, 0]).await;
    assert!(emptied.is_some(), "still counted: {:?}", spread.counts());
    uneven.stop().await;
    assert_eq!(spread.counts(), [0, 0]);
}

#[tokio::test]
async fn connections_that_ask_to_close_never_move() {
    let uneven = Uneven::start().await;
    // One request each, then the close: nothing to move, so both workers
    // served what the hash gave them.
    for i in 0..20 {
        let mut stream = TcpStream::connect(uneven.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "client {i}: {answer}");
    }
    let spread = uneven.spread.clone();
    let emptied = eventually(Duration::from_secs(5), || spread.counts() == [30, 0]).await;
    assert!(emptied.is_some(), "{:?}", spread.counts());
    // About half went through worker 0 (all 20 to worker 1 by the hash
    // is a one in a million chance), and none of them moved.
    assert_eq!(spread.moved(), 0);
    uneven.stop().await;
}
