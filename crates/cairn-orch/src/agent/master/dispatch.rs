//! A job sent to one connected agent, its result awaited, its start and
//! return published (the CLI's jobs and reactions' alike).

use std::time::Duration;

use tokio::sync::oneshot;

use super::hub::{Shared, lock, publish};
use crate::agent::event::Event;
use crate::agent::protocol::{JobKind, JobMessage, ToAgent, now_ms};
use crate::agent::tls;
use crate::job::{self, HostResult};

/// Sends a job to one agent and waits for its result, at most `timeout_ms`;
/// publishes `cairn/job/JID/started` when it is sent and
/// `cairn/job/JID/ret/HOST` with its outcome. `reaction`: the job is a
/// reaction's (its events say so, and reactors leave them alone).
pub(super) async fn dispatch(
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

pub(super) async fn send_job(
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
