//! The state store interface. The engine owns the trait and the record
//! types; `cairn-state` implements them on SQLite (PostgreSQL later).
//!
//! Every method is one transaction. Secret material travels in the
//! `secrets` fields only, and an implementation must keep those encrypted
//! at rest: a stolen state file reveals none of them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::schema::{Kind, UnknownKind};

/// Seconds since the Unix epoch (the engine injects the clock).
pub type Timestamp = i64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecord {
    /// `web[0]`, `sites["blog"]`, `net`.
    pub address: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The target's identifier.
    pub id: String,
    /// Properties as last applied, secrets removed (they are in `secrets`).
    pub properties: serde_json::Value,
    /// Computed attributes the target reported, secrets removed.
    pub attributes: serde_json::Value,
    /// Secret property and attribute values by dotted path
    /// (`properties.owner_password`, `attributes.private_key`). Encrypted at rest.
    pub secrets: BTreeMap<String, serde_json::Value>,
    pub tags: BTreeMap<String, String>,
    /// Addresses (or resource names) this one depends on, for delete order.
    pub depends_on: Vec<String>,
    pub data_holding: bool,
    pub prevent_destroy: bool,
    pub create_before_destroy: bool,
}

impl ResourceRecord {
    /// The record's type as a [`Kind`]. The state keeps the type string;
    /// one this cairn does not know (written by a newer one) is an error
    /// where the record is acted on, not where the state is read.
    pub fn typed_kind(&self) -> Result<Kind, UnknownKind> {
        self.kind.parse()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub user: String,
    pub host: String,
    pub pid: u32,
    /// Which process this is, as seen from its own kernel (see
    /// [`crate::holder`]): a later run on the same host tells from it that
    /// the holder is gone, without waiting for the lease to expire. `None`
    /// from a cairn that did not record it, or a platform without `/proc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{} (pid {})", self.user, self.host, self.pid)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub deployment: String,
    pub owner: Owner,
    /// Unique per run; renew and release name it.
    pub run_id: String,
    pub operation: String,
    pub acquired_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalOp {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalOutcome {
    pub ok: bool,
    /// The id the target gave, for a create.
    pub id: Option<String>,
    pub error: Option<String>,
    pub finished_at: Timestamp,
}

/// One provider call: its intent is written before the call, its outcome after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub seq: i64,
    pub deployment: String,
    pub run_id: String,
    pub address: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub op: JournalOp,
    /// Idempotency token or deterministic name the call uses; recovery finds
    /// what an interrupted call did by it.
    pub token: String,
    /// The target id the call acts on (update, delete).
    pub id: Option<String>,
    pub started_at: Timestamp,
    pub outcome: Option<JournalOutcome>,
}

impl JournalEntry {
    /// The entry's type as a [`Kind`] (see [`ResourceRecord::typed_kind`]).
    pub fn typed_kind(&self) -> Result<Kind, UnknownKind> {
        self.kind.parse()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// 1, 2, 3, ... per deployment: `cairn rollback --to N` names it.
    pub serial: i64,
    pub deployment: String,
    pub run_id: String,
    /// `up`, `destroy`, `rollback`, `apply`, `import`.
    pub command: String,
    pub owner: Owner,
    pub environment: String,
    pub target: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub template_digest: String,
    /// The template's files (path → text), so that a rollback can re-apply it.
    pub template_files: BTreeMap<String, String>,
    /// Parameters with secrets redacted.
    pub parameters: serde_json::Value,
    pub plan: serde_json::Value,
    /// `running`, `succeeded`, `failed`, `rolled_back`, `interrupted`.
    pub outcome: String,
    pub duration_ms: Option<i64>,
    /// Outputs with secrets redacted.
    pub outputs: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "deployment {deployment} is locked by {} for `{}` since {} (expires {})",
        lease.owner,
        lease.operation,
        crate::timefmt::utc(lease.acquired_at),
        crate::timefmt::relative(lease.expires_at, *now)
    )]
    Locked {
        deployment: String,
        lease: Box<Lease>,
        /// When the lease was found held, for "expires in 28 s".
        now: Timestamp,
    },
    #[error("the lease of {deployment} is no longer held by this run")]
    LeaseLost { deployment: String },
    #[error("no run {serial} in the history of {deployment}")]
    NoSuchRun { deployment: String, serial: i64 },
    #[error(
        "the state is newer than this cairn (schema {found}, this cairn knows up to {known}): \
         upgrade cairn to use it; an older cairn never writes to a newer schema"
    )]
    TooNew { found: i64, known: i64 },
    #[error("cannot decrypt secrets in the state: wrong or missing key ({0})")]
    Key(String),
    #[error("state storage: {0}")]
    Storage(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What the engine needs from a state store.
pub trait StateStore: Send + Sync {
    // Resources.
    fn resources(&self, deployment: &str) -> StoreResult<Vec<ResourceRecord>>;
    fn put_resource(&self, deployment: &str, record: &ResourceRecord) -> StoreResult<()>;
    fn delete_resource(&self, deployment: &str, address: &str) -> StoreResult<()>;
    /// Records a resource and closes the journal entry of the call that made
    /// or changed it. A store that can does both in one transaction; either
    /// way the entry is closed only once the state has the result.
    fn put_resource_and_close(
        &self,
        deployment: &str,
        record: &ResourceRecord,
        seq: i64,
        outcome: &JournalOutcome,
    ) -> StoreResult<()> {
        self.put_resource(deployment, record)?;
        self.journal_outcome(seq, outcome)
    }
    /// Forgets a resource and closes the journal entry of the call that
    /// deleted it, as [`StateStore::put_resource_and_close`].
    fn delete_resource_and_close(
        &self,
        deployment: &str,
        address: &str,
        seq: i64,
        outcome: &JournalOutcome,
    ) -> StoreResult<()> {
        self.delete_resource(deployment, address)?;
        self.journal_outcome(seq, outcome)
    }
    /// Increases with every change to a deployment's resources; a saved
    /// plan records it and is refused when it moved.
    fn serial(&self, deployment: &str) -> StoreResult<i64>;
    fn deployments(&self) -> StoreResult<Vec<String>>;

    // Leases: one operation at a time per deployment.
    fn acquire_lease(
        &self,
        deployment: &str,
        owner: &Owner,
        run_id: &str,
        operation: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<Lease>;
    fn renew_lease(
        &self,
        deployment: &str,
        run_id: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<Lease>;
    fn release_lease(&self, deployment: &str, run_id: &str) -> StoreResult<()>;
    fn lease(&self, deployment: &str) -> StoreResult<Option<Lease>>;
    /// Takes the lease from the run `from_run_id`, whose holder is known to
    /// be gone, in one transaction: refused (`Locked`) when the lease is no
    /// longer that run's (someone else took it first).
    #[allow(clippy::too_many_arguments)]
    fn take_over_lease(
        &self,
        deployment: &str,
        from_run_id: &str,
        owner: &Owner,
        run_id: &str,
        operation: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<Lease>;
    /// Removes any lease; returns the one removed.
    fn break_lease(&self, deployment: &str) -> StoreResult<Option<Lease>>;

    // Journal.
    fn journal_intent(&self, entry: &JournalEntry) -> StoreResult<i64>;
    fn journal_outcome(&self, seq: i64, outcome: &JournalOutcome) -> StoreResult<()>;
    /// Entries without an outcome, oldest first.
    fn open_journal(&self, deployment: &str) -> StoreResult<Vec<JournalEntry>>;
    /// Closes an entry that recovery reconciled.
    fn close_journal(&self, seq: i64, outcome: &JournalOutcome) -> StoreResult<()>;

    // History.
    fn begin_run(&self, run: &RunRecord) -> StoreResult<i64>;
    fn finish_run(&self, deployment: &str, serial: i64, run: &RunRecord) -> StoreResult<()>;
    fn runs(&self, deployment: &str) -> StoreResult<Vec<RunRecord>>;
    fn run(&self, deployment: &str, serial: i64) -> StoreResult<RunRecord>;

    // Values kept per deployment: generated secret parameters, outputs.
    fn generated_secrets(&self, deployment: &str) -> StoreResult<BTreeMap<String, String>>;
    fn put_generated_secret(&self, deployment: &str, name: &str, value: &str) -> StoreResult<()>;
    /// Outputs as last applied: public values and secret ones (encrypted at rest).
    fn put_outputs(
        &self,
        deployment: &str,
        public: &serde_json::Value,
        secrets: &BTreeMap<String, serde_json::Value>,
    ) -> StoreResult<()>;
    fn outputs(
        &self,
        deployment: &str,
    ) -> StoreResult<(serde_json::Value, BTreeMap<String, serde_json::Value>)>;
}
