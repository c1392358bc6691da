//! The master's side of the bus (see [`crate::agent::bus`] for subjects and
//! trust). An agent that hellos with an accepted key becomes a connection
//! of the registry, as over TLS, so the admin socket, jobs, events and
//! reactors are the same code: its jobs are signed and published on its
//! job subject, its results come back on this master's result subject,
//! and it is dropped (its jobs answered `unreachable`) when silent for
//! `--silence` seconds, when its key stops being accepted, or at once when
//! the NATS server says nothing is subscribed to its jobs (`absent`).
//!
//! Every message read is checked in this order, and the first failure
//! drops it with a log line: the envelope's signature over its subject;
//! the key's fingerprint accepted under the id the subject and the body
//! name (a hello from a key not accepted goes to enrolment and gets
//! nothing else); sent within the skew window, with a nonce not seen.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc};

use super::config::MasterConfig;
use super::hub::{Conn, Shared, agent_event, answered_by, lock, publish, refused_job};
use crate::agent::bus::{
    self, Freshness, MASTERS_GROUP, MAX_SKEW_MS, ToAgentBus, ToMasterBus, absent_subject,
    check_enrolment_proof, ctl_subject, job_subject, result_subject, subject_id,
};
use crate::agent::event::{Event, RateLimit};
use crate::agent::keys::Admission;
use crate::agent::protocol::{ToAgent, ToMaster, VERSION, now_ms};
use crate::agent::seal::{self, Signer};
use crate::agent::tls::{self, Identity};
use crate::job;

/// An agent seen on the bus: the key it proved and when it last spoke.
struct Seen {
    fingerprint: String,
    at: Instant,
    serial: u64,
}

struct Bus {
    client: async_nats::Client,
    signer: Signer,
    name: String,
    hub: Shared,
    cfg: Arc<MasterConfig>,
    fresh: Mutex<Freshness>,
    seen: Mutex<HashMap<String, Seen>>,
    limits: Mutex<HashMap<String, RateLimit>>,
}

pub(super) async fn serve(
    url: &str,
    identity: &Identity,
    hub: Shared,
    cfg: Arc<MasterConfig>,
    sock: &Path,
) -> Result<(), String> {
    let client = bus::connect(url, &format!("cairn-master {}", cfg.name)).await?;
    let sub = |r: Result<async_nats::Subscriber, async_nats::SubscribeError>| {
        r.map_err(|e| format!("cannot subscribe on the bus: {e}"))
    };
    let mut hellos = sub(client.subscribe("cairn.hello.*").await)?;
    let mut results = sub(client.subscribe(result_subject(&cfg.name)).await)?;
    let mut events = sub(client
        .queue_subscribe("cairn.event.*", MASTERS_GROUP.into())
        .await)?;
    let mut absent = sub(client.subscribe(absent_subject(&cfg.name, "*", "*")).await)?;
    // Subscribed before anyone is told this master is up.
    client
        .flush()
        .await
        .map_err(|e| format!("the bus at {url}: {e}"))?;
    tracing::warn!(
        bus = %url, name = %cfg.name,
        fingerprint = %identity.fingerprint,
        admin = %sock.display(),
        "master on the bus"
    );
    let bus = Arc::new(Bus {
        client,
        signer: identity.signer()?,
        name: cfg.name.clone(),
        hub,
        cfg,
        fresh: Mutex::new(Freshness::default()),
        seen: Mutex::new(HashMap::new()),
        limits: Mutex::new(HashMap::new()),
    });
    let hello_loop = async {
        while let Some(m) = hellos.next().await {
            bus.hello(m).await;
        }
    };
    let result_loop = async {
        while let Some(m) = results.next().await {
            // Checking a signature is most of a result's cost: on every
            // core, not on this loop's alone.
            let bus = bus.clone();
            tokio::spawn(async move { bus.result(m) });
        }
    };
    let event_loop = async {
        while let Some(m) = events.next().await {
            bus.event(m);
        }
    };
    let absent_loop = async {
        while let Some(m) = absent.next().await {
            bus.absent(m);
        }
    };
    let sweep = async {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            bus.sweep();
        }
    };
    tokio::select! {
        () = hello_loop => {}
        () = result_loop => {}
        () = event_loop => {}
        () = absent_loop => {}
        () = sweep => {}
    }
    Err("the bus subscriptions ended".into())
}

