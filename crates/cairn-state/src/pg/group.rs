//! Group commit on PostgreSQL: the writes waiting in the connection
//! thread's queue when it is free again share one transaction, and so one
//! WAL flush (SQLite's side: `crate::group`).
//!
//! The connection thread runs one job at a time; while it commits, the
//! apply's other steps queue their journal and resource writes behind it.
//! It takes every write queued next to each other at once, runs each in a
//! savepoint (a failed write undoes only itself, as when each was its own
//! transaction), commits once, and answers each writer. A writer still
//! returns only once its write is committed.

use std::sync::mpsc;

use cairn_engine::store::{StoreError, StoreResult};

use super::connection::{Conn, Tx};

/// One write queued for a group.
pub(super) struct Write {
    /// Runs the write; says whether it succeeded and how to answer once the
    /// commit's result is known.
    run: Run,
    /// Answers the writer when the group failed before its write ran.
    abandon: Box<dyn FnOnce(&str) + Send>,
}

type Run = Box<dyn FnOnce(&mut Tx<'_>) -> (bool, Finish) + Send>;
type Finish = Box<dyn FnOnce(&Result<(), String>) + Send>;

impl Write {
    /// A write of `f` whose result goes to `answer`.
    pub(super) fn new<T: Send + 'static>(
        what: &'static str,
        f: impl FnOnce(&mut Tx<'_>) -> StoreResult<T> + Send + 'static,
        answer: mpsc::SyncSender<StoreResult<T>>,
    ) -> Write {
        let abandoned = answer.clone();
        Write {
            run: Box::new(move |tx| {
                let result = f(tx);
                let ok = result.is_ok();
                let finish: Finish = Box::new(move |commit| {
                    let result = match (result, commit) {
                        (Ok(v), Ok(())) => Ok(v),
                        (Ok(_), Err(e)) => Err(StoreError::Storage(format!("{what}: {e}"))),
                        (Err(e), _) => Err(e),
                    };
                    let _ = answer.send(result);
                });
                (ok, finish)
            }),
            abandon: Box::new(move |e| {
                let _ = abandoned.send(Err(StoreError::Storage(format!("{what}: {e}"))));
            }),
        }
    }
}

/// Runs `batch` in one transaction and answers every writer.
pub(super) fn run(conn: &mut Conn, batch: Vec<Write>) {
    let mut finishes = Vec::with_capacity(batch.len());
    let mut abandons = Vec::with_capacity(batch.len());
    let mut runs = Vec::with_capacity(batch.len());
    for w in batch {
        runs.push(w.run);
        abandons.push(Some(w.abandon));
    }
    let mut runs = runs.into_iter().enumerate();
    let commit = conn.transaction("committing a group of writes", |tx| {
        for (i, run) in runs.by_ref() {
            tx.batch("SAVEPOINT one_write", "starting one write of a group")?;
            let (ok, finish) = run(tx);
            finishes.push(finish);
            abandons[i] = None;
            if !ok {
                tx.batch(
                    "ROLLBACK TO SAVEPOINT one_write",
                    "undoing one write of a group",
                )?;
            }
            tx.batch("RELEASE SAVEPOINT one_write", "ending one write of a group")?;
        }
        Ok(())
    });
    let commit = commit.map_err(|e| e.to_string());
    for finish in finishes {
        finish(&commit);
    }
    let reason = match &commit {
        Ok(()) => "the group of writes ended before this one ran (a bug)".to_string(),
        Err(e) => format!("not run: {e}"),
    };
    for abandon in abandons.into_iter().flatten() {
        abandon(&reason);
    }
}
