//! The CLI's side of the admin socket: finding a fleet's masters, asking
//! one (with failover), and `cairn events` across all of them.
//!
//! Events stay where they happen: each master records its own (jobs it
//! sent, agents it saw) and the agents' events one master of the queue
//! group took, in its ring and `DIR/masters/NAME/events.jsonl`. So the
//! events of a fleet are those of every master, which `cairn events` asks
//! one by one and merges in time order ([`ask_all`], [`follow`]). Copying
//! every event to every master instead would make each master record and
//! react to the others' events (reactors must run once) and multiply the
//! bus's traffic by the number of masters, for a read that is rare.

use std::path::{Path, PathBuf};

use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::admin::{AdminReply, AdminRequest, admin_socket};
use crate::agent::event::Event;
use crate::agent::protocol::{self, MAX_FRAME};

/// Why the CLI could not ask the master.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdminError {
    #[error("no master is running with the directory {0} (its admin socket is not there)")]
    NotRunning(PathBuf),
    #[error("the master's admin socket: {0}")]
    Io(String),
}

/// The admin sockets of the masters whose directory is `dir`: its own
/// (`DIR/admin.sock`, a master serving agents over TLS), then those of the
/// fleet's masters on a bus (`DIR/masters/NAME/admin.sock`), by name.
pub fn admin_sockets(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![admin_socket(dir)];
    let mut fleet: Vec<PathBuf> = std::fs::read_dir(dir.join("masters"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| admin_socket(&e.path()))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    fleet.sort();
    out.extend(fleet);
    out
}

/// Asks a master whose directory is `dir`. With several (a fleet on a
/// bus), the first that answers; one that dies before its answer is
/// followed by the next, so a request must be safe to repeat (a job's is:
/// an agent runs a job id once, see [`crate::agent::bus`]).
pub async fn ask(dir: &Path, req: &AdminRequest) -> Result<AdminReply, AdminError> {
    let mut last = AdminError::NotRunning(dir.to_path_buf());
    for sock in admin_sockets(dir) {
        match ask_one(&sock, req).await {
            Ok(Some(reply)) => return Ok(reply),
            Ok(None) => {}
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Asks the master at `sock`; `Ok(None)`: no master there.
async fn ask_one(sock: &Path, req: &AdminRequest) -> Result<Option<AdminReply>, AdminError> {
    let mut s = match connect_to(sock).await {
        Ok(s) => s,
        Err(Some(e)) => return Err(e),
        Err(None) => return Ok(None),
    };
    let answer = async {
        protocol::write(&mut s, req)
            .await
            .map_err(|e| e.to_string())?;
        protocol::read(&mut s, MAX_FRAME)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "closed without an answer".to_string())
    };
    match answer.await {
        Ok(reply) => Ok(Some(reply)),
        Err(e) => {
            tracing::warn!(
                "the master at {} stopped before answering ({e}); asking the next",
                sock.display()
            );
            Err(AdminError::Io(format!("{}: {e}", sock.display())))
        }
    }
}

/// Asks every master of `dir` for its recent events (`req` is an
/// `Events` request) and merges them in time order. A master's error
/// answer (a bad tag glob) is returned as it is.
pub async fn ask_all(dir: &Path, req: &AdminRequest) -> Result<AdminReply, AdminError> {
    let mut all: Vec<Vec<Event>> = vec![];
    let mut asked = false;
    let mut last = None;
    for sock in admin_sockets(dir) {
        match ask_one(&sock, req).await {
            Ok(Some(AdminReply::Events { events })) => {
                asked = true;
                all.push(events);
            }
            Ok(Some(other)) => return Ok(other),
            Ok(None) => {}
            Err(e) => last = Some(e),
        }
    }
    if !asked {
        return Err(last.unwrap_or_else(|| AdminError::NotRunning(dir.to_path_buf())));
    }
    Ok(AdminReply::Events { events: merge(all) })
}

/// Each master's events (each in its own time order) as one list in time
/// order; events of the same millisecond keep their master's order.
fn merge(lists: Vec<Vec<Event>>) -> Vec<Event> {
    let mut all: Vec<Event> = lists.into_iter().flatten().collect();
    // RFC 3339 in UTC with milliseconds: the text sorts as the time.
    all.sort_by(|a, b| a.time.cmp(&b.time));
    all
}

/// `cairn events --follow` on every master of `dir`: the recent events of
/// all, merged in time order (one `Events`), then each new one as any
/// master publishes it, handed to `each` until it returns `Ok(false)`. A
/// master that stops is left with a log line; when none is left, it is an
/// error.
pub async fn follow(
    dir: &Path,
    req: &AdminRequest,
    mut each: impl FnMut(AdminReply) -> Result<bool, String>,
) -> Result<(), AdminError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Result<AdminReply, String>)>();
    let mut masters = 0;
    for sock in admin_sockets(dir) {
        let mut s = match connect_to(&sock).await {
            Ok(s) => s,
            Err(Some(e)) => return Err(e),
            Err(None) => continue,
        };
        protocol::write(&mut s, req)
            .await
            .map_err(|e| AdminError::Io(format!("{}: {e}", sock.display())))?;
        let (tx, n) = (tx.clone(), masters);
        masters += 1;
        tokio::spawn(async move {
            loop {
                let got = match protocol::read::<_, AdminReply>(&mut s, MAX_FRAME).await {
                    Ok(Some(r)) => Ok(r),
                    Ok(None) => Err(format!("{} closed the stream (it stopped)", sock.display())),
                    Err(e) => Err(format!("{}: {e}", sock.display())),
                };
                let end = got.is_err();
                if tx.send((n, got)).is_err() || end {
                    return;
                }
            }
        });
    }
    drop(tx);
    if masters == 0 {
        return Err(AdminError::NotRunning(dir.to_path_buf()));
    }
    // Every master's backlog first, merged; what comes meanwhile waits.
    let mut backlogs: Vec<Option<Vec<Event>>> = vec![None; masters];
    let mut early = vec![];
    let mut live = masters;
    while backlogs.iter().any(Option::is_none) && live > 0 {
        let Some((n, got)) = rx.recv().await else {
            break;
        };
        match got {
            Ok(AdminReply::Events { events }) if backlogs[n].is_none() => {
                backlogs[n] = Some(events);
            }
            Ok(AdminReply::Error { message }) => return Err(AdminError::Io(message)),
            Ok(other) => early.push(other),
            Err(e) => {
                tracing::warn!("{e}");
                backlogs[n].get_or_insert_with(Vec::new);
                live -= 1;
            }
        }
    }
    let recent = merge(backlogs.into_iter().flatten().collect());
    if !each(AdminReply::Events { events: recent }).map_err(AdminError::Io)? {
        return Ok(());
    }
    for reply in early {
        if !each(reply).map_err(AdminError::Io)? {
            return Ok(());
        }
    }
    while live > 0 {
        let Some((_, got)) = rx.recv().await else {
            break;
        };
        match got {
            Ok(reply) => {
                if !each(reply).map_err(AdminError::Io)? {
                    return Ok(());
                }
            }
            Err(e) => {
                live -= 1;
                if live > 0 {
                    tracing::warn!("{e}; following the other masters");
                }
            }
        }
    }
    Err(AdminError::Io(
        "the master closed the stream (it stopped)".into(),
    ))
}

/// `Err(None)`: no master there (no socket, or one left by a master that
/// was killed).
pub(super) async fn connect_to(sock: &Path) -> Result<UnixStream, Option<AdminError>> {
    match UnixStream::connect(sock).await {
        Ok(s) => Ok(s),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Err(None)
        }
        Err(e) => Err(Some(AdminError::Io(format!("{}: {e}", sock.display())))),
    }
}

