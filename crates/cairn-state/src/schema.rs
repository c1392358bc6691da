//! The schema and its migrations.
//!
//! The version is SQLite's `PRAGMA user_version`: the number of migrations
//! applied. A migration is appended, never edited: a state file written by
//! an older cairn runs the missing ones in order, inside one transaction;
//! a file from a newer cairn is refused (`TooNew`) rather than misread.

use cairn_engine::store::{StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::Context;
use crate::key::KeySource;
use crate::seal::{Row, Sealer};

const V1: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

-- One row per deployment ever written; `serial` moves on every change to
-- its resources (a saved plan records it and is refused when it moved).
CREATE TABLE deployments (
    name   TEXT PRIMARY KEY,
    serial INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE resources (
    deployment            TEXT NOT NULL REFERENCES deployments (name),
    address               TEXT NOT NULL,
    type                  TEXT NOT NULL,
    id                    TEXT NOT NULL,
    properties            TEXT NOT NULL,  -- JSON, secrets removed
    attributes            TEXT NOT NULL,  -- JSON, secrets removed
    secrets               BLOB NOT NULL,  -- sealed JSON object: path -> value
    tags                  TEXT NOT NULL,  -- JSON object
    depends_on            TEXT NOT NULL,  -- JSON array
    data_holding          INTEGER NOT NULL,
    prevent_destroy       INTEGER NOT NULL,
    create_before_destroy INTEGER NOT NULL,
    PRIMARY KEY (deployment, address)
) STRICT;

CREATE TABLE leases (
    deployment  TEXT PRIMARY KEY REFERENCES deployments (name),
    run_id      TEXT NOT NULL,
    owner_user  TEXT NOT NULL,
    owner_host  TEXT NOT NULL,
    owner_pid   INTEGER NOT NULL,
    operation   TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

-- AUTOINCREMENT: a sequence number is never reused, even after deletes.
CREATE TABLE journal (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment  TEXT NOT NULL REFERENCES deployments (name),
    run_id      TEXT NOT NULL,
    address     TEXT NOT NULL,
    type        TEXT NOT NULL,
    op          TEXT NOT NULL CHECK (op IN ('create', 'update', 'delete')),
    token       TEXT NOT NULL,
    target_id   TEXT,
    started_at  INTEGER NOT NULL,
    -- The outcome; `ok` and `finished_at` are NULL while the call is open.
    ok          INTEGER,
    result_id   TEXT,
    error       TEXT,
    finished_at INTEGER,
    CHECK ((ok IS NULL) = (finished_at IS NULL))
) STRICT;
CREATE INDEX journal_open ON journal (deployment, seq) WHERE ok IS NULL;

CREATE TABLE runs (
    deployment      TEXT NOT NULL REFERENCES deployments (name),
    serial          INTEGER NOT NULL,
    run_id          TEXT NOT NULL,
    command         TEXT NOT NULL,
    owner_user      TEXT NOT NULL,
    owner_host      TEXT NOT NULL,
    owner_pid       INTEGER NOT NULL,
    environment     TEXT NOT NULL,
    target          TEXT NOT NULL,
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    template_digest TEXT NOT NULL,
    template_files  TEXT NOT NULL,  -- JSON object: path -> text
    parameters      TEXT NOT NULL,  -- JSON, secrets redacted
    plan            TEXT NOT NULL,  -- JSON
    outcome         TEXT NOT NULL,
    duration_ms     INTEGER,
    outputs         TEXT NOT NULL,  -- JSON, secrets redacted
    PRIMARY KEY (deployment, serial)
) STRICT;

CREATE TABLE generated_secrets (
    deployment TEXT NOT NULL REFERENCES deployments (name),
    name       TEXT NOT NULL,
    value      BLOB NOT NULL,  -- sealed JSON string
    PRIMARY KEY (deployment, name)
) STRICT;

CREATE TABLE outputs (
    deployment TEXT PRIMARY KEY REFERENCES deployments (name),
    public     TEXT NOT NULL,  -- JSON
    secrets    BLOB NOT NULL   -- sealed JSON object: name -> value
) STRICT;
";

/// The lease holder's process identity (`cairn_engine::holder`): a run on
/// the same host takes over a dead holder's lease at once. NULL in leases
/// written before it, which then wait for their expiry as before.
const V2: &str = "ALTER TABLE leases ADD COLUMN owner_process TEXT;";

/// Orchestration jobs (`cairn run`, `cairn state apply`): not tied to a
/// deployment, since a job may target hosts of several or of none (an
/// Ansible inventory). One row per host result, so `cairn jobs show` reads
/// one job without parsing the others.
const V3: &str = "
CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    target      TEXT NOT NULL,
    function    TEXT NOT NULL,
    args        TEXT NOT NULL,  -- JSON
    check_only  INTEGER NOT NULL,
    user        TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER
) STRICT;

CREATE TABLE job_hosts (
    job_id   TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    host     TEXT NOT NULL,
    status   TEXT NOT NULL,
    result   TEXT NOT NULL,  -- JSON: the whole host result
    PRIMARY KEY (job_id, position)
) STRICT;
";

/// Releases (`cairn release`): the audit trail, across deployments, since
/// promotion compares what ran in one environment with another. The
/// record is kept whole as JSON; the columns beside it are what lists
/// filter and sort by.
const V4: &str = "
CREATE TABLE releases (
    id          TEXT PRIMARY KEY,
    app         TEXT NOT NULL,
    deployment  TEXT NOT NULL,
    environment TEXT NOT NULL,
    version     TEXT NOT NULL,
    digest      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    record      TEXT NOT NULL  -- JSON: the whole release record
) STRICT;
CREATE INDEX releases_by_app ON releases (app, started_at);

-- Keys that sign release artifacts: the public half in clear, the seed
-- sealed with the state's key like every other secret.
CREATE TABLE signing_keys (
    name   TEXT PRIMARY KEY,
    public TEXT NOT NULL,
    sealed BLOB NOT NULL
) STRICT;
";

/// Heal incidents (`cairn heal`): a server failing its health check, from
/// the first failed check to its end. Kept whole as JSON; the columns are
/// what a pass looks up (the open incidents of an app in a deployment) and
/// what the history sorts by.
const V5: &str = "
CREATE TABLE heals (
    id              TEXT PRIMARY KEY,
    app             TEXT NOT NULL,
    deployment      TEXT NOT NULL,
    host            TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    open            INTEGER NOT NULL,
    failing_since   INTEGER NOT NULL,  -- ms since the epoch
    record          TEXT NOT NULL      -- JSON: the whole incident
) STRICT;
CREATE INDEX heals_by_app ON heals (app, deployment, open, failing_since);
";

/// Applied in order; `user_version` counts those applied.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

/// The schema version this cairn writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const KEY_CHECK: &str = "key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"cairn-state key check";

pub(crate) fn version(conn: &Connection) -> StoreResult<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .ctx("reading the schema version")
}

/// Brings the schema up to [`SCHEMA_VERSION`]. `BEGIN IMMEDIATE`: processes
/// opening a new file at once migrate it one after the other, and each
/// re-reads the version under the write lock.
pub(crate) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("locking the state to migrate it")?;
    let found = version(&tx)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let to = index as i64 + 1;
        tx.execute_batch(sql)
            .ctx(&format!("migrating the state to schema {to}"))?;
        tx.pragma_update(None, "user_version", to)
            .ctx("recording the schema version")?;
        tracing::debug!(from = to - 1, to, "migrated the state schema");
    }
    tx.commit().ctx("committing the migration")
}

