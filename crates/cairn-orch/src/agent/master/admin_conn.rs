//! One connection on the admin socket: `cairn keys`, a job's runs (one
//! or a batch), `cairn events`.

use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::admin::{AdminReply, AdminRequest};
use super::dispatch::dispatch;
use super::hub::{Shared, lock};
use super::react;
use crate::agent::keys::KeyAction;
use crate::agent::protocol::{self, MAX_FRAME};

pub(super) async fn admin_connection(
    mut s: UnixStream,
    owner: u32,
    registry: &Shared,
) -> Result<(), String> {
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
