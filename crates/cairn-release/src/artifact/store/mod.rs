//! Where artifacts are kept: a directory ([`DirStore`]) or an S3 bucket
//! ([`S3Store`]), each version as three objects: `manifest.json`,
//! `manifest.sig`, `artifact.tar.zst`.
//!
//! A version is immutable: putting it again with the same manifest bytes is
//! a no-op, with other bytes an error ([`ReleaseError::VersionExists`]).
//! A store checks that an archive matches its manifest before keeping it,
//! but not the signature: stores hold no keys; readers verify.

mod dir;
#[cfg(feature = "s3")]
mod s3;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::AsyncRead;

pub use dir::DirStore;
#[cfg(feature = "s3")]
pub use s3::{S3Settings, S3Store};

use crate::artifact::manifest::Manifest;
use crate::artifact::sign::Signature;
use crate::{ReleaseError, Result, VerifyError};

/// File names of a version's parts, in a directory or under an S3 prefix.
pub const MANIFEST_FILE: &str = "manifest.json";
pub const SIGNATURE_FILE: &str = "manifest.sig";
pub const ARCHIVE_FILE: &str = "artifact.tar.zst";

/// What `put` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Stored,
    /// The same manifest bytes were there already; nothing was written.
    AlreadyPresent,
}

/// A version's manifest as stored, with its signature (not verified: see
/// [`crate::artifact::verify::verify_manifest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    pub manifest: Manifest,
    pub bytes: Vec<u8>,
    pub signature: Signature,
}

impl StoredManifest {
    pub fn digest(&self) -> String {
        crate::artifact::manifest::sha256_hex(&self.bytes)
    }
}

pub type ArchiveReader = Pin<Box<dyn AsyncRead + Send>>;

#[async_trait]
pub trait ArtifactStore: Send + Sync + std::fmt::Debug {
    /// Where it is, for messages: `file:/srv/artifacts`, `s3://bucket/prefix`.
    fn location(&self) -> String;

    /// Keeps a version; see the module's notes on immutability.
    async fn put(
        &self,
        app: &str,
        version: &str,
        manifest_bytes: &[u8],
        signature: &Signature,
        archive: &Path,
    ) -> Result<PutOutcome>;

    /// [`ReleaseError::NotFound`] when the version is not there.
    async fn get_manifest(&self, app: &str, version: &str) -> Result<StoredManifest>;

    /// Writes the archive to a new file at `to`; returns its size.
    async fn fetch_archive(&self, app: &str, version: &str, to: &Path) -> Result<u64>;

    /// The archive as a stream (to pipe to a host without a local copy).
    async fn open_archive(&self, app: &str, version: &str) -> Result<ArchiveReader>;

    /// The app's complete versions, in name order (empty for an unknown app).
    async fn list(&self, app: &str) -> Result<Vec<String>>;

    /// Apps with at least one entry, in name order.
    async fn apps(&self) -> Result<Vec<String>>;

    async fn exists(&self, app: &str, version: &str) -> Result<bool>;
}

