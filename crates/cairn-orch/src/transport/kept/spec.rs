//! What identifies one kept connection: a host as a run describes it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::transport::known_hosts::KnownHosts;
use crate::transport::known_hosts::KnownLine;
use crate::transport::ssh::{
    HostKeyPolicy, KeyFiles, KeyPassphrase, SshAuth, SshOptions, SshTarget,
};

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
    pub fn options(&self, key_files: &KeyFiles) -> SshOptions {
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
