use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_engine::provider::*;
use cairn_engine::schema::Kind;
use ipnet::IpNet;
use serde_json::json;

use super::*;
use crate::dns::RecordType;

static NEXT_POOL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

struct Fixture {
    root: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn fixture(name: &str) -> (Fixture, Cloud) {
    let root = std::env::temp_dir().join(format!("cairn-cloud-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // Each test's cloud has its own address block: tests run in parallel.
    let pool = 100 + (NEXT_POOL.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 100) as u8;
    let cloud = Cloud::open_with_pool(LocalDirs::new(&root), vec![], pool).unwrap();
    (Fixture { root }, cloud)
}

/// Deletes a resource and expects it to work.
async fn remove(cloud: &Cloud, kind: &str, id: impl Into<String>) {
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

fn req(kind: &str, address: &str, properties: Json) -> CreateRequest {
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

async fn network(cloud: &Cloud) -> (String, String) {
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

#[tokio::test]
async fn address_blocks_are_checked_for_containment_and_overlap() {
    let (_f, cloud) = fixture("blocks");
    let (net, _) = network(&cloud).await;
    let outside = cloud
        .create(req(
            "subnet",
            "bad",
            json!({"network": net, "cidr": "10.99.0.0/24"}),
        ))
        .await
        .unwrap_err();
    assert!(
        outside.to_string().contains("not inside its network"),
        "{outside}"
    );
    let overlap = cloud
        .create(req(
            "subnet",
            "dup",
            json!({"network": net, "cidr": "10.20.1.128/25"}),
        ))
        .await
        .unwrap_err();
    assert!(matches!(overlap, ProviderError::Conflict(_)), "{overlap}");
    let net2 = cloud
        .create(req("network", "net2", json!({"cidr": "10.20.128.0/17"})))
        .await
        .unwrap_err();
    assert!(matches!(net2, ProviderError::Conflict(_)));
}

#[tokio::test]
async fn a_block_being_made_is_claimed_until_recorded_or_failed() {
    let (_f, cloud) = fixture("claims");
    let (net, _) = network(&cloud).await;
    let block = |c: &str| c.parse::<IpNet>().unwrap();
    cloud
        .reserve_block("subnet-a", "subnet", &net, block("10.20.2.0/24"), "a")
        .unwrap();
    // Another create asking for an overlapping block meanwhile is refused,
    // one for a block elsewhere or in another network is not.
    let err = cloud
        .reserve_block("subnet-b", "subnet", &net, block("10.20.2.128/25"), "b")
        .unwrap_err();
    assert!(err.to_string().contains("being made right now"), "{err}");
    cloud
        .reserve_block("subnet-c", "subnet", &net, block("10.20.3.0/24"), "c")
        .unwrap();
    cloud
        .reserve_block(
            "subnet-d",
            "subnet",
            "network-other",
            block("10.20.2.0/24"),
            "d",
        )
        .unwrap();
    // The first create failed: its claim ends.
    cloud.lock().release("subnet-a");
    cloud
        .reserve_block("subnet-b", "subnet", &net, block("10.20.2.128/25"), "b")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_creates_of_overlapping_subnets_make_one() {
    let (_f, cloud) = fixture("parallel-blocks");
    let cloud = std::sync::Arc::new(cloud);
    let (net, _) = network(&cloud).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (cloud, net) = (cloud.clone(), net.clone());
            tokio::spawn(async move {
                let cidr = if i % 2 == 0 {
                    "10.20.4.0/24"
                } else {
                    "10.20.4.0/25"
                };
                cloud
                    .create(req(
                        "subnet",
                        &format!("s{i}"),
                        json!({"network": net, "cidr": cidr}),
                    ))
                    .await
            })
        })
        .collect();
    let mut made = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => made += 1,
            Err(e) => assert!(matches!(e, ProviderError::Conflict(_)), "{e}"),
        }
    }
    assert_eq!(made, 1);
}

/// A free port on an address, for a test server.
fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(addr: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n").await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

#[tokio::test]
async fn a_server_runs_its_user_data_on_its_own_address_and_comes_back_after_a_restart() {
    let (f, cloud) = fixture("server");
    let (_, sub) = network(&cloud).await;
    let port = free_port("127.0.0.1");
    let user_data = format!(
        "#!/bin/sh\necho hi from $CAIRN_ADDRESS > hello.txt\nexec python3 -m http.server --bind \"$CAIRN_ADDRESS\" {port}\n"
    );
    let web = cloud
        .create(req(
            "server",
            "web[0]",
            json!({"image": "debian-12", "subnet": sub, "user_data": user_data}),
        ))
        .await
        .unwrap();
    let ip = web.attributes["address"].as_str().unwrap().to_string();
    assert!(ip.starts_with("127.1"), "{ip}");
    assert_eq!(web.attributes["private_ip"], "10.20.1.4");
    // The process binds its own address, so a short wait for it to listen.
    let mut body = None;
    for _ in 0..100 {
        body = get(&format!("{ip}:{port}")).await;
        if body.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(body.unwrap().contains(&format!("hi from {ip}")));
    // Idempotent per token.
    let again = cloud
        .create(req(
            "server",
            "web[0]",
            json!({"image": "debian-12", "subnet": sub, "user_data": "x"}),
        ))
        .await
        .unwrap();
    assert_eq!(again.id, web.id);

    // Stop the cloud (as `cairn local stop`), open it again: same address.
    cloud.shutdown().await;
    assert!(
        get(&format!("{ip}:{port}")).await.is_none(),
        "still serving after shutdown"
    );
    drop(cloud);
    let cloud = Cloud::open(LocalDirs::new(&f.root), vec![]).unwrap();
    assert!(cloud.restore().await.is_empty());
    let mut back = None;
    for _ in 0..100 {
        back = get(&format!("{ip}:{port}")).await;
        if back.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        back.is_some(),
        "the server did not come back at {ip}:{port}"
    );
    remove(&cloud, "server", web.id.clone()).await;
    assert!(
        !cloud.dirs.of("server", &web.id).exists(),
        "the sandbox remains"
    );
    assert!(get(&format!("{ip}:{port}")).await.is_none());
}

#[tokio::test]
async fn bad_servers_are_clear_errors_and_leave_nothing_behind() {
    let (_f, cloud) = fixture("bad");
    let (_, sub) = network(&cloud).await;
    let quits = cloud
        .create(req(
            "server",
            "quits",
            json!({"image": "debian-12", "subnet": sub, "user_data": "echo 'cannot find app.conf' >&2; exit 1"}),
        ))
        .await
        .unwrap_err();
    let text = quits.to_string();
    assert!(
        text.contains("did not become ready") && text.contains("cannot find app.conf"),
        "{text}"
    );
    assert!(cloud.snapshot().of_kind("server").next().is_none());
    assert!(
        std::fs::read_dir(cloud.dirs.root.join("servers")).map_or(true, |mut d| d.next().is_none())
    );

    let ok = cloud
        .create(req(
            "server",
            "a",
            json!({"image": "debian-12", "subnet": sub, "address": "127.43.0.9", "user_data": "exec sleep 30"}),
        ))
        .await
        .unwrap();
    let clash = cloud
        .create(req(
            "server",
            "b",
            json!({"image": "debian-12", "subnet": sub, "address": "127.43.0.9", "user_data": "exec sleep 30"}),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(clash, ProviderError::Conflict(ref m) if m.contains("already used by a")),
        "{clash}"
    );
    remove(&cloud, "server", ok.id).await;
}

#[tokio::test]
async fn volumes_snapshots_and_images_are_copies() {
    let (_f, cloud) = fixture("copies");
    let (_, sub) = network(&cloud).await;
    let vol = cloud
        .create(req("volume", "vol", json!({"size_gb": 1})))
        .await
        .unwrap();
    let path = PathBuf::from(vol.attributes["path"].as_str().unwrap());
    std::fs::write(path.join("data.txt"), "v1").unwrap();
    let snap = cloud
        .create(req("snapshot", "snap", json!({"volume": vol.id})))
        .await
        .unwrap();
    std::fs::write(path.join("data.txt"), "v2").unwrap();
    let restored = cloud
        .create(req(
            "volume",
            "vol2",
            json!({"size_gb": 1, "snapshot": snap.id}),
        ))
        .await
        .unwrap();
    let p2 = PathBuf::from(restored.attributes["path"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(p2.join("data.txt")).unwrap(), "v1");

    let base = cloud
        .create(req(
            "server",
            "base",
            json!({"image": "debian-12", "subnet": sub, "user_data": "echo baked > baked.txt; exec sleep 30"}),
        ))
        .await
        .unwrap();
    let image = cloud
        .create(req("image", "img", json!({"server": base.id})))
        .await
        .unwrap();
    let from_image = cloud
        .create(req(
            "server",
            "child",
            json!({"image": image.id, "subnet": sub, "user_data": "exec sleep 30"}),
        ))
        .await
        .unwrap();
    let sandbox = cloud.dirs.of("server", &from_image.id);
    assert_eq!(
        std::fs::read_to_string(sandbox.join("baked.txt")).unwrap(),
        "baked\n"
    );
    cloud.shutdown().await;
}

#[tokio::test]
async fn zones_and_records_follow_the_resources_and_come_back_after_a_restart() {
    let (f, cloud) = fixture("dns");
    let zone = cloud
        .create(req("dns_zone", "zone", json!({"name": "example.test"})))
        .await
        .unwrap();
    let www = cloud
        .create(req(
            "dns_record",
            "www",
            json!({"zone": zone.id, "name": "www", "type": "A", "ttl": 60, "values": ["127.42.0.9"]}),
        ))
        .await
        .unwrap();
    assert_eq!(www.attributes["fqdn"], "www.example.test");
    let got = cloud
        .zones()
        .record("example.test", "www", RecordType::A)
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.ttl, got.values.clone()),
        (60, vec!["127.42.0.9".to_string()])
    );
    let bad = cloud
        .create(req(
            "dns_record",
            "bad",
            json!({"zone": zone.id, "name": "mx", "type": "MX", "values": ["mail.example.test."]}),
        ))
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("PREFERENCE"), "{bad}");
    let dup = cloud
        .create(req("dns_zone", "zone2", json!({"name": "example.test."})))
        .await
        .unwrap_err();
    assert!(matches!(dup, ProviderError::Conflict(_)));

    // Update in place: the next answer has the new value.
    cloud
        .update(UpdateRequest {
            deployment: "d".into(),
            address: "www".into(),
            kind: Kind::DnsRecord,
            id: www.id.clone(),
            prior: json!({}),
            properties: json!({"zone": zone.id, "name": "www", "type": "A", "ttl": 60, "values": ["127.42.0.10"]}),
            tags: BTreeMap::new(),
            changed: vec!["values".into()],
            token: "u".into(),
            sensitive: Vec::new(),
        })
        .await
        .unwrap();
    drop(cloud);
    let cloud = Cloud::open(LocalDirs::new(&f.root), vec![]).unwrap();
    assert!(
        cloud
            .zones()
            .record("example.test", "www", RecordType::A)
            .ok()
            .flatten()
            .is_none()
    );
    assert!(cloud.restore().await.is_empty());
    let back = cloud
        .zones()
        .record("example.test", "www", RecordType::A)
        .unwrap()
        .unwrap();
    assert_eq!(back.values, ["127.42.0.10"]);
    remove(&cloud, "dns_record", www.id).await;
    assert!(
        cloud
            .zones()
            .record("example.test", "www", RecordType::A)
            .ok()
            .flatten()
            .is_none()
    );
}

async fn http_get(addr: &str, path: &str) -> Option<String> {
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
async fn who_server(cloud: &Cloud, sub: &str, port: u16, i: usize) -> Created {
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

#[tokio::test]
async fn a_load_balancer_spreads_requests_over_real_servers() {
    let (_f, cloud) = fixture("lb");
    let (_, sub) = network(&cloud).await;
    let port = free_port("127.0.0.1");
    let mut addrs = Vec::new();
    for i in 0..2 {
        let s = who_server(&cloud, &sub, port, i).await;
        addrs.push(s.attributes["address"].as_str().unwrap().to_string());
    }
    let lb = cloud
        .create(req(
            "load_balancer",
            "lb",
            json!({
                "listen": {"protocol": "http", "port": 8080},
                "backends": addrs,
                "backend_port": port,
                // Checks slow enough that a loaded machine (a probe of
                // 90 ms timing out) does not take a backend out mid-count.
                "health_check": {"path": "/who.txt", "interval": "500ms", "timeout": "450ms", "healthy": 1, "unhealthy": 3},
            }),
        ))
        .await
        .unwrap();
    let front = format!(
        "{}:{}",
        lb.attributes["address"].as_str().unwrap(),
        lb.attributes["port"]
    );
    // Both backends pass their first checks (each may start late on a
    // loaded machine), then traffic alternates.
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut counting = false;
    for _ in 0..400 {
        if let Some(r) = http_get(&front, "/who.txt").await
            && let Some(who) = r.lines().last().filter(|l| l.starts_with("web-"))
        {
            *seen.entry(who.to_string()).or_default() += 1;
        }
        if !counting && seen.len() == 2 {
            counting = true;
            seen.values_mut().for_each(|n| *n = 0);
        }
        if counting && seen.values().sum::<usize>() >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(counting, "one backend never answered: {seen:?}");
    assert!(seen.values().all(|n| *n >= 15), "{seen:?}");
    cloud.shutdown().await;
    assert!(
        http_get(&front, "/who.txt").await.is_none(),
        "the load balancer still answers after shutdown"
    );
}

#[tokio::test]
async fn a_database_is_a_real_postgres_that_the_owner_can_log_in_to() {
    let (_f, cloud) = fixture("db");
    let db = cloud
        .create(req(
            "database",
            "db",
            json!({"engine": "postgres", "owner": "app", "owner_password": "pa55 'word", "database": "app"}),
        ))
        .await
        .unwrap();
    let host = db.attributes["address"].as_str().unwrap().to_string();
    assert_eq!(db.attributes["endpoint"], format!("{host}:5432"));
    let psql = crate::postgres::find_binaries().unwrap().psql;
    let out = std::process::Command::new(&psql)
        .args([
            "-h",
            &host,
            "-p",
            "5432",
            "-U",
            "app",
            "-d",
            "app",
            "-tAc",
            "select current_user",
        ])
        .env("PGPASSWORD", "pa55 'word")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "app",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = cloud.dirs.of("database", &db.id);
    remove(&cloud, "database", db.id).await;
    assert!(
        !dir.exists(),
        "the database directory remains: {:?}",
        std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
}

#[tokio::test]
async fn key_pairs_are_ed25519_in_openssh_form() {
    let (_f, cloud) = fixture("keys");
    let k = cloud
        .create(req("key_pair", "k", json!({"name": "deployer"})))
        .await
        .unwrap();
    assert!(
        k.attributes["public_key"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519 ")
    );
    assert!(
        k.attributes["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    assert!(
        k.attributes["private_key"]
            .as_str()
            .unwrap()
            .contains("BEGIN OPENSSH PRIVATE KEY")
    );
    let public = k.attributes["public_key"].as_str().unwrap().to_string();
    let imported = cloud
        .create(req(
            "key_pair",
            "k2",
            json!({"name": "x", "public_key": public}),
        ))
        .await
        .unwrap();
    assert_eq!(
        imported.attributes["fingerprint"],
        k.attributes["fingerprint"]
    );
    assert!(imported.attributes["private_key"].is_null());
    let bad = cloud
        .create(req(
            "key_pair",
            "k3",
            json!({"name": "x", "public_key": "ssh-rsa nope"}),
        ))
        .await
        .unwrap_err();
    assert!(
        bad.to_string().contains("not an OpenSSH public key"),
        "{bad}"
    );
}

#[tokio::test]
async fn only_its_user_can_read_the_cloud() {
    use std::os::unix::fs::PermissionsExt;
    let (f, cloud) = fixture("perms");
    cloud
        .create(req("network", "net", json!({"cidr": "10.1.0.0/16"})))
        .await
        .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&f.root), 0o700);
    assert_eq!(mode(&f.root.join("cloud.db")), 0o600);
    assert_eq!(mode(&f.root.join("cloud.key")), 0o600);
}

#[tokio::test]
async fn secret_values_are_sealed_on_disk_and_back_after_a_restart() {
    let (f, cloud) = fixture("sealed");
    let secret = cloud
        .create(req(
            "secret",
            "api_token",
            json!({"name": "api", "value": "tok-9f8e7d-visible-nowhere"}),
        ))
        .await
        .unwrap();
    let key = cloud
        .create(req("key_pair", "deployer", json!({"name": "deployer"})))
        .await
        .unwrap();
    let private = key.attributes["private_key"].as_str().unwrap().to_string();
    let on_disk = ["cloud.db", "cloud.db-wal"]
        .iter()
        .filter_map(|name| std::fs::read(f.root.join(name)).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect::<String>();
    assert!(!on_disk.contains("tok-9f8e7d"), "{on_disk}");
    assert!(!on_disk.contains("PRIVATE KEY"), "{on_disk}");
    assert!(on_disk.contains(key.attributes["public_key"].as_str().unwrap()));
    drop(cloud);

    let cloud = Cloud::open(LocalDirs::new(&f.root), vec![]).unwrap();
    let read = |id: &str, kind: &str| ReadRequest {
        deployment: "d".into(),
        address: kind.into(),
        kind: kind.parse().unwrap(),
        id: id.into(),
    };
    let s = cloud
        .read(read(&secret.id, "secret"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.properties["value"], "tok-9f8e7d-visible-nowhere");
    let k = cloud
        .read(read(&key.id, "key_pair"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(k.attributes["private_key"], private.as_str());
    drop(cloud);

    // Without its key the cloud does not open (rather than losing values).
    std::fs::rename(f.root.join("cloud.key"), f.root.join("moved.key")).unwrap();
    let err = Cloud::open(LocalDirs::new(&f.root), vec![]).err().unwrap();
    assert!(
        err.contains("cloud.key") && err.contains("restore it"),
        "{err}"
    );
}

#[tokio::test]
async fn a_database_answers_again_after_the_cloud_restarts() {
    let (f, cloud) = fixture("db-restart");
    let db = cloud
        .create(req("database", "db", json!({"engine": "postgres", "owner": "app", "owner_password": "pw-1234", "database": "app"})))
        .await
        .unwrap();
    let host = db.attributes["address"].as_str().unwrap().to_string();
    let psql = crate::postgres::find_binaries().unwrap().psql;
    let query = |sql: &str| {
        let out = std::process::Command::new(&psql)
            .args([
                "-h", &host, "-p", "5432", "-U", "app", "-d", "app", "-tAc", sql,
            ])
            .env("PGPASSWORD", "pw-1234")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    query("create table kept (v int); insert into kept values (7)");
    let on_disk = ["cloud.db", "cloud.db-wal"]
        .iter()
        .filter_map(|name| std::fs::read(f.root.join(name)).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect::<String>();
    assert!(!on_disk.contains("pw-1234"), "{on_disk}");
    cloud.shutdown().await;
    assert!(
        std::net::TcpStream::connect((host.as_str(), 5432)).is_err(),
        "still listening after shutdown"
    );
    drop(cloud);
    let cloud = Cloud::open(LocalDirs::new(&f.root), vec![]).unwrap();
    assert!(cloud.restore().await.is_empty());
    assert_eq!(query("select v from kept"), "7");
    remove(&cloud, "database", db.id).await;
}

/// `GET path` from a chosen loopback source address, as a server on its
/// own address would connect.
async fn http_get_from(source: &str, addr: &str, path: &str) -> std::io::Result<String> {
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

#[tokio::test]
async fn a_load_balancer_lets_in_only_what_its_firewalls_allow() {
    let (_f, cloud) = fixture("lb-fw");
    let (net, sub) = network(&cloud).await;
    let port = free_port("127.0.0.1");
    let clients = cloud
        .create(req(
            "firewall",
            "clients_fw",
            json!({"network": net, "ingress": []}),
        ))
        .await
        .unwrap();
    let web = cloud
        .create(req(
            "server",
            "web",
            json!({"image": "debian-12", "subnet": sub, "user_data": format!(
                "echo web > who.txt\nexec python3 -m http.server --bind \"$CAIRN_ADDRESS\" {port}\n"
            )}),
        ))
        .await
        .unwrap();
    let client = cloud
        .create(req(
            "server",
            "client",
            json!({"image": "debian-12", "subnet": sub, "firewalls": [clients.id], "user_data": "exec sleep 60"}),
        ))
        .await
        .unwrap();
    let client_ip = client.attributes["address"].as_str().unwrap().to_string();
    let mut fw_props = json!({"network": net, "ingress": [
        {"protocol": "tcp", "port": 8080, "from": clients.id},
        {"protocol": "tcp", "port": 22, "from": "127.0.0.1/32"},
    ]});
    let lb_fw = cloud
        .create(req("firewall", "lb_fw", fw_props.clone()))
        .await
        .unwrap();
    let lb = cloud
        .create(req(
            "load_balancer",
            "lb",
            json!({
                "listen": {"protocol": "http", "port": 8080},
                "backends": [web.attributes["address"]],
                "backend_port": port,
                "firewalls": [lb_fw.id],
                "health_check": {"path": "/who.txt", "interval": "100ms", "timeout": "90ms", "healthy": 1, "unhealthy": 2},
            }),
        ))
        .await
        .unwrap();
    let front = format!(
        "{}:{}",
        lb.attributes["address"].as_str().unwrap(),
        lb.attributes["port"]
    );

    // From the client's address (a member of the source firewall): served.
    let mut served = false;
    for _ in 0..100 {
        if http_get_from(&client_ip, &front, "/who.txt")
            .await
            .is_ok_and(|r| r.ends_with("web\n"))
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "the allowed client was never served by {front}");
    // From 127.0.0.1 (only allowed on port 22): refused.
    let refused = http_get_from("127.0.0.1", &front, "/who.txt").await;
    assert!(refused.is_err(), "{refused:?}");

    // A rule added in place applies to the next connection.
    fw_props["ingress"]
        .as_array_mut()
        .unwrap()
        .push(json!({"protocol": "tcp", "ports": "8000-8100", "from": "127.0.0.1"}));
    cloud
        .update(UpdateRequest {
            deployment: "d".into(),
            address: "lb_fw".into(),
            kind: Kind::Firewall,
            id: lb_fw.id.clone(),
            prior: Json::Null,
            properties: fw_props,
            tags: BTreeMap::new(),
            changed: vec!["ingress".into()],
            token: "update".into(),
            sensitive: Vec::new(),
        })
        .await
        .unwrap();
    let now = http_get_from("127.0.0.1", &front, "/who.txt")
        .await
        .unwrap();
    assert!(now.ends_with("web\n"), "{now}");

    // The client leaves: its address is no longer a source.
    remove(&cloud, "server", client.id).await;
    let gone = http_get_from(&client_ip, &front, "/who.txt").await;
    assert!(gone.is_err(), "{gone:?}");

    // Firewalls that do not exist, or rules that make no sense, are refused.
    let missing = cloud
        .create(req(
            "load_balancer",
            "lb2",
            json!({"listen": {"port": 8081}, "backend_port": port, "firewalls": ["firewall-99999"]}),
        ))
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("no firewall firewall-99999"),
        "{missing}"
    );
    let bad = cloud
        .create(req(
            "firewall",
            "bad_fw",
            json!({"network": net, "ingress": [{"port": 80, "from": "somewhere"}]}),
        ))
        .await
        .unwrap_err();
    assert!(
        bad.to_string()
            .contains("ingress rule 1: `somewhere` is neither"),
        "{bad}"
    );
    assert_eq!(cloud.snapshot().of_kind("load_balancer").count(), 1);
    cloud.shutdown().await;
}

/// Many servers made at once (as `up` does, 32 in parallel) never share an
/// address or a private address.
#[tokio::test]
async fn parallel_creates_get_distinct_addresses() {
    let (_f, mut cloud) = fixture("parallel");
    cloud.settle = Duration::from_millis(20);
    let cloud = std::sync::Arc::new(cloud);
    let (_, sub) = network(&cloud).await;
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..48 {
        let (cloud, sub) = (cloud.clone(), sub.clone());
        creates.spawn(async move {
            cloud
                .create(req(
                    "server",
                    &format!("web[{i}]"),
                    json!({"image": "debian-12", "subnet": sub, "user_data": "exec sleep 60"}),
                ))
                .await
                .unwrap()
        });
    }
    let mut addresses = std::collections::HashSet::new();
    let mut private = std::collections::HashSet::new();
    while let Some(made) = creates.join_next().await {
        let made = made.unwrap();
        assert!(
            addresses.insert(made.attributes["address"].to_string()),
            "{made:?}"
        );
        assert!(
            private.insert(made.attributes["private_ip"].to_string()),
            "{made:?}"
        );
    }
    assert_eq!(addresses.len(), 48);
    assert!(cloud.snapshot().reserved.is_empty() && cloud.snapshot().reserved_private.is_empty());
    cloud.shutdown().await;
}

/// Waits (at most 5 s) until `addr` serves `/who.txt` with `text`.
async fn serves(addr: &str, text: &str) -> bool {
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

#[tokio::test]
async fn a_public_address_moves_between_servers_and_stops_with_its_server_or_itself() {
    let (_f, cloud) = fixture("public");
    let (_, sub) = network(&cloud).await;
    let port = free_port("127.0.0.1");
    let (mut servers, mut addresses) = (Vec::new(), Vec::new());
    for i in 0..2 {
        let s = who_server(&cloud, &sub, port, i).await;
        addresses.push(s.attributes["address"].clone());
        servers.push(s.id);
    }
    let ip = cloud
        .create(req("ip_address", "pub", json!({"server": servers[0]})))
        .await
        .unwrap();
    let public = format!("{}:{port}", ip.attributes["address"].as_str().unwrap());
    assert!(
        serves(&public, "web-0").await,
        "{public} never served web-0"
    );
    let read = |id: String| {
        let cloud = &cloud;
        async move {
            cloud
                .read(ReadRequest {
                    deployment: "d".into(),
                    address: "web".into(),
                    kind: Kind::Server,
                    id,
                })
                .await
                .unwrap()
                .unwrap()
                .attributes["public_ip"]
                .clone()
        }
    };
    assert_eq!(read(servers[0].clone()).await, ip.attributes["address"]);

    // The engine's update of the address's `server`.
    let move_to = |from: &str, to: &str| UpdateRequest {
        deployment: "d".into(),
        address: "pub".into(),
        kind: Kind::IpAddress,
        id: ip.id.clone(),
        prior: json!({"server": from}),
        properties: json!({"server": to}),
        tags: BTreeMap::new(),
        changed: vec!["server".into()],
        token: format!("move-to-{to}"),
        sensitive: Vec::new(),
    };
    cloud
        .update(move_to(&servers[0], &servers[1]))
        .await
        .unwrap();
    assert!(
        serves(&public, "web-1").await,
        "{public} never moved to web-1"
    );
    assert_eq!(read(servers[0].clone()).await, Json::Null);
    assert_eq!(read(servers[1].clone()).await, ip.attributes["address"]);

    // Its server is deleted: the address stops forwarding, even when the
    // server's own address is handed to the next server made.
    remove(&cloud, "server", servers[1].clone()).await;
    let next = who_server(&cloud, &sub, port, 2).await;
    assert_eq!(
        next.attributes["address"], addresses[1],
        "the address is reused"
    );
    let next_addr = format!("{}:{port}", addresses[1].as_str().unwrap());
    assert!(
        serves(&next_addr, "web-2").await,
        "the new server never served"
    );
    for _ in 0..10 {
        let answer = http_get(&public, "/who.txt").await;
        assert!(
            answer.as_deref().is_none_or(|a| !a.contains("web-2")),
            "{public} forwards to the server that took the old address"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Back on the first server, then deleted itself.
    cloud
        .update(move_to(&servers[1], &servers[0]))
        .await
        .unwrap();
    assert!(
        serves(&public, "web-0").await,
        "{public} never came back to web-0"
    );
    remove(&cloud, "ip_address", ip.id.clone()).await;
    assert!(
        http_get(&public, "/who.txt").await.is_none(),
        "{public} still answers after its delete"
    );
    cloud.shutdown().await;
}

#[test]
fn public_addresses_of_a_block_are_reserved_until_it_is_full() {
    let (_f, cloud) = fixture("public-block");
    let block: ipnet::Ipv4Net = "198.18.9.0/30".parse().unwrap();
    assert_eq!(
        cloud.reserve_public("a", block).unwrap(),
        Ipv4Addr::new(198, 18, 9, 1)
    );
    assert_eq!(
        cloud.reserve_public("b", block).unwrap(),
        Ipv4Addr::new(198, 18, 9, 2)
    );
    let err = cloud.reserve_public("c", block).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no public address left in this cloud's block 198.18.9.0/30 (2 addresses)"
    );
    // A create that fails gives its address back.
    cloud.lock().release("a");
    assert_eq!(
        cloud.reserve_public("c", block).unwrap(),
        Ipv4Addr::new(198, 18, 9, 1)
    );
}
