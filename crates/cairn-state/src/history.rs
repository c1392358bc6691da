//! The `runs` table: every run of every deployment, numbered 1, 2, 3, ...
//! per deployment (`cairn rollback --to N` names N).
//!
//! Parameters and outputs arrive with their secrets redacted, and the
//! template files hold no secret values, so nothing here is sealed.

use cairn_engine::store::{RunRecord, StoreError, StoreResult};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, Row, params, params_from_iter};

use crate::columns::{from_json, owner, to_json};
use crate::error::Context;
use crate::resources::ensure_deployment;

const COLUMNS: &str = "serial, deployment, run_id, command, owner_user, owner_host, owner_pid,
                       environment, target, started_at, finished_at, template_digest,
                       template_files, parameters, plan, outcome, duration_ms, outputs";

fn from_row(row: &Row<'_>) -> StoreResult<RunRecord> {
    const WHAT: &str = "reading the history";
    let json = |index: usize, what: &str| -> StoreResult<serde_json::Value> {
        from_json(&row.get::<_, String>(index).ctx(WHAT)?, what)
    };
    Ok(RunRecord {
        serial: row.get(0).ctx(WHAT)?,
        deployment: row.get(1).ctx(WHAT)?,
        run_id: row.get(2).ctx(WHAT)?,
        command: row.get(3).ctx(WHAT)?,
        owner: owner(row, 4).ctx(WHAT)?,
        environment: row.get(7).ctx(WHAT)?,
        target: row.get(8).ctx(WHAT)?,
        started_at: row.get(9).ctx(WHAT)?,
        finished_at: row.get(10).ctx(WHAT)?,
        template_digest: row.get(11).ctx(WHAT)?,
        template_files: from_json(&row.get::<_, String>(12).ctx(WHAT)?, "run template files")?,
        parameters: json(13, "run parameters")?,
        plan: json(14, "run plan")?,
        outcome: row.get(15).ctx(WHAT)?,
        duration_ms: row.get(16).ctx(WHAT)?,
        outputs: json(17, "run outputs")?,
    })
}

/// Stores `run` as the next serial of its deployment (its own `serial` is
/// ignored) and returns that serial. Inside the write transaction, so two
/// runs beginning at once get two serials.
/// The values of a run's row in column order (serial and deployment first):
/// one list for inserting and for overwriting, so the two cannot drift.
fn run_values(serial: i64, deployment: &str, run: &RunRecord) -> StoreResult<Vec<Sql>> {
    Ok(vec![
        Sql::Integer(serial),
        Sql::Text(deployment.to_string()),
        Sql::Text(run.run_id.clone()),
        Sql::Text(run.command.clone()),
        Sql::Text(run.owner.user.clone()),
        Sql::Text(run.owner.host.clone()),
        Sql::Integer(i64::from(run.owner.pid)),
        Sql::Text(run.environment.clone()),
        Sql::Text(run.target.clone()),
        Sql::Integer(run.started_at),
        run.finished_at.map_or(Sql::Null, Sql::Integer),
        Sql::Text(run.template_digest.clone()),
        Sql::Text(to_json(&run.template_files, "run template files")?),
        Sql::Text(to_json(&run.parameters, "run parameters")?),
        Sql::Text(to_json(&run.plan, "run plan")?),
        Sql::Text(run.outcome.clone()),
        run.duration_ms.map_or(Sql::Null, Sql::Integer),
        Sql::Text(to_json(&run.outputs, "run outputs")?),
    ])
}

pub(crate) fn begin(conn: &Connection, run: &RunRecord) -> StoreResult<i64> {
    ensure_deployment(conn, &run.deployment)?;
    let serial: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(serial), 0) + 1 FROM runs WHERE deployment = ?1",
            [&run.deployment],
            |row| row.get(0),
        )
        .ctx("numbering the run")?;
    insert(conn, serial, run)?;
    Ok(serial)
}

/// Inserts `run` as run `serial` of its deployment (a copied history keeps
/// its numbers).
pub(crate) fn insert(conn: &Connection, serial: i64, run: &RunRecord) -> StoreResult<()> {
    conn.execute(
        &format!(
            "INSERT INTO runs ({COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
        ),
        params_from_iter(run_values(serial, &run.deployment, run)?),
    )
    .ctx("recording the run")?;
    Ok(())
}