fn lock_map<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Bus {
    /// An agent's message, checked (signature, accepted key for the id
    /// the subject names, or else the body's, freshness). `Err`: the
    /// reason to log. The flag: the key is accepted (`false` only for a
    /// hello, which goes to enrolment).
    fn open(
        &self,
        msg: &async_nats::Message,
        prefix: Option<&str>,
    ) -> Result<(ToMasterBus, String, bool), String> {
        let subject = msg.subject.as_str();
        let opened = seal::open(subject, &msg.payload).map_err(|e| e.to_string())?;
        let body: ToMasterBus = serde_json::from_str(&opened.body)
            .map_err(|e| format!("not an agent's message: {e}"))?;
        match prefix {
            Some(prefix) => {
                let id = subject_id(subject, prefix).ok_or("no agent id in its subject")?;
                if body.id != id {
                    return Err(format!("it names `{}` on `{id}`'s subject", body.id));
                }
            }
            None => bus::check_token("agent id", &body.id)?,
        }
        let id = body.id.as_str();
        let accepted = {
            let mut r = lock(&self.hub);
            r.keys.refresh();
            if r.keys.is_accepted_as(id, &opened.fingerprint) {
                Some(id.to_string())
            } else {
                r.keys.accepted(&opened.fingerprint).map(str::to_string)
            }
        };
        let accepted = match accepted {
            Some(a) if a == id => true,
            Some(a) => {
                return Err(format!(
                    "key {} is accepted as `{a}`, not `{id}`",
                    opened.fingerprint
                ));
            }
            None if prefix == Some("cairn.hello") && matches!(body.msg, ToMaster::Hello { .. }) => {
                false
            }
            None => {
                return Err(format!(
                    "key {} is not accepted as `{id}` (see `cairn keys list`)",
                    opened.fingerprint
                ));
            }
        };
        lock_map(&self.fresh).check(&body, now_ms())?;
        Ok((body, opened.fingerprint, accepted))
    }

    /// A signed message to an agent.
    fn to_agent(&self, subject: &str, target: &str, msg: ToAgent) -> bytes::Bytes {
        let body = ToAgentBus {
            target: target.to_string(),
            expires_at: now_ms() + MAX_SKEW_MS,
            nonce: tls::random_hex(),
            reply: None,
            msg,
        };
        self.signer.seal_json(subject, &body).into()
    }

    async fn hello(self: &Arc<Self>, m: async_nats::Message) {
        let subject = m.subject.to_string();
        let (body, fingerprint, accepted) = match self.open(&m, Some("cairn.hello")) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("refused a message on {subject}: {e}");
                return;
            }
        };
        let id = body.id;
        let ToMaster::Hello { version, token, .. } = body.msg else {
            tracing::warn!(%id, "refused a message on {subject}: not a hello");
            return;
        };
        let answer = if version != VERSION {
            ToAgent::Refused {
                reason: format!("protocol version {version}, this master speaks {VERSION}"),
            }
        } else if accepted {
            ToAgent::Welcome { id: id.clone() }
        } else {
            let auto = match (&self.cfg.token, &token) {
                (Some(t), Some(proof)) => check_enrolment_proof(t, &id, &fingerprint, proof),
                _ => false,
            };
            let admission = lock(&self.hub).keys.admit(&id, &fingerprint, auto);
            match admission {
                Admission::Accepted => {
                    tracing::warn!(%id, %fingerprint, "accepted by enrolment token");
                    ToAgent::Welcome { id: id.clone() }
                }
                Admission::Pending => {
                    tracing::warn!(
                        %id, %fingerprint,
                        "key pending: served nothing until `cairn keys accept {id}`"
                    );
                    ToAgent::Pending {
                        id: id.clone(),
                        fingerprint: fingerprint.clone(),
                    }
                }
                Admission::Refused(reason) => {
                    let reason = format!("`{id}` ({fingerprint}) refused: {reason}");
                    tracing::warn!(%id, "{reason}");
                    ToAgent::Refused { reason }
                }
            }
        };
        let welcome = matches!(answer, ToAgent::Welcome { .. });
        // The answer goes out before the agent is registered, so it
        // reaches the agent before any job this master sends it.
        if let Some(reply) = &m.reply {
            let payload = self.to_agent(reply, &id, answer);
            if let Err(e) = self.client.publish(reply.clone(), payload).await {
                tracing::warn!(%id, "cannot answer its hello: {e}");
            }
        }
        if welcome {
            self.present(&id, &fingerprint);
        }
    }

    /// An accepted agent spoke: registered if new (`connected`), else its
    /// silence restarts.
    fn present(self: &Arc<Self>, id: &str, fingerprint: &str) {
        let mut seen = lock_map(&self.seen);
        let mut r = lock(&self.hub);
        if let Some(s) = seen.get_mut(id)
            && r.conns.get(id).is_some_and(|c| c.serial == s.serial)
        {
            s.at = Instant::now();
            return;
        }
        r.serial += 1;
        let serial = r.serial;
        let (tx, rx) = mpsc::unbounded_channel();
        let kill = Arc::new(Notify::new());
        r.conns.insert(
            id.to_string(),
            Conn {
                serial,
                tx,
                kill: kill.clone(),
                jobs: HashMap::new(),
            },
        );
        drop(r);
        seen.insert(
            id.to_string(),
            Seen {
                fingerprint: fingerprint.to_string(),
                at: Instant::now(),
                serial,
            },
        );
        drop(seen);
        tokio::spawn(self.clone().sender(id.to_string(), serial, rx, kill));
        tracing::info!(%id, "agent connected (bus)");
        publish(
            &self.hub,
            Event::master(
                format!("cairn/agent/{id}/connected"),
                Some(id),
                serde_json::json!({ "fingerprint": fingerprint, "master": self.name }),
            ),
        );
    }

    /// Publishes an agent's jobs until it is dropped; told `Refused` when
    /// its key was revoked (the registry's `kill`).
    async fn sender(
        self: Arc<Self>,
        id: String,
        serial: u64,
        mut rx: mpsc::UnboundedReceiver<ToAgent>,
        kill: Arc<Notify>,
    ) {
        loop {
            tokio::select! {
                // A revoke drops the queue too: its notice goes first.
                biased;
                () = kill.notified() => {
                    let subject = ctl_subject(&id);
                    let reason = "its key was revoked, rejected or deleted".to_string();
                    let payload = self.to_agent(&subject, &id, ToAgent::Refused { reason });
                    let _ = self.client.publish(subject, payload).await;
                    if lock_map(&self.seen).remove(&id).is_some() {
                        tracing::warn!(%id, "agent disconnected: its key was revoked");
                        publish(
                            &self.hub,
                            Event::master(
                                format!("cairn/agent/{id}/disconnected"),
                                Some(&id),
                                serde_json::json!({ "reason": "its key was revoked" }),
                            ),
                        );
                    }
                    return;
                }
                m = rx.recv() => match m {
                    Some(ToAgent::Job(job)) => {
                        let subject = job_subject(&id);
                        let body = ToAgentBus {
                            target: job.target.clone(),
                            expires_at: job.expires_at,
                            nonce: job.nonce.clone(),
                            reply: Some(result_subject(&self.name)),
                            msg: ToAgent::Job(job),
                        };
                        let payload = self.signer.seal_json(&subject, &body);
                        // The reply subject is only for the server's "no
                        // responders" (see `absent`).
                        let absent = absent_subject(&self.name, &id, &serial.to_string());
                        let sent = self
                            .client
                            .publish_with_reply(subject, absent, payload.into())
                            .await;
                        if let Err(e) = sent {
                            tracing::warn!(%id, "cannot publish its job: {e}");
                        }
                    }
                    Some(other) => tracing::warn!(%id, "not sent on the bus: {other:?}"),
                    None => return,
                },
            }
        }
    }

    fn result(self: &Arc<Self>, m: async_nats::Message) {
        let subject = m.subject.to_string();
        // The agent's id is in the body; the subject is this master's.
        let (body, fingerprint) = match self.open(&m, None) {
            Ok((body, fp, _)) => (body, fp),
            Err(e) => {
                tracing::warn!("refused a message on {subject}: {e}");
                return;
            }
        };
        let id = body.id.clone();
        self.present(&id, &fingerprint);
        let (job_id, result) = match body.msg {
            ToMaster::Result { job_id, result } => (job_id, answered_by(&id, result)),
            ToMaster::Refused { job_id, reason } => {
                let result = refused_job(&id, &job_id, &reason);
                (job_id, result)
            }
            other => {
                tracing::warn!(%id, "refused a message on {subject}: {other:?} is not a result");
                return;
            }
        };
        let waiting = lock(&self.hub)
            .conns
            .get_mut(&id)
            .and_then(|c| c.jobs.remove(&job_id));
        match waiting {
            Some(w) => {
                let _ = w.send(result);
            }
            // Another master's job answered twice, or after its timeout.
            None => tracing::info!(%id, job = %job_id, "result for no job waiting: dropped"),
        }
    }

    fn event(self: &Arc<Self>, m: async_nats::Message) {
        let subject = m.subject.to_string();
        let (body, _, _) = match self.open(&m, Some("cairn.event")) {
            Ok(x) if x.2 => x,
            Ok(_) => {
                tracing::warn!("refused a message on {subject}: a hello on the event subject");
                return;
            }
            Err(e) => {
                tracing::warn!("refused a message on {subject}: {e}");
                return;
            }
        };
        let ToMaster::Event { tag, data } = body.msg else {
            tracing::warn!("refused a message on {subject}: not an event");
            return;
        };
        let mut limits = lock_map(&self.limits);
        let limit = limits.entry(body.id.clone()).or_insert_with(|| {
            RateLimit::new(self.cfg.event_rate, self.cfg.event_burst, Instant::now())
        });
        agent_event(&self.hub, &body.id, limit, tag, data);
    }

    /// The NATS server's "no responders" to a job: nothing is subscribed
    /// to the agent's job subject, so its process or its connection is
    /// gone. It is dropped at once, its jobs answered `unreachable`, rather
    /// than after `--silence`; its next hello, if it comes back, registers
    /// it again.
    fn absent(self: &Arc<Self>, m: async_nats::Message) {
        let subject = m.subject.to_string();
        let prefix = format!("cairn.master.{}.absent", self.name);
        let Some(id) = subject_id(&subject, &prefix) else {
            return;
        };
        let Some(serial) = subject
            .rsplit('.')
            .next()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return;
        };
        if m.status != Some(async_nats::StatusCode::NO_RESPONDERS) {
            // Anyone may publish here; only the server's status is news.
            tracing::warn!("refused a message on {subject}: not the server's \"no responders\"");
            return;
        }
        let why = "not on the bus: nothing is subscribed to its jobs (its process or its \
                   connection is gone)";
        let dropped = {
            let mut seen = lock_map(&self.seen);
            let mut r = lock(&self.hub);
            match r.conns.get(id) {
                Some(c) if c.serial == serial => {
                    seen.remove(id);
                    r.conns.remove(id)
                }
                _ => None,
            }
        };
        let Some(conn) = dropped else {
            return;
        };
        for (_, waiting) in conn.jobs {
            let _ = waiting.send(job::unreachable(id, format!("agent {why}")));
        }
        tracing::warn!(%id, "agent disconnected: {why}");
        publish(
            &self.hub,
            Event::master(
                format!("cairn/agent/{id}/disconnected"),
                Some(id),
                serde_json::json!({ "reason": why }),
            ),
        );
    }

    /// Drops the agents silent too long, and those whose key another
    /// master (or `cairn keys` offline) revoked.
    fn sweep(self: &Arc<Self>) {
        let silence = self.cfg.silence;
        let mut gone = vec![];
        {
            let mut seen = lock_map(&self.seen);
            let mut r = lock(&self.hub);
            r.keys.refresh();
            seen.retain(|id, s| {
                let why = if !r.keys.is_accepted_as(id, &s.fingerprint) {
                    Some(("its key is no longer accepted".to_string(), true))
                } else if s.at.elapsed() > silence {
                    Some((format!("silent for {} s", silence.as_secs()), false))
                } else {
                    None
                };
                let Some((why, revoked)) = why else {
                    return true;
                };
                if let Some(c) = r.conns.get(id).filter(|c| c.serial == s.serial) {
                    if revoked {
                        c.kill.notify_one();
                    }
                    // Dropping it answers its jobs `unreachable`.
                    r.conns.remove(id);
                }
                gone.push((id.clone(), why));
                false
            });
        }
        for (id, why) in gone {
            tracing::warn!(%id, "agent disconnected: {why}");
            publish(
                &self.hub,
                Event::master(
                    format!("cairn/agent/{id}/disconnected"),
                    Some(&id),
                    serde_json::json!({ "reason": why }),
                ),
            );
        }
    }
}
