//! The PostgreSQL schema (`cairn`) and its migrations.
//!
//! The version is the one row of `cairn.version`: the number of migrations
//! applied. Migrations are appended, never edited, and run on first use
//! in one transaction under an advisory lock, so clients opening a new
//! database at once migrate it one after the other. A database from a newer
//! cairn is refused (`TooNew`) before anything is written to it.
//!
//! The same concepts as SQLite's schema; JSON is kept as `text` (not
//! `jsonb`, which would reorder keys), secrets as sealed `bytea`.

use cairn_engine::store::{StoreError, StoreResult};

use super::connection::{Conn, Tx, col};
use crate::key::KeySource;
use crate::seal::{Row, Sealer};

const V1: &str = "
CREATE TABLE cairn.version (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version integer NOT NULL
);
INSERT INTO cairn.version (version) VALUES (0);

CREATE TABLE cairn.meta (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE cairn.deployments (
    name   text PRIMARY KEY,
    serial bigint NOT NULL DEFAULT 0
);

CREATE TABLE cairn.resources (
    deployment            text NOT NULL REFERENCES cairn.deployments (name),
    address               text NOT NULL,
    type                  text NOT NULL,
    id                    text NOT NULL,
    properties            text NOT NULL,  -- JSON, secrets removed
    attributes            text NOT NULL,  -- JSON, secrets removed
    secrets               bytea NOT NULL, -- sealed JSON object: path -> value
    tags                  text NOT NULL,  -- JSON object
    depends_on            text NOT NULL,  -- JSON array
    data_holding          boolean NOT NULL,
    prevent_destroy       boolean NOT NULL,
    create_before_destroy boolean NOT NULL,
    PRIMARY KEY (deployment, address)
);

-- One row per deployment: owner, expiry, and when it was last renewed.
CREATE TABLE cairn.leases (
    deployment    text PRIMARY KEY REFERENCES cairn.deployments (name),
    run_id        text NOT NULL,
    owner_user    text NOT NULL,
    owner_host    text NOT NULL,
    owner_pid     bigint NOT NULL,
    owner_process text,
    operation     text NOT NULL,
    acquired_at   bigint NOT NULL,
    renewed_at    bigint NOT NULL,
    expires_at    bigint NOT NULL
);

CREATE TABLE cairn.journal (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deployment  text NOT NULL REFERENCES cairn.deployments (name),
    run_id      text NOT NULL,
    address     text NOT NULL,
    type        text NOT NULL,
    op          text NOT NULL CHECK (op IN ('create', 'update', 'delete')),
    token       text NOT NULL,
    target_id   text,
    started_at  bigint NOT NULL,
    ok          boolean,
    result_id   text,
    error       text,
    finished_at bigint,
    CHECK ((ok IS NULL) = (finished_at IS NULL))
);
CREATE INDEX journal_open ON cairn.journal (deployment, seq) WHERE ok IS NULL;
CREATE INDEX journal_deployment ON cairn.journal (deployment, seq);

CREATE TABLE cairn.runs (
    deployment      text NOT NULL REFERENCES cairn.deployments (name),
    serial          bigint NOT NULL,
    run_id          text NOT NULL,
    command         text NOT NULL,
    owner_user      text NOT NULL,
    owner_host      text NOT NULL,
    owner_pid       bigint NOT NULL,
    environment     text NOT NULL,
    target          text NOT NULL,
    started_at      bigint NOT NULL,
    finished_at     bigint,
    template_digest text NOT NULL,
    template_files  text NOT NULL,  -- JSON object: path -> text
    parameters      text NOT NULL,  -- JSON, secrets redacted
    plan            text NOT NULL,  -- JSON
    outcome         text NOT NULL,
    duration_ms     bigint,
    outputs         text NOT NULL,  -- JSON, secrets redacted
    PRIMARY KEY (deployment, serial)
);

CREATE TABLE cairn.generated_secrets (
    deployment text NOT NULL REFERENCES cairn.deployments (name),
    name       text NOT NULL,
    value      bytea NOT NULL,  -- sealed JSON string
    PRIMARY KEY (deployment, name)
);

CREATE TABLE cairn.outputs (
    deployment text PRIMARY KEY REFERENCES cairn.deployments (name),
    public     text NOT NULL,   -- JSON
    secrets    bytea NOT NULL   -- sealed JSON object: name -> value
);

CREATE TABLE cairn.jobs (
    id          text PRIMARY KEY,
    kind        text NOT NULL,
    target      text NOT NULL,
    function    text NOT NULL,
    args        text NOT NULL,  -- JSON
    check_only  boolean NOT NULL,
    \"user\"      text NOT NULL,
    started_at  bigint NOT NULL,
    finished_at bigint
);

CREATE TABLE cairn.job_hosts (
    job_id   text NOT NULL REFERENCES cairn.jobs (id) ON DELETE CASCADE,
    position bigint NOT NULL,
    host     text NOT NULL,
    status   text NOT NULL,
    result   text NOT NULL,  -- JSON: the whole host result
    PRIMARY KEY (job_id, position)
);
";

/// Releases: the audit trail of `cairn release` (see the SQLite schema's V4).
const V2: &str = "
CREATE TABLE cairn.releases (
    id          text PRIMARY KEY,
    app         text NOT NULL,
    deployment  text NOT NULL,
    environment text NOT NULL,
    version     text NOT NULL,
    digest      text NOT NULL,
    outcome     text NOT NULL,
    started_at  bigint NOT NULL,
    record      text NOT NULL  -- JSON: the whole release record
);
CREATE INDEX releases_by_app ON cairn.releases (app, started_at);

-- Keys that sign release artifacts: the public half in clear, the seed
-- sealed with the state's key like every other secret.
CREATE TABLE cairn.signing_keys (
    name   text PRIMARY KEY,
    public text NOT NULL,
    sealed bytea NOT NULL
);
";

/// Heal incidents: `cairn heal`'s trail (see the SQLite schema's V5).
const V3: &str = "
CREATE TABLE cairn.heals (
    id              text PRIMARY KEY,
    app             text NOT NULL,
    deployment      text NOT NULL,
    host            text NOT NULL,
    outcome         text NOT NULL,
    open            boolean NOT NULL,
    failing_since   bigint NOT NULL,  -- ms since the epoch
    record          text NOT NULL     -- JSON: the whole incident
);
CREATE INDEX heals_by_app ON cairn.heals (app, deployment, open, failing_since);
";

/// Applied in order; `cairn.version` counts those applied.
const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The PostgreSQL schema version this cairn writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Any number, the same in every cairn: serializes migrations.
const MIGRATION_LOCK: i64 = 0x6361_6972_6e5f_7067; // "cairn_pg"

const KEY_CHECK: &str = "key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"cairn-state key check";

/// The schema version, 0 when the database has no cairn schema yet.
pub(crate) fn version(tx: &mut Tx<'_>) -> StoreResult<i64> {
    const WHAT: &str = "reading the schema version";
    let exists: bool = col(
        // A query of the catalog, not `to_regclass`: that looks names up in
        // the backend's catalog cache, which may not yet have seen a table
        // another client committed while this one waited for the lock.
        &tx.query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables \
             WHERE schemaname = 'cairn' AND tablename = 'version')",
            &[],
            WHAT,
        )?,
        0,
        WHAT,
    )?;
    if !exists {
        return Ok(0);
    }
    let row = tx.query_one("SELECT version FROM cairn.version", &[], WHAT)?;
    Ok(i64::from(col::<i32>(&row, 0, WHAT)?))
}

