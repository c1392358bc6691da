//! What the stores check before a `put` writes anything.

use std::path::Path;

use super::contract::PutOutcome;
use crate::artifact::manifest::Manifest;
use crate::error::{ReleaseError, Result, VerifyError};

/// What every `put` checks before writing: names, a manifest for this very
/// version, an archive that is what the manifest says.
pub(super) async fn check_put(
    app: &str,
    version: &str,
    manifest_bytes: &[u8],
    archive: &Path,
) -> Result<Manifest> {
    crate::artifact::name::check_name("app", app)?;
    crate::artifact::name::check_name("version", version)?;
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
pub(super) fn compare_existing(
    app: &str,
    version: &str,
    existing: &[u8],
    new: &[u8],
) -> Result<PutOutcome> {
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
