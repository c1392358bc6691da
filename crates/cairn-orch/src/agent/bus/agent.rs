//! `cairn agent --bus nats://ADDR`: the agent on the bus (see [`super`]
//! for the subjects and the trust design).
//!
//! It hellos every heartbeat (a request every master answers, signed),
//! runs the jobs a pinned master key signed for it once a master said its
//! key is accepted, answers each to the master that asked, and publishes
//! its events. Many agents may share one process and one connection
//! (`cairn agent --bench N`), each with its own key and state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::connect::connect;
use super::enrol::enrolment_proof;
use super::envelope::{ToAgentBus, ToMasterBus};
use super::subject::{check_token, ctl_subject, event_subject, hello_subject, job_subject};
use crate::agent::config::{AgentConfig, EVENT_QUEUE, jitter};
use crate::agent::guard::Guard;
use crate::agent::protocol::{ToAgent, ToMaster, VERSION, now_ms};
use crate::agent::seal::{self, Signer};
use crate::agent::tls::{self, Identity};
use crate::agent::watch::{self, Outgoing, Watch};
use crate::agent::work::run_job_managing;
use crate::job::HostResult;

/// How many finished jobs an agent keeps the result of (to answer a job
/// sent again by another master after the first died), at most.
const KEPT_RESULTS: usize = 1024;

/// Where the agent stands with the fleet, as the masters last said.
#[derive(Debug, Clone, PartialEq)]
enum Standing {
    /// No master answered yet.
    Unknown,
    Welcome,
    Pending,
    Refused(String),
}

/// A job id this agent was sent.
struct Ran {
    expires_at: u64,
    /// Masters waiting for its result.
    replies: Vec<String>,
    result: Option<HostResult>,
}

struct State {
    standing: Standing,
    guard: Guard,
    ran: HashMap<String, Ran>,
}

/// One agent on a bus connection.
struct Agent {
    cfg: AgentConfig,
    signer: Signer,
    master: String,
    client: async_nats::Client,
    state: Mutex<State>,
}

/// The master key an agent on the bus trusts: given, or saved by an
/// earlier TLS session.
fn pinned_master(cfg: &AgentConfig) -> Result<String, String> {
    let pin_file = cfg.dir.join("master.fingerprint");
    cfg.master_fingerprint
        .clone()
        .or_else(|| std::fs::read_to_string(&pin_file).ok())
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            format!(
                "over the bus the master's key must be pinned (anyone on the bus can publish): give \
                 --master-fingerprint (the master's DIR/master.fingerprint), or put it in {}",
                pin_file.display()
            )
        })
}

/// Runs the agents of `cfgs` (one, or many in a bench) on one bus
/// connection until `shutdown`.
pub async fn run(
    url: &str,
    cfgs: Vec<AgentConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let mut agents = Vec::with_capacity(cfgs.len());
    for cfg in &cfgs {
        check_token("agent id", &cfg.id)?;
        pinned_master(cfg)?;
    }
    let name = match cfgs.as_slice() {
        [one] => format!("cairn-agent {}", one.id),
        many => format!("cairn-agent x{}", many.len()),
    };
    let client = connect(url, &name).await?;
    for cfg in cfgs {
        let identity = Identity::load_or_create(&cfg.dir, "agent", &cfg.id)?;
        tracing::info!(id = %cfg.id, fingerprint = %identity.fingerprint, "agent key");
        agents.push(Arc::new(Agent {
            master: pinned_master(&cfg)?,
            signer: identity.signer()?,
            state: Mutex::new(State {
                standing: Standing::Unknown,
                guard: Guard::new(cfg.id.clone()),
                ran: HashMap::new(),
            }),
            client: client.clone(),
            cfg,
        }));
    }
    // A task each: many agents in one process (a bench) check their
    // messages' signatures on every core.
    let mut tasks = tokio::task::JoinSet::new();
    for a in agents {
        tasks.spawn(async move {
            if let Err(e) = a.clone().serve().await {
                tracing::error!(id = %a.cfg.id, "agent stopped: {e}");
            }
        });
    }
    let all = async { while tasks.join_next().await.is_some() {} };
    tokio::select! {
        () = all => Err("every agent stopped".into()),
        () = shutdown => {
            tracing::info!("agent stopping");
            Ok(())
        }
    }
}

impl Agent {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn seal(&self, subject: &str, msg: ToMaster) -> bytes::Bytes {
        let body = ToMasterBus {
            id: self.cfg.id.clone(),
            sent_at: now_ms(),
            nonce: tls::random_hex(),
            msg,
        };
        self.signer.seal_json(subject, &body).into()
    }

