//! The `jobs` and `job_hosts` tables: cairn-orch's [`JobStore`].
//!
//! A host's result is kept whole as JSON (its status beside it, for
//! counting without parsing). Command output may hold what a host printed,
//! never a secret cairn sealed: modules are given secrets as arguments,
//! and arguments are recorded as the user typed them.

use cairn_orch::job::{HostResult, JobRecord, JobStore, JobStoreError, JobSummary, Tally};
use rusqlite::{Connection, OptionalExtension, params};

use crate::columns::{from_json, to_json};
use crate::error::Context;
use crate::store::SqliteStore;

type R<T> = Result<T, JobStoreError>;

fn err(e: impl std::fmt::Display) -> JobStoreError {
    JobStoreError(e.to_string())
}

fn save(tx: &Connection, job: &JobRecord) -> cairn_engine::store::StoreResult<()> {
    const WHAT: &str = "recording a job";
    tx.execute("DELETE FROM jobs WHERE id = ?1", [&job.id])
        .ctx(WHAT)?;
    tx.execute(
        "INSERT INTO jobs (id, kind, target, function, args, check_only, user, started_at, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            job.id,
            job.kind,
            job.target,
            job.function,
            to_json(&job.args, "job arguments")?,
            job.check,
            job.user,
            job.started_at,
            job.finished_at,
        ],
    )
    .ctx(WHAT)?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO job_hosts (job_id, position, host, status, result) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .ctx(WHAT)?;
    for (position, h) in job.hosts.iter().enumerate() {
        insert
            .execute(params![
                job.id,
                position as i64,
                h.host,
                h.status.as_str(),
                to_json(h, "a host's result")?,
            ])
            .ctx(WHAT)?;
    }
    Ok(())
}

fn hosts(tx: &Connection, id: &str) -> cairn_engine::store::StoreResult<Vec<HostResult>> {
    const WHAT: &str = "reading a job's hosts";
    let mut stmt = tx
        .prepare_cached("SELECT result FROM job_hosts WHERE job_id = ?1 ORDER BY position")
        .ctx(WHAT)?;
    let rows = stmt
        .query_map([id], |row| row.get::<_, String>(0))
        .ctx(WHAT)?;
    let mut out = Vec::new();
    for text in rows {
        out.push(from_json(&text.ctx(WHAT)?, "a host's result")?);
    }
    Ok(out)
}

fn tally(tx: &Connection, id: &str) -> cairn_engine::store::StoreResult<(usize, Tally)> {
    const WHAT: &str = "counting a job's hosts";
    let mut stmt = tx
        .prepare_cached("SELECT status, COUNT(*) FROM job_hosts WHERE job_id = ?1 GROUP BY status")
        .ctx(WHAT)?;
    let rows = stmt
        .query_map([id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })
        .ctx(WHAT)?;
    let (mut total, mut t) = (0, Tally::default());
    for row in rows {
        let (status, n) = row.ctx(WHAT)?;
        let n = n as usize;
        total += n;
        t.add_named(&status, n);
    }
    Ok((total, t))
}

type Head = (
    String,
    String,
    String,
    String,
    String,
    bool,
    String,
    i64,
    Option<i64>,
);

fn head(row: &rusqlite::Row<'_>) -> rusqlite::Result<Head> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

/// A job's row and its hosts' results as the record.
fn record(head: Head, hosts: Vec<HostResult>) -> cairn_engine::store::StoreResult<JobRecord> {
    let (id, kind, target, function, args, check, user, started_at, finished_at) = head;
    Ok(JobRecord {
        args: from_json(&args, "job arguments")?,
        id,
        kind,
        target,
        function,
        check,
        user,
        started_at,
        finished_at,
        hosts,
    })
}

const HEAD: &str =
    "SELECT id, kind, target, function, args, check_only, user, started_at, finished_at FROM jobs";

/// Every job, oldest first, each with its hosts (`state migrate`): two
/// queries, the hosts of all jobs read in one.
pub(crate) fn all(tx: &Connection) -> cairn_engine::store::StoreResult<Vec<JobRecord>> {
    const WHAT: &str = "reading every job";
    let heads: Vec<Head> = {
        let mut stmt = tx.prepare(&format!("{HEAD} ORDER BY id")).ctx(WHAT)?;
        stmt.query_map([], head)
            .ctx(WHAT)?
            .collect::<Result<_, _>>()
            .ctx(WHAT)?
    };
    let mut hosts: std::collections::HashMap<String, Vec<HostResult>> = Default::default();
    let mut stmt = tx
        .prepare("SELECT job_id, result FROM job_hosts ORDER BY job_id, position")
        .ctx(WHAT)?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .ctx(WHAT)?;
    for row in rows {
        let (id, text) = row.ctx(WHAT)?;
        hosts
            .entry(id)
            .or_default()
            .push(from_json(&text, "a host's result")?);
    }
    heads
        .into_iter()
        .map(|head| {
            let of_job = hosts.remove(&head.0).unwrap_or_default();
            record(head, of_job)
        })
        .collect()
}

/// Writes `jobs` (`state migrate`), replacing those of the same id only
/// when `replace`; else one already there refuses them all.
pub(crate) fn import(
    tx: &Connection,
    jobs: &[JobRecord],
    replace: bool,
) -> cairn_engine::store::StoreResult<()> {
    for job in jobs {
        if !replace {
            let there: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1)",
                    [&job.id],
                    |row| row.get(0),
                )
                .ctx("looking for a job")?;
            if there {
                return Err(crate::error::job_already(&job.id));
            }
        }
        save(tx, job)?;
    }
    Ok(())
}

