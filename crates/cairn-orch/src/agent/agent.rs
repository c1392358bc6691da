//! `cairn agent`: connects out to the master, proves its key, heartbeats,
//! runs the jobs it is sent on this host with the same modules and states
//! as the SSH transport ([`super::work`]), and reconnects with jitter.
//! It also reports events: files its jobs manage that change on disk and
//! the init's service state changes ([`super::watch`]), queued while the
//! master is away (bounded) and sent over the same connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::config::{AgentConfig, EVENT_QUEUE, jitter};
use super::guard::Guard;
use super::protocol::{self, JobMessage, MAX_FRAME, ToAgent, ToMaster, VERSION, now_ms};
use super::tls::{self, Identity, MASTER_NAME, PinnedMaster};
use super::watch::{self, Outgoing, Watch};
use super::work::run_job_managing;

/// What the agent does with one frame from an authenticated master: a job
/// that passes the [`Guard`] is returned to run; anything else is answered
/// (or ignored) here, with a log line.
pub fn handle(guard: &mut Guard, msg: ToAgent, now: u64) -> Handled {
    match msg {
        ToAgent::Job(job) => match guard.check(&job, now) {
            Ok(()) => Handled::Run(job),
            Err(reason) => {
                tracing::warn!("refused a job message: {reason}");
                Handled::Reply(ToMaster::Refused {
                    job_id: job.job_id,
                    reason,
                })
            }
        },
        other => {
            tracing::warn!("unexpected message from the master: {other:?}");
            Handled::Ignore
        }
    }
}

#[derive(Debug)]
pub enum Handled {
    Run(JobMessage),
    Reply(ToMaster),
    Ignore,
}

/// How a session with the master ended.
enum End {
    /// Served, then the connection ended.
    Served(String),
    Pending,
    Refused(String),
}

/// Connects, serves, reconnects, until `shutdown` resolves.
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    if let Some(url) = cfg.bus.clone() {
        return super::bus::agent::run(&url, vec![cfg], shutdown).await;
    }
    let identity = Identity::load_or_create(&cfg.dir, "agent", &cfg.id)?;
    tracing::info!(id = %cfg.id, fingerprint = %identity.fingerprint, "agent key");
    let pin_file = cfg.dir.join("master.fingerprint");
    let pinned = match &cfg.master_fingerprint {
        Some(f) => Some(f.clone()),
        None => std::fs::read_to_string(&pin_file)
            .ok()
            .map(|s| s.trim().to_string()),
    };
    let verifier = Arc::new(PinnedMaster::new(pinned.clone()));
    let config = tls::client_config(&identity, verifier.clone())?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let (events_tx, events_rx) = mpsc::channel::<Outgoing>(EVENT_QUEUE);
    let (watch, watching) = Watch::start(events_tx.clone(), cfg.debounce);
    let services = async {
        match &cfg.service_events {
            Some(p) => watch::tail_services(p.clone(), events_tx, Duration::from_millis(250)).await,
            None => std::future::pending().await,
        }
    };
    // One queue across sessions: what happened while the master was away
    // is sent when it is back.
    let events = tokio::sync::Mutex::new(events_rx);
    let mut failures = 0u32;
    let session = async {
        loop {
            let end = session(&cfg, &connector, &watch, &events).await;
            if pinned.is_none()
                && let Some(seen) = verifier.seen()
                && !pin_file.exists()
            {
                // Trust on first use: the key the first handshake showed
                // is the master's from now on.
                match std::fs::write(&pin_file, format!("{seen}\n")) {
                    Ok(()) => tracing::warn!(
                        fingerprint = %seen,
                        "trusting the master's key on first use (saved to {})",
                        pin_file.display()
                    ),
                    Err(e) => tracing::error!("cannot save {}: {e}", pin_file.display()),
                }
            }
            let wait = match end {
                Ok(End::Served(why)) => {
                    tracing::warn!("connection to the master ended: {why}");
                    failures = 0;
                    jitter(100, 500)
                }
                Ok(End::Pending) => {
                    tracing::warn!(
                        id = %cfg.id,
                        fingerprint = %identity.fingerprint,
                        "the master has not accepted this agent's key yet (cairn keys accept {})",
                        cfg.id
                    );
                    jitter(500, 1000)
                }
                Ok(End::Refused(why)) => {
                    tracing::error!("the master refused this agent: {why}");
                    jitter(5000, 5000)
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!("cannot reach the master at {}: {e}", cfg.master);
                    // 200 ms doubling to 5 s, plus up to as much again.
                    let base = (200u64 << failures.min(5)).min(5000);
                    jitter(base, base)
                }
            };
            tokio::time::sleep(wait).await;
        }
    };
    tokio::select! {
        () = session => Ok(()),
        () = watching => Ok(()),
        () = services => Ok(()),
        () = shutdown => {
            tracing::info!("agent stopping");
            Ok(())
        }
    }
}

