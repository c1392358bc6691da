//! Artifacts in a directory: `<root>/<app>/<version>/{manifest.json,
//! manifest.sig, artifact.tar.zst}`. A version is written into a hidden
//! sibling directory and renamed into place, so after a crash a version is
//! either whole or absent (a leftover `.incoming-*` directory is ignored
//! by readers). Two writers of the same version race on the rename: one
//! wins, the other compares against what won.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::contract::{
    ARCHIVE_FILE, ArchiveReader, ArtifactStore, MANIFEST_FILE, PutOutcome, SIGNATURE_FILE,
    StoredManifest,
};
use super::put_check::{check_put, compare_existing};
use crate::artifact::manifest::Manifest;
use crate::artifact::sign::Signature;
use crate::error::{ReleaseError, Result};

#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn new(root: impl Into<PathBuf>) -> DirStore {
        DirStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn version_dir(&self, app: &str, version: &str) -> Result<PathBuf> {
        crate::artifact::name::check_name("app", app)?;
        crate::artifact::name::check_name("version", version)?;
        Ok(self.root.join(app).join(version))
    }

    fn not_found(&self, app: &str, version: &str) -> ReleaseError {
        ReleaseError::NotFound {
            app: app.to_string(),
            version: version.to_string(),
            store: self.location(),
        }
    }

    fn read_existing(&self, dir: &Path) -> Result<Option<Vec<u8>>> {
        let path = dir.join(MANIFEST_FILE);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ReleaseError::io(path)(e)),
        }
    }

    fn put_blocking(
        &self,
        app: &str,
        version: &str,
        manifest_bytes: &[u8],
        signature: &Signature,
        archive: &Path,
    ) -> Result<PutOutcome> {
        let dest = self.version_dir(app, version)?;
        if let Some(existing) = self.read_existing(&dest)? {
            return compare_existing(app, version, &existing, manifest_bytes);
        }
        let app_dir = self.root.join(app);
        fs::create_dir_all(&app_dir).map_err(ReleaseError::io(&app_dir))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let staging = app_dir.join(format!(
            ".incoming-{version}-{}-{nanos}",
            std::process::id()
        ));
        let written = write_version(&staging, manifest_bytes, signature, archive).and_then(|()| {
            match fs::rename(&staging, &dest) {
                Ok(()) => Ok(true),
                // Another writer renamed its copy first (a non-empty
                // directory cannot be replaced by rename).
                Err(e) if dest.join(MANIFEST_FILE).exists() => {
                    tracing::debug!(error = %e, "another writer stored the version first");
                    Ok(false)
                }
                Err(e) => Err(ReleaseError::io(&dest)(e)),
            }
        });
        if !matches!(written, Ok(true)) {
            let _ = fs::remove_dir_all(&staging);
        }
        if !written? {
            let existing = self
                .read_existing(&dest)?
                .ok_or_else(|| self.not_found(app, version))?;
            return compare_existing(app, version, &existing, manifest_bytes);
        }
        // The rename is durable only once the directory holding it is.
        File::open(&app_dir)
            .and_then(|d| d.sync_all())
            .map_err(ReleaseError::io(&app_dir))?;
        tracing::info!(%app, %version, store = %self.location(), "artifact stored");
        Ok(PutOutcome::Stored)
    }

    fn get_manifest_blocking(&self, app: &str, version: &str) -> Result<StoredManifest> {
        let dir = self.version_dir(app, version)?;
        let bytes = self
            .read_existing(&dir)?
            .ok_or_else(|| self.not_found(app, version))?;
        let sig_path = dir.join(SIGNATURE_FILE);
        let sig = fs::read(&sig_path).map_err(ReleaseError::io(&sig_path))?;
        Ok(StoredManifest {
            manifest: Manifest::from_bytes(&bytes)?,
            signature: Signature::from_bytes(&sig)?,
            bytes,
        })
    }

    fn archive_path(&self, app: &str, version: &str) -> Result<PathBuf> {
        let dir = self.version_dir(app, version)?;
        if !dir.join(MANIFEST_FILE).is_file() {
            return Err(self.not_found(app, version));
        }
        Ok(dir.join(ARCHIVE_FILE))
    }
}

fn write_version(
    dir: &Path,
    manifest_bytes: &[u8],
    signature: &Signature,
    archive: &Path,
) -> Result<()> {
    fs::create_dir(dir).map_err(ReleaseError::io(dir))?;
    let archive_dest = dir.join(ARCHIVE_FILE);
    fs::copy(archive, &archive_dest).map_err(ReleaseError::io(archive))?;
    File::open(&archive_dest)
        .and_then(|f| f.sync_all())
        .map_err(ReleaseError::io(&archive_dest))?;
    write_synced(&dir.join(SIGNATURE_FILE), &signature.0)?;
    write_synced(&dir.join(MANIFEST_FILE), manifest_bytes)?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ReleaseError::io(dir))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(ReleaseError::io(path))?;
    file.write_all(bytes).map_err(ReleaseError::io(path))?;
    file.sync_all().map_err(ReleaseError::io(path))
}

/// Directory entries that are names of apps or versions (not `.incoming-*`).
fn names(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ReleaseError::io(dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(ReleaseError::io(dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if crate::artifact::name::check_name("name", &name).is_ok() && keep(&entry.path()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Runs blocking file work off the async runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ReleaseError::Store {
            store: "directory".into(),
            reason: format!("a file task failed: {e}"),
        })?
}

#[async_trait]
impl ArtifactStore for DirStore {
    fn location(&self) -> String {
        format!("file:{}", self.root.display())
    }

    async fn put(
        &self,
        app: &str,
        version: &str,
        manifest_bytes: &[u8],
        signature: &Signature,
        archive: &Path,
    ) -> Result<PutOutcome> {
        check_put(app, version, manifest_bytes, archive).await?;
        let (store, app, version) = (self.clone(), app.to_string(), version.to_string());
        let (bytes, sig, archive) = (manifest_bytes.to_vec(), *signature, archive.to_path_buf());
        blocking(move || store.put_blocking(&app, &version, &bytes, &sig, &archive)).await
    }

    async fn get_manifest(&self, app: &str, version: &str) -> Result<StoredManifest> {
        let (store, app, version) = (self.clone(), app.to_string(), version.to_string());
        blocking(move || store.get_manifest_blocking(&app, &version)).await
    }

    async fn fetch_archive(&self, app: &str, version: &str, to: &Path) -> Result<u64> {
        let from = self.archive_path(app, version)?;
        let to = to.to_path_buf();
        blocking(move || fs::copy(&from, &to).map_err(ReleaseError::io(&from))).await
    }

    async fn open_archive(&self, app: &str, version: &str) -> Result<ArchiveReader> {
        let path = self.archive_path(app, version)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(ReleaseError::io(&path))?;
        Ok(Box::pin(file))
    }

    async fn list(&self, app: &str) -> Result<Vec<String>> {
        crate::artifact::name::check_name("app", app)?;
        let dir = self.root.join(app);
        blocking(move || names(&dir, |p| p.join(MANIFEST_FILE).is_file())).await
    }

    async fn apps(&self) -> Result<Vec<String>> {
        let root = self.root.clone();
        blocking(move || names(&root, Path::is_dir)).await
    }

    async fn exists(&self, app: &str, version: &str) -> Result<bool> {
        let path = self.version_dir(app, version)?.join(MANIFEST_FILE);
        tokio::fs::try_exists(&path)
            .await
            .map_err(ReleaseError::io(&path))
    }
}