impl JobStore for SqliteStore {
    fn save_job(&self, job: &JobRecord) -> R<()> {
        self.write("recording a job", |tx| save(tx, job))
            .map_err(err)
    }

    fn jobs(&self, limit: usize) -> R<Vec<JobSummary>> {
        self.read("listing jobs", |tx| {
            let heads: Vec<Head> = {
                let mut stmt = tx
                    .prepare_cached(&format!("{HEAD} ORDER BY id DESC LIMIT ?1"))
                    .ctx("listing jobs")?;
                stmt.query_map([limit as i64], head)
                    .ctx("listing jobs")?
                    .collect::<Result<_, _>>()
                    .ctx("listing jobs")?
            };
            let mut out = Vec::with_capacity(heads.len());
            for (id, kind, target, function, _args, _check, user, started_at, finished_at) in heads
            {
                let (hosts, tally) = tally(tx, &id)?;
                out.push(JobSummary {
                    id,
                    kind,
                    target,
                    function,
                    user,
                    started_at,
                    finished_at,
                    hosts,
                    tally,
                });
            }
            Ok(out)
        })
        .map_err(err)
    }

    fn job(&self, id: &str) -> R<Option<JobRecord>> {
        self.read("reading a job", |tx| {
            let found = tx
                .query_row(&format!("{HEAD} WHERE id = ?1"), [id], head)
                .optional()
                .ctx("reading a job")?;
            let Some(head) = found else {
                return Ok(None);
            };
            let hosts = hosts(tx, &head.0)?;
            record(head, hosts).map(Some)
        })
        .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use cairn_orch::job::HostStatus;
    use serde_json::json;

    use super::*;
    use crate::KeySource;

    fn store() -> SqliteStore {
        SqliteStore::open_in_memory(KeySource::Bytes([7; crate::KEY_LEN])).unwrap()
    }

    fn job(id: &str, statuses: &[HostStatus]) -> JobRecord {
        JobRecord {
            id: id.into(),
            kind: "run".into(),
            target: "G@role:web".into(),
            function: "cmd hostname".into(),
            args: json!({"cmd": "hostname"}),
            check: false,
            user: "root".into(),
            started_at: 1_796_426_679,
            finished_at: Some(1_796_426_680),
            hosts: statuses
                .iter()
                .enumerate()
                .map(|(i, s)| HostResult {
                    status: *s,
                    stdout: format!("web-{i}\n"),
                    detail: json!({"diff": []}),
                    ..HostResult::skipped(&format!("web-{i}"), "x")
                })
                .collect(),
        }
    }

    #[test]
    fn a_job_reads_back_whole_and_lists_newest_first_with_its_tally() {
        let s = store();
        let a = job(
            "20261205031522000001",
            &[HostStatus::Changed, HostStatus::Failed],
        );
        let b = job("20261205031523000001", &[HostStatus::Ok; 3]);
        s.save_job(&a).unwrap();
        s.save_job(&b).unwrap();
        assert_eq!(s.job(&a.id).unwrap().as_ref(), Some(&a));
        assert_eq!(s.job("nope").unwrap(), None);
        let list = s.jobs(10).unwrap();
        assert_eq!(
            list.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
            [&b.id, &a.id]
        );
        assert_eq!(list[1].tally, a.tally());
        assert_eq!(list[0].hosts, 3);
        assert_eq!(s.jobs(1).unwrap().len(), 1);
    }

    #[test]
    fn saving_a_job_again_replaces_its_hosts() {
        let s = store();
        let mut a = job("20261205031522000001", &[]);
        a.finished_at = None;
        s.save_job(&a).unwrap();
        let done = job(
            "20261205031522000001",
            &[HostStatus::Ok, HostStatus::Unreachable],
        );
        s.save_job(&done).unwrap();
        assert_eq!(s.job(&a.id).unwrap(), Some(done));
    }
}
