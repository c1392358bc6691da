//! Where artifacts are kept: a directory ([`DirStore`]) or an S3 bucket
//! ([`S3Store`]), each version as three objects: `manifest.json`,
//! `manifest.sig`, `artifact.tar.zst`.
//!
//! A version is immutable: putting it again with the same manifest bytes is
//! a no-op, with other bytes an error ([`ReleaseError::VersionExists`]).
//! A store checks that an archive matches its manifest before keeping it,
//! but not the signature: stores hold no keys; readers verify.
//!
//! [`ReleaseError::VersionExists`]: crate::ReleaseError::VersionExists

mod contract;
mod dir;
mod put_check;
#[cfg(feature = "s3")]
mod s3;
mod url;
mod verify_stored;

use std::sync::Arc;

pub use contract::{
    ARCHIVE_FILE, ArchiveReader, ArtifactStore, MANIFEST_FILE, PutOutcome, SIGNATURE_FILE,
    StoredManifest,
};
pub use dir::DirStore;
#[cfg(feature = "s3")]
pub use s3::{S3Settings, S3Store};
pub use url::StoreUrl;
pub use verify_stored::verify_stored;

#[cfg(not(feature = "s3"))]
use crate::error::ReleaseError;
use crate::error::Result;

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
