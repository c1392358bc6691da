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
//! peer's uid checked to be the directory owner's) serves `cairn keys`,
//! the jobs of `cairn run --via agent` and `cairn events`.
//!
//! Events ([`super::event`]): the master publishes agents connecting and
//! disconnecting and every job's start and return per host; an accepted
//! agent's `Event` frames, in its job loop only, are checked for size
//! ([`MAX_EVENT`]) and rate (a token bucket per connection), tagged with
//! the connection's identity, and published. Reactors ([`super::reactor`])
//! see every published event and run their jobs through the same dispatch
//! as the CLI's (see [`react`]).

mod bus;
mod client;
mod react;

pub use client::{AdminError, Batch, admin_sockets, ask, ask_all, follow};

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::{Notify, mpsc, oneshot};

use super::event::{self, Event, EventLog, MAX_EVENT, RateLimit, TagGlob};
use super::keys::{Admission, KeyAction, KeyEntry, KeyStore};
use super::protocol::{
    self, JobKind, JobMessage, MAX_FRAME, MAX_HELLO, ToAgent, ToMaster, VERSION, now_ms,
};
use super::reactor::Reactors;
use super::tls::{self, Identity};
use crate::job::{self, HostResult, JobStore};

#[derive(Clone)]
pub struct MasterConfig {
    pub listen: String,
    pub dir: PathBuf,
    /// A pre-shared enrolment token: an agent showing it is accepted
    /// without `cairn keys accept`.
    pub token: Option<String>,
    /// An agent silent this long is dropped (it heartbeats more often).
    pub silence: Duration,
    /// Events one agent may send: `event_burst` at once, then `event_rate`
    /// a second; past that they are dropped, with a log line.
    pub event_rate: f64,
    pub event_burst: u32,
    /// How many recent events `cairn events` shows; the log file
    /// `DIR/events.jsonl` is rotated past `events_max_bytes`.
    pub events_keep: usize,
    pub events_max_bytes: u64,
    /// Reactors, checked when the master starts.
    pub reactors: Option<Arc<Reactors>>,
    /// Where reactions' jobs are recorded (as `cairn run`'s are).
    pub jobs: Option<Arc<dyn JobStore>>,
    /// `nats://ADDR`: agents are served on this bus instead of `listen`
    /// ([`super::bus`]); the directory is then shared with the fleet's
    /// other masters.
    pub bus: Option<String>,
    /// This master's name among the fleet's (its result subject and its
    /// own directory `DIR/masters/NAME`).
    pub name: String,
}

impl MasterConfig {
    /// The defaults of `cairn master`, listening on `listen` with its state
    /// in `dir`.
    pub fn new(listen: impl Into<String>, dir: impl Into<PathBuf>) -> MasterConfig {
        MasterConfig {
            listen: listen.into(),
            dir: dir.into(),
            token: None,
            silence: Duration::from_secs(30),
            event_rate: 20.0,
            event_burst: 100,
            events_keep: 1000,
            events_max_bytes: 16 << 20,
            reactors: None,
            jobs: None,
            bus: None,
            name: "master".into(),
        }
    }

