//! The master against crafted peers: what is served, what is refused.

use std::path::Path;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::sync::oneshot;

use super::*;
use crate::agent::event::{Event, MAX_EVENT};
use crate::agent::keys::KeyAction;
use crate::agent::protocol::{self, JobKind, MAX_FRAME, MAX_HELLO, ToAgent, ToMaster, VERSION};
use crate::agent::tls::PinnedMaster;
use crate::job;

async fn start() -> (tempfile::TempDir, String, oneshot::Sender<()>) {
    start_with(|_| {}).await
}

async fn start_with(
    tweak: impl FnOnce(&mut MasterConfig),
) -> (tempfile::TempDir, String, oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut cfg = MasterConfig::new(addr.clone(), dir.path().join("m"));
    tweak(&mut cfg);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(cfg, async {
        let _ = stopped.await;
    }));
    for _ in 0..100 {
        if admin_socket(&dir.path().join("m")).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (dir, addr, stop)
}

/// What a peer gets back after sending `first`: `None` when the master
/// closed (or the handshake failed) without a message.
async fn exchange(addr: &str, config: Arc<rustls::ClientConfig>, first: &[u8]) -> Option<ToAgent> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(tls::MASTER_NAME).unwrap();
    let mut s = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .ok()?;
    use tokio::io::AsyncWriteExt;
    s.write_all(first).await.ok()?;
    s.flush().await.ok()?;
    protocol::read(&mut s, MAX_FRAME).await.ok().flatten()
}

#[tokio::test]
async fn a_client_without_a_certificate_or_without_a_hello_is_served_nothing() {
    let (dir, addr, _stop) = start().await;
    let mdir = dir.path().join("m");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // No certificate: the handshake fails, nothing is read.
    let no_cert = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedMaster::new(None)))
        .with_no_client_auth();
    let hello = protocol::encode(&ToMaster::Hello {
        version: VERSION,
        id: "x".into(),
        token: None,
    });
    assert_eq!(exchange(&addr, Arc::new(no_cert), &hello).await, None);
    // A key not accepted whose first frame is not a hello (a result, as
    // if it were already trusted), or is too big for a hello.
    let other = tempfile::tempdir().unwrap();
    let id = Identity::load_or_create(other.path(), "agent", "x").unwrap();
    let config = tls::client_config(&id, Arc::new(PinnedMaster::new(None))).unwrap();
    let result = protocol::encode(&ToMaster::Refused {
        job_id: "j".into(),
        reason: "r".into(),
    });
    assert_eq!(exchange(&addr, config.clone(), &result).await, None);
    let big = protocol::encode(&ToMaster::Hello {
        version: VERSION,
        id: "x".repeat(MAX_HELLO),
        token: None,
    });
    assert_eq!(exchange(&addr, config.clone(), &big).await, None);
    // None of them left a key behind.
    let AdminReply::Keys { keys } = ask(&mdir, &AdminRequest::Keys).await.unwrap() else {
        panic!()
    };
    assert!(keys.is_empty(), "{keys:?}");
    // A proper hello is recorded pending, and answered only that.
    let reply = exchange(&addr, config, &hello).await;
    assert!(matches!(reply, Some(ToAgent::Pending { .. })), "{reply:?}");
    // A job for it is not sent: it is not connected.
    let AdminReply::Result { result } = ask(
        &mdir,
        &AdminRequest::Run {
            job_id: "j1".into(),
            host: "x".into(),
            kind: JobKind::Module {
                name: "cmd".into(),
                args: Default::default(),
                check: false,
                become_user: None,
            },
            timeout_ms: 1000,
        },
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert_eq!(result.status, crate::job::HostStatus::Unreachable);
}

async fn recent(mdir: &Path, tag: &str) -> Vec<Event> {
    let req = AdminRequest::Events {
        tag: Some(tag.into()),
        follow: false,
    };
    match ask(mdir, &req).await.unwrap() {
        AdminReply::Events { events } => events,
        other => panic!("{other:?}"),
    }
}

