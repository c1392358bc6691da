//! cairn's state on PostgreSQL: [`PgStore`], the same [`StateStore`] (and
//! cairn-orch's `JobStore`) as [`crate::SqliteStore`], for a team, its CI
//! runners and several machines sharing one state.
//!
//! Layout mirrors the SQLite store, one module per table (`resources`,
//! `lease`, `journal`, `history`, `values`, `jobs`), the schema and its
//! migrations in `schema`, URLs and `~/.pgpass` in `url`. Secrets are sealed
//! by [`crate::seal`] exactly as in SQLite, before PostgreSQL sees them: a
//! database administrator reading every table sees no secret.
//!
//! **Sync store, async engine.** The engine calls the store's sync methods
//! from inside a Tokio runtime, and the sync `postgres` client drives its
//! own small runtime with `block_on`, which panics on a runtime thread (and
//! so would dropping the client there). So the client lives on a thread of
//! its own: each store method sends it a closure over a channel and waits
//! for the answer. The engine's calls block the calling thread just as
//! SQLite's do; the hop costs microseconds against a round trip to the
//! server. The thread owns the connection and closes it when the store is
//! dropped. A connection that broke (the server restarted) is opened again,
//! waiting up to `RECONNECT_DEADLINE` for the server to come back; a call
//! whose BEGIN found it broken is begun again, since none of it ran, but a
//! call that broke after BEGIN fails (a write may have committed): the
//! engine's journal reconciles what it did.
//!
//! **Transactions.** Every method is one transaction, READ COMMITTED. What
//! must not interleave per deployment (a lease's read-then-write, a run's
//! serial) first locks the deployment's row (`SELECT ... FOR UPDATE`): two
//! clients serialize there, and the second then reads what the first
//! committed, so two can never both win a lease.
//!
//! All tables live in the PostgreSQL schema `cairn`, so the state can share
//! a database with other things; many deployments share one database.

mod group;
pub(crate) mod history;
pub(crate) mod jobs;
pub(crate) mod journal;
mod lease;
mod releases;
pub(crate) mod resources;
mod schema;
mod tls;
pub mod url;
pub(crate) mod values;

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use cairn_engine::store::{
    JournalEntry, JournalOutcome, Lease, Owner, ResourceRecord, RunRecord, StateStore, StoreError,
    StoreResult, Timestamp,
};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement, Transaction};

use crate::key::KeySource;
use crate::seal::Sealer;
pub use schema::SCHEMA_VERSION as PG_SCHEMA_VERSION;
pub use url::{PgUrl, SslMode, pgpass_lookup};

/// How long a statement waits for a row another client holds locked.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Turns a PostgreSQL error into a [`StoreError`] saying what the store was
/// doing, with a hint for the failures a user fixes.
pub(crate) fn pg_err(what: &str, e: &postgres::Error) -> StoreError {
    use postgres::error::SqlState;
    let hint = match e.code() {
        Some(c) if *c == SqlState::INVALID_PASSWORD => {
            " (check the password: in the URL, PGPASSWORD or ~/.pgpass)"
        }
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => {
            " (the user needs CREATE on the database the first time, to make schema `cairn`, \
             then SELECT, INSERT, UPDATE and DELETE on its tables)"
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => " (create the database first)",
        Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE => " (another client held the rows too long)",
        _ if e.as_db_error().is_none() && e.to_string().contains("TLS") => {
            " (with sslmode=verify-full the server's certificate must be signed by the CA in \
             sslrootcert and name the host in the URL; sslmode=require needs TLS enabled on the server)"
        }
        _ if e.is_closed() || e.as_db_error().is_none() && e.to_string().contains("connect") => {
            " (is the server running and reachable?)"
        }
        _ => "",
    };
    // The Display of a server error is "db error: ERROR: msg"; its detail too.
    let detail = e
        .as_db_error()
        .and_then(|d| d.detail())
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    // The driver's own Display leaves out the cause ("error performing TLS
    // handshake", "error connecting to server"): it is what says why.
    let cause = match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{}: {}", db.severity(), db.message()),
        (None, Some(source)) => format!("{e}: {source}"),
        (None, None) => e.to_string(),
    };
    StoreError::Storage(format!("{what}: {cause}{detail}{hint}"))
}

pub(crate) trait PgContext<T> {
    fn ctx(self, what: &str) -> StoreResult<T>;
}

impl<T> PgContext<T> for Result<T, postgres::Error> {
    fn ctx(self, what: &str) -> StoreResult<T> {
        self.map_err(|e| pg_err(what, &e))
    }
}

