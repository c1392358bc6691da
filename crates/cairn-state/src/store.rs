//! [`SqliteStore`]: the connection, its settings, transactions, and the
//! [`StateStore`] implementation, which hands each method to the module
//! that owns its table.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cairn_engine::store::{
    JournalEntry, JournalOutcome, Lease, Owner, ResourceRecord, RunRecord, StateStore, StoreError,
    StoreResult, Timestamp,
};
use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};

use crate::error::Context;
use crate::group::Group;
use crate::key::KeySource;
use crate::seal::Sealer;
use crate::{history, journal, lease, resources, schema, values};

/// How long a statement waits for another process's write lock before
/// failing with "database is locked". Writes are short (milliseconds), so
/// this only runs out when a process hangs holding the lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The state in one SQLite file.
///
/// All access goes through one connection behind a mutex: within a process
/// there is one writer, and each method is one transaction. Between
/// processes, SQLite's locks order the writers: writes begin with
/// `BEGIN IMMEDIATE`, and a writer waits up to [`BUSY_TIMEOUT`] for another.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    pub(crate) sealer: Sealer,
    /// The apply's journal and resource writes, committed in groups.
    group: Group,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its directory if missing) the state file at
    /// `path`, migrates its schema, and checks that `key` opens its secrets.
    pub fn open(path: &Path, key: KeySource) -> StoreResult<SqliteStore> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Storage(format!("creating the directory of {shown}: {e}"))
            })?;
        }
        let conn = Connection::open(path).ctx(&format!("opening {shown}"))?;
        SqliteStore::set_up(conn, &key, &shown)
    }

    /// A store in memory, for tests of the crates above this one.
    pub fn open_in_memory(key: KeySource) -> StoreResult<SqliteStore> {
        let conn = Connection::open_in_memory().ctx("opening an in-memory state")?;
        SqliteStore::set_up(conn, &key, "(in memory)")
    }

    fn set_up(mut conn: Connection, key: &KeySource, shown: &str) -> StoreResult<SqliteStore> {
        let what = format!("setting up {shown}");
        // First, so that everything after it waits for other processes
        // (switching to WAL and migrating both need the write lock).
        conn.busy_timeout(BUSY_TIMEOUT).ctx(&what)?;
        conn.pragma_update(None, "foreign_keys", true).ctx(&what)?;
        // A file from a newer cairn is refused before anything is written
        // to it (`migrate` checks again under the write lock).
        let found = schema::version(&conn)?;
        if found > schema::SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found,
                known: schema::SCHEMA_VERSION,
            });
        }
        // WAL: readers never block the writer nor each other. An in-memory
        // database answers `memory` and stays so.
        let mode: String = retry_while_busy(|| {
            conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
        })
        .ctx(&what)?;
        if mode != "wal" && mode != "memory" {
            return Err(StoreError::Storage(format!(
                "{what}: SQLite refused WAL mode (journal mode is `{mode}`)"
            )));
        }
        // FULL: a committed journal intent survives a power cut, not only a
        // crash, before the provider call it announces goes out.
        conn.pragma_update(None, "synchronous", "FULL").ctx(&what)?;
        schema::migrate(&mut conn)?;
        let sealer = schema::check_key(&mut conn, key, shown)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            sealer,
            group: Group::default(),
        })
    }

    /// Every journal entry of `deployment`, closed ones too, oldest first.
    pub fn journal(&self, deployment: &str) -> StoreResult<Vec<JournalEntry>> {
        self.read("reading the journal", |tx| {
            journal::list(tx, deployment, false)
        })
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock dropped its transaction, which
        // rolled back: the connection is sound.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One write transaction. `IMMEDIATE` takes the write lock at `BEGIN`,
    /// so what `f` reads cannot change before it writes (a deferred
    /// transaction would read, then fail to upgrade with SQLITE_BUSY, which
    /// the busy timeout does not retry).
    pub(crate) fn write<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.transaction(TransactionBehavior::Immediate, what, f)
    }

    /// One read transaction: a consistent snapshot across its statements.
    pub(crate) fn read<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.transaction(TransactionBehavior::Deferred, what, f)
    }

    /// Transactions the apply's journal and resource writes have taken
    /// since the store was opened: fewer than the writes when writes made
    /// at the same moment shared one ([`Group`]).
    pub fn group_commits(&self) -> u64 {
        self.group.batches()
    }

    #[cfg(test)]
    pub(crate) fn group(&self) -> &Group {
        &self.group
    }

    /// One write that may share its transaction and its flush with writes
    /// made at the same time by other threads ([`Group`]).
    pub(crate) fn grouped<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Connection, &Sealer) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.group.write(&self.conn, &self.sealer, what, f)
    }

    fn transaction<T>(
        &self,
        behavior: TransactionBehavior,
        what: &str,
        f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(behavior).ctx(what)?;
        let out = f(&tx)?;
        tx.commit().ctx(what)?;
        Ok(out)
    }
}