/// One admin connection for all the hosts of a job (`cairn run` on a
/// fleet), instead of one per host: [`Batch::run`] hands a host's `Run`
/// to the connection and waits for its result. When the master dies, the
/// hosts not answered yet are sent to the next master of the directory
/// (safe: an agent runs a job id once), as [`ask`] does for one request.
#[derive(Clone)]
pub struct Batch {
    tx: mpsc::UnboundedSender<Waiting>,
}

struct Waiting {
    host: String,
    req: AdminRequest,
    done: tokio::sync::oneshot::Sender<Result<AdminReply, AdminError>>,
}

/// One connection of a batch: its writer, and its replies as a reader
/// task reads them (so the master's results never wait on our writes).
struct Open {
    wr: tokio::net::unix::OwnedWriteHalf,
    replies: mpsc::UnboundedReceiver<Result<AdminReply, String>>,
    sock: PathBuf,
}

impl Batch {
    /// Starts the batch's task on the current runtime; it ends when every
    /// clone is dropped and every host is answered.
    pub fn start(dir: &Path) -> Batch {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(serve_batch(dir.to_path_buf(), rx));
        Batch { tx }
    }

    /// Runs `req` (an [`AdminRequest::Run`]) through the batch.
    pub async fn run(&self, req: AdminRequest) -> Result<AdminReply, AdminError> {
        let AdminRequest::Run { host, .. } = &req else {
            return Err(AdminError::Io(format!("not a job: {req:?}")));
        };
        let (done, answer) = tokio::sync::oneshot::channel();
        let waiting = Waiting {
            host: host.clone(),
            req,
            done,
        };
        if self.tx.send(waiting).is_err() {
            return Err(AdminError::Io("the batch stopped".into()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(AdminError::Io("the batch stopped".into())))
    }
}

async fn open_batch(sock: &Path) -> Result<Option<Open>, AdminError> {
    let s = match connect_to(sock).await {
        Ok(s) => s,
        Err(Some(e)) => return Err(e),
        Err(None) => return Ok(None),
    };
    let (mut rd, mut wr) = s.into_split();
    protocol::write(&mut wr, &AdminRequest::Batch)
        .await
        .map_err(|e| AdminError::Io(format!("{}: {e}", sock.display())))?;
    let (tx, replies) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let got = match protocol::read::<_, AdminReply>(&mut rd, MAX_FRAME).await {
                Ok(Some(r)) => Ok(r),
                Ok(None) => Err("closed before every answer".to_string()),
                Err(e) => Err(e.to_string()),
            };
            let end = got.is_err();
            if tx.send(got).is_err() || end {
                return;
            }
        }
    });
    Ok(Some(Open {
        wr,
        replies,
        sock: sock.to_path_buf(),
    }))
}