/// One transaction, with the connection's prepared statements at hand.
pub(crate) struct Tx<'a> {
    tx: Transaction<'a>,
    cache: &'a mut HashMap<String, Statement>,
}

impl Tx<'_> {
    fn statement(&mut self, sql: &str, what: &str) -> StoreResult<Statement> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql).ctx(what)?;
        self.cache.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    pub(crate) fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &str,
    ) -> StoreResult<u64> {
        let s = self.statement(sql, what)?;
        self.tx.execute(&s, params).ctx(what)
    }

    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &str,
    ) -> StoreResult<Vec<Row>> {
        let s = self.statement(sql, what)?;
        self.tx.query(&s, params).ctx(what)
    }

    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &str,
    ) -> StoreResult<Option<Row>> {
        let s = self.statement(sql, what)?;
        self.tx.query_opt(&s, params).ctx(what)
    }

    pub(crate) fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &str,
    ) -> StoreResult<Row> {
        let s = self.statement(sql, what)?;
        self.tx.query_one(&s, params).ctx(what)
    }

    /// Several statements without parameters (migrations).
    pub(crate) fn batch(&mut self, sql: &str, what: &str) -> StoreResult<()> {
        self.tx.batch_execute(sql).ctx(what)
    }
}

/// Reads column `i` of `row`, naming `what` on a type mismatch.
pub(crate) fn col<'a, T: postgres::types::FromSql<'a>>(
    row: &'a Row,
    i: usize,
    what: &str,
) -> StoreResult<T> {
    row.try_get(i).ctx(what)
}

/// How long a store whose connection broke keeps trying to open it again
/// (a server restarting: `pg_ctl restart` is down for a second or two)
/// before the call fails. Once it gave up, calls try once each until a
/// connection opens again, so a server that stays down fails every call
/// at once rather than after this wait each.
const RECONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// The connection thread's side: the client, opened (again) on demand.
struct Conn {
    url: PgUrl,
    /// `None` for `sslmode=disable`.
    tls: Option<tls::RustlsConnect>,
    client: Option<Client>,
    cache: HashMap<String, Statement>,
    /// Whether a connection was ever open: only then is a failed connect a
    /// server coming back (worth waiting for) rather than bad input.
    opened_once: bool,
    /// Whether the last reconnection ran out of time (see `RECONNECT_DEADLINE`).
    gave_up: bool,
}

/// Whether `e` says the connection (not the statement) failed: the server
/// went away or is shutting down or starting up. Nothing of a statement
/// sent on such a connection after the failure was executed.
fn connection_broke(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code);
    }
    // Refused, reset, broken pipe: an I/O error under the driver's own. A
    // failed TLS handshake is one too, but waiting does not mend it.
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        && !e.to_string().contains("TLS")
}

impl Conn {
    fn connect(&self) -> Result<Client, postgres::Error> {
        let config = self.url.config();
        let mut client = match &self.tls {
            Some(tls) => config.connect(tls.clone())?,
            None => config.connect(NoTls)?,
        };
        client.batch_execute(&format!(
            "SET search_path TO cairn; SET lock_timeout = '{}s';",
            LOCK_TIMEOUT.as_secs()
        ))?;
        Ok(client)
    }

