//! What a host over SSH is (address, user, credentials, the known hosts
//! and recorded key that vouch for it) and the options of a connection.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use russh::keys::PrivateKey;

use crate::inventory::Host;
use crate::transport::known_hosts::KnownHosts;

/// One way to prove who we are, tried in the order given. Serialized for
/// the connection keeper only (on its private socket): a key file is read
/// by the keeper (the same user), a key held in memory travels whole.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SshAuth {
    /// An OpenSSH private key held in memory (a deployment's key pair);
    /// `label` names it in messages, the key itself never is.
    Key { pem: String, label: String },
    /// A private key file (`~` already expanded).
    KeyFile(PathBuf),
    /// The ssh-agent listening on this socket (`SSH_AUTH_SOCK`).
    Agent(PathBuf),
}

impl fmt::Debug for SshAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SshAuth::Key { label, .. } => write!(f, "Key({label})"),
            SshAuth::KeyFile(p) => write!(f, "KeyFile({})", p.display()),
            SshAuth::Agent(p) => write!(f, "Agent({})", p.display()),
        }
    }
}

/// What to do with a host key no known_hosts line and no record names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Refuse it ([`TransportError::HostKeyUnknown`]).
    #[default]
    Strict,
    /// Accept it (OpenSSH's `StrictHostKeyChecking accept-new`); a key
    /// that contradicts a line or the record is still refused. The key
    /// accepted is [`SshHost::host_key`], for the caller to record.
    AcceptNew,
}

/// One host to reach over SSH.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// The inventory name, for messages.
    pub name: String,
    /// Where to connect, and the name looked up in known_hosts.
    pub address: String,
    pub port: u16,
    pub user: String,
    pub auth: Vec<SshAuth>,
    /// Shared: a run parses its files once for all its hosts.
    pub known_hosts: Arc<KnownHosts>,
    /// The host key a deployment recorded (`TYPE BASE64 [COMMENT]`).
    pub host_key: Option<String>,
    pub host_key_policy: HostKeyPolicy,
}

impl SshTarget {
    /// Port 22, no credentials, no known keys, strict.
    pub fn new(
        name: impl Into<String>,
        address: impl Into<String>,
        user: impl Into<String>,
    ) -> SshTarget {
        SshTarget {
            name: name.into(),
            address: address.into(),
            port: 22,
            user: user.into(),
            auth: Vec::new(),
            known_hosts: Arc::new(KnownHosts::new()),
            host_key: None,
            host_key_policy: HostKeyPolicy::Strict,
        }
    }

    /// An inventory host: its address (else its name), port (else 22),
    /// user (else `default_user`), key file (first among the credentials,
    /// a leading `~/` taken from `home`) and recorded host key.
    pub fn from_host(host: &Host, default_user: &str, home: Option<&Path>) -> SshTarget {
        let mut t = SshTarget::new(
            host.name.clone(),
            host.address.clone().unwrap_or_else(|| host.name.clone()),
            host.user
                .clone()
                .unwrap_or_else(|| default_user.to_string()),
        );
        t.port = host.port.unwrap_or(22);
        if let Some(file) = &host.key_file {
            t.auth.push(SshAuth::KeyFile(expand_home(file, home)));
        }
        t.host_key = host.host_key.clone();
        t
    }

    pub fn port(mut self, port: u16) -> SshTarget {
        self.port = port;
        self
    }

    pub fn auth(mut self, auth: SshAuth) -> SshTarget {
        self.auth.push(auth);
        self
    }

    pub fn known_hosts(mut self, known: Arc<KnownHosts>) -> SshTarget {
        self.known_hosts = known;
        self
    }

    pub fn host_key(mut self, line: Option<String>) -> SshTarget {
        self.host_key = line;
        self
    }

    pub fn host_key_policy(mut self, policy: HostKeyPolicy) -> SshTarget {
        self.host_key_policy = policy;
        self
    }
}

fn expand_home(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// How long to wait, and how to notice a dead connection.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// For the TCP connection, and again for the handshake and
    /// authentication.
    pub connect_timeout: Duration,
    /// A script's time when its [`Exec`] sets none.
    pub command_timeout: Duration,
    /// A keepalive after this much silence from the host; `None`: never.
    pub keepalive_interval: Option<Duration>,
    /// Unanswered keepalives before the connection counts as lost.
    pub keepalive_max: usize,
    /// Scripts at once on one host; more wait for a channel. OpenSSH's
    /// sshd refuses channels past its `MaxSessions` (10 unless raised), so
    /// more than that fails on a stock server instead of waiting.
    pub max_channels: usize,
    /// Decrypts key files ([`SshAuth::KeyFile`]) stored encrypted.
    pub key_passphrase: Option<KeyPassphrase>,
    /// Key files as read: shared by every host given clones of these
    /// options, so a run reads (and decrypts) each file once.
    pub key_files: KeyFiles,
}

/// Key files read once for all hosts: an encrypted key's KDF costs tens of
/// ms of CPU by design, and paid per host it made 196 of 200 hosts miss
/// their connect timeout (README, "Orchestration").
#[derive(Clone, Default)]
pub struct KeyFiles(Arc<StdMutex<KeyFileMap>>);

type KeyFileMap = HashMap<(PathBuf, Option<Arc<str>>), Arc<tokio::sync::OnceCell<KeyFile>>>;

impl fmt::Debug for KeyFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyFiles(..)")
    }
}

/// What reading a key file gave.
#[derive(Clone)]
pub(super) enum KeyFile {
    Key(Arc<PrivateKey>),
    Encrypted,
    NotDecrypted(String),
    Unusable(String),
}

impl KeyFiles {
    pub(super) async fn load(&self, path: &Path, passphrase: Option<&KeyPassphrase>) -> KeyFile {
        let pass = passphrase.map(|p| p.0.clone());
        let cell = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry((path.to_path_buf(), pass.clone()))
                .or_default()
                .clone()
        };
        let path = path.to_path_buf();
        cell.get_or_init(|| async move {
            let had_pass = pass.is_some();
            // Off the runtime's threads: the KDF would hold one up.
            let read = tokio::task::spawn_blocking(move || {
                russh::keys::load_secret_key(&path, pass.as_deref())
            })
            .await;
            match read {
                Ok(Ok(key)) => KeyFile::Key(Arc::new(key)),
                Ok(Err(russh::keys::Error::KeyIsEncrypted)) => KeyFile::Encrypted,
                Ok(Err(e)) if had_pass => KeyFile::NotDecrypted(e.to_string()),
                Ok(Err(e)) => KeyFile::Unusable(e.to_string()),
                Err(e) => KeyFile::Unusable(e.to_string()),
            }
        })
        .await
        .clone()
    }
}

/// A passphrase for encrypted key files; nothing prints it.
#[derive(Clone)]
pub struct KeyPassphrase(Arc<str>);

impl KeyPassphrase {
    pub fn new(passphrase: impl Into<Arc<str>>) -> KeyPassphrase {
        KeyPassphrase(passphrase.into())
    }

    /// The passphrase itself, for the connection keeper (sent on its
    /// private socket, never printed).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyPassphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPassphrase(..)")
    }
}

impl Default for SshOptions {
    fn default() -> SshOptions {
        SshOptions {
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(300),
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            max_channels: 10,
            key_passphrase: None,
            key_files: KeyFiles::default(),
        }
    }
}
