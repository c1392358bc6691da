//! `journal` on PostgreSQL (see `crate::journal`). `seq` is an identity
//! column: never reused, increasing in commit order per client.

use cairn_engine::store::{JournalEntry, JournalOutcome, StoreError, StoreResult};

use super::connection::{Tx, col};
use super::resources::ensure_deployment;
use crate::journal::{op_from, op_name};

pub(crate) fn intent(tx: &mut Tx<'_>, entry: &JournalEntry) -> StoreResult<i64> {
    const WHAT: &str = "writing a journal intent";
    ensure_deployment(tx, &entry.deployment)?;
    let outcome = entry.outcome.as_ref();
    let row = tx.query_one(
        "INSERT INTO journal
             (deployment, run_id, address, type, op, token, target_id, started_at,
              ok, result_id, error, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         RETURNING seq",
        &[
            &entry.deployment,
            &entry.run_id,
            &entry.address,
            &entry.kind,
            &op_name(entry.op),
            &entry.token,
            &entry.id,
            &entry.started_at,
            &outcome.map(|o| o.ok),
            &outcome.and_then(|o| o.id.as_deref()),
            &outcome.and_then(|o| o.error.as_deref()),
            &outcome.map(|o| o.finished_at),
        ],
        WHAT,
    )?;
    col(&row, 0, WHAT)
}

pub(crate) fn set_outcome(tx: &mut Tx<'_>, seq: i64, outcome: &JournalOutcome) -> StoreResult<()> {
    let updated = tx.execute(
        "UPDATE journal SET ok = $2, result_id = $3, error = $4, finished_at = $5
         WHERE seq = $1",
        &[
            &seq,
            &outcome.ok,
            &outcome.id,
            &outcome.error,
            &outcome.finished_at,
        ],
        "writing a journal outcome",
    )?;
    if updated == 0 {
        return Err(StoreError::Storage(format!(
            "writing a journal outcome: no journal entry {seq}"
        )));
    }
    Ok(())
}

pub(crate) fn list(
    tx: &mut Tx<'_>,
    deployment: &str,
    open_only: bool,
) -> StoreResult<Vec<JournalEntry>> {
    const WHAT: &str = "reading the journal";
    let sql = if open_only {
        "SELECT seq, deployment, run_id, address, type, op, token, target_id, started_at,
                ok, result_id, error, finished_at
         FROM journal WHERE deployment = $1 AND ok IS NULL ORDER BY seq"
    } else {
        "SELECT seq, deployment, run_id, address, type, op, token, target_id, started_at,
                ok, result_id, error, finished_at
         FROM journal WHERE deployment = $1 ORDER BY seq"
    };
    let rows = tx.query(sql, &[&deployment], WHAT)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let ok: Option<bool> = col(row, 9, WHAT)?;
        let finished_at: Option<i64> = col(row, 12, WHAT)?;
        let outcome = match (ok, finished_at) {
            (Some(ok), Some(finished_at)) => Some(JournalOutcome {
                ok,
                id: col(row, 10, WHAT)?,
                error: col(row, 11, WHAT)?,
                finished_at,
            }),
            _ => None,
        };
        out.push(JournalEntry {
            seq: col(row, 0, WHAT)?,
            deployment: col(row, 1, WHAT)?,
            run_id: col(row, 2, WHAT)?,
            address: col(row, 3, WHAT)?,
            kind: col(row, 4, WHAT)?,
            op: op_from(col(row, 5, WHAT)?)?,
            token: col(row, 6, WHAT)?,
            id: col(row, 7, WHAT)?,
            started_at: col(row, 8, WHAT)?,
            outcome,
        });
    }
    Ok(out)
}