    fn client(&mut self) -> StoreResult<&mut Client> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            tracing::warn!(url = %self.url, "the connection to the state database broke: reconnecting");
            self.client = None;
        }
        if self.client.is_none() {
            let what = format!("connecting to the state {}", self.url);
            let waiting = self.opened_once && !self.gave_up;
            let deadline = std::time::Instant::now() + RECONNECT_DEADLINE;
            let mut pause = Duration::from_millis(50);
            let client = loop {
                match self.connect() {
                    Ok(client) => break client,
                    Err(e)
                        if waiting
                            && connection_broke(&e)
                            && std::time::Instant::now() + pause < deadline =>
                    {
                        tracing::debug!(url = %self.url, error = %e, "the state database is not back yet");
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_secs(1));
                    }
                    Err(e) => {
                        self.gave_up = self.opened_once;
                        let mut err = pg_err(&what, &e);
                        if waiting && let StoreError::Storage(text) = &mut err {
                            text.push_str(&format!(
                                " (the connection broke and did not open again within {} s)",
                                RECONNECT_DEADLINE.as_secs()
                            ));
                        }
                        return Err(err);
                    }
                }
            };
            self.cache.clear();
            self.client = Some(client);
            self.opened_once = true;
            self.gave_up = false;
        }
        // Just set when it was missing.
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Storage("no connection".into()))
    }

    fn transaction<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Tx<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut f = Some(f);
        for retried in [false, true] {
            self.client()?;
            // A connection that broke between two calls (the server
            // restarted) shows only when used, and BEGIN is this call's
            // first statement: nothing of it ran, so it is safe to open the
            // connection again and begin once more. A failure after BEGIN
            // is not retried: a write may have committed.
            let broke = {
                let Conn { client, cache, .. } = &mut *self;
                let client = client
                    .as_mut()
                    .ok_or_else(|| StoreError::Storage("no connection".into()))?;
                match client.transaction() {
                    Ok(tx) => {
                        let f = f
                            .take()
                            .ok_or_else(|| StoreError::Storage("a transaction ran twice".into()))?;
                        let mut tx = Tx { tx, cache };
                        let out = f(&mut tx)?;
                        tx.tx.commit().ctx(what)?;
                        return Ok(out);
                    }
                    Err(e) => e,
                }
            };
            if retried || !connection_broke(&broke) {
                return Err(pg_err(what, &broke));
            }
            tracing::warn!(url = %self.url, error = %broke, "the connection to the state database broke: reconnecting");
            self.client = None;
        }
        Err(StoreError::Storage(format!(
            "{what}: the connection to the state {} broke again as soon as it opened",
            self.url
        )))
    }
}

/// What the connection thread runs.
enum Job {
    /// Anything, in its own transaction (or none).
    Call(Box<dyn FnOnce(&mut Conn) + Send>),
    /// A write that shares a transaction with the writes queued next to it.
    Write(group::Write),
}

/// The state in a PostgreSQL database (schema `cairn`).
pub struct PgStore {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    sealer: Arc<Sealer>,
    url: PgUrl,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, migrates the schema (refusing one from a newer cairn), and
    /// checks that `key` opens the secrets already sealed there.
    pub fn open(url: &PgUrl, key: KeySource) -> StoreResult<PgStore> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let tls = match (url.sslmode, &url.sslrootcert) {
            (SslMode::Disable, _) => None,
            (SslMode::VerifyFull, Some(root)) => Some(tls::verified(root)?),
            (SslMode::VerifyFull, None) => {
                return Err(StoreError::Storage(
                    "sslmode=verify-full needs sslrootcert=PATH".into(),
                ));
            }
            (SslMode::Prefer | SslMode::Require, _) => Some(tls::unverified()?),
        };
        let conn = Conn {
            url: url.clone(),
            tls,
            client: None,
            cache: HashMap::new(),
            opened_once: false,
            gave_up: false,
        };
        let thread = std::thread::Builder::new()
            .name("cairn-state-pg".into())
            .spawn(move || worker(conn, queue))
            .map_err(|e| {
                StoreError::Storage(format!("starting the state connection thread: {e}"))
            })?;
        let mut store = PgStore {
            jobs: Some(jobs),
            thread: Some(thread),
            // Replaced below, once the key is checked.
            sealer: Arc::new(Sealer::new(&[0; crate::KEY_LEN])),
            url: url.clone(),
        };
        let shown = url.to_string();
        store.call(|conn| {
            conn.client()?;
            schema::migrate(conn)
        })??;
        let sealer = store.call(move |conn| {
            conn.transaction("checking the state's key", |tx| {
                schema::check_key(tx, &key, &shown)
            })
        })??;
        store.sealer = Arc::new(sealer);
        Ok(store)
    }

    /// The URL, without its password.
    pub fn url(&self) -> &PgUrl {
        &self.url
    }

    /// Runs `f` on the connection thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> T + Send + 'static,
    ) -> StoreResult<T> {
        let (answer, answered) = mpsc::sync_channel(1);
        let job = Job::Call(Box::new(move |conn| {
            let _ = answer.send(f(conn));
        }));
        self.send(job)?;
        answered.recv().map_err(|_| {
            StoreError::Storage("the state's connection thread failed during the call".into())
        })
    }

    fn send(&self, job: Job) -> StoreResult<()> {
        let gone = || StoreError::Storage("the state's connection thread stopped".into());
        self.jobs
            .as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())
    }

    /// One write that may share its transaction and its flush with the
    /// writes queued beside it ([`group`]).
    fn grouped<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Tx<'_>, &Sealer) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (answer, answered) = mpsc::sync_channel(1);
        let sealer = Arc::clone(&self.sealer);
        let write = group::Write::new(what, move |tx| f(tx, &sealer), answer);
        self.send(Job::Write(write))?;
        answered.recv().map_err(|_| {
            StoreError::Storage(format!(
                "{what}: the state's connection thread failed during the call"
            ))
        })?
    }

    /// One transaction on the connection thread; `f` gets the sealer.
    pub(crate) fn tx<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Tx<'_>, &Sealer) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let sealer = Arc::clone(&self.sealer);
        self.call(move |conn| conn.transaction(what, |tx| f(tx, &sealer)))?
    }

    /// Every journal entry of `deployment`, closed ones too, oldest first.
    pub fn journal(&self, deployment: &str) -> StoreResult<Vec<JournalEntry>> {
        let d = deployment.to_owned();
        self.tx("reading the journal", move |tx, _| {
            journal::list(tx, &d, false)
        })
    }
}