/// Polls `recent` until `done` holds (10 s at most).
async fn until(mdir: &Path, tag: &str, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    for _ in 0..500 {
        let got = recent(mdir, tag).await;
        if done(&got) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no such events for {tag}: {:?}", recent(mdir, tag).await);
}

fn event_frame(tag: &str, data: serde_json::Value) -> Vec<u8> {
    protocol::encode(&ToMaster::Event {
        tag: tag.into(),
        data,
    })
}

fn hello(id: &str) -> Vec<u8> {
    protocol::encode(&ToMaster::Hello {
        version: VERSION,
        id: id.into(),
        token: None,
    })
}

/// An agent `id` with its own key, and its key accepted by the master.
async fn accepted(
    addr: &str,
    mdir: &Path,
    id: &str,
) -> (tempfile::TempDir, Arc<rustls::ClientConfig>) {
    let other = tempfile::tempdir().unwrap();
    let identity = Identity::load_or_create(other.path(), "agent", id).unwrap();
    let config = tls::client_config(&identity, Arc::new(PinnedMaster::new(None))).unwrap();
    let reply = exchange(addr, config.clone(), &hello(id)).await;
    assert!(matches!(reply, Some(ToAgent::Pending { .. })), "{reply:?}");
    let accept = AdminRequest::Key {
        action: KeyAction::Accept,
        id: id.into(),
    };
    ask(mdir, &accept).await.unwrap();
    (other, config)
}

/// A served session: hello sent, welcome read.
async fn session(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    id: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(tls::MASTER_NAME).unwrap();
    let mut s = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    s.write_all(&hello(id)).await.unwrap();
    let welcome: Option<ToAgent> = protocol::read(&mut s, MAX_FRAME).await.unwrap();
    assert!(
        matches!(welcome, Some(ToAgent::Welcome { .. })),
        "{welcome:?}"
    );
    s
}

#[tokio::test]
async fn only_an_accepted_agent_after_its_hello_publishes_events_and_only_as_itself() {
    use tokio::io::AsyncWriteExt;
    let (dir, addr, _stop) = start().await;
    let mdir = dir.path().join("m");
    let other = tempfile::tempdir().unwrap();
    let identity = Identity::load_or_create(other.path(), "agent", "x").unwrap();
    let config = tls::client_config(&identity, Arc::new(PinnedMaster::new(None))).unwrap();
    // A key not accepted: its hello and an event in one write. It is
    // answered pending and the event is never read.
    let mut frames = hello("x");
    frames.extend(event_frame(
        "file/changed",
        serde_json::json!({"path": "/pending"}),
    ));
    let reply = exchange(&addr, config.clone(), &frames).await;
    assert!(matches!(reply, Some(ToAgent::Pending { .. })), "{reply:?}");
    assert!(recent(&mdir, "cairn/file/**").await.is_empty());
    // Accepted, but an event before its hello: closed, nothing recorded.
    let accept = AdminRequest::Key {
        action: KeyAction::Accept,
        id: "x".into(),
    };
    ask(&mdir, &accept).await.unwrap();
    let first = event_frame("file/changed", serde_json::json!({"path": "/early"}));
    assert_eq!(exchange(&addr, config.clone(), &first).await, None);
    assert!(recent(&mdir, "cairn/file/**").await.is_empty());
    // Served: a forged tag and an oversize event are refused, the
    // connection goes on, and the next event is published as `x`'s.
    let mut s = session(&addr, config, "x").await;
    let mut frames = event_frame("agent/y/connected", serde_json::Value::Null);
    frames.extend(event_frame(
        "file/changed",
        serde_json::json!({"pad": "x".repeat(MAX_EVENT)}),
    ));
    frames.extend(event_frame(
        "file/changed",
        serde_json::json!({"path": "/etc/motd"}),
    ));
    s.write_all(&frames).await.unwrap();
    s.flush().await.unwrap();
    let got = until(&mdir, "cairn/file/**", |e| !e.is_empty()).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].tag, "cairn/file/x/changed");
    assert_eq!(got[0].source, "x");
    assert_eq!(got[0].host.as_deref(), Some("x"));
    assert_eq!(got[0].data["path"], "/etc/motd");
    assert!(recent(&mdir, "cairn/agent/y/**").await.is_empty());
    assert_eq!(recent(&mdir, "cairn/agent/x/connected").await.len(), 1);
    // What `cairn events` shows is in the log file too.
    let log = std::fs::read_to_string(mdir.join("events.jsonl")).unwrap();
    assert!(log.contains("cairn/file/x/changed"));
    assert!(!log.contains("/pending") && !log.contains("/early"));
}

