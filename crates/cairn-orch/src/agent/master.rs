//! `cairn master`: accepts agents over mutual TLS, keeps their keys
//! (salt-key), sends them jobs, and answers the CLI on an admin socket.
//!
//! A connection, in order (nothing is callable before step 3 passes):
//!
//! 1. TLS 1.3 handshake: the agent must show a certificate and sign the
//!    handshake with its key ([`tls`]'s `AnyClientKey`); a client without one
//!    fails here, with a log line.
//! 2. The key's fingerprint is looked up among the accepted keys, before
//!    any frame is read. An accepted key sets the connection's identity.
//! 3. One frame is read, the `Hello`, at most [`MAX_HELLO`] bytes for a key
//!    not accepted. An accepted key's Hello must name its own id; a key not
//!    accepted is recorded pending (or refused, if rejected, revoked, or
//!    another key holds the id), answered `Pending`/`Refused`, and the
//!    connection is closed. Only an accepted key reaches the job loop.
//! 4. The job loop: the master sends `Job`s addressed to this identity and
//!    takes `Heartbeat`s and `Result`s; a result is taken only for a job
//!    sent on this very connection. `cairn keys revoke` closes it at once.
//!
//! The admin socket (`DIR/admin.sock`, 0600 in the 0700 directory, and its
//! peer's uid checked to be the directory owner's) serves `cairn keys` and
//! the jobs of `cairn run --via agent`.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::{Notify, mpsc, oneshot};

use super::keys::{Admission, KeyAction, KeyEntry, KeyStore};
use super::protocol::{
    self, JobKind, JobMessage, MAX_FRAME, MAX_HELLO, ToAgent, ToMaster, VERSION, now_ms,
};
use super::tls::{self, Identity};
use crate::job::{self, HostResult};

#[derive(Debug, Clone)]
pub struct MasterConfig {
    pub listen: String,
    pub dir: PathBuf,
    /// A pre-shared enrolment token: an agent showing it is accepted
    /// without `cairn keys accept`.
    pub token: Option<String>,
    /// An agent silent this long is dropped (it heartbeats more often).
    pub silence: Duration,
}

/// A request on the admin socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminRequest {
    Keys,
    Key {
        action: KeyAction,
        id: String,
    },
    /// The ids of the agents connected now.
    Connected,
    /// Run a job on one agent and wait for its result.
    Run {
        job_id: String,
        host: String,
        kind: JobKind,
        timeout_ms: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminReply {
    Keys { keys: Vec<KeyEntry> },
    Key { entry: Option<KeyEntry> },
    Connected { ids: Vec<String> },
    Result { result: HostResult },
    Error { message: String },
}

/// One accepted agent's live connection.
struct Conn {
    serial: u64,
    tx: mpsc::UnboundedSender<ToAgent>,
    kill: Arc<Notify>,
    /// Jobs sent on this connection and not answered yet.
    jobs: HashMap<String, oneshot::Sender<HostResult>>,
}

struct Registry {
    keys: KeyStore,
    conns: HashMap<String, Conn>,
    serial: u64,
}

type Shared = Arc<Mutex<Registry>>;

fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Registry> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

/// The admin socket of the master whose directory is `dir`.
pub fn admin_socket(dir: &Path) -> PathBuf {
    dir.join("admin.sock")
}

/// Serves until `shutdown` resolves.
pub async fn serve(cfg: MasterConfig, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    let identity = Identity::load_or_create(&cfg.dir, "master", tls::MASTER_NAME)?;
    std::fs::write(
        cfg.dir.join("master.fingerprint"),
        format!("{}\n", identity.fingerprint),
    )
    .map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(&identity)?);
    let registry: Shared = Arc::new(Mutex::new(Registry {
        keys: KeyStore::open(&cfg.dir)?,
        conns: HashMap::new(),
        serial: 0,
    }));
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let sock = admin_socket(&cfg.dir);
    let _ = std::fs::remove_file(&sock);
    let admin = UnixListener::bind(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    let owner = std::fs::metadata(&cfg.dir)
        .map_err(|e| e.to_string())?
        .uid();
    tracing::warn!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        fingerprint = %identity.fingerprint,
        admin = %sock.display(),
        "master listening"
    );
    let cfg = Arc::new(cfg);
    let agents = {
        let (registry, cfg) = (registry.clone(), cfg.clone());
        async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::error!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, registry, cfg) = (acceptor.clone(), registry.clone(), cfg.clone());
                tokio::spawn(async move {
                    if let Err(e) = agent_connection(tcp, &acceptor, &registry, &cfg).await {
                        tracing::warn!(%peer, "agent connection closed: {e}");
                    }
                });
            }
        }
    };
    let admins = {
        let registry = registry.clone();
        async move {
            loop {
                let Ok((stream, _)) = admin.accept().await else {
                    continue;
                };
                let registry = registry.clone();
                tokio::spawn(async move {
                    if let Err(e) = admin_connection(stream, owner, &registry).await {
                        tracing::warn!("admin connection: {e}");
                    }
                });
            }
        }
    };
    tokio::select! {
        () = agents => {}
        () = admins => {}
        () = shutdown => tracing::warn!("master stopping"),
    }
    let _ = std::fs::remove_file(&sock);
    Ok(())
}