async fn session(
    cfg: &AgentConfig,
    connector: &tokio_rustls::TlsConnector,
    watch: &Arc<Watch>,
    events: &tokio::sync::Mutex<mpsc::Receiver<Outgoing>>,
) -> Result<End, String> {
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&cfg.master))
        .await
        .map_err(|_| "connection timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(MASTER_NAME).expect("a valid name");
    let mut tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS: {e}"))?;
    protocol::write(
        &mut tls,
        &ToMaster::Hello {
            version: VERSION,
            id: cfg.id.clone(),
            token: cfg.token.clone(),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let first: Option<ToAgent> =
        tokio::time::timeout(Duration::from_secs(10), protocol::read(&mut tls, MAX_FRAME))
            .await
            .map_err(|_| "no answer to hello".to_string())?
            .map_err(|e| e.to_string())?;
    match first {
        Some(ToAgent::Welcome { .. }) => {}
        Some(ToAgent::Pending { .. }) => return Ok(End::Pending),
        Some(ToAgent::Refused { reason }) => return Ok(End::Refused(reason)),
        // A master that closes without a word: its key store refused us
        // (or it stopped).
        None => return Ok(End::Refused("the master closed the connection".into())),
        Some(other) => return Err(format!("unexpected first message {other:?}")),
    }
    tracing::info!(master = %cfg.master, id = %cfg.id, "connected to the master");
    let (mut rd, mut wr) = tokio::io::split(tls);
    let (tx, mut rx) = mpsc::unbounded_channel::<ToMaster>();
    let heartbeat = cfg.heartbeat;
    let mut events = events.lock().await;
    let writer = async move {
        let mut tick = tokio::time::interval(heartbeat);
        tick.tick().await;
        loop {
            let msg = tokio::select! {
                m = rx.recv() => match m { Some(m) => m, None => return "agent stopping".to_string() },
                Some((tag, data)) = events.recv() => ToMaster::Event { tag, data },
                _ = tick.tick() => ToMaster::Heartbeat,
            };
            if let Err(e) = protocol::write(&mut wr, &msg).await {
                return format!("write: {e}");
            }
        }
    };
    let id = cfg.id.clone();
    let watch = watch.clone();
    let reader = async move {
        let mut guard = Guard::new(id.clone());
        loop {
            let msg: ToAgent = match protocol::read(&mut rd, MAX_FRAME).await {
                Ok(Some(m)) => m,
                Ok(None) => return "closed by the master".to_string(),
                Err(e) => {
                    tracing::warn!("bad frame from the master, closing: {e}");
                    return format!("bad frame: {e}");
                }
            };
            match handle(&mut guard, msg, now_ms()) {
                Handled::Run(job) => {
                    let (tx, id) = (tx.clone(), id.clone());
                    tracing::info!(job = %job.job_id, "running a job");
                    let busy = watch.busy();
                    tokio::spawn(async move {
                        let (result, manages) =
                            run_job_managing(&id, job.kind, job.expires_at).await;
                        busy.finish(&manages.paths, &job.job_id, manages.state.as_deref());
                        let _ = tx.send(ToMaster::Result {
                            job_id: job.job_id,
                            result,
                        });
                    });
                }
                Handled::Reply(m) => {
                    let _ = tx.send(m);
                }
                Handled::Ignore => {}
            }
        }
    };
    let why = tokio::select! {
        w = writer => w,
        w = reader => w,
    };
    Ok(End::Served(why))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::agent::guard::MAX_EXPIRY_AHEAD_MS;
    use crate::agent::protocol::JobKind;
    use crate::agent::work::run_job;

    fn job(target: &str, nonce: &str, expires_at: u64, marker: &Path) -> ToAgent {
        let mut args = crate::module::Args::new();
        args.insert("cmd".into(), format!("touch {}", marker.display()).into());
        ToAgent::Job(JobMessage {
            job_id: "j1".into(),
            target: target.into(),
            expires_at,
            nonce: nonce.into(),
            kind: JobKind::Module {
                name: "cmd".into(),
                args,
                check: false,
                become_user: None,
            },
        })
    }

    /// The agent's handler fed crafted frames: only a fresh job for this
    /// agent runs; a replay, an expired job, a job for another agent and a
    /// job with an absurd expiry are refused and run nothing.
    #[tokio::test]
    async fn replayed_expired_and_misaddressed_jobs_are_refused_and_run_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        let mut guard = Guard::new("a1");
        let now = now_ms();
        let nonce = "00112233445566778899aabbccddeeff";
        let refused = |h: Handled| match h {
            Handled::Reply(ToMaster::Refused { reason, .. }) => reason,
            other => panic!("not refused: {other:?}"),
        };
        // Frames as they come off the wire.
        let decode =
            |m: ToAgent| -> ToAgent { protocol::decode(&protocol::encode(&m)[4..]).unwrap() };
        let r = refused(handle(
            &mut guard,
            decode(job("a1", nonce, now - 1, &marker)),
            now,
        ));
        assert!(r.contains("expired"), "{r}");
        let r = refused(handle(
            &mut guard,
            decode(job("a2", nonce, now + 60_000, &marker)),
            now,
        ));
        assert!(r.contains("not for this agent"), "{r}");
        let r = refused(handle(
            &mut guard,
            decode(job("a1", nonce, now + 10 * MAX_EXPIRY_AHEAD_MS, &marker)),
            now,
        ));
        assert!(r.contains("too far"), "{r}");
        assert!(!marker.exists());
        // The first good one runs.
        let Handled::Run(m) = handle(
            &mut guard,
            decode(job("a1", nonce, now + 60_000, &marker)),
            now,
        ) else {
            panic!("a good job is run");
        };
        let r = run_job("a1", m.kind, m.expires_at).await;
        assert_eq!(r.status, crate::job::HostStatus::Changed, "{r:?}");
        assert!(marker.exists());
        std::fs::remove_file(&marker).unwrap();
        // The same message again: a replay.
        let r = refused(handle(
            &mut guard,
            decode(job("a1", nonce, now + 60_000, &marker)),
            now + 5,
        ));
        assert!(r.contains("replay"), "{r}");
        // After its expiry the nonce leaves the window, and the expiry
        // check alone refuses it.
        let later = now + 60_001;
        let r = refused(handle(
            &mut guard,
            decode(job("a1", nonce, now + 60_000, &marker)),
            later,
        ));
        assert!(r.contains("expired"), "{r}");
        assert_eq!(guard.nonces_kept(), 0);
        assert!(!marker.exists());
    }
}
