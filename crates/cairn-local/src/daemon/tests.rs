use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cairn_engine::provider::*;
use cairn_engine::schema::Kind;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::client::LocalClient;
use super::*;
use crate::http::serve_http1;
use crate::test_server::{OnStop, TestServer, test_server};

fn dirs(name: &str) -> LocalDirs {
    let root = std::env::temp_dir().join(format!("cairn-daemon-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    LocalDirs::new(root)
}

async fn start(
    dirs: &LocalDirs,
    pool: u8,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), String>>,
    LocalClient,
) {
    let shutdown = CancellationToken::new();
    let config = DaemonConfig {
        dirs: dirs.clone(),
        dns: "127.0.0.1:0".parse().unwrap(),
        path: vec![],
        pool,
        isolation: Some(crate::cloud::Isolation::Process),
        agents: false,
    };
    let task = tokio::spawn(run(config, shutdown.clone()));
    // Bounded, and generous: a restart restores what the cloud had, and a
    // loaded CI machine has been seen to take more than 4 s for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if let Ok(c) = LocalClient::connect(dirs).await {
            return (shutdown, task, c);
        }
        if task.is_finished() {
            panic!("the daemon stopped before it served: {:?}", task.await);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the daemon did not start within 30 s");
}

fn create(kind: &str, address: &str, properties: serde_json::Value) -> CreateRequest {
    CreateRequest {
        deployment: "d".into(),
        address: address.into(),
        kind: kind.parse().unwrap(),
        properties,
        tags: BTreeMap::new(),
        target: None,
        token: format!("t-{address}"),
        sensitive: Vec::new(),
        may_exist: true,
    }
}

#[tokio::test]
async fn the_api_needs_the_token_and_serves_the_provider() {
    let d = dirs("api");
    let (shutdown, task, client) = start(&d, 44).await;
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(token_path(&d)).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Without the token: refused.
    let stream = tokio::net::TcpStream::connect(client.published.api)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("GET")
        .uri("/v1/status")
        .header("host", "x")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 401);

    let net = client
        .create(create("network", "net", json!({"cidr": "10.1.0.0/16"})))
        .await
        .unwrap();
    let clash = client
        .create(create("network", "net2", json!({"cidr": "10.1.0.0/24"})))
        .await
        .unwrap_err();
    assert!(matches!(clash, ProviderError::Conflict(_)), "{clash:?}");
    let zone = client
        .create(create("dns_zone", "zone", json!({"name": "example.test"})))
        .await
        .unwrap();
    client
        .create(create(
            "dns_record",
            "www",
            json!({"zone": zone.id, "name": "www", "type": "A", "ttl": 60, "values": ["127.42.9.9"]}),
        ))
        .await
        .unwrap();
    let listed = client.list("d").await.unwrap();
    assert_eq!(listed.len(), 3);
    let status = client.status().await.unwrap();
    assert_eq!(status["resources"].as_array().unwrap().len(), 3);
    assert!(
        client
            .read(ReadRequest {
                deployment: "d".into(),
                address: "net".into(),
                kind: Kind::Network,
                id: net.id.clone()
            })
            .await
            .unwrap()
            .is_some()
    );

    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert!(
        !published_path(&d).exists(),
        "daemon.json remains after shutdown"
    );
    assert!(LocalClient::connect(&d).await.is_err());

    // Started again, it has everything, and a new token.
    let old_token = std::fs::read_to_string(token_path(&d)).unwrap();
    let (shutdown, task, client) = start(&d, 44).await;
    assert_ne!(std::fs::read_to_string(token_path(&d)).unwrap(), old_token);
    assert_eq!(client.list("d").await.unwrap().len(), 3);
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&d.root);
}

#[tokio::test]
async fn a_second_cloud_on_the_same_pool_is_refused_and_names_the_first() {
    let first = dirs("pool-a");
    let second = dirs("pool-b");
    let (shutdown, task, _client) = start(&first, 45).await;
    let refused = run(
        DaemonConfig {
            dirs: second.clone(),
            dns: "127.0.0.1:0".parse().unwrap(),
            path: vec![],
            pool: 45,
            isolation: Some(crate::cloud::Isolation::Process),
            agents: false,
        },
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        refused.contains("127.45.0.0/16 is in use by another local cloud")
            && refused.contains(&first.root.display().to_string()),
        "{refused}"
    );
    assert!(!published_path(&second).exists());

    // Once the first has stopped, the block is free.
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let (shutdown, task, _client) = start(&second, 45).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&first.root);
    let _ = std::fs::remove_dir_all(&second.root);
}

/// A backend for the balancer tests: answers its name, `/slow` after
/// 400 ms; counts what reaches it (health probes aside).
async fn named_backend(name: &'static str) -> (TestServer, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let arrived = Arc::new(AtomicUsize::new(0));
    let count = arrived.clone();
    let server = test_server(listener, OnStop::Finish, move |stream, stop| {
        let count = count.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let count = count.clone();
                async move {
                    match req.uri().path() {
                        "/health" => {}
                        "/slow" => {
                            count.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(400)).await;
                        }
                        _ => {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from(name)),
                    ))
                }
            });
        serve_http1(stream, service, stop)
    });
    (server, arrived)
}

/// `GET path` over HTTP/1.0: the body, or None on any failure.
async fn fetch(front: std::net::SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(front).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    // Asked in HTTP/1.0, answered in HTTP/1.0.
    head.starts_with("HTTP/1.0 200").then(|| body.to_string())
}

