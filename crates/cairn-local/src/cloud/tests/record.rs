//! The cloud's record on disk: who may read it, and its sealed values.

use std::path::Path;

use cairn_engine::provider::*;
use serde_json::json;

use crate::cloud::*;

use super::support::*;

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
