//! A stored version checked end to end, as `cairn artifact verify` does.

use std::path::{Path, PathBuf};

use super::contract::{ArtifactStore, StoredManifest};
use crate::error::{ReleaseError, Result, VerifyError};

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