    /// Where this master keeps what is its own (admin socket, events):
    /// the directory, or on a bus, where masters share the directory,
    /// `DIR/masters/NAME`.
    pub fn own_dir(&self) -> PathBuf {
        match &self.bus {
            None => self.dir.clone(),
            Some(_) => self.dir.join("masters").join(&self.name),
        }
    }
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
    /// Many hosts' jobs on this one connection (`cairn run` on a fleet):
    /// after it the client sends `Run` frames as it starts hosts, and the
    /// master answers each with a `Result` (its `host` names it) as it
    /// comes, in any order. One connection per job instead of one per host.
    Batch,
    /// The recent events a tag glob matches; with `follow`, then every new
    /// one as it comes, one `Event` reply each, until the client closes.
    Events {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
        #[serde(default)]
        follow: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminReply {
    Keys {
        keys: Vec<KeyEntry>,
    },
    Key {
        entry: Option<KeyEntry>,
    },
    Connected {
        ids: Vec<String>,
    },
    Result {
        result: HostResult,
    },
    Events {
        events: Vec<Event>,
    },
    Event {
        event: Event,
    },
    /// A follower fell behind by this many events (they are in the log
    /// file).
    Lagged {
        missed: u64,
    },
    Error {
        message: String,
    },
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

/// What every task of the master shares. Lock order: `registry`, then
/// `events`, never the other way.
struct Hub {
    registry: Mutex<Registry>,
    events: Mutex<EventLog>,
    /// Every published event goes to the reactors' task too.
    react: Option<mpsc::Sender<Event>>,
}

type Shared = Arc<Hub>;

fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Registry> {
    r.registry.lock().unwrap_or_else(|p| p.into_inner())
}

fn events(r: &Shared) -> std::sync::MutexGuard<'_, EventLog> {
    r.events.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records an event and hands it to the reactors.
fn publish(hub: &Shared, event: Event) {
    if let Some(react) = &hub.react
        && let Err(e) = react.try_send(event.clone())
    {
        tracing::warn!(tag = %event.tag, "not reacted to: the reactors' queue is {}", match e {
            mpsc::error::TrySendError::Full(_) => "full (1,024 events behind)",
            mpsc::error::TrySendError::Closed(_) => "closed",
        });
    }
    events(hub).publish(event);
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
    if cfg.bus.is_some() {
        super::bus::check_token("the master's name", &cfg.name)?;
    }
    let own = cfg.own_dir();
    tls::private_dir(&own)?;
    let (react_tx, react_rx) = mpsc::channel(1024);
    let registry: Shared = Arc::new(Hub {
        registry: Mutex::new(Registry {
            keys: KeyStore::open(&cfg.dir)?,
            conns: HashMap::new(),
            serial: 0,
        }),
        events: Mutex::new(EventLog::open(&own, cfg.events_keep, cfg.events_max_bytes)?),
        react: cfg.reactors.is_some().then_some(react_tx),
    });
    let sock = admin_socket(&own);
    let _ = std::fs::remove_file(&sock);
    let admin = UnixListener::bind(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    let owner = std::fs::metadata(&cfg.dir)
        .map_err(|e| e.to_string())?
        .uid();
    let cfg = Arc::new(cfg);
    let agents = async {
        match &cfg.bus {
            Some(url) => bus::serve(url, &identity, registry.clone(), cfg.clone(), &sock).await,
            None => listen(&identity, registry.clone(), cfg.clone(), &sock).await,
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
    let reactors = async {
        match cfg.reactors.clone() {
            Some(r) => react::run(registry.clone(), r, cfg.jobs.clone(), react_rx).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = agents => r,
        () = admins => Ok(()),
        () = reactors => Ok(()),
        () = shutdown => {
            tracing::warn!("master stopping");
            Ok(())
        }
    };
    let _ = std::fs::remove_file(&sock);
    result
}

/// Serves agents over mutual TLS on `cfg.listen`.
async fn listen(
    identity: &Identity,
    registry: Shared,
    cfg: Arc<MasterConfig>,
    sock: &Path,
) -> Result<(), String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(identity)?);
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    tracing::warn!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        fingerprint = %identity.fingerprint,
        admin = %sock.display(),
        "master listening"
    );
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
    publish(
        registry,
        Event::master(
            format!("cairn/agent/{id}/connected"),
            Some(&id),
            serde_json::json!({ "fingerprint": fingerprint }),
        ),
    );
    let mut limit = RateLimit::new(cfg.event_rate, cfg.event_burst, Instant::now());
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
                ToMaster::Event { tag, data } => {
                    agent_event(registry, &id, &mut limit, tag, data);
                    continue;
                }
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
    publish(
        registry,
        Event::master(
            format!("cairn/agent/{id}/disconnected"),
            Some(&id),
            serde_json::json!({ "reason": why }),
        ),
    );
    Ok(())
}

/// An event an accepted agent sent: refused (with a log line) when too
/// large, over its rate or badly tagged; else published as the agent's.
fn agent_event(
    hub: &Shared,
    id: &str,
    limit: &mut RateLimit,
    tag: String,
    data: serde_json::Value,
) {
    let size = event::event_size(&tag, &data);
    if size > MAX_EVENT {
        tracing::warn!(%id, "refused an event from {id}: {}", event::EventRefused::TooLarge(size));
        return;
    }
    let now = Instant::now();
    if !limit.take(now) {
        if limit.should_log(now) {
            tracing::warn!(%id, dropped = limit.dropped, "dropping events from {id}: over its rate");
        }
        return;
    }
    match event::agent_tag(id, &tag) {
        Ok(tag) => publish(
            hub,
            Event {
                tag,
                time: event::now_rfc3339(),
                source: id.to_string(),
                host: Some(id.to_string()),
                reaction: None,
                data,
            },
        ),
        Err(e) => tracing::warn!(%id, "refused an event from {id}: {e}"),
    }
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
    match req {
        AdminRequest::Events { tag, follow } => {
            return react::serve_events(s, registry, tag, follow).await;
        }
        AdminRequest::Batch => return batch(s, registry).await,
        _ => {}
    }
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
            result: dispatch(registry, job_id, &host, kind, timeout_ms, None).await,
        },
        AdminRequest::Events { .. } | AdminRequest::Batch => unreachable!("answered above"),
    };
    protocol::write(&mut s, &reply)
        .await
        .map_err(|e| e.to_string())
}

/// An [`AdminRequest::Batch`] connection: every `Run` read is dispatched
/// at once, each result written as it comes; when the client has sent
/// everything (its end closed) and every result is written, it ends.
async fn batch(s: UnixStream, registry: &Shared) -> Result<(), String> {
    let (mut rd, mut wr) = s.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<AdminReply>();
    let reader = async move {
        loop {
            let req: Option<AdminRequest> = match protocol::read(&mut rd, MAX_FRAME).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(AdminReply::Error {
                        message: format!("bad frame in a batch: {e}"),
                    });
                    return;
                }
            };
            match req {
                Some(AdminRequest::Run {
                    job_id,
                    host,
                    kind,
                    timeout_ms,
                }) => {
                    let (tx, registry) = (tx.clone(), registry.clone());
                    tokio::spawn(async move {
                        let mut result =
                            dispatch(&registry, job_id, &host, kind, timeout_ms, None).await;
                        // The name the client asked for, whatever the agent said.
                        result.host = host;
                        let _ = tx.send(AdminReply::Result { result });
                    });
                }
                Some(other) => {
                    let _ = tx.send(AdminReply::Error {
                        message: format!("only jobs are taken in a batch, not {other:?}"),
                    });
                    return;
                }
                None => return,
            }
        }
    };
    let writer = async move {
        // Ends when the reader and every dispatch have dropped their senders.
        while let Some(reply) = rx.recv().await {
            let error = matches!(reply, AdminReply::Error { .. });
            protocol::write(&mut wr, &reply)
                .await
                .map_err(|e| e.to_string())?;
            if error {
                break;
            }
        }
        Ok(())
    };
    let ((), written) = tokio::join!(reader, writer);
    written
}

