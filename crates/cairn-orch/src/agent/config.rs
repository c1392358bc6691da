//! An agent's settings, and the timing every agent (over TLS or the bus)
//! shares.

use std::path::PathBuf;
use std::time::Duration;

use super::tls;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The master's `HOST:PORT`.
    pub master: String,
    /// The id this agent claims (its hosts' inventory name).
    pub id: String,
    /// Its key pair and the pinned master fingerprint.
    pub dir: PathBuf,
    /// The master's key fingerprint; without it, the first one seen is
    /// saved to `DIR/master.fingerprint` and pinned from then on.
    pub master_fingerprint: Option<String>,
    /// A pre-shared enrolment token the master accepts instead of an
    /// operator's `cairn keys accept`.
    pub token: Option<String>,
    pub heartbeat: Duration,
    /// The init's service event file to tail (`/run/cairn/events.jsonl`);
    /// `None`: none.
    pub service_events: Option<PathBuf>,
    /// How long a watched directory must be quiet before its changes are
    /// looked at.
    pub debounce: Duration,
    /// `nats://ADDR`: meet the masters on this bus instead of `master`.
    pub bus: Option<String>,
}

impl AgentConfig {
    /// The defaults of `cairn agent`: no pinned fingerprint (trust on first
    /// use), no token, a 5 s heartbeat, the init's event file at
    /// `/run/cairn/events.jsonl`, a 300 ms debounce.
    pub fn new(master: impl Into<String>, id: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        AgentConfig {
            master: master.into(),
            id: id.into(),
            dir: dir.into(),
            master_fingerprint: None,
            token: None,
            heartbeat: Duration::from_secs(5),
            service_events: Some(PathBuf::from("/run/cairn/events.jsonl")),
            debounce: Duration::from_millis(300),
            bus: None,
        }
    }
}

/// How many events wait for the master at most.
pub const EVENT_QUEUE: usize = 1024;

/// `base` plus up to `spread` milliseconds, random.
pub(crate) fn jitter(base: u64, spread: u64) -> Duration {
    let r = u64::from_str_radix(&tls::random_hex()[..8], 16).unwrap_or(0);
    Duration::from_millis(base + r % (spread + 1))
}
