//! Artifacts to test with, and the contract every store keeps.

use std::fs;
use std::path::{Path, PathBuf};

use cairn_release::artifact::pack::{ManifestHead, pack};
use cairn_release::artifact::store::PutOutcome;
use cairn_release::artifact::{ArtifactStore, Manifest, Signature, SigningKey};
use cairn_release::{ReleaseError, VerifyError};
use tokio::io::AsyncReadExt as _;

pub struct Artifact {
    pub manifest: Manifest,
    pub bytes: Vec<u8>,
    pub signature: Signature,
    pub archive: PathBuf,
}

/// A small app tree whose content depends on `content`.
pub fn app_tree(root: &Path, content: &str) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("public/css")).unwrap();
    fs::write(
        root.join("bin/serve"),
        format!("#!/bin/sh\necho {content}\n"),
    )
    .unwrap();
    let mut perms = fs::metadata(root.join("bin/serve")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    fs::set_permissions(root.join("bin/serve"), perms).unwrap();
    fs::write(
        root.join("public/index.html"),
        format!("<h1>{content}</h1>\n"),
    )
    .unwrap();
    fs::write(
        root.join("public/css/site.css"),
        "body { margin: 0 }\n".repeat(50),
    )
    .unwrap();
    std::os::unix::fs::symlink("bin/serve", root.join("start")).unwrap();
}

/// Packs and signs a tree made by [`app_tree`] under `dir`.
pub fn artifact(dir: &Path, app: &str, version: &str, content: &str, key: &SigningKey) -> Artifact {
    let tree = dir.join(format!("tree-{version}-{content}"));
    app_tree(&tree, content);
    artifact_of(dir, &tree, app, version, key)
}

pub fn artifact_of(
    dir: &Path,
    tree: &Path,
    app: &str,
    version: &str,
    key: &SigningKey,
) -> Artifact {
    let name = tree.file_name().unwrap().to_string_lossy();
    let archive = dir.join(format!("{name}.tar.zst"));
    let manifest = pack(
        tree,
        &archive,
        ManifestHead {
            app: app.into(),
            version: version.into(),
            created_at: "2026-12-05T06:00:00Z".into(),
            built_by: "test@localhost".into(),
        },
    )
    .unwrap();
    let bytes = manifest.canonical_bytes();
    Artifact {
        signature: key.sign(&bytes),
        manifest,
        bytes,
        archive,
    }
}

/// What any [`ArtifactStore`] must do, on an empty store.
pub async fn store_contract(store: &dyn ArtifactStore, tmp: &Path) {
    let key = SigningKey::generate().unwrap();
    let v1 = artifact(tmp, "web", "v1", "one", &key);
    let v1_other = artifact(tmp, "web", "v1", "other", &key);
    let v2 = artifact(tmp, "web", "v2", "two", &key);
    let api = artifact(tmp, "api", "1.0.0", "api", &key);

    assert!(store.apps().await.unwrap().is_empty());
    assert!(store.list("web").await.unwrap().is_empty());
    assert!(!store.exists("web", "v1").await.unwrap());
    let err = store.get_manifest("web", "v1").await.unwrap_err();
    assert!(matches!(err, ReleaseError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&store.location()), "{err}");

    let put = |a: &Artifact| {
        let (m, b, s, p) = (
            a.manifest.clone(),
            a.bytes.clone(),
            a.signature,
            a.archive.clone(),
        );
        async move { store.put(&m.app, &m.version, &b, &s, &p).await }
    };
    assert_eq!(put(&v1).await.unwrap(), PutOutcome::Stored);
    assert_eq!(put(&v2).await.unwrap(), PutOutcome::Stored);
    assert_eq!(put(&api).await.unwrap(), PutOutcome::Stored);
    // The same bytes again: fine, nothing changes.
    assert_eq!(put(&v1).await.unwrap(), PutOutcome::AlreadyPresent);
    // Other content under a stored version: refused, with both digests.
    match put(&v1_other).await.unwrap_err() {
        ReleaseError::VersionExists {
            app,
            version,
            existing_digest,
            new_digest,
        } => {
            assert_eq!((app.as_str(), version.as_str()), ("web", "v1"));
            assert_eq!(existing_digest, v1.manifest.digest());
            assert_eq!(new_digest, v1_other.manifest.digest());
        }
        other => panic!("expected VersionExists, got {other}"),
    }

    assert_eq!(store.apps().await.unwrap(), ["api", "web"]);
    assert_eq!(store.list("web").await.unwrap(), ["v1", "v2"]);
    assert!(store.exists("web", "v2").await.unwrap());
    let got = store.get_manifest("web", "v1").await.unwrap();
    assert_eq!(got.bytes, v1.bytes);
    assert_eq!(got.manifest, v1.manifest);
    assert_eq!(got.signature, v1.signature);
    assert_eq!(got.digest(), v1.manifest.digest());

    let fetched = tmp.join("fetched.tar.zst");
    let size = store.fetch_archive("web", "v1", &fetched).await.unwrap();
    assert_eq!(size, v1.manifest.archive.size);
    assert_eq!(fs::read(&fetched).unwrap(), fs::read(&v1.archive).unwrap());
    let mut streamed = Vec::new();
    store
        .open_archive("web", "v2")
        .await
        .unwrap()
        .read_to_end(&mut streamed)
        .await
        .unwrap();
    assert_eq!(streamed, fs::read(&v2.archive).unwrap());
    let err = store
        .fetch_archive("web", "v9", &tmp.join("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, ReleaseError::NotFound { .. }), "{err}");

    // A manifest for another version, or an archive that is not the
    // manifest's, is not stored at all.
    let err = store
        .put("web", "v3", &v2.bytes, &v2.signature, &v2.archive)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReleaseError::Verify(VerifyError::WrongArtifact { .. })),
        "{err}"
    );
    let v3 = artifact(tmp, "web", "v3", "three", &key);
    let err = store
        .put("web", "v3", &v3.bytes, &v3.signature, &v2.archive)
        .await
        .unwrap_err();
    assert!(matches!(err, ReleaseError::Verify(_)), "{err}");
    assert!(!store.exists("web", "v3").await.unwrap());
    assert_eq!(store.list("web").await.unwrap(), ["v1", "v2"]);

    let err = store.list("../etc").await.unwrap_err();
    assert!(matches!(err, ReleaseError::BadName { .. }), "{err}");
}