/// Sends a job to one agent and waits for its result, at most `timeout_ms`;
/// publishes `cairn/job/JID/started` when it is sent and
/// `cairn/job/JID/ret/HOST` with its outcome. `reaction`: the job is a
/// reaction's (its events say so, and reactors leave them alone).
async fn dispatch(
    registry: &Shared,
    job_id: String,
    host: &str,
    kind: JobKind,
    timeout_ms: u64,
    reaction: Option<&str>,
) -> HostResult {
    let function = match &kind {
        JobKind::Module { name, .. } => name.clone(),
        JobKind::State { file_name, .. } => format!("state.apply {file_name}"),
    };
    let jid = job_id.clone();
    let result = send_job(registry, job_id, host, kind, timeout_ms, |hub| {
        let mut e = Event::master(
            format!("cairn/job/{jid}/started"),
            Some(host),
            serde_json::json!({ "host": host, "function": function }),
        );
        e.reaction = reaction.map(str::to_string);
        publish(hub, e);
    })
    .await;
    let mut e = Event::master(
        format!("cairn/job/{jid}/ret/{host}"),
        Some(host),
        serde_json::json!({
            "host": host,
            "status": result.status.as_str(),
            "rc": result.rc,
            "error": result.error,
            "summary": result.detail.get("summary"),
            "duration_ms": result.duration_ms,
        }),
    );
    e.reaction = reaction.map(str::to_string);
    publish(registry, e);
    result
}

async fn send_job(
    registry: &Shared,
    job_id: String,
    host: &str,
    kind: JobKind,
    timeout_ms: u64,
    sent: impl FnOnce(&Shared),
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
    sent(registry);
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
mod tests;