async fn serve_batch(dir: PathBuf, mut rx: mpsc::UnboundedReceiver<Waiting>) {
    let mut sockets = admin_sockets(&dir).into_iter();
    let mut last = AdminError::NotRunning(dir.clone());
    let mut waiting: std::collections::HashMap<String, Waiting> = Default::default();
    let mut conn: Option<Open> = None;
    let mut taking = true;
    // Hosts taken but not yet written on the open connection.
    let mut unsent: Vec<String> = vec![];
    loop {
        if conn.is_none() && !waiting.is_empty() {
            // The first master that takes the connection; a dead one's
            // hosts all go to the next.
            loop {
                let Some(sock) = sockets.next() else {
                    for (_, w) in waiting.drain() {
                        let _ = w.done.send(Err(last.clone()));
                    }
                    unsent.clear();
                    break;
                };
                match open_batch(&sock).await {
                    Ok(Some(open)) => {
                        conn = Some(open);
                        unsent = waiting.keys().cloned().collect();
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => last = e,
                }
            }
        }
        if let Some(open) = &mut conn {
            let mut failed = None;
            for host in unsent.drain(..) {
                let Some(w) = waiting.get(&host) else {
                    continue;
                };
                if let Err(e) = protocol::write(&mut open.wr, &w.req).await {
                    failed = Some(e.to_string());
                    break;
                }
            }
            if let Some(e) = failed {
                tracing::warn!(
                    "the master at {} stopped before answering ({e}); asking the next",
                    open.sock.display()
                );
                last = AdminError::Io(format!("{}: {e}", open.sock.display()));
                conn = None;
                continue;
            }
        }
        if !taking && waiting.is_empty() {
            return;
        }
        let reply = async {
            match &mut conn {
                Some(open) => open.replies.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            w = rx.recv(), if taking => match w {
                Some(w) => {
                    unsent.push(w.host.clone());
                    if let Some(old) = waiting.insert(w.host.clone(), w) {
                        let _ = old.done.send(Err(AdminError::Io(format!(
                            "host {} asked twice in one batch", old.host
                        ))));
                    }
                }
                None => taking = false,
            },
            r = reply => match r {
                Some(Ok(AdminReply::Result { result })) => {
                    if let Some(w) = waiting.remove(&result.host) {
                        let _ = w.done.send(Ok(AdminReply::Result { result }));
                    }
                }
                Some(Ok(AdminReply::Error { message })) => {
                    for (_, w) in waiting.drain() {
                        let _ = w.done.send(Ok(AdminReply::Error { message: message.clone() }));
                    }
                    conn = None;
                }
                Some(Ok(other)) => tracing::warn!("unexpected answer in a batch: {other:?}"),
                gone => {
                    let e = match gone {
                        Some(Err(e)) => e,
                        _ => "closed before every answer".to_string(),
                    };
                    let open = conn.take().expect("a reply comes from a connection");
                    tracing::warn!(
                        "the master at {} stopped before answering ({e}); asking the next",
                        open.sock.display()
                    );
                    last = AdminError::Io(format!("{}: {e}", open.sock.display()));
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time: &str, tag: &str) -> Event {
        let mut e = Event::master(tag.to_string(), None, serde_json::json!({}));
        e.time = time.to_string();
        e
    }

    #[test]
    fn masters_events_merge_in_time_order_keeping_ties_in_order() {
        let m1 = vec![
            at("2026-12-05T10:00:00.001Z", "a"),
            at("2026-12-05T10:00:00.005Z", "c"),
        ];
        let m2 = vec![
            at("2026-12-05T10:00:00.001Z", "b"),
            at("2026-12-05T10:00:01.000Z", "d"),
        ];
        let tags: Vec<String> = merge(vec![m1, m2]).into_iter().map(|e| e.tag).collect();
        assert_eq!(tags, ["a", "b", "c", "d"]);
    }
}
