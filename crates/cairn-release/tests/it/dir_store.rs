use std::fs;
use std::sync::Arc;

use cairn_release::artifact::store::verify_stored;
use cairn_release::artifact::store::{PutOutcome, StoreUrl};
use cairn_release::artifact::{ArtifactStore, DirStore, SigningKey, open_store};
use cairn_release::{ReleaseError, VerifyError};

use crate::support::{artifact, store_contract};

#[tokio::test]
async fn a_directory_store_keeps_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore::new(tmp.path().join("store"));
    store_contract(&store, tmp.path()).await;
    let v1 = tmp.path().join("store/web/v1");
    let mut names: Vec<_> = fs::read_dir(&v1)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["artifact.tar.zst", "manifest.json", "manifest.sig"]);
    // No staging directory is left behind by the refused or repeated puts.
    let leftovers: Vec<_> = fs::read_dir(tmp.path().join("store/web"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_half_written_version_is_invisible() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    // What a crash in the middle of a put leaves: a staging directory, and
    // a version directory without its manifest.
    fs::create_dir_all(root.join("web/.incoming-v1-123-4")).unwrap();
    fs::write(root.join("web/.incoming-v1-123-4/artifact.tar.zst"), "part").unwrap();
    fs::create_dir_all(root.join("web/v0")).unwrap();
    let store = DirStore::new(&root);
    assert!(store.list("web").await.unwrap().is_empty());
    assert!(!store.exists("web", "v0").await.unwrap());
    let key = SigningKey::generate().unwrap();
    let a = artifact(tmp.path(), "web", "v1", "one", &key);
    let out = store
        .put("web", "v1", &a.bytes, &a.signature, &a.archive)
        .await
        .unwrap();
    assert_eq!(out, PutOutcome::Stored);
    assert_eq!(store.list("web").await.unwrap(), ["v1"]);
}

#[tokio::test]
async fn two_writers_of_one_version_one_wins_the_other_is_told() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(DirStore::new(tmp.path().join("store")));
    let key = SigningKey::generate().unwrap();
    let mut tasks = Vec::new();
    for content in ["a", "b", "c", "d"] {
        let a = artifact(tmp.path(), "web", "v1", content, &key);
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put("web", "v1", &a.bytes, &a.signature, &a.archive)
                .await
        }));
    }
    let mut stored = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(PutOutcome::Stored) => stored += 1,
            Err(ReleaseError::VersionExists { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(stored, 1);
    let got = store.get_manifest("web", "v1").await.unwrap();
    let archive = tmp.path().join("got.tar.zst");
    store.fetch_archive("web", "v1", &archive).await.unwrap();
    cairn_release::artifact::verify::verify_archive(&got.manifest, &archive).unwrap();
}

#[tokio::test]
async fn open_store_reads_paths_and_file_urls() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s");
    let url = format!("file:{}", path.display());
    let store = open_store(&url).await.unwrap();
    assert_eq!(store.location(), url);
    let store = open_store(path.to_str().unwrap()).await.unwrap();
    assert_eq!(store.location(), url);
    assert_eq!(
        StoreUrl::parse("s3://artifacts/team/web").unwrap(),
        StoreUrl::S3 {
            bucket: "artifacts".into(),
            prefix: "team/web".into()
        }
    );
    let err = open_store("ftp://x/y").await.unwrap_err();
    assert!(err.to_string().contains("ftp://x/y"), "{err}");
}

#[tokio::test]
async fn verify_stored_finds_one_changed_byte_in_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore::new(tmp.path().join("store"));
    let key = SigningKey::generate().unwrap();
    let a = artifact(tmp.path(), "web", "v1", "one", &key);
    store
        .put("web", "v1", &a.bytes, &a.signature, &a.archive)
        .await
        .unwrap();
    let ok = verify_stored(&store, "web", "v1", &key.public(), Some(tmp.path()))
        .await
        .unwrap();
    assert_eq!(ok.manifest, a.manifest);

    let other = SigningKey::generate().unwrap();
    let err = verify_stored(&store, "web", "v1", &other.public(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReleaseError::Verify(VerifyError::BadSignature { .. })),
        "{err}"
    );

    let path = tmp.path().join("store/web/v1/artifact.tar.zst");
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x80;
    fs::write(&path, &bytes).unwrap();
    let err = verify_stored(&store, "web", "v1", &key.public(), Some(tmp.path()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReleaseError::Verify(VerifyError::ArchiveDigest { .. })),
        "{err}"
    );
    // Its temporary directory is gone, failed or not.
    let left: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("cairn-verify-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
