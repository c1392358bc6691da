//! `jobs` and `job_hosts` on PostgreSQL: cairn-orch's [`JobStore`] (see
//! `crate::jobs`).

use cairn_engine::store::StoreResult;
use cairn_orch::job::{HostResult, JobRecord, JobStore, JobStoreError, JobSummary, Tally};

use super::connection::{Tx, col};
use super::store::PgStore;
use crate::columns::{from_json, to_json};

type R<T> = Result<T, JobStoreError>;

fn err(e: impl std::fmt::Display) -> JobStoreError {
    JobStoreError(e.to_string())
}

const HEAD: &str = "SELECT id, kind, target, function, args, check_only, \"user\", started_at, finished_at FROM jobs";

fn save(tx: &mut Tx<'_>, job: &JobRecord) -> StoreResult<()> {
    const WHAT: &str = "recording a job";
    tx.execute("DELETE FROM jobs WHERE id = $1", &[&job.id], WHAT)?;
    tx.execute(
        "INSERT INTO jobs (id, kind, target, function, args, check_only, \"user\", started_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &job.id,
            &job.kind,
            &job.target,
            &job.function,
            &to_json(&job.args, "job arguments")?,
            &job.check,
            &job.user,
            &job.started_at,
            &job.finished_at,
        ],
        WHAT,
    )?;
    for (position, h) in job.hosts.iter().enumerate() {
        tx.execute(
            "INSERT INTO job_hosts (job_id, position, host, status, result) VALUES ($1, $2, $3, $4, $5)",
            &[
                &job.id,
                &(position as i64),
                &h.host,
                &h.status.as_str(),
                &to_json(h, "a host's result")?,
            ],
            WHAT,
        )?;
    }
    Ok(())
}

fn tally(tx: &mut Tx<'_>, id: &str) -> StoreResult<(usize, Tally)> {
    const WHAT: &str = "counting a job's hosts";
    let rows = tx.query(
        "SELECT status, COUNT(*) FROM job_hosts WHERE job_id = $1 GROUP BY status",
        &[&id],
        WHAT,
    )?;
    let (mut total, mut t) = (0, Tally::default());
    for row in &rows {
        let status: &str = col(row, 0, WHAT)?;
        let n = col::<i64>(row, 1, WHAT)? as usize;
        total += n;
        t.add_named(status, n);
    }
    Ok((total, t))
}

/// Every job, oldest first, each with its hosts (`state migrate`).
pub(crate) fn all(tx: &mut Tx<'_>) -> StoreResult<Vec<JobRecord>> {
    const WHAT: &str = "reading every job";
    let mut hosts: std::collections::HashMap<String, Vec<HostResult>> = Default::default();
    for row in &tx.query(
        "SELECT job_id, result FROM job_hosts ORDER BY job_id, position",
        &[],
        WHAT,
    )? {
        hosts
            .entry(col(row, 0, WHAT)?)
            .or_default()
            .push(from_json(col(row, 1, WHAT)?, "a host's result")?);
    }
    tx.query(&format!("{HEAD} ORDER BY id"), &[], WHAT)?
        .iter()
        .map(|row| {
            let id: String = col(row, 0, WHAT)?;
            Ok(JobRecord {
                hosts: hosts.remove(&id).unwrap_or_default(),
                id,
                kind: col(row, 1, WHAT)?,
                target: col(row, 2, WHAT)?,
                function: col(row, 3, WHAT)?,
                args: from_json(col(row, 4, WHAT)?, "job arguments")?,
                check: col(row, 5, WHAT)?,
                user: col(row, 6, WHAT)?,
                started_at: col(row, 7, WHAT)?,
                finished_at: col(row, 8, WHAT)?,
            })
        })
        .collect()
}

/// Writes `jobs` (`state migrate`), replacing those of the same id only
/// when `replace`; else one already there refuses them all.
pub(crate) fn import(tx: &mut Tx<'_>, jobs: &[JobRecord], replace: bool) -> StoreResult<()> {
    const WHAT: &str = "looking for a job";
    for job in jobs {
        if !replace {
            let row = tx.query_one(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1)",
                &[&job.id],
                WHAT,
            )?;
            if col::<bool>(&row, 0, WHAT)? {
                return Err(crate::error::job_already(&job.id));
            }
        }
        save(tx, job)?;
    }
    Ok(())
}

impl JobStore for PgStore {
    fn save_job(&self, job: &JobRecord) -> R<()> {
        let job = job.clone();
        self.tx("recording a job", move |tx, _| save(tx, &job))
            .map_err(err)
    }

    fn jobs(&self, limit: usize) -> R<Vec<JobSummary>> {
        self.tx("listing jobs", move |tx, _| {
            const WHAT: &str = "listing jobs";
            let rows = tx.query(
                &format!("{HEAD} ORDER BY id DESC LIMIT $1"),
                &[&(limit as i64)],
                WHAT,
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: String = col(row, 0, WHAT)?;
                let (hosts, tally) = tally(tx, &id)?;
                out.push(JobSummary {
                    kind: col(row, 1, WHAT)?,
                    target: col(row, 2, WHAT)?,
                    function: col(row, 3, WHAT)?,
                    user: col(row, 6, WHAT)?,
                    started_at: col(row, 7, WHAT)?,
                    finished_at: col(row, 8, WHAT)?,
                    id,
                    hosts,
                    tally,
                });
            }
            Ok(out)
        })
        .map_err(err)
    }

    fn job(&self, id: &str) -> R<Option<JobRecord>> {
        let id = id.to_owned();
        self.tx("reading a job", move |tx, _| {
            const WHAT: &str = "reading a job";
            let Some(row) = tx.query_opt(&format!("{HEAD} WHERE id = $1"), &[&id], WHAT)? else {
                return Ok(None);
            };
            let hosts: Vec<HostResult> = tx
                .query(
                    "SELECT result FROM job_hosts WHERE job_id = $1 ORDER BY position",
                    &[&id],
                    "reading a job's hosts",
                )?
                .iter()
                .map(|r| from_json(col(r, 0, WHAT)?, "a host's result"))
                .collect::<StoreResult<_>>()?;
            Ok(Some(JobRecord {
                id: col(&row, 0, WHAT)?,
                kind: col(&row, 1, WHAT)?,
                target: col(&row, 2, WHAT)?,
                function: col(&row, 3, WHAT)?,
                args: from_json(col(&row, 4, WHAT)?, "job arguments")?,
                check: col(&row, 5, WHAT)?,
                user: col(&row, 6, WHAT)?,
                started_at: col(&row, 7, WHAT)?,
                finished_at: col(&row, 8, WHAT)?,
                hosts,
            }))
        })
        .map_err(err)
    }
}