/// A parsed store address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl StoreUrl {
    /// `s3://bucket[/prefix]`, `file:PATH`, `file://PATH`, or a plain path.
    pub fn parse(url: &str) -> Result<StoreUrl> {
        let bad = |reason: &str| ReleaseError::StoreUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                });
            if !bucket_ok {
                return Err(bad(
                    "an S3 bucket name is 3 to 63 lowercase letters, digits, `.`, `-`",
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
                return Err(bad("the prefix has an empty, `.` or `..` part"));
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        let path = url
            .strip_prefix("file://")
            .or_else(|| url.strip_prefix("file:"))
            .unwrap_or(url);
        if path.contains("://") {
            return Err(bad(
                "known stores are s3://BUCKET/PREFIX and file:PATH (or a path)",
            ));
        }
        if path.is_empty() {
            return Err(bad("an empty path"));
        }
        Ok(StoreUrl::Dir(PathBuf::from(path)))
    }
}

/// Opens the store at `url` ([`StoreUrl::parse`]). S3 takes its region,
/// credentials and endpoint (`AWS_ENDPOINT_URL`) from the usual AWS
/// environment variables and shared config, as the aws target does.
pub async fn open_store(url: &str) -> Result<Arc<dyn ArtifactStore>> {
    Ok(match StoreUrl::parse(url)? {
        StoreUrl::Dir(path) => Arc::new(DirStore::new(path)),
        #[cfg(feature = "s3")]
        StoreUrl::S3 { bucket, prefix } => {
            Arc::new(S3Store::connect(bucket, prefix, &S3Settings::default()).await?)
        }
        #[cfg(not(feature = "s3"))]
        StoreUrl::S3 { .. } => {
            return Err(ReleaseError::StoreUrl {
                url: url.to_string(),
                reason: "this build of cairn has no S3 support (feature `s3`)".into(),
            });
        }
    })
}

/// `cairn artifact verify`: a stored version checked end to end (signature,
/// archive, every file unpacked into a temporary directory under
/// `work_dir`, or the system's, removed afterwards).
pub async fn verify_stored(
    store: &dyn ArtifactStore,
    app: &str,
    version: &str,
    key: &crate::artifact::sign::PublicKey,
    work_dir: Option<&Path>,
) -> Result<StoredManifest> {
    let stored = store.get_manifest(app, version).await?;
    crate::artifact::verify::verify_manifest(&stored.bytes, &stored.signature, key)?;
    if stored.manifest.app != app || stored.manifest.version != version {
        return Err(VerifyError::WrongArtifact {
            expected: format!("{app} {version}"),
            found: format!("{} {}", stored.manifest.app, stored.manifest.version),
        }
        .into());
    }
    let tmp = match work_dir {
        Some(w) => tempfile::Builder::new()
            .prefix("cairn-verify-")
            .tempdir_in(w),
        None => tempfile::Builder::new().prefix("cairn-verify-").tempdir(),
    }
    .map_err(ReleaseError::io(
        work_dir.map_or_else(std::env::temp_dir, Path::to_path_buf),
    ))?;
    let archive = tmp.path().join("artifact.tar.zst");
    store.fetch_archive(app, version, &archive).await?;
    let manifest = stored.manifest.clone();
    tokio::task::spawn_blocking(move || {
        crate::artifact::verify::verify_archive(&manifest, &archive)?;
        let tree = tmp.path().join("tree");
        crate::artifact::pack::unpack(&archive, &tree)?;
        crate::artifact::verify::verify_tree(&manifest, &tree)
    })
    .await
    .map_err(|e| ReleaseError::Pack {
        path: PathBuf::from(format!("{app}/{version}")),
        reason: format!("verifying failed: {e}"),
    })??;
    Ok(stored)
}

/// What every `put` checks before writing: names, a manifest for this very
/// version, an archive that is what the manifest says.
async fn check_put(
    app: &str,
    version: &str,
    manifest_bytes: &[u8],
    archive: &Path,
) -> Result<Manifest> {
    crate::artifact::check_name("app", app)?;
    crate::artifact::check_name("version", version)?;
    let manifest = Manifest::from_bytes(manifest_bytes)?;
    if manifest.app != app || manifest.version != version {
        return Err(VerifyError::WrongArtifact {
            expected: format!("{app} {version}"),
            found: format!("{} {}", manifest.app, manifest.version),
        }
        .into());
    }
    let (m, path) = (manifest.clone(), archive.to_path_buf());
    tokio::task::spawn_blocking(move || crate::artifact::verify::verify_archive(&m, &path))
        .await
        .map_err(|e| ReleaseError::Pack {
            path: archive.to_path_buf(),
            reason: format!("checking the archive failed: {e}"),
        })??;
    Ok(manifest)
}

/// The same bytes again is fine, other bytes are not.
fn compare_existing(app: &str, version: &str, existing: &[u8], new: &[u8]) -> Result<PutOutcome> {
    if existing == new {
        return Ok(PutOutcome::AlreadyPresent);
    }
    Err(ReleaseError::VersionExists {
        app: app.to_string(),
        version: version.to_string(),
        existing_digest: crate::artifact::manifest::sha256_hex(existing),
        new_digest: crate::artifact::manifest::sha256_hex(new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!(
            StoreUrl::parse("s3://my-bucket/cairn/artifacts/").unwrap(),
            StoreUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "cairn/artifacts".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("s3://my-bucket").unwrap(),
            StoreUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "".into()
            }
        );
        for (url, path) in [
            ("file:/srv/a", "/srv/a"),
            ("file:///srv/a", "/srv/a"),
            ("file:rel/a", "rel/a"),
            ("/srv/a", "/srv/a"),
            ("./a", "./a"),
        ] {
            assert_eq!(
                StoreUrl::parse(url).unwrap(),
                StoreUrl::Dir(path.into()),
                "{url}"
            );
        }
        for bad in [
            "s3://Bad_Bucket/x",
            "s3://",
            "s3://bucket/a/../b",
            "gs://b/p",
            "",
            "file:",
        ] {
            let err = StoreUrl::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("artifact store"), "{bad}: {err}");
        }
    }
}
