//! What the cloud's tests share: a cloud of their own per test (its own
//! directory and address block), requests, and small clients.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use cairn_engine::provider::*;
use serde_json::json;

use crate::cloud::*;

static NEXT_POOL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

pub(super) struct Fixture {
    pub(super) root: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub(super) fn fixture(name: &str) -> (Fixture, Cloud) {
    let root = std::env::temp_dir().join(format!("cairn-cloud-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // Each test's cloud has its own address block: tests run in parallel.
    let pool = 100 + (NEXT_POOL.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 100) as u8;
    let cloud = Cloud::open_with_pool(LocalDirs::new(&root), vec![], pool).unwrap();
    (Fixture { root }, cloud)
}

/// Deletes a resource and expects it to work.
pub(super) async fn remove(cloud: &Cloud, kind: &str, id: impl Into<String>) {
    cloud
        .delete(DeleteRequest {
            deployment: "d".into(),
            address: kind.into(),
            kind: kind.parse().unwrap(),
            id: id.into(),
            properties: Json::Null,
            token: "delete".into(),
        })
        .await
        .unwrap();
}

pub(super) fn req(kind: &str, address: &str, properties: Json) -> CreateRequest {
    CreateRequest {
        deployment: "d".into(),
        address: address.into(),
        kind: kind.parse().unwrap(),
        properties,
        tags: BTreeMap::from([("cairn:deployment".into(), "d".into())]),
        target: None,
        token: format!("tok-{address}"),
        sensitive: Vec::new(),
        may_exist: true,
    }
}

pub(super) async fn network(cloud: &Cloud) -> (String, String) {
    let net = cloud
        .create(req("network", "net", json!({"cidr": "10.20.0.0/16"})))
        .await
        .unwrap();
    let sub = cloud
        .create(req(
            "subnet",
            "sub",
            json!({"network": net.id, "cidr": "10.20.1.0/24"}),
        ))
        .await
        .unwrap();
    (net.id, sub.id)
}

/// A free port on an address, for a test server.
pub(super) fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(super) async fn get(addr: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n").await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

pub(super) async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

/// A server `web[i]` that serves `who.txt` ("web-i") over HTTP on `port`.
pub(super) async fn who_server(cloud: &Cloud, sub: &str, port: u16, i: usize) -> Created {
    let user_data = format!(
        "echo web-{i} > who.txt\nexec python3 -m http.server --bind \"$CAIRN_ADDRESS\" {port}\n"
    );
    cloud
        .create(req(
            "server",
            &format!("web[{i}]"),
            json!({"image": "debian-12", "subnet": sub, "user_data": user_data}),
        ))
        .await
        .unwrap()
}

/// `GET path` from a chosen loopback source address, as a server on its
/// own address would connect.
/// Creates load balancer "lb" with `properties`: its front, address:port.
pub(super) async fn load_balancer(cloud: &Cloud, properties: Json) -> String {
    let lb = cloud
        .create(req("load_balancer", "lb", properties))
        .await
        .unwrap();
    format!(
        "{}:{}",
        lb.attributes["address"].as_str().unwrap(),
        lb.attributes["port"]
    )
}

pub(super) async fn http_get_from(source: &str, addr: &str, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(source.parse().unwrap(), 0))?;
    let mut s = socket.connect(addr.parse().unwrap()).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// What `get` answers once `addr` listens (waiting at most 5 s).
pub(super) async fn first_answer(addr: &str) -> Option<String> {
    for _ in 0..100 {
        if let Some(answer) = get(addr).await {
            return Some(answer);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Waits (at most 5 s) until `addr` serves `/who.txt` with `text`.
pub(super) async fn serves(addr: &str, text: &str) -> bool {
    for _ in 0..100 {
        if http_get(addr, "/who.txt")
            .await
            .is_some_and(|r| r.contains(text))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