    async fn send(&self, subject: String, msg: ToMaster) {
        let payload = self.seal(&subject, msg);
        if let Err(e) = self.client.publish(subject.clone(), payload).await {
            tracing::warn!(id = %self.cfg.id, "cannot publish on {subject}: {e}");
        }
    }

    async fn serve(self: Arc<Self>) -> Result<(), String> {
        let id = self.cfg.id.clone();
        let mut inbox = self
            .client
            .subscribe(format!("cairn.agent.{id}.*"))
            .await
            .map_err(|e| format!("cannot subscribe: {e}"))?;
        let (events_tx, mut events_rx) = mpsc::channel::<Outgoing>(EVENT_QUEUE);
        let (watch, watching) = Watch::start(events_tx.clone(), self.cfg.debounce);
        let services = async {
            match &self.cfg.service_events {
                Some(p) => {
                    watch::tail_services(p.clone(), events_tx, Duration::from_millis(250)).await
                }
                None => std::future::pending().await,
            }
        };
        let events = async {
            while let Some((tag, data)) = events_rx.recv().await {
                self.send(event_subject(&id), ToMaster::Event { tag, data })
                    .await;
            }
        };
        let hellos = async {
            // Agents started together spread their first hello.
            tokio::time::sleep(jitter(0, 200)).await;
            loop {
                self.hello().await;
                tokio::time::sleep(self.cfg.heartbeat).await;
            }
        };
        let jobs = async {
            while let Some(msg) = inbox.next().await {
                self.clone().received(&watch, msg).await;
            }
        };
        tokio::select! {
            () = jobs => Err("the bus subscription ended".into()),
            () = hellos => Ok(()),
            () = events => Ok(()),
            () = watching => Ok(()),
            () = services => Ok(()),
        }
    }

