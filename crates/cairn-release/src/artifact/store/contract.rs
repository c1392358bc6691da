//! What a store is: the [`ArtifactStore`] trait, a version's parts and the
//! names they are kept under.

use std::path::Path;
use std::pin::Pin;

use async_trait::async_trait;
use tokio::io::AsyncRead;

use crate::artifact::manifest::Manifest;
use crate::artifact::sign::Signature;
use crate::error::Result;

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
    ///
    /// [`ReleaseError::NotFound`]: crate::ReleaseError::NotFound
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