/// Checks that `key` opens this state, and records a check value the first
/// time. A wrong key fails here with one clear error, before any write
/// could mix secrets sealed under two keys in one file.
pub(crate) fn check_key(
    conn: &mut Connection,
    key: &KeySource,
    state: &str,
) -> StoreResult<Sealer> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("locking the state to check its key")?;
    let check: Option<Vec<u8>> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [KEY_CHECK],
            |row| row.get(0),
        )
        .optional()
        .ctx("reading the key check")?;
    // A state without a check has never sealed anything: a new key is fine.
    let sealer = Sealer::new(&key.load(check.is_none())?);
    match check {
        Some(blob) => {
            let opened = sealer.open(Row::KeyCheck, &blob).ok();
            if opened.as_deref() != Some(KEY_CHECK_PLAINTEXT) {
                return Err(StoreError::Key(format!(
                    "{key} does not open the state {state}: its secrets were encrypted with another key"
                )));
            }
        }
        None => {
            let blob = sealer.seal(Row::KeyCheck, KEY_CHECK_PLAINTEXT)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                rusqlite::params![KEY_CHECK, blob],
            )
            .ctx("recording the key check")?;
        }
    }
    tx.commit().ctx("committing the key check")?;
    Ok(sealer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn migrates_a_new_database_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(version(&conn).unwrap(), 0);
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(
            tables(&conn),
            [
                "deployments",
                "generated_secrets",
                "heals",
                "job_hosts",
                "jobs",
                "journal",
                "leases",
                "meta",
                "outputs",
                "releases",
                "resources",
                "runs",
                "signing_keys"
            ]
        );
        // Again: nothing to do, and no "table already exists".
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_schema_1_lease_survives_the_migration_without_a_holder_process() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(V1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO deployments (name) VALUES ('prod');
             INSERT INTO leases VALUES ('prod', 'run-1', 'ann', 'box', 42, 'up', 10, 40);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), SCHEMA_VERSION);
        let lease = crate::lease::get(&conn, "prod").unwrap().unwrap();
        assert_eq!((lease.owner.pid, lease.owner.process), (42, None));
    }

    #[test]
    fn a_schema_4_state_keeps_its_releases_and_gains_heals() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in [V1, V2, V3, V4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute_batch(
            "INSERT INTO releases VALUES ('r1', 'web', 'd-prod', 'prod', 'v1', 'ab', 'succeeded', 10, '{}');",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), SCHEMA_VERSION);
        let kept: String = conn
            .query_row("SELECT version FROM releases WHERE id = 'r1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(kept, "v1");
        let heals: i64 = conn
            .query_row("SELECT count(*) FROM heals", [], |r| r.get(0))
            .unwrap();
        assert_eq!(heals, 0);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        match migrate(&mut conn) {
            Err(StoreError::TooNew { found, known }) => {
                assert_eq!((found, known), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
        assert!(
            tables(&conn).is_empty(),
            "a refused file must not be touched"
        );
    }

    #[test]
    fn the_key_check_tells_a_wrong_key() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        check_key(&mut conn, &KeySource::Bytes([1; 32]), "mem").unwrap();
        check_key(&mut conn, &KeySource::Bytes([1; 32]), "mem").unwrap();
        match check_key(&mut conn, &KeySource::Bytes([2; 32]), "mem") {
            Err(StoreError::Key(message)) => {
                assert!(message.contains("does not open the state mem"), "{message}")
            }
            Ok(_) => panic!("a wrong key passed the check"),
            Err(other) => panic!("expected a key error, got {other}"),
        }
    }
}
