//! What every task of a master shares: the agents connected, their keys,
//! the event log, and how an event is published.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, mpsc, oneshot};

use crate::agent::event::{self, Event, EventLog, MAX_EVENT, RateLimit};
use crate::agent::keys::KeyStore;
use crate::agent::protocol::ToAgent;
use crate::job::HostResult;

/// One accepted agent's live connection.
pub(super) struct Conn {
    pub(super) serial: u64,
    pub(super) tx: mpsc::UnboundedSender<ToAgent>,
    pub(super) kill: Arc<Notify>,
    /// Jobs sent on this connection and not answered yet.
    pub(super) jobs: HashMap<String, oneshot::Sender<HostResult>>,
}

pub(super) struct Registry {
    pub(super) keys: KeyStore,
    pub(super) conns: HashMap<String, Conn>,
    pub(super) serial: u64,
}

/// What every task of the master shares. Lock order: `registry`, then
/// `events`, never the other way.
pub(super) struct Hub {
    pub(super) registry: Mutex<Registry>,
    pub(super) events: Mutex<EventLog>,
    /// Every published event goes to the reactors' task too.
    pub(super) react: Option<mpsc::Sender<Event>>,
}

pub(super) type Shared = Arc<Hub>;

pub(super) fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Registry> {
    r.registry.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn events(r: &Shared) -> std::sync::MutexGuard<'_, EventLog> {
    r.events.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records an event and hands it to the reactors.
pub(super) fn publish(hub: &Shared, event: Event) {
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

/// A job's result as the agent `id` sent it, its host set to that id: the
/// host is the one whose key was checked, whatever the result says.
pub(super) fn answered_by(id: &str, mut result: HostResult) -> HostResult {
    result.host = id.to_string();
    result
}

/// An agent's refusal of a job, as both transports take it: logged, and
/// the job's result for that host a failure that says so.
pub(super) fn refused_job(id: &str, job_id: &str, reason: &str) -> HostResult {
    tracing::warn!(%id, job = %job_id, "agent refused a job: {reason}");
    crate::job::failed(id, format!("agent refused the job: {reason}"))
}

/// An event an accepted agent sent: refused (with a log line) when too
/// large, over its rate or badly tagged; else published as the agent's.
pub(super) fn agent_event(
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

#[cfg(test)]
mod tests {
    use crate::job::HostStatus;

    #[test]
    fn a_result_is_the_host_whose_key_was_checked() {
        let claimed = crate::job::failed("someone-else", "x".into());
        assert_eq!(super::answered_by("a1", claimed).host, "a1");
    }

    #[test]
    fn a_refused_job_is_the_hosts_failure_saying_why() {
        let r = super::refused_job("a1", "j1", "no module `nope`");
        assert_eq!((r.host.as_str(), r.status), ("a1", HostStatus::Failed));
        assert_eq!(
            r.error.as_deref(),
            Some("agent refused the job: no module `nope`")
        );
    }
}