/// Runs `f` again while SQLite answers "busy", up to [`BUSY_TIMEOUT`].
///
/// Switching a new file to WAL needs an exclusive lock, and when several
/// processes open the file at once SQLite may report the conflict at once
/// instead of calling the busy handler (two connections holding shared
/// locks cannot both wait for an exclusive one). The switch is idempotent,
/// so trying again is safe.
fn retry_while_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        match f() {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

impl StateStore for SqliteStore {
    fn resources(&self, deployment: &str) -> StoreResult<Vec<ResourceRecord>> {
        self.read("reading resources", |tx| {
            resources::list(tx, &self.sealer, deployment)
        })
    }

    fn put_resource(&self, deployment: &str, record: &ResourceRecord) -> StoreResult<()> {
        let (deployment, record) = (deployment.to_string(), record.clone());
        self.grouped("writing a resource", move |tx, sealer| {
            resources::put(tx, sealer, &deployment, &record)
        })
    }

    fn delete_resource(&self, deployment: &str, address: &str) -> StoreResult<()> {
        let (deployment, address) = (deployment.to_string(), address.to_string());
        self.grouped("deleting a resource", move |tx, _| {
            resources::delete(tx, &deployment, &address)
        })
    }

    fn put_resource_and_close(
        &self,
        deployment: &str,
        record: &ResourceRecord,
        seq: i64,
        outcome: &JournalOutcome,
    ) -> StoreResult<()> {
        let (deployment, record, outcome) =
            (deployment.to_string(), record.clone(), outcome.clone());
        self.grouped("writing a resource", move |tx, sealer| {
            resources::put(tx, sealer, &deployment, &record)?;
            journal::set_outcome(tx, seq, &outcome)
        })
    }

    fn delete_resource_and_close(
        &self,
        deployment: &str,
        address: &str,
        seq: i64,
        outcome: &JournalOutcome,
    ) -> StoreResult<()> {
        let (deployment, address, outcome) =
            (deployment.to_string(), address.to_string(), outcome.clone());
        self.grouped("deleting a resource", move |tx, _| {
            resources::delete(tx, &deployment, &address)?;
            journal::set_outcome(tx, seq, &outcome)
        })
    }

    fn serial(&self, deployment: &str) -> StoreResult<i64> {
        self.read("reading the serial", |tx| resources::serial(tx, deployment))
    }

    fn deployments(&self) -> StoreResult<Vec<String>> {
        self.read("listing deployments", |tx| resources::deployments(tx))
    }

    fn acquire_lease(
        &self,
        deployment: &str,
        owner: &Owner,
        run_id: &str,
        operation: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<Lease> {
        self.write("acquiring the lease", |tx| {
            lease::acquire(tx, deployment, owner, run_id, operation, ttl, now)
        })
    }

    fn take_over_lease(
        &self,
        deployment: &str,
        from_run_id: &str,
        owner: &Owner,
        run_id: &str,
        operation: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<Lease> {
        self.write("taking over the lease", |tx| {
            lease::take_over(
                tx,
                deployment,
                from_run_id,
                owner,
                run_id,
                operation,
                ttl,
                now,
            )
        })
    }

    fn renew_lease(
        &self,
        deployment: &str,
        run_id: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<Lease> {
        self.write("renewing the lease", |tx| {
            lease::renew(tx, deployment, run_id, ttl, now)
        })
    }

    fn release_lease(&self, deployment: &str, run_id: &str) -> StoreResult<()> {
        self.write("releasing the lease", |tx| {
            lease::release(tx, deployment, run_id)
        })
    }

    fn lease(&self, deployment: &str) -> StoreResult<Option<Lease>> {
        self.read("reading the lease", |tx| lease::get(tx, deployment))
    }

    fn break_lease(&self, deployment: &str) -> StoreResult<Option<Lease>> {
        self.write("breaking the lease", |tx| {
            lease::force_remove(tx, deployment)
        })
    }

    fn journal_intent(&self, entry: &JournalEntry) -> StoreResult<i64> {
        let entry = entry.clone();
        self.grouped("writing a journal intent", move |tx, _| {
            journal::intent(tx, &entry)
        })
    }

    fn journal_outcome(&self, seq: i64, outcome: &JournalOutcome) -> StoreResult<()> {
        let outcome = outcome.clone();
        self.grouped("writing a journal outcome", move |tx, _| {
            journal::set_outcome(tx, seq, &outcome)
        })
    }

    fn open_journal(&self, deployment: &str) -> StoreResult<Vec<JournalEntry>> {
        self.read("reading the journal", |tx| {
            journal::list(tx, deployment, true)
        })
    }

    fn close_journal(&self, seq: i64, outcome: &JournalOutcome) -> StoreResult<()> {
        let outcome = outcome.clone();
        self.grouped("closing a journal entry", move |tx, _| {
            journal::set_outcome(tx, seq, &outcome)
        })
    }

    fn begin_run(&self, run: &RunRecord) -> StoreResult<i64> {
        self.write("recording a run", |tx| history::begin(tx, run))
    }

    fn finish_run(&self, deployment: &str, serial: i64, run: &RunRecord) -> StoreResult<()> {
        self.write("finishing a run", |tx| {
            history::finish(tx, deployment, serial, run)
        })
    }

    fn runs(&self, deployment: &str) -> StoreResult<Vec<RunRecord>> {
        self.read("reading the history", |tx| {
            history::list(tx, deployment, None)
        })
    }

    fn run(&self, deployment: &str, serial: i64) -> StoreResult<RunRecord> {
        self.read("reading the history", |tx| {
            history::get(tx, deployment, serial)
        })
    }

    fn generated_secrets(&self, deployment: &str) -> StoreResult<BTreeMap<String, String>> {
        self.read("reading generated secrets", |tx| {
            values::generated_secrets(tx, &self.sealer, deployment)
        })
    }

    fn put_generated_secret(&self, deployment: &str, name: &str, value: &str) -> StoreResult<()> {
        self.write("writing a generated secret", |tx| {
            values::put_generated_secret(tx, &self.sealer, deployment, name, value)
        })
    }

    fn put_outputs(
        &self,
        deployment: &str,
        public: &serde_json::Value,
        secrets: &BTreeMap<String, serde_json::Value>,
    ) -> StoreResult<()> {
        self.write("writing outputs", |tx| {
            values::put_outputs(tx, &self.sealer, deployment, public, secrets)
        })
    }

    fn outputs(
        &self,
        deployment: &str,
    ) -> StoreResult<(serde_json::Value, BTreeMap<String, serde_json::Value>)> {
        self.read("reading outputs", |tx| {
            values::outputs(tx, &self.sealer, deployment)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SqliteStore>();
        // The engine holds it as `Arc<dyn StateStore>`.
        let store: std::sync::Arc<dyn StateStore> =
            std::sync::Arc::new(SqliteStore::open_in_memory(KeySource::Bytes([1; 32])).unwrap());
        assert_eq!(store.deployments().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn foreign_keys_are_enforced() {
        let store = SqliteStore::open_in_memory(KeySource::Bytes([1; 32])).unwrap();
        let inserted = store.conn().execute(
            "INSERT INTO outputs (deployment, public, secrets) VALUES ('ghost', 'null', x'00')",
            [],
        );
        let err = inserted.expect_err("a row for an unknown deployment was accepted");
        assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
    }

    #[test]
    fn a_failed_write_rolls_back_entirely() {
        let store = SqliteStore::open_in_memory(KeySource::Bytes([1; 32])).unwrap();
        let err = store
            .write("test", |tx| {
                resources::ensure_deployment(tx, "prod")?;
                Err::<(), _>(StoreError::Storage("boom".into()))
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "state storage: boom");
        let count: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM deployments", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 0);
    }
}
