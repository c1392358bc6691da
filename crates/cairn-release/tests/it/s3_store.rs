use cairn_release::ReleaseError;
use cairn_release::artifact::{ArtifactStore, S3Store};

use crate::moto::Moto;
use crate::support::store_contract;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_store_keeps_the_contract_on_moto() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let store = moto.store("artifacts", "team/releases").await;
    assert_eq!(store.location(), "s3://artifacts/team/releases");
    store_contract(&store, tmp.path()).await;

    // The layout the design names, under the prefix.
    let keys = store
        .client()
        .list_objects_v2()
        .bucket("artifacts")
        .send()
        .await
        .unwrap();
    let mut keys: Vec<_> = keys.contents().iter().filter_map(|o| o.key()).collect();
    keys.sort();
    assert!(
        keys.contains(&"team/releases/web/v1/manifest.json"),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"team/releases/web/v1/manifest.sig"),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"team/releases/web/v1/artifact.tar.zst"),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.contains("/v3/")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_store_without_prefix_and_a_missing_bucket() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let store = moto.store("bare", "").await;
    assert_eq!(store.location(), "s3://bare");
    store_contract(&store, tmp.path()).await;

    let missing = S3Store::connect("nobucket".into(), "".into(), &moto.settings())
        .await
        .unwrap();
    let err = missing.list("web").await.unwrap_err();
    assert!(matches!(err, ReleaseError::Store { .. }), "{err}");
    assert!(err.to_string().contains("s3://nobucket"), "{err}");
}
