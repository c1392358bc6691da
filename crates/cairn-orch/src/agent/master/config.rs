//! What `cairn master` is started with.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::reactor::Reactors;
use crate::job::JobStore;

#[derive(Clone)]
pub struct MasterConfig {
    pub listen: String,
    pub dir: PathBuf,
    /// A pre-shared enrolment token: an agent showing it is accepted
    /// without `cairn keys accept`.
    pub token: Option<String>,
    /// An agent silent this long is dropped (it heartbeats more often).
    pub silence: Duration,
    /// Events one agent may send: `event_burst` at once, then `event_rate`
    /// a second; past that they are dropped, with a log line.
    pub event_rate: f64,
    pub event_burst: u32,
    /// How many recent events `cairn events` shows; the log file
    /// `DIR/events.jsonl` is rotated past `events_max_bytes`.
    pub events_keep: usize,
    pub events_max_bytes: u64,
    /// Reactors, checked when the master starts.
    pub reactors: Option<Arc<Reactors>>,
    /// Where reactions' jobs are recorded (as `cairn run`'s are).
    pub jobs: Option<Arc<dyn JobStore>>,
    /// `nats://ADDR`: agents are served on this bus instead of `listen`
    /// ([`crate::agent::bus`]); the directory is then shared with the fleet's
    /// other masters.
    pub bus: Option<String>,
    /// This master's name among the fleet's (its result subject and its
    /// own directory `DIR/masters/NAME`).
    pub name: String,
}

impl MasterConfig {
    /// The defaults of `cairn master`, listening on `listen` with its state
    /// in `dir`.
    pub fn new(listen: impl Into<String>, dir: impl Into<PathBuf>) -> MasterConfig {
        MasterConfig {
            listen: listen.into(),
            dir: dir.into(),
            token: None,
            silence: Duration::from_secs(30),
            event_rate: 20.0,
            event_burst: 100,
            events_keep: 1000,
            events_max_bytes: 16 << 20,
            reactors: None,
            jobs: None,
            bus: None,
            name: "master".into(),
        }
    }

    /// Where this master keeps what is its own (admin socket, events):
    /// the directory, or on a bus, where masters share the directory,
    /// `DIR/masters/NAME`.
    pub fn own_dir(&self) -> PathBuf {
        match &self.bus {
            None => self.dir.clone(),
            Some(_) => self.dir.join("masters").join(&self.name),
        }
    }
}
