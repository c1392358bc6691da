//! The master's side of events: `cairn events` on the admin socket, and
//! the reactors' task, which turns matching events into jobs.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;

use super::admin::AdminReply;
use super::dispatch::dispatch;
use super::hub::{Shared, events, lock};
use crate::agent::event::Event;
use crate::agent::event::TagGlob;
use crate::agent::protocol;
use crate::agent::reactor::{Reaction, Reactors};
use crate::job::{JobRecord, JobStore};

/// Answers `cairn events`: the recent events, then (following) each new
/// one until the client closes its end.
pub(super) async fn serve_events(
    s: UnixStream,
    hub: &Shared,
    tag: Option<String>,
    follow: bool,
) -> Result<(), String> {
    let glob = match tag.as_deref().map(TagGlob::new).transpose() {
        Ok(g) => g,
        Err(message) => {
            let mut s = s;
            return protocol::write(&mut s, &AdminReply::Error { message })
                .await
                .map_err(|e| e.to_string());
        }
    };
    // The backlog and the subscription under one lock: nothing missed,
    // nothing twice.
    let (recent, mut rx) = {
        let log = events(hub);
        (log.recent(glob.as_ref()), log.subscribe())
    };
    let (mut rd, mut wr) = s.into_split();
    protocol::write(&mut wr, &AdminReply::Events { events: recent })
        .await
        .map_err(|e| e.to_string())?;
    if !follow {
        return Ok(());
    }
    let mut byte = [0u8; 1];
    loop {
        let reply = tokio::select! {
            got = rx.recv() => match got {
                Ok(event) if glob.as_ref().is_none_or(|g| g.matches(&event.tag)) => {
                    AdminReply::Event { event }
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => AdminReply::Lagged { missed },
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            // The client sends nothing more: a read returns only when it
            // has gone.
            _ = rd.read(&mut byte) => return Ok(()),
        };
        if protocol::write(&mut wr, &reply).await.is_err() {
            return Ok(());
        }
    }
}

/// The reactors' task: each event the reactors match becomes a job, run
/// through the same dispatch as `cairn run --via agent` and recorded in
/// `jobs`.
pub(super) async fn run(
    hub: Shared,
    reactors: Arc<Reactors>,
    jobs: Option<Arc<dyn JobStore>>,
    mut rx: mpsc::Receiver<Event>,
) {
    let mut running = JoinSet::new();
    loop {
        let event = tokio::select! {
            e = rx.recv() => match e {
                Some(e) => e,
                None => return,
            },
            Some(_) = running.join_next(), if !running.is_empty() => continue,
        };
        let connected: Vec<String> = lock(&hub).conns.keys().cloned().collect();
        for reaction in reactors.react(&event, &connected, Instant::now()) {
            let (hub, reactors, jobs) = (hub.clone(), reactors.clone(), jobs.clone());
            let tag = event.tag.clone();
            running.spawn(async move {
                react(&hub, &reaction, &tag, jobs.as_deref()).await;
                reactors.finished(&reaction);
            });
        }
    }
}

/// Runs one reaction as a job: recorded before and after, one dispatch per
/// host, its events marked as the reaction's.
async fn react(hub: &Shared, reaction: &Reaction, tag: &str, jobs: Option<&dyn JobStore>) {
    let id = crate::job::new_id();
    let mut record = JobRecord {
        id: id.clone(),
        kind: "reaction".into(),
        target: reaction.hosts.join(","),
        function: reaction.function.clone(),
        args: json!({ "rule": reaction.name, "event": tag }),
        check: false,
        user: "reactor".into(),
        started_at: now_s(),
        finished_at: None,
        hosts: vec![],
    };
    tracing::warn!(rule = %reaction.name, event = %tag, job = %id, hosts = ?reaction.hosts, "reacting");
    let save = |r: &JobRecord| {
        if let Some(store) = jobs
            && let Err(e) = store.save_job(r)
        {
            tracing::error!(job = %r.id, "cannot record a reaction's job: {e}");
        }
    };
    save(&record);
    let mut each = JoinSet::new();
    for host in &reaction.hosts {
        let (hub, id, host, kind) = (hub.clone(), id.clone(), host.clone(), reaction.kind.clone());
        let timeout_ms = reaction.timeout.as_millis() as u64;
        each.spawn(async move {
            let started = Instant::now();
            let mut r = dispatch(&hub, id.clone(), &host, kind, timeout_ms, Some(&id)).await;
            r.duration_ms = started.elapsed().as_millis() as u64;
            r
        });
    }
    let mut results = each.join_all().await;
    results.sort_by(|a, b| a.host.cmp(&b.host));
    for r in &results {
        tracing::warn!(job = %id, host = %r.host, status = r.status.as_str(), error = r.error.as_deref().unwrap_or(""), "reaction done");
    }
    record.hosts = results;
    record.finished_at = Some(now_s());
    save(&record);
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
