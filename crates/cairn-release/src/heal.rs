//! Self-healing (`cairn heal`): what happened to a server whose health
//! check failed, one record per incident, and what to do next about it.
//!
//! An incident opens when a server of the app is first seen failing its
//! health check (`failing`). If it answers again within the app's
//! `heal.grace`, it closes as `recovered`; past the grace it is restarted
//! (`restarted` when that helps), and if it still fails, replaced by the
//! engine and given the app's current release (`replaced`). When neither
//! helps, or the policy allows neither, the incident stays open as
//! `gave_up` until the server answers again: a person must look, and the
//! heal does not restart or replace it over and over meanwhile.
//!
//! The incidents live in the state store ([`HealStore`]) so that a heal
//! run from cron (`--once`, one pass each time) knows since when a server
//! has been failing, and so that `cairn heal APP --history` shows what was
//! done and why.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::HealPolicy;
use crate::record::{ReleaseEvent, ReleaseStoreError};

/// Keeps heal incidents; the state store implements it.
pub trait HealStore: Send + Sync {
    /// Writes the incident `record.id`, replacing what was kept of it.
    fn put_heal(&self, record: &HealRecord) -> Result<(), ReleaseStoreError>;
    /// Incidents of `app` (every app when `None`) in `deployment` (every
    /// deployment when `None`), newest first; only open ones when `open`.
    fn heals(
        &self,
        app: Option<&str>,
        deployment: Option<&str>,
        open: bool,
    ) -> Result<Vec<HealRecord>, ReleaseStoreError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealOutcome {
    /// Failing, within its grace or waiting for the lease to act.
    Failing,
    /// Answered again by itself.
    Recovered,
    /// Answered again after a restart.
    Restarted,
    /// A new server runs the app's current release in its place.
    Replaced,
    /// Neither a restart nor a replacement helped (or the policy allows
    /// neither): open until the server answers again.
    GaveUp,
}

impl HealOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            HealOutcome::Failing => "failing",
            HealOutcome::Recovered => "recovered",
            HealOutcome::Restarted => "restarted",
            HealOutcome::Replaced => "replaced",
            HealOutcome::GaveUp => "gave_up",
        }
    }
}

/// One server's incident, from the first failed check to its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealRecord {
    pub id: String,
    pub app: String,
    pub deployment: String,
    pub environment: String,
    /// The server's name in the inventory (the same after a replacement).
    pub host: String,
    /// Its resource address in the deployment (`web[1]`), what the engine
    /// replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Its provider id when the incident opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    pub address: String,
    /// The app's current release in the environment, which a replacement
    /// installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Milliseconds since the Unix epoch: the first failed check.
    pub failing_since_ms: i64,
    /// The last failed check's reason.
    pub reason: String,
    pub outcome: HealOutcome,
    /// When it ended (ms); `None` while open (`failing`, `gave_up`).
    #[serde(default)]
    pub finished_at_ms: Option<i64>,
    /// The new server's provider id and address after a replacement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_address: Option<String>,
    /// `failing`, then the steps of a restart (`drain`, `restart`,
    /// `health`, `restore`), of a replacement (`replace`, `reachable`, and
    /// the install's `stage`, `switch`, ...), and the end: `restarted`,
    /// `replaced`, `recovered` or `gave_up`.
    pub events: Vec<ReleaseEvent>,
}

impl HealRecord {
    pub fn is_open(&self) -> bool {
        self.finished_at_ms.is_none()
    }
}

/// What a pass does about one server, from its check and its open incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Healthy, nothing open; or given up on and still failing.
    Nothing,
    /// Failing, nothing open: open an incident.
    Open,
    /// Failing, within its grace: look again later.
    Wait { left: Duration },
    /// Failing past its grace: restart, then replace, as the policy says.
    Act,
    /// Healthy again: close the open incident.
    Close,
}

/// The decision of one pass: `healthy` is this pass's check, `open` the
/// server's open incident, `now_ms` the time of the check.
pub fn next(policy: &HealPolicy, open: Option<&HealRecord>, healthy: bool, now_ms: i64) -> Next {
    match (open, healthy) {
        (None, true) => Next::Nothing,
        (None, false) => Next::Open,
        (Some(_), true) => Next::Close,
        (Some(r), false) if r.outcome == HealOutcome::GaveUp => Next::Nothing,
        (Some(r), false) => {
            let failing = Duration::from_millis((now_ms - r.failing_since_ms).max(0) as u64);
            if failing >= policy.grace {
                Next::Act
            } else {
                Next::Wait {
                    left: policy.grace - failing,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealPolicy {
        HealPolicy {
            grace: Duration::from_secs(30),
            interval: Duration::from_secs(5),
            restart: true,
            replace: true,
        }
    }

    fn incident(outcome: HealOutcome, since: i64) -> HealRecord {
        HealRecord {
            id: "h1".into(),
            app: "hello".into(),
            deployment: "d-dev".into(),
            environment: "dev".into(),
            host: "web-0".into(),
            resource: Some("web[0]".into()),
            server_id: Some("srv-1".into()),
            address: "10.0.0.4".into(),
            version: Some("v1".into()),
            failing_since_ms: since,
            reason: "exited".into(),
            outcome,
            finished_at_ms: None,
            replaced_by: None,
            new_address: None,
            events: Vec::new(),
        }
    }

    #[test]
    fn a_server_is_acted_on_only_past_its_grace_and_never_again_once_given_up() {
        let p = policy();
        assert_eq!(next(&p, None, true, 0), Next::Nothing);
        assert_eq!(next(&p, None, false, 0), Next::Open);
        let failing = incident(HealOutcome::Failing, 1_000);
        assert_eq!(
            next(&p, Some(&failing), false, 21_000),
            Next::Wait {
                left: Duration::from_secs(10)
            }
        );
        assert_eq!(next(&p, Some(&failing), false, 31_000), Next::Act);
        assert_eq!(next(&p, Some(&failing), true, 31_000), Next::Close);
        let given_up = incident(HealOutcome::GaveUp, 1_000);
        assert_eq!(next(&p, Some(&given_up), false, 999_000), Next::Nothing);
        assert_eq!(next(&p, Some(&given_up), true, 999_000), Next::Close);
        // A clock that went back does not act early.
        assert!(matches!(
            next(&p, Some(&failing), false, 0),
            Next::Wait { .. }
        ));
    }
}
