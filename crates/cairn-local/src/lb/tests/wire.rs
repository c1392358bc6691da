//! The balancer's own HTTP/1.1 path on the wire: raw clients and raw
//! backends on 127.0.0.1, so that framing, refusals and the answers to odd
//! messages are seen byte for byte.

use std::sync::Mutex;

use super::*;

/// What a raw backend does after it answers a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    KeepOpen,
    Close,
    /// Keeps the connection, then closes it while it sits idle (as a
    /// backend's keep-alive timeout does).
    CloseIdleAfter(Duration),
    /// Keeps the connection, but a request that comes after it sat idle
    /// longer than this is dropped with it unanswered: the backend's
    /// keep-alive timeout fired as the request crossed it on the wire (the
    /// race, made certain).
    TimeOutIdleAfter(Duration),
}

/// The answer to a request, by method and path.
type Script = fn(&str, &str) -> (Vec<u8>, Then);

/// A request as a raw backend received it.
#[derive(Debug, Clone)]
struct Received {
    head: String,
    body: Vec<u8>,
}

struct RawBackend {
    server: TestServer,
    received: Arc<Mutex<Vec<Received>>>,
    accepted: Arc<AtomicUsize>,
}

use std::sync::atomic::{AtomicUsize, Ordering};

impl RawBackend {
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// A backend that reads each request (head, then a `Content-Length` or
/// chunked body, found without the balancer's code) and writes what `script`
/// says, byte for byte.
async fn raw_backend(script: Script) -> RawBackend {
    let received = Arc::new(Mutex::new(Vec::new()));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (log, count) = (received.clone(), accepted.clone());
    let server = test_server(bind().await, OnStop::Cut, move |mut stream, _| {
        count.fetch_add(1, Ordering::SeqCst);
        let log = log.clone();
        async move {
            let mut buf = Vec::new();
            let mut timeout_at = None;
            // Bounded: a test sends a handful of requests.
            for _ in 0..100 {
                let Some((req, used)) = read_request(&mut stream, &mut buf).await else {
                    return;
                };
                buf.drain(..used);
                if timeout_at.is_some_and(|at| Instant::now() > at) {
                    return;
                }
                let line = req.head.lines().next().unwrap_or_default().to_string();
                let mut parts = line.split(' ');
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let (reply, then) = script(method, path);
                log.lock().unwrap().push(req);
                if stream.write_all(&reply).await.is_err() {
                    return;
                }
                match then {
                    Then::KeepOpen => {}
                    Then::Close => return,
                    Then::CloseIdleAfter(d) => {
                        sleep(d).await;
                        return;
                    }
                    Then::TimeOutIdleAfter(d) => timeout_at = Some(Instant::now() + d),
                }
            }
        }
    });
    RawBackend {
        server,
        received,
        accepted,
    }
}

/// Reads one request from `stream` (with what `buf` already holds): the
/// request and how many bytes of `buf` it used.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(Received, usize)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let lower = head.to_ascii_lowercase();
            let body_start = end + 4;
            if let Some(i) = lower.find("\r\ncontent-length: ") {
                let rest = &lower[i + 18..];
                let n: usize = rest[..rest.find('\r').unwrap()].trim().parse().unwrap();
                if buf.len() >= body_start + n {
                    let body = buf[body_start..body_start + n].to_vec();
                    return Some((Received { head, body }, body_start + n));
                }
            } else if lower.contains("\r\ntransfer-encoding: chunked") {
                // The tests' chunked bodies end with a last chunk and an
                // empty line, and carry no "0\r\n" elsewhere.
                let body = &buf[body_start..];
                if let Some(last) = find(body, b"0\r\n") {
                    if let Some(end) = find(&body[last..], b"\r\n\r\n") {
                        let n = last + end + 4;
                        let body = body[..n].to_vec();
                        return Some((Received { head, body }, body_start + n));
                    }
                    if body.len() == last + 3 + 2 && body.ends_with(b"0\r\n\r\n") {
                        let n = body.len();
                        return Some((
                            Received {
                                head,
                                body: body.to_vec(),
                            },
                            body_start + n,
                        ));
                    }
                }
            } else {
                return Some((
                    Received {
                        head,
                        body: Vec::new(),
                    },
                    body_start,
                ));
            }
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends `bytes` on a new connection and reads until the balancer closes
/// it (bounded), as text.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_all(&mut stream).await
}

