//! What goes wrong reaching the keeper.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum KeeperError {
    #[error("the connection keeper's directory {}: {reason}", dir.display())]
    #[diagnostic(code(cairn::orch::keeper_dir))]
    UnsafeDir { dir: PathBuf, reason: String },

    #[error("the connection keeper at {}: {source}", socket.display())]
    #[diagnostic(code(cairn::orch::keeper))]
    Io {
        socket: PathBuf,
        source: std::io::Error,
    },
}

pub(super) fn keeper_io(socket: &Path, source: std::io::Error) -> KeeperError {
    KeeperError::Io {
        socket: socket.to_path_buf(),
        source,
    }
}
