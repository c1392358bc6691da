//! The connection to PostgreSQL: [`Conn`], which the connection thread owns
//! and opens again when it broke, and [`Tx`], one transaction with the
//! connection's prepared statements, with the error mapping both share.

use std::collections::HashMap;
use std::time::Duration;

use cairn_engine::store::{StoreError, StoreResult};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement, Transaction};

use super::tls;
use super::url::PgUrl;

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
pub(super) struct Conn {
    pub(super) url: PgUrl,
    /// `None` for `sslmode=disable`.
    pub(super) tls: Option<tls::RustlsConnect>,
    pub(super) client: Option<Client>,
    pub(super) cache: HashMap<String, Statement>,
    /// Whether a connection was ever open: only then is a failed connect a
    /// server coming back (worth waiting for) rather than bad input.
    pub(super) opened_once: bool,
    /// Whether the last reconnection ran out of time (see `RECONNECT_DEADLINE`).
    pub(super) gave_up: bool,
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

    pub(super) fn client(&mut self) -> StoreResult<&mut Client> {
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

    pub(super) fn transaction<T>(
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