/// Overwrites run `serial` of `deployment` with `run` (all but its serial
/// and deployment, which the arguments name).
pub(crate) fn finish(
    conn: &Connection,
    deployment: &str,
    serial: i64,
    run: &RunRecord,
) -> StoreResult<()> {
    let updated = conn
        .execute(
            "UPDATE runs SET run_id = ?3, command = ?4, owner_user = ?5, owner_host = ?6,
                 owner_pid = ?7, environment = ?8, target = ?9, started_at = ?10,
                 finished_at = ?11, template_digest = ?12, template_files = ?13,
                 parameters = ?14, plan = ?15, outcome = ?16, duration_ms = ?17, outputs = ?18
             WHERE serial = ?1 AND deployment = ?2",
            params_from_iter(run_values(serial, deployment, run)?),
        )
        .ctx("finishing the run")?;
    if updated == 0 {
        return Err(StoreError::NoSuchRun {
            deployment: deployment.into(),
            serial,
        });
    }
    Ok(())
}

/// Runs of `deployment`, oldest first; only `serial` when given.
pub(crate) fn list(
    conn: &Connection,
    deployment: &str,
    serial: Option<i64>,
) -> StoreResult<Vec<RunRecord>> {
    const WHAT: &str = "reading the history";
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM runs
             WHERE deployment = ?1 AND (?2 IS NULL OR serial = ?2)
             ORDER BY serial"
        ))
        .ctx(WHAT)?;
    let mut rows = stmt.query(params![deployment, serial]).ctx(WHAT)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().ctx(WHAT)? {
        out.push(from_row(row)?);
    }
    Ok(out)
}

pub(crate) fn get(conn: &Connection, deployment: &str, serial: i64) -> StoreResult<RunRecord> {
    list(conn, deployment, Some(serial))?
        .pop()
        .ok_or_else(|| StoreError::NoSuchRun {
            deployment: deployment.into(),
            serial,
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cairn_engine::store::{Owner, StateStore};
    use serde_json::json;

    use super::*;
    use crate::{KeySource, SqliteStore};

    fn run(deployment: &str) -> RunRecord {
        RunRecord {
            serial: 0,
            deployment: deployment.into(),
            run_id: "run-1".into(),
            command: "up".into(),
            owner: Owner {
                user: "ann".into(),
                host: "box".into(),
                pid: 7,
                process: None,
            },
            environment: "dev".into(),
            target: "local".into(),
            started_at: 100,
            finished_at: None,
            template_digest: "sha256:ab".into(),
            template_files: BTreeMap::from([("main.yaml".into(), "resources: {}\n".into())]),
            parameters: json!({"size": 2, "password": "(secret)"}),
            plan: json!([{"address": "web", "action": "create"}]),
            outcome: "running".into(),
            duration_ms: None,
            outputs: json!(null),
        }
    }

    #[test]
    fn begin_numbers_and_finish_overwrites() {
        let s = SqliteStore::open_in_memory(KeySource::Bytes([7; 32])).unwrap();
        assert_eq!(s.begin_run(&run("prod")).unwrap(), 1);
        let serial = s.begin_run(&run("prod")).unwrap();
        assert_eq!(serial, 2);
        let mut done = run("prod");
        done.serial = 2;
        done.finished_at = Some(160);
        done.outcome = "succeeded".into();
        done.duration_ms = Some(60_000);
        done.outputs = json!({"url": "http://x"});
        s.finish_run("prod", serial, &done).unwrap();
        assert_eq!(s.run("prod", 2).unwrap(), done);
        let mut first = run("prod");
        first.serial = 1;
        assert_eq!(s.run("prod", 1).unwrap(), first);
    }

    #[test]
    fn unknown_runs_are_no_such_run() {
        let s = SqliteStore::open_in_memory(KeySource::Bytes([7; 32])).unwrap();
        assert!(matches!(
            s.run("prod", 1),
            Err(StoreError::NoSuchRun { serial: 1, .. })
        ));
        assert!(matches!(
            s.finish_run("prod", 3, &run("prod")),
            Err(StoreError::NoSuchRun { serial: 3, .. })
        ));
    }
}
