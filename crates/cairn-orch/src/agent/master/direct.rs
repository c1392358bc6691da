//! Agents over mutual TLS on `cfg.listen` (without a bus): the handshake,
//! the key check, the Hello and the job loop (see the order in
//! [`super`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

use super::config::MasterConfig;
use super::hub::{Conn, Shared, agent_event, answered_by, lock, publish, refused_job};
use crate::agent::event::{Event, RateLimit};
use crate::agent::keys::Admission;
use crate::agent::protocol::{self, MAX_FRAME, MAX_HELLO, ToAgent, ToMaster, VERSION};
use crate::agent::tls::{self, Identity};

/// Serves agents over mutual TLS on `cfg.listen`.
pub(super) async fn listen(
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

/// Tells the agent why it is refused (if it still listens), and ends its
/// connection with that reason.
async fn refuse(
    tls: &mut (impl tokio::io::AsyncWrite + Unpin),
    reason: String,
) -> Result<(), String> {
    let _ = protocol::write(
        tls,
        &ToAgent::Refused {
            reason: reason.clone(),
        },
    )
    .await;
    Err(reason)
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
            return refuse(&mut tls, reason).await;
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
                    return refuse(&mut tls, reason).await;
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
                ToMaster::Result { job_id, result } => (job_id, answered_by(&id, result)),
                ToMaster::Refused { job_id, reason } => {
                    let result = refused_job(&id, &job_id, &reason);
                    (job_id, result)
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