#[tokio::test]
async fn a_noisy_agent_is_held_to_its_rate() {
    use tokio::io::AsyncWriteExt;
    let (dir, addr, _stop) = start_with(|c| {
        c.event_rate = 0.001;
        c.event_burst = 3;
    })
    .await;
    let mdir = dir.path().join("m");
    let (_keys, config) = accepted(&addr, &mdir, "noisy").await;
    let mut s = session(&addr, config, "noisy").await;
    let mut frames = vec![];
    for i in 0..50 {
        frames.extend(event_frame(
            "service/x/stopped",
            serde_json::json!({"i": i}),
        ));
    }
    s.write_all(&frames).await.unwrap();
    s.shutdown().await.unwrap();
    drop(s);
    // Its disconnection is published after every frame it sent was read.
    until(&mdir, "cairn/agent/noisy/disconnected", |e| !e.is_empty()).await;
    let got = recent(&mdir, "cairn/service/noisy/**").await;
    let seen: Vec<_> = got.iter().map(|e| e.data["i"].clone()).collect();
    assert_eq!(seen, [0, 1, 2]);
}

/// Events one agent connection gets recorded a second (ring, log file,
/// subscribers), and what `cairn events` costs on a full ring.
/// `cargo test -p cairn-orch --release --lib bench_events -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_events_from_one_agent() {
    use tokio::io::AsyncWriteExt;
    let n = 20_000;
    let (dir, addr, _stop) = start_with(|c| {
        c.event_rate = 1e9;
        c.event_burst = u32::MAX;
    })
    .await;
    let mdir = dir.path().join("m");
    let (_keys, config) = accepted(&addr, &mdir, "b").await;
    let mut s = session(&addr, config, "b").await;
    let mut frames = vec![];
    for i in 0..n {
        frames.extend(event_frame(
            "file/changed",
            serde_json::json!({"path": format!("/etc/f{i}"), "was": "absent", "now": "sha256:00"}),
        ));
    }
    let start = std::time::Instant::now();
    s.write_all(&frames).await.unwrap();
    s.shutdown().await.unwrap();
    drop(s);
    until(&mdir, "cairn/agent/b/disconnected", |e| !e.is_empty()).await;
    let took = start.elapsed();
    let t = std::time::Instant::now();
    let recent = recent(&mdir, "**").await;
    eprintln!(
        "{n} events from one agent recorded in {took:?} ({:.0}/s); `cairn events` on a ring of {} answered in {:?}",
        n as f64 / took.as_secs_f64(),
        recent.len(),
        t.elapsed()
    );
}

/// A batch on the admin socket (`cairn run --via agent`): every host is
/// answered under its name (agents not connected: `unreachable` at once);
/// a frame that is not a job inside a batch is refused with an error; a
/// batch with no master says so, and one handed something else than a
/// job refuses it.
#[tokio::test]
async fn a_batch_answers_every_host_and_refuses_what_is_not_a_job() {
    let (dir, _addr, _stop) = start().await;
    let mdir = dir.path().join("m");
    let run = |host: &str| AdminRequest::Run {
        job_id: "j1".into(),
        host: host.into(),
        kind: JobKind::Module {
            name: "cmd".into(),
            args: crate::module::Args::new(),
            check: false,
            become_user: None,
        },
        timeout_ms: 5000,
    };
    let batch = Batch::start(&mdir);
    let (a, b) = tokio::join!(batch.run(run("h1")), batch.run(run("h2")));
    for (reply, host) in [(a, "h1"), (b, "h2")] {
        match reply.unwrap() {
            AdminReply::Result { result } => {
                assert_eq!(result.host, host);
                assert_eq!(result.status, job::HostStatus::Unreachable, "{result:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    let e = batch.run(AdminRequest::Keys).await.unwrap_err();
    assert!(e.to_string().contains("not a job"), "{e}");
    // One host asked twice at once (a caller's bug): the first ask is
    // told so, the second answered. Both are queued before the batch's
    // task runs (this test's runtime has one thread).
    let (x, y) = tokio::join!(batch.run(run("h3")), batch.run(run("h3")));
    let e = x.unwrap_err();
    assert!(e.to_string().contains("asked twice"), "{e}");
    assert!(matches!(y, Ok(AdminReply::Result { .. })), "{y:?}");

    let mut s = UnixStream::connect(admin_socket(&mdir)).await.unwrap();
    protocol::write(&mut s, &AdminRequest::Batch).await.unwrap();
    protocol::write(&mut s, &AdminRequest::Keys).await.unwrap();
    let reply: AdminReply = protocol::read(&mut s, MAX_FRAME).await.unwrap().unwrap();
    assert!(
        matches!(&reply, AdminReply::Error { message } if message.contains("only jobs")),
        "{reply:?}"
    );

    let nowhere = Batch::start(&dir.path().join("nowhere"));
    let e = nowhere.run(run("h1")).await.unwrap_err();
    assert!(matches!(e, AdminError::NotRunning(_)), "{e}");
}
