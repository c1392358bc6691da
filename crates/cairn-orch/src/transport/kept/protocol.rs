//! What a run and the keeper say to each other over the socket.

use serde::{Deserialize, Serialize};

use super::spec::Spec;
use crate::remote::TransportError;

/// What a client asks the keeper, one request per socket connection.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Request {
    /// Runs a script; a [`super::wire::STDIN`] frame (its whole input) follows.
    Exec {
        host: Box<Spec>,
        keep_for_ms: u64,
        script: String,
        become_user: Option<String>,
        timeout_ms: Option<u64>,
    },
    /// Opens a shell (see [`crate::transport::shell`]) and relays it.
    Shell {
        host: Box<Spec>,
        keep_for_ms: u64,
        become_user: Option<String>,
    },
    List,
    Stop,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub(super) enum Reply {
    /// The script ended (its output came before, in frames).
    Done {
        status: Option<i32>,
    },
    Failed {
        error: TransportError,
    },
    /// The shell runs: stdin frames may follow.
    Opened,
    /// The shell's exec ended.
    Closed,
    Kept {
        connections: Vec<KeptConnection>,
    },
    Stopping,
}

/// What the client sends a relayed shell besides its input.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum ShellInput {
    Close { kill: bool },
}

/// One connection the keeper holds (`cairn connections list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptConnection {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Connections made for it so far (more than 1: it was lost and made
    /// again).
    pub opened: usize,
    pub connected: bool,
    /// Requests served on it.
    pub requests: u64,
    /// Scripts and shells running on it now.
    pub in_use: usize,
    pub idle_ms: u64,
    pub keep_for_ms: u64,
}
