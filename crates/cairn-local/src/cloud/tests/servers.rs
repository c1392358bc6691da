//! Servers and what is copied from them: user data, restarts, refusals,
//! volumes, snapshots, images, key pairs.

use std::path::PathBuf;

use cairn_engine::provider::*;
use serde_json::json;

use crate::cloud::*;

use super::support::*;

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
    let body = first_answer(&format!("{ip}:{port}")).await;
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
    let back = first_answer(&format!("{ip}:{port}")).await;
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