#[tokio::test]
async fn a_backend_is_drained_and_restored_through_the_api() {
    use cairn_engine::backend::{BackendRef, BackendState};
    use std::sync::atomic::Ordering;
    let d = dirs("drain");
    let (shutdown, task, client) = start(&d, 57).await;
    let (a_server, a_count) = named_backend("a").await;
    let (b_server, _) = named_backend("b").await;
    let (a_addr, b_addr) = (a_server.addr, b_server.addr);
    let a = BackendRef::new("127.0.0.1", a_addr.port());
    let b = BackendRef::new("127.0.0.1", b_addr.port());
    let lb = client
        .create(create(
            "load_balancer",
            "lb",
            json!({
                "listen": {"protocol": "http", "port": 8080},
                "algorithm": "round_robin",
                "backends": [
                    {"address": "127.0.0.1", "port": a_addr.port()},
                    {"address": "127.0.0.1", "port": b_addr.port()},
                ],
                "backend_port": 80,
                "health_check": {"path": "/health", "interval": "100ms", "timeout": "90ms", "healthy": 2, "unhealthy": 2},
            }),
        ))
        .await
        .unwrap();
    let front: std::net::SocketAddr = format!(
        "{}:{}",
        lb.attributes["address"].as_str().unwrap(),
        lb.attributes["port"]
    )
    .parse()
    .unwrap();
    let control = client.backend_control().expect("the local target drains");
    let healthy = |r: BackendRef| {
        let lb_id = lb.id.clone();
        async move {
            for _ in 0..200 {
                if control.backend_state(&lb_id, &r).await.unwrap() == BackendState::Healthy {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    };
    assert!(healthy(a.clone()).await && healthy(b.clone()).await);

    // Two slow requests per backend in flight, then a is drained: the
    // drain returns once a's two have been answered.
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..4 {
        slow.spawn(fetch(front, "/slow"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = control
        .drain(&lb.id, &a, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(report.in_flight_at_start, Some(2), "{report:?}");
    assert_eq!(report.in_flight_left, Some(0));
    assert!(!report.timed_out && report.waited >= Duration::from_millis(200));
    let mut answers = Vec::new();
    while let Some(done) = slow.join_next().await {
        answers.push(done.unwrap().expect("a slow request failed"));
    }
    answers.sort();
    assert_eq!(answers, ["a", "a", "b", "b"]);
    assert_eq!(
        control.backend_state(&lb.id, &a).await.unwrap(),
        BackendState::Drained
    );
    let a_before = a_count.load(Ordering::SeqCst);
    for _ in 0..6 {
        assert_eq!(fetch(front, "/").await.as_deref(), Some("b"));
    }
    assert_eq!(a_count.load(Ordering::SeqCst), a_before);

    // Drain latency through the API with nothing in flight.
    let mut idle = Vec::new();
    for _ in 0..10 {
        let t = std::time::Instant::now();
        control
            .drain(&lb.id, &a, Duration::from_secs(1))
            .await
            .unwrap();
        idle.push(t.elapsed());
    }
    idle.sort();
    eprintln!(
        "drain through the daemon's API, 0 in flight: median {:?}, max {:?}",
        idle[5], idle[9]
    );

    // Errors: an unknown balancer, a backend not in it, not an address.
    let e = control
        .drain("lb-nope", &a, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::NotFound(m) if m.contains("lb-nope")),
        "{e:?}"
    );
    let stranger = BackendRef::new("127.0.0.1", 9);
    let e = control.restore(&lb.id, &stranger).await.unwrap_err();
    assert_eq!(
        e,
        ProviderError::Permanent(format!(
            "127.0.0.1:9 is not a backend of load balancer {}",
            lb.id
        ))
    );
    let e = control
        .backend_state(&lb.id, &BackendRef::new("web-1", 80))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Permanent(m) if m.contains("not an IP address")),
        "{e:?}"
    );

    // Restored, a is back after its health check, twice over.
    control.restore(&lb.id, &a).await.unwrap();
    control.restore(&lb.id, &a).await.unwrap();
    assert!(healthy(a.clone()).await);
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(fetch(front, "/").await.expect("a request failed"));
    }
    assert!(seen.iter().any(|s| s == "a"), "{seen:?}");

    // A drain still waiting when the daemon is told to stop is answered at
    // once, not when its request ends.
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..2 {
        slow.spawn(fetch(front, "/slow"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiting = {
        let (client, lb_id, a) = (client.clone(), lb.id.clone(), a.clone());
        tokio::spawn(async move {
            let control = client.backend_control().unwrap();
            control.drain(&lb_id, &a, Duration::from_secs(10)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    shutdown.cancel();
    let answer = waiting.await.unwrap();
    assert!(
        matches!(&answer, Err(ProviderError::Transient(m)) if m.contains("stopping")),
        "{answer:?}"
    );
    task.await.unwrap().unwrap();
    while slow.join_next().await.is_some() {}

    // The mark lives in the running balancer: a restarted daemon rebuilds
    // it with every backend in rotation (after its first passing check).
    let (shutdown, task, client) = start(&d, 57).await;
    let control = client.backend_control().unwrap();
    let mut state = None;
    for _ in 0..200 {
        state = Some(control.backend_state(&lb.id, &a).await.unwrap());
        if state == Some(BackendState::Healthy) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(state, Some(BackendState::Healthy));

    shutdown.cancel();
    task.await.unwrap().unwrap();
    a_server.stop().await;
    b_server.stop().await;
    let _ = std::fs::remove_dir_all(&d.root);
}
