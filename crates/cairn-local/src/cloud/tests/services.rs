//! Load balancers, databases and public addresses, with real traffic.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_engine::provider::*;
use cairn_engine::schema::Kind;
use serde_json::json;

use crate::cloud::*;

use super::support::*;

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
    let front = load_balancer(
        &cloud,
        json!({
            "listen": {"protocol": "http", "port": 8080},
            "backends": addrs,
            "backend_port": port,
            // Checks slow enough that a loaded machine (a probe of
            // 90 ms timing out) does not take a backend out mid-count.
            "health_check": {"path": "/who.txt", "interval": "500ms", "timeout": "450ms", "healthy": 1, "unhealthy": 3},
        }),
    )
    .await;
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
    let front = load_balancer(
        &cloud,
        json!({
            "listen": {"protocol": "http", "port": 8080},
            "backends": [web.attributes["address"]],
            "backend_port": port,
            "firewalls": [lb_fw.id],
            "health_check": {"path": "/who.txt", "interval": "100ms", "timeout": "90ms", "healthy": 1, "unhealthy": 2},
        }),
    )
    .await;

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