/// Brings the schema up to [`SCHEMA_VERSION`], or refuses a newer one.
pub(crate) fn migrate(conn: &mut Conn) -> StoreResult<()> {
    // Most opens find the schema current: no lock, no write.
    let found = conn.transaction("reading the schema version", version)?;
    check_not_newer(found)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    conn.transaction("migrating the state schema", |tx| {
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&MIGRATION_LOCK],
            "locking the state to migrate it",
        )?;
        let found = version(tx)?;
        check_not_newer(found)?;
        if found == 0 {
            let exists: bool = col(
                &tx.query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'cairn')",
                    &[],
                    "looking for schema cairn",
                )?,
                0,
                "looking for schema cairn",
            )?;
            if !exists {
                tx.batch("CREATE SCHEMA cairn", "creating schema cairn")?;
            }
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
            let to = index as i64 + 1;
            tx.batch(sql, &format!("migrating the state to schema {to}"))?;
            tx.execute(
                "UPDATE cairn.version SET version = $1",
                &[&(to as i32)],
                "recording the schema version",
            )?;
            tracing::debug!(from = to - 1, to, "migrated the PostgreSQL state schema");
        }
        Ok(())
    })
}

fn check_not_newer(found: i64) -> StoreResult<()> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// As SQLite's: the first open records a sealed check value, later ones
/// must open it. `FOR UPDATE`-free: the insert races are settled by the
/// primary key (`ON CONFLICT DO NOTHING`, then read back what won).
pub(crate) fn check_key(tx: &mut Tx<'_>, key: &KeySource, state: &str) -> StoreResult<Sealer> {
    const WHAT: &str = "reading the key check";
    let found = tx.query_opt("SELECT value FROM meta WHERE key = $1", &[&KEY_CHECK], WHAT)?;
    let check: Option<Vec<u8>> = match &found {
        Some(row) => Some(col(row, 0, WHAT)?),
        None => None,
    };
    let sealer = Sealer::new(&key.load(check.is_none())?);
    let blob = match check {
        Some(blob) => blob,
        None => {
            let blob = sealer.seal(Row::KeyCheck, KEY_CHECK_PLAINTEXT)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&KEY_CHECK, &blob],
                "recording the key check",
            )?;
            let row = tx.query_one("SELECT value FROM meta WHERE key = $1", &[&KEY_CHECK], WHAT)?;
            col(&row, 0, WHAT)?
        }
    };
    let opened = sealer.open(Row::KeyCheck, &blob).ok();
    if opened.as_deref() != Some(KEY_CHECK_PLAINTEXT) {
        return Err(StoreError::Key(format!(
            "{key} does not open the state {state}: its secrets were encrypted with another key"
        )));
    }
    Ok(sealer)
}
