//! The audit trail: one record per release or rollback of an app in an
//! environment, with who ran it, the artifact's digest, each host's
//! outcome and the events that explain it. `cairn releases APP` prints
//! them; promotion is checked against them (the digest that ran in `test`
//! is the one released to `prod`).

use serde::{Deserialize, Serialize};

/// Why the trail could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("release records: {0}")]
pub struct ReleaseStoreError(pub String);

/// Keeps release records; the state store implements it, next to the
/// deployments the releases went to.
pub trait ReleaseStore: Send + Sync {
    /// Records a release as it starts (outcome `running`).
    fn begin_release(&self, record: &ReleaseRecord) -> Result<(), ReleaseStoreError>;
    /// Replaces the record of `record.id` with its final form.
    fn finish_release(&self, record: &ReleaseRecord) -> Result<(), ReleaseStoreError>;
    /// Every release of `app` (every app when `None`), newest first.
    fn releases(&self, app: Option<&str>) -> Result<Vec<ReleaseRecord>, ReleaseStoreError>;
    /// The signing key `name`: its public half and its 32-byte seed.
    fn signing_key(&self, name: &str) -> Result<Option<StoredKey>, ReleaseStoreError>;
    /// Keeps `key` as `name` unless one is there already; returns the one
    /// kept (two builds racing agree on one key).
    fn put_signing_key(&self, name: &str, key: &StoredKey) -> Result<StoredKey, ReleaseStoreError>;
}

/// A signing key as the state keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The public key, hex.
    pub public: String,
    pub seed: [u8; 32],
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseKind {
    /// A version rolled out (`cairn release`).
    Release,
    /// Hosts put back on an older version on request (`cairn release rollback`).
    Rollback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseOutcome {
    Running,
    /// Every host runs the version.
    Succeeded,
    /// Too many hosts failed: every switched host went back to its
    /// previous release.
    RolledBack,
    /// Failed, and some host could not be put back (see its events).
    Failed,
}

impl ReleaseOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseOutcome::Running => "running",
            ReleaseOutcome::Succeeded => "succeeded",
            ReleaseOutcome::RolledBack => "rolled_back",
            ReleaseOutcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostOutcome {
    /// Runs the new version, healthy, back in the balancer.
    Switched,
    /// Ran the new version, then went back with the rollout.
    RolledBack,
    /// Failed (verification, switch, restart or health); put back.
    Failed,
    /// Failed and could not be put back: needs a person.
    Broken,
    /// Not touched: the rollout stopped before its batch.
    Skipped,
}

/// One host's part in a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRelease {
    pub host: String,
    pub address: String,
    /// The version `current` pointed at before (none on a first release).
    pub from_version: Option<String>,
    pub outcome: HostOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What happened, when, to which host: the trail that says why a release
/// stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseEvent {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `stage`, `drain`, `switch`, `restart`, `health`, `restore`,
    /// `rollback`, `hook`, `batch`, `stop`, `done`.
    pub step: String,
    pub ok: bool,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    pub id: String,
    pub app: String,
    pub deployment: String,
    pub environment: String,
    pub kind: ReleaseKind,
    pub version: String,
    /// The artifact's identity: sha256 of its signed manifest.
    pub digest: String,
    /// `user@host` that ran it.
    pub author: String,
    /// Seconds since the Unix epoch.
    pub started_at: i64,
    #[serde(default)]
    pub finished_at: Option<i64>,
    pub outcome: ReleaseOutcome,
    pub batches: usize,
    pub max_fail: usize,
    pub hosts: Vec<HostRelease>,
    pub events: Vec<ReleaseEvent>,
}