/// Reads until the balancer closes the connection (bounded), as text
/// without the `date` lines the balancer adds (each checked on the way).
async fn read_all(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("the balancer closes the connection");
    let mut text = String::from_utf8_lossy(&out).into_owned();
    while let Some(i) = text.find("\r\ndate: ") {
        let end = i + 2 + text[i + 2..].find("\r\n").unwrap();
        let date = &text[i + 8..end];
        assert!(httpdate::parse_http_date(date).is_ok(), "{date:?}");
        text.replace_range(i..end, "");
    }
    text
}

/// The balancer, checks off, in front of one backend.
async fn front(backend: SocketAddr) -> Running {
    start(unchecked(&[(backend, 1)])).await
}

fn ok_text(text: &str) -> (Vec<u8>, Then) {
    (
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        )
        .into_bytes(),
        Then::KeepOpen,
    )
}

#[tokio::test]
async fn requests_that_could_be_smuggled_are_refused_and_the_connection_closed() {
    let b = raw_backend(|_, _| ok_text("b")).await;
    let lb = front(b.server.addr).await;
    for (request, status) in [
        (
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            "400",
        ),
        (
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcde",
            "400",
        ),
        (
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: -4\r\n\r\n",
            "400",
        ),
        (
            "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, identity\r\n\r\n",
            "400",
        ),
        (
            "POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            "400",
        ),
        ("GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", "400"),
        ("GET / HTTP/1.1\r\nbad header\r\n\r\n", "400"),
        (
            "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com\r\n\r\n",
            "501",
        ),
    ] {
        // A valid request after it on the same connection gets no answer:
        // the connection closes after the refusal.
        let text = exchange(
            lb.addr,
            format!("{request}GET / HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes(),
        )
        .await;
        // In the client's version.
        let version = request[..request.find('\r').unwrap()]
            .rsplit(' ')
            .next()
            .unwrap();
        assert!(
            text.starts_with(&format!("{version} {status} ")),
            "{request:?}: {text}"
        );
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
        let status_lines = text.split("\r\n").filter(|l| l.starts_with("HTTP/1."));
        assert_eq!(status_lines.count(), 1, "{text}");
    }
    assert!(b.received().is_empty(), "{:?}", b.received());

    // A broken chunk in a streamed body: the backend has seen part of it,
    // the client hears 400 and the connection closes.
    let text = exchange(
        lb.addr,
        b"POST /up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcdX\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(text.contains("invalid chunked framing"), "{text}");

    lb.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn oversize_heads_get_431() {
    let b = raw_backend(|_, _| ok_text("b")).await;
    let lb = front(b.server.addr).await;
    let long = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let text = exchange(lb.addr, long.as_bytes()).await;
    assert!(
        text.starts_with("HTTP/1.1 431 "),
        "{}",
        &text[..text.len().min(200)]
    );
    let many = format!(
        "GET / HTTP/1.1\r\nhost: x\r\n{}\r\n",
        "x-h: 1\r\n".repeat(120)
    );
    let text = exchange(lb.addr, many.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
    // Just under the limit goes through.
    let fits = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {}\r\n\r\n",
        "a".repeat(60 * 1024)
    );
    let text = exchange(lb.addr, fits.as_bytes()).await;
    assert!(
        text.starts_with("HTTP/1.1 200 "),
        "{}",
        &text[..text.len().min(200)]
    );
    assert_eq!(b.received().len(), 1);
    lb.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn chunked_bodies_with_trailers_are_relayed_both_ways() {
    let b = raw_backend(|_, path| match path {
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n\
              5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-sum: 42\r\n\r\n"
                .to_vec(),
            Then::KeepOpen,
        ),
        _ => ok_text("got it"),
    })
    .await;
    let lb = front(b.server.addr).await;

    // Up: the body goes on verbatim, trailers included, and the next
    // request on the connection is read where the body ended.
    let body = "4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nx-check: 1\r\n\r\n";
    let text = exchange(
        lb.addr,
        format!(
            "POST /up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{body}\
             GET /chunked HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let got = b.received();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(String::from_utf8_lossy(&got[0].body), body);
    assert!(
        got[0].head.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{}",
        got[0].head
    );
    // Down: verbatim to an HTTP/1.1 client.
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\ngot it"),
        "{text}"
    );
    assert!(
        text.ends_with(
            "transfer-encoding: chunked\r\nconnection: close\r\n\r\n\
             5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-sum: 42\r\n\r\n"
        ),
        "{text}"
    );
    // An HTTP/1.0 client gets the data alone, and the end of the
    // connection ends it.
    let text = exchange(
        lb.addr,
        b"GET /chunked HTTP/1.0\r\nconnection: keep-alive\r\n\r\n",
    )
    .await;
    assert_eq!(
        text,
        "HTTP/1.0 200 OK\r\nconnection: close\r\n\r\nhello, world"
    );

    lb.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn answers_without_a_body_keep_the_connection_in_step() {
    let b = raw_backend(|method, path| match (method, path) {
        ("HEAD", _) => (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n".to_vec(), Then::KeepOpen),
        (_, "/204") => (b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(), Then::KeepOpen),
        (_, "/304") => (
            b"HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
            Then::KeepOpen,
        ),
        (_, "/hints") => (
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal".to_vec(),
            Then::KeepOpen,
        ),
        _ => ok_text("last"),
    })
    .await;
    let lb = front(b.server.addr).await;
    let text = exchange(
        lb.addr,
        b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\nGET /204 HTTP/1.1\r\nhost: x\r\n\r\n\
          GET /304 HTTP/1.1\r\nhost: x\r\n\r\nGET /hints HTTP/1.1\r\nhost: x\r\n\r\n\
          GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n\
         HTTP/1.1 204 No Content\r\n\r\n\
         HTTP/1.1 304 Not Modified\r\n\r\n\
         HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal\
         HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nlast"
    );
    // Pipelined requests all went to the backend, in order, on one kept
    // connection.
    let paths: Vec<String> = b
        .received()
        .iter()
        .map(|r| r.head.lines().next().unwrap().to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "HEAD / HTTP/1.1",
            "GET /204 HTTP/1.1",
            "GET /304 HTTP/1.1",
            "GET /hints HTTP/1.1",
            "GET / HTTP/1.1"
        ]
    );
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
    lb.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn http_1_0_clients_close_unless_they_ask_to_keep_the_connection() {
    let b = raw_backend(|_, _| ok_text("b")).await;
    let lb = front(b.server.addr).await;
    let text = exchange(lb.addr, b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(
        text,
        "HTTP/1.0 200 OK\r\ncontent-length: 1\r\nconnection: close\r\n\r\nb"
    );
    let text = exchange(
        lb.addr,
        b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
    )
    .await;
    assert_eq!(
        text,
        "HTTP/1.0 200 OK\r\ncontent-length: 1\r\nconnection: keep-alive\r\n\r\nb\
         HTTP/1.0 200 OK\r\ncontent-length: 1\r\nconnection: close\r\n\r\nb"
    );
    // Sent on as HTTP/1.1, with the backend's address as Host.
    let got = b.received();
    assert!(
        got[0].head.starts_with("GET / HTTP/1.1\r\n"),
        "{}",
        got[0].head
    );
    assert!(
        got[0]
            .head
            .contains(&format!("\r\nhost: {}\r\n", b.server.addr)),
        "{}",
        got[0].head
    );
    lb.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn expect_100_continue_is_answered_by_the_balancer() {
    let b = raw_backend(|_, _| ok_text("stored")).await;
    let lb = front(b.server.addr).await;
    for (method, length) in [("PUT", 100_000), ("GET", 5)] {
        let mut stream = TcpStream::connect(lb.addr).await.unwrap();
        stream
            .write_all(
                format!(
                    "{method} /f HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: {length}\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        // The client waits for the interim answer before its body.
        let mut interim = [0u8; 25];
        timeout(Duration::from_secs(5), stream.read_exact(&mut interim))
            .await
            .expect("100 Continue arrives")
            .unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        stream.write_all(&vec![b'z'; length]).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let text = read_all(&mut stream).await;
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nstored"),
            "{text}"
        );
        assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    }
    let got = b.received();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].body.len(), 100_000);
    assert_eq!(got[2].body, b"zzzzz");
    // The backend does not see the expectation: it was met.
    assert!(
        got.iter()
            .all(|r| !r.head.to_ascii_lowercase().contains("expect"))
    );
    lb.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn a_backend_closing_mid_body_ends_the_client_connection() {
    let b = raw_backend(|_, path| match path {
        "/cut" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b".to_vec(),
            Then::Close,
        ),
        "/cut-chunked" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel".to_vec(),
            Then::Close,
        ),
        _ => ok_text("fine"),
    })
    .await;
    let lb = front(b.server.addr).await;
    for (path, sent) in [("/cut", "only ten b"), ("/cut-chunked", "5\r\nhel")] {
        let text = exchange(
            lb.addr,
            format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .as_bytes(),
        )
        .await;
        // The head and what came of the body, then the end: the client
        // sees a short body, never a second answer.
        assert!(text.ends_with(&format!("\r\n\r\n{sent}")), "{text}");
        assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
    }
    // The balancer still serves.
    assert_eq!(get(lb.addr, "/").await, (StatusCode::OK, "fine".into()));
    lb.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn responses_that_could_be_misread_are_answered_502() {
    let b = raw_backend(|_, path| match path {
        "/both" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            Then::KeepOpen,
        ),
        "/lengths" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd".to_vec(),
            Then::KeepOpen,
        ),
        "/garbage" => (b"HTTP/1.1 2000 What\r\n\r\n".to_vec(), Then::KeepOpen),
        // Broken framing in the body bytes that came with the head: nothing
        // went to the client yet, so it can still hear 502.
        "/bad-chunk" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcdX\r\n".to_vec(),
            Then::KeepOpen,
        ),
        "/huge" => {
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            for _ in 0..1000 {
                head.extend_from_slice(format!("x-pad: {}\r\n", "p".repeat(80)).as_bytes());
            }
            head.extend_from_slice(b"content-length: 0\r\n\r\n");
            (head, Then::KeepOpen)
        }
        _ => ok_text("fine"),
    })
    .await;
    let lb = front(b.server.addr).await;
    for path in ["/both", "/lengths", "/garbage", "/bad-chunk", "/huge"] {
        // POST with a body: not replayed, so the backend sees it once.
        let (status, body) = Client::new(lb.addr)
            .request(Method::POST, path, "x")
            .await
            .unwrap();
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::BAD_GATEWAY, "bad gateway: the backend failed\n"),
            "{path}"
        );
    }
    assert_eq!(b.received().len(), 5);
    assert_eq!(get(lb.addr, "/").await, (StatusCode::OK, "fine".into()));
    lb.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn a_kept_connection_the_backend_closed_is_not_a_failure() {
    // Every answer keeps the connection, then the backend closes it 50 ms
    // later, as a short keep-alive timeout would.
    let b = raw_backend(|_, _| {
        let (reply, _) = ok_text("b");
        (reply, Then::CloseIdleAfter(Duration::from_millis(50)))
    })
    .await;
    let lb = front(b.server.addr).await;
    let mut client = Client::new(lb.addr);
    for _ in 0..5 {
        let (status, body) = client
            .request(Method::POST, "/", "not replayable")
            .await
            .unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "b"));
        sleep(Duration::from_millis(150)).await;
    }
    // Each request found the kept connection closed and took a new one.
    assert_eq!(b.accepted.load(Ordering::SeqCst), 5);
    lb.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn an_early_answer_to_a_streamed_body_is_relayed_and_both_connections_close() {
    // A backend that answers as soon as it has the head.
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    let early = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while find(&got, b"\r\n\r\n").is_none() {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\n\r\ntoo big\n")
            .await
            .unwrap();
        // Then reads whatever comes until the balancer closes.
        let mut rest = Vec::new();
        let _ = timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    });
    let lb = front(addr).await;
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    stream
        .write_all(b"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\nstart")
        .await
        .unwrap();
    let text = read_all(&mut stream).await;
    assert_eq!(
        text,
        "HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big\n"
    );
    timeout(Duration::from_secs(5), early)
        .await
        .unwrap()
        .unwrap();
    lb.stop().await;
}

#[tokio::test]
async fn a_client_that_sends_no_whole_head_in_time_is_closed() {
    let b = raw_backend(|_, _| ok_text("b")).await;
    let lb = front(b.server.addr).await;
    lb.lb.set_head_timeout(Duration::from_millis(300));
    // Half a head, then nothing: closed without an answer.
    let started = Instant::now();
    let text = exchange(lb.addr, b"GET / HTTP/1.1\r\nhost: x\r\n").await;
    assert_eq!(text, "");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // An idle keep-alive connection is closed after the same time.
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let text = read_all(&mut stream).await;
    assert_eq!(text, "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(b.received().len(), 1);
    lb.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn the_balancers_own_answers_are_in_the_clients_http_version() {
    let b = raw_backend(|_, path| match path {
        "/garbage" => (b"HTTP/1.1 2000 What\r\n\r\n".to_vec(), Then::KeepOpen),
        _ => ok_text("b"),
    })
    .await;
    let lb = front(b.server.addr).await;
    let many = format!("GET / HTTP/1.0\r\n{}\r\n", "x-h: 1\r\n".repeat(120));
    let long = format!("GET / HTTP/1.0\r\nx-big: {}\r\n\r\n", "a".repeat(70 * 1024));
    for (request, status) in [
        (
            "GET / HTTP/1.0\r\nhost: a\r\nhost: b\r\n\r\n",
            "HTTP/1.0 400 ",
        ),
        (
            "POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.0 400 ",
        ),
        ("GET / HTTP/1.0\r\nbad header\r\n\r\n", "HTTP/1.0 400 "),
        ("CONNECT example.com:443 HTTP/1.0\r\n\r\n", "HTTP/1.0 501 "),
        (&many, "HTTP/1.0 431 "),
        (&long, "HTTP/1.0 431 "),
        // Asking to keep the connection does not keep a refused one.
        (
            "GET / HTTP/1.0\r\nconnection: keep-alive\r\nhost: a\r\nhost: b\r\n\r\n",
            "HTTP/1.0 400 ",
        ),
        // The balancer's 502 too.
        ("GET /garbage HTTP/1.0\r\n\r\n", "HTTP/1.0 502 "),
        // No version to be had from the request line: 1.1.
        ("GET / HTTP/2.0\r\n\r\n", "HTTP/1.1 400 "),
        ("GET /\r\n\r\n", "HTTP/1.1 400 "),
        (
            "GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
            "HTTP/1.1 400 ",
        ),
    ] {
        let text = exchange(lb.addr, request.as_bytes()).await;
        let line = &request[..request.find('\n').unwrap()];
        assert!(text.starts_with(status), "{line:?}: {text:.200}");
        assert!(
            text.contains("\r\nconnection: close\r\n"),
            "{line:?}: {text:.200}"
        );
    }
    assert_eq!(b.received().len(), 1, "only /garbage reached the backend");
    lb.stop().await;
    b.server.stop().await;

    // And its 503, with no backend at all.
    let lb = start(config(&[])).await;
    let text = exchange(lb.addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.0 503 "), "{text}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    lb.stop().await;
}

#[tokio::test]
async fn a_streamed_request_does_not_go_on_a_connection_idle_long_enough_to_time_out() {
    // A backend whose keep-alive timeout (1.2 s) fires just as a request
    // comes on a connection idle that long.
    let b = raw_backend(|_, _| {
        let (reply, _) = ok_text("b");
        (reply, Then::TimeOutIdleAfter(Duration::from_millis(1200)))
    })
    .await;
    let lb = front(b.server.addr).await;
    let mut client = Client::new(lb.addr);
    // POST with a body: streamed, so it cannot be sent again.
    let (post, body) = (Method::POST, "not replayable");
    let ok = Ok((StatusCode::OK, "b".to_string()));
    assert_eq!(client.request(post.clone(), "/", body).await, ok);
    // Just used: the kept connection takes it.
    assert_eq!(client.request(post.clone(), "/", body).await, ok);
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
    // Idle past the backend's timeout: it goes on a new connection (on the
    // kept one, the backend would drop it and the client get a 502).
    sleep(Duration::from_millis(1300)).await;
    assert_eq!(client.request(post.clone(), "/", body).await, ok);
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(b.received().len(), 3);

    // A request that can be sent again still takes the old kept
    // connections: lost on each, it is sent again, on a third.
    sleep(Duration::from_millis(1300)).await;
    assert_eq!(client.request(Method::GET, "/", "").await, ok);
    assert_eq!(b.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(b.received().len(), 4);
    lb.stop().await;
    b.server.stop().await;
}

/// An answer to a client that asked to close goes out with its last bytes
/// held for the close's FIN (`Conn::write_last`): small, large, and large
/// to a client that reads late through a small window (the relay waits on
/// a full socket before those last bytes), the client gets every byte,
/// then the end of the stream.
#[tokio::test]
async fn a_large_answer_to_a_client_that_asked_to_close_arrives_whole() {
    const LEN: usize = 4 << 20;
    let b = raw_backend(|_, path| {
        let len = if path == "/small" { 5 } else { LEN };
        let mut answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n").into_bytes();
        answer.resize(answer.len() + len, b'q');
        (answer, Then::KeepOpen)
    })
    .await;
    let lb = front(b.server.addr).await;
    for (path, len, wait) in [("/small", 5, 0), ("/large", LEN, 0), ("/large", LEN, 300)] {
        // A small receive window keeps the balancer's socket full.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if wait > 0 {
            socket.set_recv_buffer_size(4096).unwrap();
        }
        let mut stream = socket.connect(lb.addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        // A client that reads late: the balancer's writes fill the buffers.
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let text = read_all(&mut stream).await;
        let body = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "{path} after {wait} ms: no head in {:?}",
                    &text[..text.len().min(200)]
                )
            })
            .1;
        assert_eq!(body.len(), len, "{path} after {wait} ms");
        assert!(body.bytes().all(|c| c == b'q'), "{path} after {wait} ms");
    }
    lb.stop().await;
    b.server.stop().await;
}
