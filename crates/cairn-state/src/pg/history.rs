//! `runs` on PostgreSQL (see `crate::history`): numbered per deployment
//! under the deployment's row lock, so two runs beginning at once get two
//! serials.

use cairn_engine::store::{Owner, RunRecord, StoreError, StoreResult};

use super::connection::{Tx, col};
use super::resources::lock_deployment;
use crate::columns::{from_json, to_json};

const COLUMNS: &str = "serial, deployment, run_id, command, owner_user, owner_host, owner_pid,
                       environment, target, started_at, finished_at, template_digest,
                       template_files, parameters, plan, outcome, duration_ms, outputs";

fn from_row(row: &postgres::Row) -> StoreResult<RunRecord> {
    const WHAT: &str = "reading the history";
    let pid: i64 = col(row, 6, WHAT)?;
    Ok(RunRecord {
        serial: col(row, 0, WHAT)?,
        deployment: col(row, 1, WHAT)?,
        run_id: col(row, 2, WHAT)?,
        command: col(row, 3, WHAT)?,
        owner: Owner {
            user: col(row, 4, WHAT)?,
            host: col(row, 5, WHAT)?,
            pid: u32::try_from(pid).unwrap_or(0),
            process: None,
        },
        environment: col(row, 7, WHAT)?,
        target: col(row, 8, WHAT)?,
        started_at: col(row, 9, WHAT)?,
        finished_at: col(row, 10, WHAT)?,
        template_digest: col(row, 11, WHAT)?,
        template_files: from_json(col(row, 12, WHAT)?, "run template files")?,
        parameters: from_json(col(row, 13, WHAT)?, "run parameters")?,
        plan: from_json(col(row, 14, WHAT)?, "run plan")?,
        outcome: col(row, 15, WHAT)?,
        duration_ms: col(row, 16, WHAT)?,
        outputs: from_json(col(row, 17, WHAT)?, "run outputs")?,
    })
}

/// Writes run `serial` of `deployment` (a new row, or over the old one).
pub(crate) fn write(
    tx: &mut Tx<'_>,
    serial: i64,
    deployment: &str,
    run: &RunRecord,
    insert: bool,
) -> StoreResult<u64> {
    let values: [&(dyn postgres::types::ToSql + Sync); 18] = [
        &serial,
        &deployment,
        &run.run_id,
        &run.command,
        &run.owner.user,
        &run.owner.host,
        &i64::from(run.owner.pid),
        &run.environment,
        &run.target,
        &run.started_at,
        &run.finished_at,
        &run.template_digest,
        &to_json(&run.template_files, "run template files")?,
        &to_json(&run.parameters, "run parameters")?,
        &to_json(&run.plan, "run plan")?,
        &run.outcome,
        &run.duration_ms,
        &to_json(&run.outputs, "run outputs")?,
    ];
    if insert {
        tx.execute(
            &format!(
                "INSERT INTO runs ({COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
            ),
            &values,
            "recording the run",
        )
    } else {
        tx.execute(
            "UPDATE runs SET run_id = $3, command = $4, owner_user = $5, owner_host = $6,
                 owner_pid = $7, environment = $8, target = $9, started_at = $10,
                 finished_at = $11, template_digest = $12, template_files = $13,
                 parameters = $14, plan = $15, outcome = $16, duration_ms = $17, outputs = $18
             WHERE serial = $1 AND deployment = $2",
            &values,
            "finishing the run",
        )
    }
}

pub(crate) fn begin(tx: &mut Tx<'_>, run: &RunRecord) -> StoreResult<i64> {
    const WHAT: &str = "numbering the run";
    lock_deployment(tx, &run.deployment)?;
    let row = tx.query_one(
        "SELECT COALESCE(MAX(serial), 0) + 1 FROM runs WHERE deployment = $1",
        &[&run.deployment],
        WHAT,
    )?;
    let serial: i64 = col(&row, 0, WHAT)?;
    write(tx, serial, &run.deployment, run, true)?;
    Ok(serial)
}

pub(crate) fn finish(
    tx: &mut Tx<'_>,
    deployment: &str,
    serial: i64,
    run: &RunRecord,
) -> StoreResult<()> {
    if write(tx, serial, deployment, run, false)? == 0 {
        return Err(StoreError::NoSuchRun {
            deployment: deployment.into(),
            serial,
        });
    }
    Ok(())
}

pub(crate) fn list(
    tx: &mut Tx<'_>,
    deployment: &str,
    serial: Option<i64>,
) -> StoreResult<Vec<RunRecord>> {
    let rows = tx.query(
        &format!(
            "SELECT {COLUMNS} FROM runs
             WHERE deployment = $1 AND ($2::bigint IS NULL OR serial = $2)
             ORDER BY serial"
        ),
        &[&deployment, &serial],
        "reading the history",
    )?;
    rows.iter().map(from_row).collect()
}

pub(crate) fn get(tx: &mut Tx<'_>, deployment: &str, serial: i64) -> StoreResult<RunRecord> {
    list(tx, deployment, Some(serial))?
        .pop()
        .ok_or_else(|| StoreError::NoSuchRun {
            deployment: deployment.into(),
            serial,
        })
}
