//! SSH connections kept open between runs, as OpenSSH's `ControlPersist`
//! keeps them for Ansible: `cairn run --keep-connections 60s` leaves each
//! host's connection with a keeper process, and the next run within that
//! time opens channels on it instead of a TCP connection, a key exchange
//! and a login. On hosts whose CPU is shared (or small), the connection is
//! most of what a short command costs them (README, "Orchestration").
//!
//! The keeper ([`keeper::Keeper`]) is a process of this user's own,
//! listening on a Unix socket in a directory only this user may enter
//! (checked, as OpenSSH checks a `ControlPath`), and it serves only peers
//! of the same user id. A run's hosts are [`KeptHost`]s: each script is
//! one socket connection to the keeper, which runs it on the host's
//! [`SshHost`] (the same transport as without a keeper) and sends back
//! its output; a host's shell ([`crate::transport::Shell`]) is relayed the
//! same way, byte for byte.
//!
//! A kept connection is shared only by requests that describe the host
//! identically ([`Spec`]: address, port, user, credentials, the host keys
//! that vouch for it, the route, the timeouts): a run whose known_hosts
//! line or recorded key differs gets a connection of its own, judged by
//! its own lines, never one another run's lines let in.
//!
//! [`SshHost`]: crate::transport::SshHost

pub mod host;
pub mod keeper;
mod wire;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::known_hosts::{KnownHosts, KnownLine};
use super::ssh::{HostKeyPolicy, KeyPassphrase, SshAuth, SshOptions, SshTarget};
use crate::remote::TransportError;

pub use host::{KeptHost, kept_connections, stop_keeper};
pub use keeper::Keeper;

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

/// Everything that makes one kept connection: what [`SshTarget`] and
/// [`SshOptions`] say of a host, sent to the keeper with each request.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub auth: Vec<SshAuth>,
    /// For key files stored encrypted (`CAIRN_SSH_KEY_PASSPHRASE`).
    pub passphrase: Option<String>,
    /// The known_hosts lines that name this host, nothing else.
    pub known: Vec<KnownLine>,
    pub host_key: Option<String>,
    pub accept_new: bool,
    /// The network namespace the host is reached from (a local cloud's
    /// servers); `None`: this machine's own network.
    pub via: Option<PathBuf>,
    pub connect_timeout_ms: u64,
    pub command_timeout_ms: u64,
    pub keepalive_interval_ms: Option<u64>,
    pub keepalive_max: usize,
    pub max_channels: usize,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("via", &self.via)
            .finish_non_exhaustive()
    }
}

impl Spec {
    pub fn new(target: &SshTarget, options: &SshOptions, via: Option<PathBuf>) -> Spec {
        let ms = |d: Duration| d.as_millis().min(u64::MAX as u128) as u64;
        Spec {
            name: target.name.clone(),
            address: target.address.clone(),
            port: target.port,
            user: target.user.clone(),
            auth: target.auth.clone(),
            passphrase: options
                .key_passphrase
                .as_ref()
                .map(|p| p.expose().to_string()),
            known: target.known_hosts.lines_for(&target.address, target.port),
            host_key: target.host_key.clone(),
            accept_new: target.host_key_policy == HostKeyPolicy::AcceptNew,
            via,
            connect_timeout_ms: ms(options.connect_timeout),
            command_timeout_ms: ms(options.command_timeout),
            keepalive_interval_ms: options.keepalive_interval.map(ms),
            keepalive_max: options.keepalive_max,
            max_channels: options.max_channels,
        }
    }

    /// The kept connection this spec shares: equal specs, equal keys.
    pub fn key(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }

    pub fn target(&self) -> SshTarget {
        let mut t = SshTarget::new(&self.name, &self.address, &self.user).port(self.port);
        t.auth = self.auth.clone();
        t.known_hosts =
            std::sync::Arc::new(KnownHosts::applying(&self.address, self.port, &self.known));
        t.host_key = self.host_key.clone();
        t.host_key_policy = if self.accept_new {
            HostKeyPolicy::AcceptNew
        } else {
            HostKeyPolicy::Strict
        };
        t
    }

    /// The options, key files read through `key_files` (the keeper's, so
    /// that an encrypted key is decrypted once for all its hosts).
    pub fn options(&self, key_files: &super::ssh::KeyFiles) -> SshOptions {
        SshOptions {
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            command_timeout: Duration::from_millis(self.command_timeout_ms),
            keepalive_interval: self.keepalive_interval_ms.map(Duration::from_millis),
            keepalive_max: self.keepalive_max,
            max_channels: self.max_channels,
            key_passphrase: self.passphrase.clone().map(KeyPassphrase::new),
            key_files: key_files.clone(),
        }
    }
}

/// What a client asks the keeper, one request per socket connection.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    /// Runs a script; a [`wire::STDIN`] frame (its whole input) follows.
    Exec {
        host: Box<Spec>,
        keep_for_ms: u64,
        script: String,
        become_user: Option<String>,
        timeout_ms: Option<u64>,
    },
    /// Opens a shell (see [`crate::transport::shell`]) and relays it.
    Shell {
        host: Box<Spec>,
        keep_for_ms: u64,
        become_user: Option<String>,
    },
    List,
    Stop,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
enum Reply {
    /// The script ended (its output came before, in frames).
    Done {
        status: Option<i32>,
    },
    Failed {
        error: TransportError,
    },
    /// The shell runs: stdin frames may follow.
    Opened,
    /// The shell's exec ended.
    Closed,
    Kept {
        connections: Vec<KeptConnection>,
    },
    Stopping,
}

/// What the client sends a relayed shell besides its input.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum ShellInput {
    Close { kill: bool },
}

/// One connection the keeper holds (`cairn connections list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptConnection {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Connections made for it so far (more than 1: it was lost and made
    /// again).
    pub opened: usize,
    pub connected: bool,
    /// Requests served on it.
    pub requests: u64,
    /// Scripts and shells running on it now.
    pub in_use: usize,
    pub idle_ms: u64,
    pub keep_for_ms: u64,
}

fn keeper_io(socket: &Path, source: std::io::Error) -> KeeperError {
    KeeperError::Io {
        socket: socket.to_path_buf(),
        source,
    }
}
