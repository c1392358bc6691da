//! [`PgStore`]: the connection thread, the calls it runs, and the
//! [`StateStore`] over the per-table modules.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use cairn_engine::store::{
    JournalEntry, JournalOutcome, Lease, Owner, ResourceRecord, RunRecord, StateStore, StoreError,
    StoreResult, Timestamp,
};

use super::connection::{Conn, Tx};
use super::url::{PgUrl, SslMode};
use super::{group, history, journal, lease, resources, schema, tls, values};
use crate::key::{KEY_LEN, KeySource};
use crate::seal::Sealer;

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
            sealer: Arc::new(Sealer::new(&[0; KEY_LEN])),
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