async fn agent_connection(
    tcp: tokio::net::TcpStream,
    acceptor: &tokio_rustls::TlsAcceptor,
    registry: &Shared,
    cfg: &MasterConfig,
) -> Result<(), String> {
    // 1. The handshake: a key, and proof of holding it.
    let mut tls = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake refused: {e}"))?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no client certificate")?
        .clone();
    let fingerprint = tls::fingerprint(&cert).map_err(|e| e.to_string())?;
    // 2. Who that key is, before reading anything.
    let known = lock(registry)
        .keys
        .accepted(&fingerprint)
        .map(str::to_string);
    // 3. The hello, small unless the key is accepted.
    let limit = if known.is_some() {
        MAX_FRAME
    } else {
        MAX_HELLO
    };
    let hello: Option<ToMaster> =
        tokio::time::timeout(Duration::from_secs(10), protocol::read(&mut tls, limit))
            .await
            .map_err(|_| format!("key {fingerprint}: no hello within 10 s"))?
            .map_err(|e| format!("key {fingerprint}: {e}"))?;
    let (claimed, token) = match hello {
        Some(ToMaster::Hello { version, id, token }) if version == VERSION => (id, token),
        Some(ToMaster::Hello { version, .. }) => {
            return Err(format!(
                "protocol version {version}, this master speaks {VERSION}"
            ));
        }
        Some(_) => return Err(format!("key {fingerprint}: first message is not a hello")),
        None => return Err(format!("key {fingerprint}: closed before its hello")),
    };
    let id = match known {
        Some(id) if id == claimed => id,
        Some(id) => {
            let reason = format!("key {fingerprint} is accepted as `{id}`, not `{claimed}`");
            let _ = protocol::write(
                &mut tls,
                &ToAgent::Refused {
                    reason: reason.clone(),
                },
            )
            .await;
            return Err(reason);
        }
        None => {
            let auto = cfg.token.is_some() && token == cfg.token;
            let admission = lock(registry).keys.admit(&claimed, &fingerprint, auto);
            match admission {
                Admission::Accepted => {
                    tracing::warn!(id = %claimed, %fingerprint, "accepted by enrolment token");
                    claimed
                }
                Admission::Pending => {
                    tracing::warn!(
                        id = %claimed, %fingerprint,
                        "key pending: served nothing until `cairn keys accept {claimed}`"
                    );
                    let msg = ToAgent::Pending {
                        id: claimed,
                        fingerprint,
                    };
                    let _ = protocol::write(&mut tls, &msg).await;
                    return Ok(());
                }
                Admission::Refused(reason) => {
                    let reason = format!("`{claimed}` ({fingerprint}) refused: {reason}");
                    let _ = protocol::write(
                        &mut tls,
                        &ToAgent::Refused {
                            reason: reason.clone(),
                        },
                    )
                    .await;
                    return Err(reason);
                }
            }
        }
    };
    // 4. Served.
    protocol::write(&mut tls, &ToAgent::Welcome { id: id.clone() })
        .await
        .map_err(|e| e.to_string())?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let kill = Arc::new(Notify::new());
    let serial = {
        let mut r = lock(registry);
        r.serial += 1;
        let serial = r.serial;
        let old = r.conns.insert(
            id.clone(),
            Conn {
                serial,
                tx,
                kill: kill.clone(),
                jobs: HashMap::new(),
            },
        );
        if let Some(old) = old {
            old.kill.notify_one();
        }
        serial
    };
    tracing::info!(%id, "agent connected");
    let (mut rd, mut wr) = tokio::io::split(tls);
    let writer = async {
        while let Some(msg) = rx.recv().await {
            if let Err(e) = protocol::write(&mut wr, &msg).await {
                return format!("write: {e}");
            }
        }
        "closed".to_string()
    };
    let reader = async {
        loop {
            let msg: ToMaster =
                match tokio::time::timeout(cfg.silence, protocol::read(&mut rd, MAX_FRAME)).await {
                    Err(_) => return format!("silent for {} s", cfg.silence.as_secs()),
                    Ok(Ok(Some(m))) => m,
                    Ok(Ok(None)) => return "closed by the agent".to_string(),
                    Ok(Err(e)) => return format!("bad frame: {e}"),
                };
            let (job_id, result) = match msg {
                ToMaster::Heartbeat => continue,
                ToMaster::Result { job_id, mut result } => {
                    result.host = id.clone();
                    (job_id, result)
                }
                ToMaster::Refused { job_id, reason } => {
                    tracing::warn!(%id, job = %job_id, "agent refused a job: {reason}");
                    (
                        job_id,
                        job::failed(&id, format!("agent refused the job: {reason}")),
                    )
                }
                ToMaster::Hello { .. } => return "a second hello".to_string(),
            };
            let waiting = lock(registry)
                .conns
                .get_mut(&id)
                .filter(|c| c.serial == serial)
                .and_then(|c| c.jobs.remove(&job_id));
            match waiting {
                Some(w) => {
                    let _ = w.send(result);
                }
                None => tracing::warn!(%id, job = %job_id, "result for no job sent to it: dropped"),
            }
        }
    };
    let why = tokio::select! {
        w = writer => w,
        w = reader => w,
        () = kill.notified() => "its key was revoked or it connected again".to_string(),
    };
    let mut r = lock(registry);
    if r.conns.get(&id).is_some_and(|c| c.serial == serial) {
        // Dropping the waiting senders answers their jobs `unreachable`.
        r.conns.remove(&id);
    }
    drop(r);
    tracing::warn!(%id, "agent disconnected: {why}");
    Ok(())
}

