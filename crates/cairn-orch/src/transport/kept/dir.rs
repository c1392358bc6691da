//! Where the keeper listens, and the directory it must be private to.

use std::path::{Path, PathBuf};

use super::error::KeeperError;

/// The keeper's socket in `dir`.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("keeper.sock")
}

/// Where this user's keeper listens unless told otherwise:
/// `$XDG_RUNTIME_DIR/cairn` (a per-user tmpfs on systemd machines), else
/// `/tmp/cairn-UID`.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("cairn"),
        None => std::env::temp_dir().join(format!("cairn-{}", nix::unistd::geteuid())),
    }
}

/// Makes `dir` (mode 0700) if missing, and refuses one another user owns
/// or others may enter: anyone who can reach the socket can run commands
/// on every kept host.
pub fn private_dir(dir: &Path) -> Result<(), KeeperError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let unsafe_dir = |reason: String| KeeperError::UnsafeDir {
        dir: dir.to_path_buf(),
        reason,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(unsafe_dir(format!("cannot make it: {e}"))),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| unsafe_dir(e.to_string()))?;
    if !meta.is_dir() {
        return Err(unsafe_dir("not a directory".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(unsafe_dir(format!(
            "owned by uid {}, not this user ({me})",
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(unsafe_dir(format!(
            "mode {mode:o}: others may enter it (chmod 700)"
        )));
    }
    Ok(())
}
