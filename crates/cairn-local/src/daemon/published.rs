//! What a running daemon leaves in the cloud's directory for its clients
//! (`client`, `launch`, the CLI): where it answers (`daemon.json`) and the
//! token its API asks for.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cloud::LocalDirs;

/// What a running daemon publishes in its directory (`daemon.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub pid: u32,
    pub api: SocketAddr,
    pub dns: SocketAddr,
    /// What the start could not bring back (a balancer whose port another
    /// program took meanwhile, ...), one line each: the command that
    /// started the daemon says them, rather than only its log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

pub fn published_path(dirs: &LocalDirs) -> PathBuf {
    dirs.root.join("daemon.json")
}

pub fn token_path(dirs: &LocalDirs) -> PathBuf {
    dirs.root.join("token")
}