async fn admin_connection(mut s: UnixStream, owner: u32, registry: &Shared) -> Result<(), String> {
    let cred = s.peer_cred().map_err(|e| e.to_string())?;
    if cred.uid() != owner && cred.uid() != 0 {
        return Err(format!(
            "refused an admin client with uid {} (the master's directory belongs to {owner})",
            cred.uid()
        ));
    }
    let Some(req): Option<AdminRequest> = protocol::read(&mut s, MAX_FRAME)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let reply = match req {
        AdminRequest::Keys => AdminReply::Keys {
            keys: lock(registry).keys.list(),
        },
        AdminRequest::Key { action, id } => {
            let mut r = lock(registry);
            match r.keys.apply(&id, action) {
                Ok(entry) => {
                    if matches!(
                        action,
                        KeyAction::Revoke | KeyAction::Delete | KeyAction::Reject
                    ) && let Some(c) = r.conns.remove(&id)
                    {
                        c.kill.notify_one();
                        tracing::warn!(%id, "closed the connection of a revoked agent");
                    }
                    AdminReply::Key { entry }
                }
                Err(message) => AdminReply::Error { message },
            }
        }
        AdminRequest::Connected => {
            let mut ids: Vec<String> = lock(registry).conns.keys().cloned().collect();
            ids.sort();
            AdminReply::Connected { ids }
        }
        AdminRequest::Run {
            job_id,
            host,
            kind,
            timeout_ms,
        } => AdminReply::Result {
            result: dispatch(registry, job_id, &host, kind, timeout_ms).await,
        },
    };
    protocol::write(&mut s, &reply)
        .await
        .map_err(|e| e.to_string())
}

/// Sends a job to one agent and waits for its result, at most `timeout_ms`.
async fn dispatch(
    registry: &Shared,
    job_id: String,
    host: &str,
    kind: JobKind,
    timeout_ms: u64,
) -> HostResult {
    let (tx, rx) = oneshot::channel();
    {
        let mut r = lock(registry);
        let Some(conn) = r.conns.get_mut(host) else {
            return job::unreachable(host, "agent not connected".into());
        };
        if conn.jobs.contains_key(&job_id) {
            return job::failed(host, format!("job {job_id} is already running on it"));
        }
        let msg = JobMessage {
            job_id: job_id.clone(),
            target: host.to_string(),
            expires_at: now_ms() + timeout_ms,
            nonce: tls::random_hex(),
            kind,
        };
        if conn.tx.send(ToAgent::Job(msg)).is_err() {
            return job::unreachable(host, "agent disconnected".into());
        }
        conn.jobs.insert(job_id.clone(), tx);
    }
    match tokio::time::timeout(Duration::from_millis(timeout_ms), rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => job::unreachable(host, "agent disconnected during the job".into()),
        Err(_) => {
            if let Some(c) = lock(registry).conns.get_mut(host) {
                c.jobs.remove(&job_id);
            }
            job::unreachable(
                host,
                format!("no answer within {}s", timeout_ms as f64 / 1000.0),
            )
        }
    }
}