fn worker(mut conn: Conn, queue: mpsc::Receiver<Job>) {
    let mut next = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match queue.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        // A panicking call drops its answer channel (the caller gets an
        // error) and leaves the thread serving the next ones; its
        // transaction was rolled back when it was dropped.
        let ran = match job {
            Job::Call(f) => std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut conn))),
            Job::Write(first) => {
                // The writes queued while the last job ran go together, up
                // to the first job that is not one.
                let mut batch = vec![first];
                while let Ok(job) = queue.try_recv() {
                    match job {
                        Job::Write(w) => batch.push(w),
                        other => {
                            next = Some(other);
                            break;
                        }
                    }
                }
                std::panic::catch_unwind(AssertUnwindSafe(|| group::run(&mut conn, batch)))
            }
        };
        if ran.is_err() {
            conn.client = None;
        }
    }
    // The client closes here, on this thread, outside any runtime.
}

impl Drop for PgStore {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl StateStore for PgStore {
    fn resources(&self, deployment: &str) -> StoreResult<Vec<ResourceRecord>> {
        let d = deployment.to_owned();
        self.tx("reading resources", move |tx, s| resources::list(tx, s, &d))
    }

    fn put_resource(&self, deployment: &str, record: &ResourceRecord) -> StoreResult<()> {
        let (d, r) = (deployment.to_owned(), record.clone());
        self.grouped("writing a resource", move |tx, s| {
            resources::put(tx, s, &d, &r)
        })
    }

    fn delete_resource(&self, deployment: &str, address: &str) -> StoreResult<()> {
        let (d, a) = (deployment.to_owned(), address.to_owned());
        self.grouped("deleting a resource", move |tx, _| {
            resources::delete(tx, &d, &a)
        })
    }

    fn put_resource_and_close(
        &self,
        deployment: &str,
        record: &ResourceRecord,
        seq: i64,
        outcome: &JournalOutcome,
    ) -> StoreResult<()> {
        let (d, r, o) = (deployment.to_owned(), record.clone(), outcome.clone());
        self.grouped("writing a resource", move |tx, s| {
            resources::put(tx, s, &d, &r)?;
            journal::set_outcome(tx, seq, &o)
        })
    }

    fn delete_resource_and_close(
        &self,
        deployment: &str,
        address: &str,
        seq: i64,
        outcome: &JournalOutcome,
    ) -> StoreResult<()> {
        let (d, a, o) = (deployment.to_owned(), address.to_owned(), outcome.clone());
        self.grouped("deleting a resource", move |tx, _| {
            resources::delete(tx, &d, &a)?;
            journal::set_outcome(tx, seq, &o)
        })
    }

    fn serial(&self, deployment: &str) -> StoreResult<i64> {
        let d = deployment.to_owned();
        self.tx("reading the serial", move |tx, _| resources::serial(tx, &d))
    }

    fn deployments(&self) -> StoreResult<Vec<String>> {
        self.tx("listing deployments", |tx, _| resources::deployments(tx))
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
        let (d, o, r, op) = (
            deployment.to_owned(),
            owner.clone(),
            run_id.to_owned(),
            operation.to_owned(),
        );
        self.tx("acquiring the lease", move |tx, _| {
            lease::acquire(tx, &d, &o, &r, &op, ttl, now)
        })
    }

