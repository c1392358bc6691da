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
//!
//! With `--keep-connections`, every SSH host goes through this user's
//! connection keeper (`cairn_orch::transport::kept`), started here in the
//! background when none runs; `cairn connections` lists and stops it.

use std::path::PathBuf;
use std::sync::Arc;

use cairn_orch::inventory::Host;
use cairn_orch::transport::kept::{self, KeptHost, Spec};
use cairn_orch::transport::known_hosts::KnownHosts;
use cairn_orch::transport::local::LocalHost;
use cairn_orch::transport::ssh::{
    Dialer, KeyPassphrase, SshAuth, SshHost, SshOptions, SshStream, SshTarget, TcpDialer,
};
use cairn_orch::{Remote, TransportError};
use cairn_template::loader::Deployment;

use crate::cli::{ConnectionsAction, GlobalArgs, HostArgs};
use crate::output::emit;
use crate::report::{CliError, Status};

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
    /// The keeper's socket and how long it keeps a connection once idle
    /// (`--keep-connections`).
    kept: Option<(PathBuf, std::time::Duration)>,
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
        cairn_orch::transport::allow_many_connections();
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
            kept: match args.keep_connections.filter(|d| !d.is_zero()) {
                Some(keep_for) => keeper_socket()?.map(|socket| (socket, keep_for)),
                None => None,
            },
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
        let via = match (&self.cloud_netns, from_deployment) {
            (Some(ns), true) => Some(ns.clone()),
            _ => None,
        };
        if let Some((socket, keep_for)) = &self.kept {
            let spec = Spec::new(&target, &self.options, via);
            return Arc::new(KeptHost::new(socket.clone(), spec, *keep_for));
        }
        let dialer = dialer(via.as_deref(), self.options.connect_timeout);
        Arc::new(SshHost::new(target, self.options.clone(), dialer))
    }
}

/// How a host is dialed: from inside the local cloud's namespace `via`,
/// else over this machine's network.
fn dialer(via: Option<&std::path::Path>, timeout: std::time::Duration) -> Arc<dyn Dialer> {
    match via {
        Some(ns) => Arc::new(NetnsDialer {
            netns: ns.to_path_buf(),
            timeout,
        }),
        None => Arc::new(TcpDialer),
    }
}

/// The keeper's directory: `CAIRN_KEEPER_DIR`, else the user's runtime
/// directory's (see `cairn_orch::transport::kept::default_dir`).
fn keeper_dir() -> PathBuf {
    std::env::var_os("CAIRN_KEEPER_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(kept::default_dir)
}

/// How long a keeper just started may take to listen.
const KEEPER_START: std::time::Duration = std::time::Duration::from_secs(5);

/// The socket of this user's keeper, started in the background (its own
/// process group, so a Ctrl-C at this terminal does not reach it; its log
/// in `keeper.log` beside the socket) if none answers. `None`, with a
/// warning, when it cannot start: the run connects on its own then.
fn keeper_socket() -> Result<Option<PathBuf>, CliError> {
    let dir = keeper_dir();
    kept::private_dir(&dir).map_err(|e| CliError::Usage(e.to_string()))?;
    let socket = kept::socket_path(&dir);
    let answers = || std::os::unix::net::UnixStream::connect(&socket).is_ok();
    if answers() {
        return Ok(Some(socket));
    }
    let log_path = dir.join("keeper.log");
    let started = (|| {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.args(["connections", "serve"])
            .env("CAIRN_KEEPER_DIR", &dir)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.spawn()
    })();
    let mut child = match started {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cairn: the connection keeper did not start ({e}); connecting directly");
            return Ok(None);
        }
    };
    let deadline = std::time::Instant::now() + KEEPER_START;
    while std::time::Instant::now() < deadline {
        if answers() {
            return Ok(Some(socket));
        }
        // Ended at once: another keeper won the race (it answers soon), or
        // it failed (its log says why).
        if let Ok(Some(status)) = child.try_wait()
            && !status.success()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    eprintln!(
        "cairn: the connection keeper did not answer on {} (see {}); connecting directly",
        socket.display(),
        log_path.display()
    );
    Ok(None)
}

/// `cairn connections [list|stop|serve]`.
pub fn connections(
    action: Option<&ConnectionsAction>,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let dir = keeper_dir();
    let socket = kept::socket_path(&dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::failure)?;
    match action.unwrap_or(&ConnectionsAction::List) {
        ConnectionsAction::List => {
            let kept = runtime
                .block_on(kept::kept_connections(&socket))
                .map_err(CliError::failure)?;
            if kept.is_none() {
                eprintln!("no connection keeper runs ({})", socket.display());
            }
            emit(
                serde_json::to_value(kept.unwrap_or_default()).map_err(CliError::failure)?,
                global,
            )?;
        }
        ConnectionsAction::Stop => {
            let stopped = runtime
                .block_on(kept::stop_keeper(&socket))
                .map_err(CliError::failure)?;
            if !stopped {
                eprintln!("no connection keeper runs ({})", socket.display());
            }
        }
        ConnectionsAction::Serve => {
            runtime.block_on(async {
                let Some(bound) = kept::keeper::bind(&dir).map_err(CliError::failure)? else {
                    // Another keeper holds the directory: it serves.
                    return Ok::<(), CliError>(());
                };
                tracing::info!(socket = %bound.socket().display(), "connection keeper listening");
                cairn_orch::transport::allow_many_connections();
                let dialers: kept::keeper::Dialers = Arc::new(dialer);
                Arc::new(kept::Keeper::new(dialers)).serve(bound).await;
                Ok(())
            })?;
        }
    }
    Ok(Status::Success)
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

/// How long a connection attempt may take.
pub fn seconds(s: u64) -> std::time::Duration {
    std::time::Duration::from_secs(s.max(1))
}
