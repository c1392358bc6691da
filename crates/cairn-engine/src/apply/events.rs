//! What a run tells as it goes, and who listens.

use serde::Serialize;

use crate::plan::Action;

/// What happened, as the run goes; the CLI turns these into progress lines.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ApplyEvent {
    Started {
        address: String,
        action: Action,
    },
    Retrying {
        address: String,
        attempt: u32,
        delay_ms: u64,
        error: String,
    },
    Finished {
        address: String,
        action: Action,
        elapsed_ms: u64,
    },
    Failed {
        address: String,
        action: Action,
        error: String,
    },
    RollingBack {
        address: String,
    },
}

pub trait Observer: Send + Sync {
    fn on_event(&self, event: &ApplyEvent);
}

pub struct Silent;

impl Observer for Silent {
    fn on_event(&self, _: &ApplyEvent) {}
}