    fn renew_lease(
        &self,
        deployment: &str,
        run_id: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<Lease> {
        let (d, r) = (deployment.to_owned(), run_id.to_owned());
        self.tx("renewing the lease", move |tx, _| {
            lease::renew(tx, &d, &r, ttl, now)
        })
    }

    fn release_lease(&self, deployment: &str, run_id: &str) -> StoreResult<()> {
        let (d, r) = (deployment.to_owned(), run_id.to_owned());
        self.tx("releasing the lease", move |tx, _| {
            lease::release(tx, &d, &r)
        })
    }

    fn lease(&self, deployment: &str) -> StoreResult<Option<Lease>> {
        let d = deployment.to_owned();
        self.tx("reading the lease", move |tx, _| lease::get(tx, &d))
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
        let (d, from, o, r, op) = (
            deployment.to_owned(),
            from_run_id.to_owned(),
            owner.clone(),
            run_id.to_owned(),
            operation.to_owned(),
        );
        self.tx("taking over the lease", move |tx, _| {
            lease::take_over(tx, &d, &from, &o, &r, &op, ttl, now)
        })
    }

    fn break_lease(&self, deployment: &str) -> StoreResult<Option<Lease>> {
        let d = deployment.to_owned();
        self.tx("breaking the lease", move |tx, _| {
            lease::force_remove(tx, &d)
        })
    }

    fn journal_intent(&self, entry: &JournalEntry) -> StoreResult<i64> {
        let e = entry.clone();
        self.grouped("writing a journal intent", move |tx, _| {
            journal::intent(tx, &e)
        })
    }

    fn journal_outcome(&self, seq: i64, outcome: &JournalOutcome) -> StoreResult<()> {
        let o = outcome.clone();
        self.grouped("writing a journal outcome", move |tx, _| {
            journal::set_outcome(tx, seq, &o)
        })
    }

    fn open_journal(&self, deployment: &str) -> StoreResult<Vec<JournalEntry>> {
        let d = deployment.to_owned();
        self.tx("reading the journal", move |tx, _| {
            journal::list(tx, &d, true)
        })
    }

    fn close_journal(&self, seq: i64, outcome: &JournalOutcome) -> StoreResult<()> {
        let o = outcome.clone();
        self.grouped("closing a journal entry", move |tx, _| {
            journal::set_outcome(tx, seq, &o)
        })
    }

    fn begin_run(&self, run: &RunRecord) -> StoreResult<i64> {
        let r = run.clone();
        self.tx("recording a run", move |tx, _| history::begin(tx, &r))
    }

    fn finish_run(&self, deployment: &str, serial: i64, run: &RunRecord) -> StoreResult<()> {
        let (d, r) = (deployment.to_owned(), run.clone());
        self.tx("finishing a run", move |tx, _| {
            history::finish(tx, &d, serial, &r)
        })
    }

    fn runs(&self, deployment: &str) -> StoreResult<Vec<RunRecord>> {
        let d = deployment.to_owned();
        self.tx("reading the history", move |tx, _| {
            history::list(tx, &d, None)
        })
    }

    fn run(&self, deployment: &str, serial: i64) -> StoreResult<RunRecord> {
        let d = deployment.to_owned();
        self.tx("reading the history", move |tx, _| {
            history::get(tx, &d, serial)
        })
    }

    fn generated_secrets(&self, deployment: &str) -> StoreResult<BTreeMap<String, String>> {
        let d = deployment.to_owned();
        self.tx("reading generated secrets", move |tx, s| {
            values::generated_secrets(tx, s, &d)
        })
    }

    fn put_generated_secret(&self, deployment: &str, name: &str, value: &str) -> StoreResult<()> {
        let (d, n, v) = (deployment.to_owned(), name.to_owned(), value.to_owned());
        self.tx("writing a generated secret", move |tx, s| {
            values::put_generated_secret(tx, s, &d, &n, &v)
        })
    }

    fn put_outputs(
        &self,
        deployment: &str,
        public: &serde_json::Value,
        secrets: &BTreeMap<String, serde_json::Value>,
    ) -> StoreResult<()> {
        let (d, p, sec) = (deployment.to_owned(), public.clone(), secrets.clone());
        self.tx("writing outputs", move |tx, s| {
            values::put_outputs(tx, s, &d, &p, &sec)
        })
    }

    fn outputs(
        &self,
        deployment: &str,
    ) -> StoreResult<(serde_json::Value, BTreeMap<String, serde_json::Value>)> {
        let d = deployment.to_owned();
        self.tx("reading outputs", move |tx, s| values::outputs(tx, s, &d))
    }
}

/// Whether the database has a row for `deployment` (`crate::transfer`).
pub(crate) fn holds(tx: &mut Tx<'_>, deployment: &str) -> StoreResult<bool> {
    const WHAT: &str = "looking for a deployment";
    let row = tx.query_one(
        "SELECT EXISTS (SELECT 1 FROM deployments WHERE name = $1)",
        &[&deployment],
        WHAT,
    )?;
    col(&row, 0, WHAT)
}
