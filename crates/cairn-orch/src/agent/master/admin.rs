//! The admin socket's requests and replies (`cairn keys`, `cairn run --via
//! agent`, `cairn events`), and where the socket is.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::agent::event::Event;
use crate::agent::keys::{KeyAction, KeyEntry, KeyStore};
use crate::agent::protocol::JobKind;
use crate::job::HostResult;

/// A request on the admin socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminRequest {
    Keys,
    Key {
        action: KeyAction,
        id: String,
    },
    /// The ids of the agents connected now.
    Connected,
    /// Run a job on one agent and wait for its result.
    Run {
        job_id: String,
        host: String,
        kind: JobKind,
        timeout_ms: u64,
    },
    /// Many hosts' jobs on this one connection (`cairn run` on a fleet):
    /// after it the client sends `Run` frames as it starts hosts, and the
    /// master answers each with a `Result` (its `host` names it) as it
    /// comes, in any order. One connection per job instead of one per host.
    Batch,
    /// The recent events a tag glob matches; with `follow`, then every new
    /// one as it comes, one `Event` reply each, until the client closes.
    Events {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
        #[serde(default)]
        follow: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminReply {
    Keys {
        keys: Vec<KeyEntry>,
    },
    Key {
        entry: Option<KeyEntry>,
    },
    Connected {
        ids: Vec<String>,
    },
    Result {
        result: HostResult,
    },
    Events {
        events: Vec<Event>,
    },
    Event {
        event: Event,
    },
    /// A follower fell behind by this many events (they are in the log
    /// file).
    Lagged {
        missed: u64,
    },
    Error {
        message: String,
    },
}

/// The admin socket of the master whose directory is `dir`.
pub fn admin_socket(dir: &Path) -> PathBuf {
    dir.join("admin.sock")
}

/// `cairn keys` when no master runs: the key list on disk.
pub fn keys_offline(dir: &Path, action: Option<(KeyAction, &str)>) -> Result<AdminReply, String> {
    let mut keys = KeyStore::open(dir)?;
    Ok(match action {
        None => AdminReply::Keys { keys: keys.list() },
        Some((a, id)) => AdminReply::Key {
            entry: keys.apply(id, a)?,
        },
    })
}