/// Why the CLI could not ask the master.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no master is running with the directory {0} (its admin socket is not there)")]
    NotRunning(PathBuf),
    #[error("the master's admin socket: {0}")]
    Io(String),
}

/// Asks the master whose directory is `dir`.
pub async fn ask(dir: &Path, req: &AdminRequest) -> Result<AdminReply, AdminError> {
    let sock = admin_socket(dir);
    let mut s = match UnixStream::connect(&sock).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(AdminError::NotRunning(dir.to_path_buf()));
        }
        Err(e) => return Err(AdminError::Io(e.to_string())),
    };
    protocol::write(&mut s, req)
        .await
        .map_err(|e| AdminError::Io(e.to_string()))?;
    protocol::read(&mut s, MAX_FRAME)
        .await
        .map_err(|e| AdminError::Io(e.to_string()))?
        .ok_or_else(|| AdminError::Io("closed without an answer".into()))
}

/// `cairn keys` when no master runs: the key list on disk.
pub fn keys_offline(dir: &Path, action: Option<(KeyAction, &str)>) -> Result<AdminReply, String> {
    let mut keys = KeyStore::open(dir)?;
    Ok(match action {
        None => AdminReply::Keys { keys: keys.list() },
        Some((a, id)) => AdminReply::Key {
            entry: keys.apply(id, a)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::tls::PinnedMaster;

    async fn start() -> (tempfile::TempDir, String, oneshot::Sender<()>) {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = MasterConfig {
            listen: addr.clone(),
            dir: dir.path().join("m"),
            token: None,
            silence: Duration::from_secs(30),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(cfg, async {
            let _ = stopped.await;
        }));
        for _ in 0..100 {
            if admin_socket(&dir.path().join("m")).exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (dir, addr, stop)
    }

    /// What a peer gets back after sending `first`: `None` when the master
    /// closed (or the handshake failed) without a message.
    async fn exchange(
        addr: &str,
        config: Arc<rustls::ClientConfig>,
        first: &[u8],
    ) -> Option<ToAgent> {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(tls::MASTER_NAME).unwrap();
        let mut s = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .ok()?;
        use tokio::io::AsyncWriteExt;
        s.write_all(first).await.ok()?;
        s.flush().await.ok()?;
        protocol::read(&mut s, MAX_FRAME).await.ok().flatten()
    }

    #[tokio::test]
    async fn a_client_without_a_certificate_or_without_a_hello_is_served_nothing() {
        let (dir, addr, _stop) = start().await;
        let mdir = dir.path().join("m");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // No certificate: the handshake fails, nothing is read.
        let no_cert = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedMaster::new(None)))
            .with_no_client_auth();
        let hello = protocol::encode(&ToMaster::Hello {
            version: VERSION,
            id: "x".into(),
            token: None,
        });
        assert_eq!(exchange(&addr, Arc::new(no_cert), &hello).await, None);
        // A key not accepted whose first frame is not a hello (a result, as
        // if it were already trusted), or is too big for a hello.
        let other = tempfile::tempdir().unwrap();
        let id = Identity::load_or_create(other.path(), "agent", "x").unwrap();
        let config = tls::client_config(&id, Arc::new(PinnedMaster::new(None))).unwrap();
        let result = protocol::encode(&ToMaster::Refused {
            job_id: "j".into(),
            reason: "r".into(),
        });
        assert_eq!(exchange(&addr, config.clone(), &result).await, None);
        let big = protocol::encode(&ToMaster::Hello {
            version: VERSION,
            id: "x".repeat(MAX_HELLO),
            token: None,
        });
        assert_eq!(exchange(&addr, config.clone(), &big).await, None);
        // None of them left a key behind.
        let AdminReply::Keys { keys } = ask(&mdir, &AdminRequest::Keys).await.unwrap() else {
            panic!()
        };
        assert!(keys.is_empty(), "{keys:?}");
        // A proper hello is recorded pending, and answered only that.
        let reply = exchange(&addr, config, &hello).await;
        assert!(matches!(reply, Some(ToAgent::Pending { .. })), "{reply:?}");
        // A job for it is not sent: it is not connected.
        let AdminReply::Result { result } = ask(
            &mdir,
            &AdminRequest::Run {
                job_id: "j1".into(),
                host: "x".into(),
                kind: JobKind::Module {
                    name: "cmd".into(),
                    args: Default::default(),
                    check: false,
                    become_user: None,
                },
                timeout_ms: 1000,
            },
        )
        .await
        .unwrap() else {
            panic!()
        };
        assert_eq!(result.status, crate::job::HostStatus::Unreachable);
    }
}
