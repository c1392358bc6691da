//! How `run` and `state apply` reach each host: over SSH in process
//! (cairn-orch's transport), or this machine's shell for a host whose
//! `ansible_connection` is `local`.
//!
//! Credentials, tried in order: the key pair cairn made for a deployment's
//! server, `--private-key`, the inventory's `ansible_ssh_private_key_file`,
//! the ssh-agent (`SSH_AUTH_SOCK`), then `~/.ssh/id_ed25519` and
//! `~/.ssh/id_rsa` when they exist. Host keys: `--known-hosts FILE` (else
//! `~/.ssh/known_hosts`), or for servers cairn made the key it recorded.
//!
//! A server of a deployment on the local target is reached from inside the
//! cloud's network namespace at its private address (a bastion for free);
//! see `cairn_local::host::dial`.

use std::path::PathBuf;
use std::sync::Arc;

use cairn_orch::inventory::Host;
use cairn_orch::transport::known_hosts::KnownHosts;
use cairn_orch::transport::local::LocalHost;
use cairn_orch::transport::ssh::{
    Dialer, KeyPassphrase, SshAuth, SshHost, SshOptions, SshStream, SshTarget, TcpDialer,
};
use cairn_orch::{Remote, TransportError};
use cairn_template::loader::Deployment;

use super::jobs::seconds;
use crate::cli::HostArgs;
use crate::report::CliError;

pub struct Connector {
    known: Arc<KnownHosts>,
    options: SshOptions,
    user: Option<String>,
    private_key: Option<PathBuf>,
    agent: Option<PathBuf>,
    defaults: Vec<PathBuf>,
    home: Option<PathBuf>,
    /// The local cloud's namespace, for a deployment on the local target
    /// whose cloud isolates its servers.
    cloud_netns: Option<PathBuf>,
    /// A deployment on the local target whose servers are processes on
    /// this machine (`process` isolation): nothing to log in to.
    local_processes: bool,
    timeout: std::time::Duration,
}

impl Connector {
    pub fn new(args: &HostArgs, deployment: Option<&Deployment>) -> Result<Connector, CliError> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let files: Vec<PathBuf> = match (&args.known_hosts, &home) {
            (Some(f), _) => vec![f.clone()],
            (None, Some(h)) if h.join(".ssh/known_hosts").is_file() => {
                vec![h.join(".ssh/known_hosts")]
            }
            _ => vec![],
        };
        let known = KnownHosts::load(&files).map_err(|e| CliError::Usage(e.to_string()))?;
        let defaults = home
            .iter()
            .flat_map(|h| [h.join(".ssh/id_ed25519"), h.join(".ssh/id_rsa")])
            .filter(|p| p.is_file())
            .collect();
        let (mut cloud_netns, mut local_processes) = (None, false);
        if deployment.is_some_and(|d| d.target == "local") {
            let dirs = super::local::local_dirs()?;
            let isolation =
                cairn_local::cloud::read_isolation(&dirs.state()).map_err(CliError::failure)?;
            if isolation.as_deref() == Some("runc") {
                let path =
                    cairn_local::host::dial::cloud_netns_path(&cairn_local::cloud::cloud_id(&dirs));
                cloud_netns = path.exists().then_some(path);
            } else {
                local_processes = true;
            }
        }
        Ok(Connector {
            known: Arc::new(known),
            options: SshOptions {
                connect_timeout: seconds(args.connect_timeout),
                command_timeout: seconds(args.timeout),
                // As ssh-agent holds them for OpenSSH: never an argument
                // (other users see those in `ps`), never printed.
                key_passphrase: std::env::var("CAIRN_SSH_KEY_PASSPHRASE")
                    .ok()
                    .filter(|p| !p.is_empty())
                    .map(KeyPassphrase::new),
                ..SshOptions::default()
            },
            user: args.user.clone(),
            private_key: args.private_key.clone(),
            agent: std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
            defaults,
            home,
            cloud_netns,
            local_processes,
            timeout: seconds(args.timeout),
        })
    }

    /// The host's transport (connecting lazily, on its first command).
    pub fn remote(&self, host: &Host) -> Arc<dyn Remote> {
        let connection = host
            .vars
            .get("ansible_connection")
            .and_then(|v| v.as_str())
            .unwrap_or("ssh");
        if connection == "local" {
            return Arc::new(LocalHost::new(host.name.clone()).with_timeout(self.timeout));
        }
        let from_deployment = host.sources.iter().any(|s| s.starts_with("deployment:"));
        if from_deployment && self.local_processes {
            return Arc::new(Unavailable {
                name: host.name.clone(),
                reason: "a server of the local cloud in `process` isolation is a process on \
                         this machine, with no SSH to log in to; reach it through its agent \
                         (`--via agent`), or run the cloud with `cairn local start --isolation \
                         runc` (servers as hosts)"
                    .into(),
            });
        }
        let user = self.user.as_deref().unwrap_or("root");
        let mut target = SshTarget::from_host(host, user, self.home.as_deref());
        // A server cairn made is checked against the key it recorded only:
        // its private address is reused by the next deployment, so a
        // known_hosts line for it is more often stale than right.
        if host.host_key.is_none() {
            target = target.known_hosts(self.known.clone());
        }
        // The inventory's key file first (from_host put it there), then the
        // others in the documented order.
        let mut auth = Vec::new();
        if let Some(k) = &host.private_key {
            auth.push(SshAuth::Key {
                pem: k.0.clone(),
                label: format!("the key pair of {}", host.name),
            });
        }
        if let Some(k) = &self.private_key {
            auth.push(SshAuth::KeyFile(k.clone()));
        }
        auth.append(&mut target.auth);
        if let Some(a) = &self.agent {
            auth.push(SshAuth::Agent(a.clone()));
        }
        auth.extend(self.defaults.iter().cloned().map(SshAuth::KeyFile));
        target.auth = auth;
        let dialer: Arc<dyn Dialer> = match (&self.cloud_netns, from_deployment) {
            (Some(ns), true) => Arc::new(NetnsDialer {
                netns: ns.clone(),
                timeout: self.options.connect_timeout,
            }),
            _ => Arc::new(TcpDialer),
        };
        Arc::new(SshHost::new(target, self.options.clone(), dialer))
    }
}

/// A host cairn knows it cannot reach, saying why, without trying.
struct Unavailable {
    name: String,
    reason: String,
}

#[async_trait::async_trait]
impl Remote for Unavailable {
    fn name(&self) -> &str {
        &self.name
    }

    async fn exec(&self, _: cairn_orch::Exec) -> Result<cairn_orch::Output, TransportError> {
        Err(TransportError::Unreachable {
            host: self.name.clone(),
            reason: self.reason.clone(),
        })
    }
}

/// Connects from inside the local cloud's network namespace.
struct NetnsDialer {
    netns: PathBuf,
    timeout: std::time::Duration,
}

#[async_trait::async_trait]
impl Dialer for NetnsDialer {
    async fn dial(&self, address: &str, port: u16) -> std::io::Result<Box<dyn SshStream>> {
        let ip: std::net::IpAddr = address.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("`{address}` is not a private address of the local cloud"),
            )
        })?;
        let stream =
            cairn_local::host::dial::connect_in(&self.netns, (ip, port).into(), self.timeout)
                .await?;
        Ok(Box::new(stream))
    }
}
