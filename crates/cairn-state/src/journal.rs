//! The `journal` table: every provider call's intent, written before the
//! call, and its outcome, written after. Entries without an outcome are the
//! calls a killed run left behind, which the next run reconciles.

use cairn_engine::store::{JournalEntry, JournalOp, JournalOutcome, StoreError, StoreResult};
use rusqlite::{Connection, params};

use crate::error::Context;
use crate::resources::ensure_deployment;

const COLUMNS: &str = "seq, deployment, run_id, address, type, op, token, target_id, started_at,
                       ok, result_id, error, finished_at";

pub(crate) fn op_name(op: JournalOp) -> &'static str {
    match op {
        JournalOp::Create => "create",
        JournalOp::Update => "update",
        JournalOp::Delete => "delete",
    }
}

pub(crate) fn op_from(name: &str) -> StoreResult<JournalOp> {
    match name {
        "create" => Ok(JournalOp::Create),
        "update" => Ok(JournalOp::Update),
        "delete" => Ok(JournalOp::Delete),
        other => Err(StoreError::Storage(format!(
            "reading the journal: unknown operation `{other}`"
        ))),
    }
}

/// Inserts the entry (its `seq` is ignored) and returns the sequence number
/// given to it. An entry that arrives with an outcome is stored closed.
pub(crate) fn intent(conn: &Connection, entry: &JournalEntry) -> StoreResult<i64> {
    ensure_deployment(conn, &entry.deployment)?;
    let outcome = entry.outcome.as_ref();
    conn.execute(
        "INSERT INTO journal
             (deployment, run_id, address, type, op, token, target_id, started_at,
              ok, result_id, error, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            entry.deployment,
            entry.run_id,
            entry.address,
            entry.kind,
            op_name(entry.op),
            entry.token,
            entry.id,
            entry.started_at,
            outcome.map(|o| o.ok),
            outcome.and_then(|o| o.id.as_deref()),
            outcome.and_then(|o| o.error.as_deref()),
            outcome.map(|o| o.finished_at),
        ],
    )
    .ctx("writing a journal intent")?;
    Ok(conn.last_insert_rowid())
}

/// Records the outcome of entry `seq` (replacing any earlier one).
pub(crate) fn set_outcome(
    conn: &Connection,
    seq: i64,
    outcome: &JournalOutcome,
) -> StoreResult<()> {
    let updated = conn
        .execute(
            "UPDATE journal SET ok = ?2, result_id = ?3, error = ?4, finished_at = ?5
             WHERE seq = ?1",
            params![
                seq,
                outcome.ok,
                outcome.id,
                outcome.error,
                outcome.finished_at
            ],
        )
        .ctx("writing a journal outcome")?;
    if updated == 0 {
        return Err(StoreError::Storage(format!(
            "writing a journal outcome: no journal entry {seq}"
        )));
    }
    Ok(())
}

/// Entries of `deployment`, oldest first; only those without an outcome
/// when `open_only`.
pub(crate) fn list(
    conn: &Connection,
    deployment: &str,
    open_only: bool,
) -> StoreResult<Vec<JournalEntry>> {
    const WHAT: &str = "reading the journal";
    let filter = if open_only { "AND ok IS NULL" } else { "" };
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM journal WHERE deployment = ?1 {filter} ORDER BY seq"
        ))
        .ctx(WHAT)?;
    let mut rows = stmt.query([deployment]).ctx(WHAT)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().ctx(WHAT)? {
        let ok: Option<bool> = row.get(9).ctx(WHAT)?;
        let finished_at: Option<i64> = row.get(12).ctx(WHAT)?;
        let outcome = match (ok, finished_at) {
            (Some(ok), Some(finished_at)) => Some(JournalOutcome {
                ok,
                id: row.get(10).ctx(WHAT)?,
                error: row.get(11).ctx(WHAT)?,
                finished_at,
            }),
            _ => None,
        };
        out.push(JournalEntry {
            seq: row.get(0).ctx(WHAT)?,
            deployment: row.get(1).ctx(WHAT)?,
            run_id: row.get(2).ctx(WHAT)?,
            address: row.get(3).ctx(WHAT)?,
            kind: row.get(4).ctx(WHAT)?,
            op: op_from(&row.get::<_, String>(5).ctx(WHAT)?)?,
            token: row.get(6).ctx(WHAT)?,
            id: row.get(7).ctx(WHAT)?,
            started_at: row.get(8).ctx(WHAT)?,
            outcome,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use cairn_engine::store::StateStore;

    use super::*;
    use crate::{KeySource, SqliteStore};

    fn entry(deployment: &str, address: &str, op: JournalOp) -> JournalEntry {
        JournalEntry {
            seq: 0,
            deployment: deployment.into(),
            run_id: "run-1".into(),
            address: address.into(),
            kind: "server".into(),
            op,
            token: format!("tok-{address}"),
            id: (op != JournalOp::Create).then(|| format!("i-{address}")),
            started_at: 100,
            outcome: None,
        }
    }

    #[test]
    fn ops_round_trip_by_name() {
        for op in [JournalOp::Create, JournalOp::Update, JournalOp::Delete] {
            assert_eq!(op_from(op_name(op)).unwrap(), op);
        }
        assert!(op_from("explode").is_err());
    }

    #[test]
    fn intents_get_increasing_seqs_and_round_trip() {
        let s = SqliteStore::open_in_memory(KeySource::Bytes([7; 32])).unwrap();
        let a = s
            .journal_intent(&entry("prod", "a", JournalOp::Create))
            .unwrap();
        let b = s
            .journal_intent(&entry("prod", "b", JournalOp::Delete))
            .unwrap();
        assert!(b > a);
        let mut expected = entry("prod", "a", JournalOp::Create);
        expected.seq = a;
        assert_eq!(s.open_journal("prod").unwrap()[0], expected);
    }

    #[test]
    fn an_outcome_for_an_unknown_entry_is_an_error() {
        let s = SqliteStore::open_in_memory(KeySource::Bytes([7; 32])).unwrap();
        let outcome = JournalOutcome {
            ok: true,
            id: None,
            error: None,
            finished_at: 1,
        };
        let err = s.journal_outcome(99, &outcome).unwrap_err();
        assert!(err.to_string().contains("no journal entry 99"), "{err}");
    }
}
