//! Group commit: writes that arrive while another commit is being flushed
//! share the next transaction, and so one fsync.
//!
//! An apply journals every provider call's intent and outcome and records
//! its resource, each durable before the run goes on (`synchronous=FULL`).
//! One flush costs milliseconds, and a run with a hundred calls in flight
//! would otherwise queue a hundred flushes one after another. Here a writer
//! queues its write and takes the connection; whoever gets it first runs
//! every queued write, each in a savepoint of one transaction (one write's
//! failure undoes only that write), commits once, and hands each writer its
//! own result. The others find theirs done when the connection is theirs.
//! A write is durable when its writer returns, as before: only the number
//! of flushes changes. (PostgreSQL's `commit_delay` and InnoDB's group
//! commit do the same for their logs.)

use std::sync::{Arc, Mutex, MutexGuard};

use cairn_engine::store::{StoreError, StoreResult};
use rusqlite::{Connection, TransactionBehavior};

use crate::error::Context;
use crate::seal::Sealer;

/// One queued write: runs in the leader's transaction and returns whether
/// it succeeded and what tells its writer the result once the commit is
/// known.
type Job = Box<dyn FnOnce(&Connection, &Sealer) -> (bool, Finish) + Send>;

/// Given the commit's result, hands the writer its own.
type Finish = Box<dyn FnOnce(&Result<(), String>) + Send>;

/// Where a writer waits for its write.
struct Slot<T> {
    state: Mutex<SlotState<T>>,
}

enum SlotState<T> {
    Queued,
    /// A leader took the write; it is done when that leader lets go of the
    /// connection, unless the leader panicked.
    Taken,
    Done(StoreResult<T>),
}

/// The queue of writes not yet taken by a leader.
#[derive(Default)]
pub(crate) struct Group {
    queue: Mutex<Vec<(Job, Arc<dyn Taken>)>>,
    /// Transactions committed (or tried), for tests and figures.
    batches: std::sync::atomic::AtomicU64,
}

/// A queued write's slot, whatever its result type.
trait Taken: Send + Sync {
    /// A leader took the write.
    fn take(&self);
    /// The group failed before this write's result was known.
    fn fail_unless_done(&self, error: &str);
}

impl<T: Send> Taken for Slot<T> {
    fn take(&self) {
        *lock(&self.state) = SlotState::Taken;
    }

    fn fail_unless_done(&self, error: &str) {
        let mut state = lock(&self.state);
        if !matches!(*state, SlotState::Done(_)) {
            *state = SlotState::Done(Err(StoreError::Storage(error.to_string())));
        }
    }
}

impl Group {
    /// How many transactions the group has run.
    pub(crate) fn batches(&self) -> u64 {
        self.batches.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        lock(&self.queue).len()
    }

    /// Runs `f` in a transaction shared with the writes queued beside it and
    /// returns once that transaction is committed (or `f` failed).
    pub(crate) fn write<T: Send + 'static>(
        &self,
        conn: &Mutex<Connection>,
        sealer: &Sealer,
        what: &'static str,
        f: impl FnOnce(&Connection, &Sealer) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState::Queued),
        });
        let mine = slot.clone();
        let job: Job = Box::new(move |conn, sealer| {
            let result = f(conn, sealer);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit: &Result<(), String>| {
                let result = match (result, commit) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Ok(_), Err(e)) => Err(StoreError::Storage(format!("{what}: {e}"))),
                    (Err(e), _) => Err(e),
                };
                *lock(&mine.state) = SlotState::Done(result);
            });
            (ok, finish)
        });
        lock(&self.queue).push((job, slot.clone() as Arc<dyn Taken>));

        // While another writer commits, this waits here and its write may
        // ride along in the next leader's transaction.
        let conn = lock(conn);
        match std::mem::replace(&mut *lock(&slot.state), SlotState::Taken) {
            SlotState::Done(result) => return result,
            SlotState::Taken => {
                return Err(StoreError::Storage(format!(
                    "{what}: the writer that took this write stopped before committing it \
                     (nothing of it was committed)"
                )));
            }
            SlotState::Queued => {}
        }
        let batch = std::mem::take(&mut *lock(&self.queue));
        self.batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        run_batch(&conn, sealer, batch);
        match std::mem::replace(&mut *lock(&slot.state), SlotState::Taken) {
            SlotState::Done(result) => result,
            // Our write was in the batch taken under the connection's lock.
            SlotState::Queued | SlotState::Taken => Err(StoreError::Storage(format!(
                "{what}: the write was lost from its group (a bug)"
            ))),
        }
    }
}

