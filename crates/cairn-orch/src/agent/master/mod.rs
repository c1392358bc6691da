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

mod admin;
mod bus;
mod client;
mod config;
mod dispatch;
mod hub;
mod react;

pub use admin::{AdminReply, AdminRequest, admin_socket, keys_offline};
pub use client::{AdminError, Batch, admin_sockets, ask, ask_all, follow};
pub use config::MasterConfig;

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::{Notify, mpsc};

use super::event::{Event, EventLog, RateLimit};
use super::keys::{Admission, KeyAction, KeyStore};
use super::protocol::{self, MAX_FRAME, MAX_HELLO, ToAgent, ToMaster, VERSION};
use super::tls::{self, Identity};
use crate::job;

use dispatch::dispatch;
use hub::{Conn, Hub, Registry, Shared, agent_event, lock, publish};

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

#[cfg(test)]
mod tests;
