//! Where the local cloud keeps everything on disk: its record, its key,
//! and a directory per resource that has files (servers' sandboxes and
//! layers, volumes, snapshots, images, buckets, databases' clusters).

use std::path::{Path, PathBuf};

use cairn_engine::provider::{ProviderError, ProviderResult};

/// Where the local cloud keeps everything.
#[derive(Debug, Clone)]
pub struct LocalDirs {
    pub root: PathBuf,
}

impl LocalDirs {
    pub fn new(root: impl Into<PathBuf>) -> LocalDirs {
        LocalDirs { root: root.into() }
    }
    /// The cloud's record of its resources (see `record`).
    pub fn state(&self) -> PathBuf {
        self.root.join("cloud.db")
    }
    /// Where an earlier cairn kept that record, migrated on first open.
    pub(super) fn legacy_state(&self) -> PathBuf {
        self.root.join("cloud.json")
    }
    /// The key that seals the record's secret values.
    pub fn key(&self) -> PathBuf {
        self.root.join("cloud.key")
    }
    pub fn of(&self, kind: &str, id: &str) -> PathBuf {
        self.root.join(format!("{kind}s")).join(id)
    }
}

/// Removes a resource's directory (one already gone is no error).
pub(super) fn remove_dir(dir: &Path) -> ProviderResult<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ProviderError::Transient(format!(
            "cannot remove {}: {e}",
            dir.display()
        ))),
    }
}

/// Copies a resource's directory into another's (a volume from its
/// snapshot, an image from its server), returning the bytes copied.
pub(super) fn copy_tree(from: &Path, to: &Path) -> std::io::Result<u64> {
    std::fs::create_dir_all(to)?;
    let mut bytes = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            bytes += copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            bytes += std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(bytes)
}