    /// One hello: the first master's answer sets the standing.
    async fn hello(&self) {
        let subject = hello_subject(&self.cfg.id);
        let token = self
            .cfg
            .token
            .as_deref()
            .map(|t| enrolment_proof(t, &self.cfg.id, &self.signer.fingerprint));
        let payload = self.seal(
            &subject,
            ToMaster::Hello {
                version: VERSION,
                id: self.cfg.id.clone(),
                token,
            },
        );
        let answer = tokio::time::timeout(
            Duration::from_secs(3),
            self.client.request(subject, payload),
        )
        .await;
        let msg = match answer {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::warn!(id = %self.cfg.id, "no master answered on the bus: {e}");
                return;
            }
            Err(_) => {
                tracing::warn!(id = %self.cfg.id, "no master answered on the bus within 3 s");
                return;
            }
        };
        let standing = match self.open(&msg) {
            Ok(ToAgentBus {
                msg: ToAgent::Welcome { .. },
                ..
            }) => Standing::Welcome,
            Ok(ToAgentBus {
                msg: ToAgent::Pending { .. },
                ..
            }) => Standing::Pending,
            Ok(ToAgentBus {
                msg: ToAgent::Refused { reason },
                ..
            }) => Standing::Refused(reason),
            Ok(other) => {
                tracing::warn!(id = %self.cfg.id, "refused an answer to its hello: {:?}", other.msg);
                return;
            }
            Err(reason) => {
                tracing::warn!(id = %self.cfg.id, "refused an answer to its hello: {reason}");
                return;
            }
        };
        self.stand(standing);
    }

    fn stand(&self, standing: Standing) {
        let mut st = self.state();
        if st.standing == standing {
            return;
        }
        let id = &self.cfg.id;
        match &standing {
            Standing::Welcome => tracing::info!(%id, "accepted by the masters on the bus"),
            Standing::Pending => tracing::warn!(
                %id, fingerprint = %self.signer.fingerprint,
                "the masters have not accepted this agent's key yet (cairn keys accept {id})"
            ),
            Standing::Refused(why) => tracing::error!(%id, "the masters refused this agent: {why}"),
            Standing::Unknown => {}
        }
        st.standing = standing;
    }

    /// A master's message, checked: the pinned master key signed it for
    /// this subject, and it is for this agent, fresh and not seen before.
    fn open(&self, msg: &async_nats::Message) -> Result<ToAgentBus, String> {
        let opened = seal::open(&msg.subject, &msg.payload).map_err(|e| e.to_string())?;
        if opened.fingerprint != self.master {
            return Err(format!(
                "signed by key {}, not the pinned master key {}",
                opened.fingerprint, self.master
            ));
        }
        let body: ToAgentBus = serde_json::from_str(&opened.body)
            .map_err(|e| format!("not a master's message: {e}"))?;
        let now = now_ms();
        let mut st = self.state();
        match &body.msg {
            ToAgent::Job(job) => {
                if job.target != body.target
                    || job.expires_at != body.expires_at
                    || job.nonce != body.nonce
                {
                    return Err(format!(
                        "job {}: its envelope and its job disagree on target, expiry or nonce",
                        job.job_id
                    ));
                }
                st.guard.check(job, now)?;
            }
            _ => st
                .guard
                .admit("message", &body.target, body.expires_at, &body.nonce, now)?,
        }
        Ok(body)
    }

    async fn received(self: Arc<Self>, watch: &Arc<Watch>, msg: async_nats::Message) {
        let id = self.cfg.id.clone();
        let subject = msg.subject.to_string();
        let body = match self.open(&msg) {
            Ok(b) => b,
            Err(reason) => {
                tracing::warn!(%id, "refused a message on {subject}: {reason}");
                return;
            }
        };
        if subject == ctl_subject(&id) {
            match body.msg {
                ToAgent::Refused { reason } => self.stand(Standing::Refused(reason)),
                other => tracing::warn!(%id, "ignored on {subject}: {other:?}"),
            }
            return;
        }
        if subject != job_subject(&id) {
            tracing::warn!(%id, "ignored a message on {subject}");
            return;
        }
        let ToAgent::Job(job) = body.msg else {
            tracing::warn!(%id, "ignored on {subject}: not a job");
            return;
        };
        let Some(reply) = body.reply else {
            tracing::warn!(%id, job = %job.job_id, "refused a job with nowhere to answer");
            return;
        };
        if self.state().standing == Standing::Unknown {
            // A job before the answer to the first hello: ask now.
            self.hello().await;
        }
        let standing = self.state().standing.clone();
        if standing != Standing::Welcome {
            let reason = format!(
                "this agent is not accepted by the masters ({})",
                match standing {
                    Standing::Unknown => "no master answered its hello yet".to_string(),
                    Standing::Pending => "its key is pending".to_string(),
                    Standing::Refused(why) => why,
                    Standing::Welcome => unreachable!(),
                }
            );
            tracing::warn!(%id, job = %job.job_id, "refused a job: {reason}");
            let msg = ToMaster::Refused {
                job_id: job.job_id,
                reason,
            };
            self.send(reply, msg).await;
            return;
        }
        // A job id runs once: sent again (another master took over), it is
        // answered with the result kept, or when it finishes.
        let kept = {
            let mut st = self.state();
            let now = now_ms();
            st.ran.retain(|_, r| r.expires_at > now);
            if st.ran.len() >= KEPT_RESULTS
                && let Some(oldest) = st
                    .ran
                    .iter()
                    .filter(|(_, r)| r.result.is_some())
                    .min_by_key(|(_, r)| r.expires_at)
                    .map(|(k, _)| k.clone())
            {
                st.ran.remove(&oldest);
            }
            match st.ran.get_mut(&job.job_id) {
                Some(r) => {
                    if !r.replies.contains(&reply) {
                        r.replies.push(reply.clone());
                    }
                    Some(r.result.clone())
                }
                None => {
                    st.ran.insert(
                        job.job_id.clone(),
                        Ran {
                            expires_at: job.expires_at,
                            replies: vec![reply.clone()],
                            result: None,
                        },
                    );
                    None
                }
            }
        };
        match kept {
            Some(Some(result)) => {
                tracing::info!(%id, job = %job.job_id, "job asked again: answering with its result");
                let msg = ToMaster::Result {
                    job_id: job.job_id,
                    result,
                };
                self.send(reply, msg).await;
            }
            Some(None) => {
                tracing::info!(%id, job = %job.job_id, "job asked again while it runs: will answer both");
            }
            None => {
                tracing::info!(%id, job = %job.job_id, "running a job");
                let busy = watch.busy();
                tokio::spawn(async move {
                    let (result, manages) =
                        run_job_managing(&self.cfg.id, job.kind, job.expires_at).await;
                    busy.finish(&manages.paths, &job.job_id, manages.state.as_deref());
                    let replies = {
                        let mut st = self.state();
                        match st.ran.get_mut(&job.job_id) {
                            Some(r) => {
                                r.result = Some(result.clone());
                                r.replies.clone()
                            }
                            None => vec![reply],
                        }
                    };
                    for to in replies {
                        let msg = ToMaster::Result {
                            job_id: job.job_id.clone(),
                            result: result.clone(),
                        };
                        self.send(to, msg).await;
                    }
                });
            }
        }
    }
}
