use std::collections::BTreeMap;
use std::time::Duration;

use cairn_engine::provider::*;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::client::LocalClient;
use super::*;

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
        isolation: None,
    };
    let task = tokio::spawn(run(config, shutdown.clone()));
    for _ in 0..200 {
        if let Ok(c) = LocalClient::connect(dirs).await {
            return (shutdown, task, c);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the daemon did not start");
}

fn create(kind: &str, address: &str, properties: serde_json::Value) -> CreateRequest {
    CreateRequest {
        deployment: "d".into(),
        address: address.into(),
        kind: kind.into(),
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
                kind: "network".into(),
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
            isolation: None,
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