/// Runs each job in a savepoint of one `IMMEDIATE` transaction, commits
/// once, and finishes every job with the commit's result.
fn run_batch(conn: &Connection, sealer: &Sealer, batch: Vec<(Job, Arc<dyn Taken>)>) {
    let slots: Vec<Arc<dyn Taken>> = batch.iter().map(|(_, slot)| slot.clone()).collect();
    for slot in &slots {
        slot.take();
    }
    let mut finishes = Vec::with_capacity(batch.len());
    let commit = (|| -> StoreResult<()> {
        // Dropped on a panic below: the transaction rolls back and the
        // writers waiting for it are told their write was not committed.
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .ctx("starting a group of writes")?;
        for (job, _) in batch {
            tx.execute_batch("SAVEPOINT one_write")
                .ctx("starting one write of a group")?;
            let (ok, finish) = job(&tx, sealer);
            finishes.push(finish);
            // A failed write leaves nothing, as when each write was its own
            // transaction.
            if !ok {
                tx.execute_batch("ROLLBACK TO one_write")
                    .ctx("undoing one write of a group")?;
            }
            tx.execute_batch("RELEASE one_write")
                .ctx("ending one write of a group")?;
        }
        tx.commit().ctx("committing a group of writes")
    })();
    let commit = commit.map_err(|e| e.to_string());
    for finish in finishes {
        finish(&commit);
    }
    // Writes not reached because the group failed before them.
    if let Err(e) = &commit {
        for slot in &slots {
            slot.fail_unless_done(e);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock left no half-done state behind: the
    // transaction it held rolled back when it unwound.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use cairn_engine::store::{JournalEntry, JournalOp, StateStore, StoreError};

    use crate::{KeySource, SqliteStore};

    fn store() -> (Arc<SqliteStore>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "cairn-group-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let store = SqliteStore::open(&dir.join("state.db"), KeySource::Bytes([7; 32])).unwrap();
        (Arc::new(store), dir)
    }

    fn entry(i: usize) -> JournalEntry {
        JournalEntry {
            seq: 0,
            deployment: "prod".into(),
            run_id: "r1".into(),
            address: format!("web[{i}]"),
            kind: "server".into(),
            op: JournalOp::Create,
            token: format!("t{i}"),
            id: None,
            started_at: 1,
            outcome: None,
        }
    }

    /// Waits (bounded) until `n` writes are queued behind the held lock.
    fn wait_queued(store: &SqliteStore, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.group().queued() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} writes queued",
                store.group().queued()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn writes_waiting_together_share_one_commit_and_each_gets_its_own_result() {
        let (store, dir) = store();
        let before = store.group().batches();
        // Holding the connection, as a writer flushing does, lets all 32
        // queue; the first to get it then commits them all at once.
        let held = store.conn();
        let writers: Vec<_> = (0..32)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || store.journal_intent(&entry(i)).unwrap())
            })
            .collect();
        wait_queued(&store, 32);
        drop(held);
        let mut seqs: Vec<i64> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(store.group().batches() - before, 1);
        let journal = store.journal("prod").unwrap();
        assert_eq!(journal.len(), 32);
        for j in &journal {
            // Each writer got the sequence number of its own entry.
            let i: usize = j.token[1..].parse().unwrap();
            assert_eq!(j.address, format!("web[{i}]"));
        }
        seqs.sort();
        seqs.dedup();
        assert_eq!(seqs.len(), 32, "every writer got a distinct seq");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_failed_write_in_a_group_undoes_only_itself() {
        let (store, dir) = store();
        let held = store.conn();
        let good = {
            let store = store.clone();
            std::thread::spawn(move || store.journal_intent(&entry(1)))
        };
        wait_queued(&store, 1);
        let bad = {
            let store = store.clone();
            std::thread::spawn(move || {
                store.grouped("a test write", |tx, _| {
                    crate::journal::intent(tx, &entry(2))?;
                    Err::<(), _>(StoreError::Storage("refused".into()))
                })
            })
        };
        wait_queued(&store, 2);
        drop(held);
        assert!(good.join().unwrap().is_ok());
        let err = bad.join().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "state storage: refused");
        let tokens: Vec<String> = store
            .journal("prod")
            .unwrap()
            .into_iter()
            .map(|j| j.token)
            .collect();
        assert_eq!(tokens, ["t1"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_writer_that_panics_mid_group_commits_nothing_and_the_store_goes_on() {
        let (store, dir) = store();
        let held = store.conn();
        let panicking = {
            let store = store.clone();
            std::thread::spawn(move || {
                store.grouped("a test write", |tx, _| {
                    crate::journal::intent(tx, &entry(1))?;
                    panic!("a bug in a write");
                    #[allow(unreachable_code)]
                    Ok(())
                })
            })
        };
        wait_queued(&store, 1);
        let other = {
            let store = store.clone();
            std::thread::spawn(move || store.journal_intent(&entry(2)))
        };
        wait_queued(&store, 2);
        drop(held);
        // Whichever led the group panicked; the other was told its write
        // was not committed (or panicked itself, if it led).
        let first = panicking.join();
        let second = other.join();
        if let Ok(r) = first {
            assert!(r.is_err());
        }
        if let Ok(r) = second {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("not committed") || e.contains("stopped"), "{e}");
        }
        assert!(store.journal("prod").unwrap_or_default().is_empty());
        // The connection is not left inside the dead transaction.
        store.journal_intent(&entry(3)).unwrap();
        assert_eq!(store.journal("prod").unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
