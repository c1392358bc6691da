//! `cairn list --all-deployments`: every deployment with its resource
//! count, last run and lease holder, in one query per store. The list must
//! stay cheap on a state with long histories and many resources: it reads
//! no run but the last of each deployment (by the `(deployment, serial)`
//! key) and no resource body (nothing is opened or parsed).

use cairn_engine::store::{Owner, StoreResult};
use serde::Serialize;

use crate::error::Context;
use crate::pg::PgStore;
use crate::pg::connection::col;
use crate::store::SqliteStore;

/// One deployment as `cairn list --all-deployments` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentSummary {
    pub name: String,
    pub resources: i64,
    pub last_run: Option<LastRun>,
    /// Who holds the lease, expired or not (as `cairn lock show`).
    pub locked_by: Option<Owner>,
}

/// The head of a deployment's last run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastRun {
    pub serial: i64,
    pub command: String,
    pub outcome: String,
    pub user: String,
    pub host: String,
    pub started_at: i64,
}

/// What `cairn list --all-deployments` asks of a store.
pub trait Overview {
    /// Every deployment that holds resources, history or outputs, by name.
    fn overview(&self) -> StoreResult<Vec<DeploymentSummary>>;
}

/// The same query on both stores but for the collation of the order:
/// PostgreSQL's `C` is SQLite's `BINARY`, bytewise as in Rust.
fn query(order: &str) -> String {
    format!(
        "SELECT d.name,
                (SELECT COUNT(*) FROM resources AS r WHERE r.deployment = d.name),
                run.serial, run.command, run.outcome, run.owner_user, run.owner_host,
                run.started_at,
                l.owner_user, l.owner_host, l.owner_pid, l.owner_process
         FROM deployments AS d
         LEFT JOIN runs AS run ON run.deployment = d.name
              AND run.serial = (SELECT MAX(serial) FROM runs WHERE deployment = d.name)
         LEFT JOIN leases AS l ON l.deployment = d.name
         WHERE EXISTS (SELECT 1 FROM resources WHERE deployment = d.name)
            OR EXISTS (SELECT 1 FROM runs WHERE deployment = d.name)
            OR EXISTS (SELECT 1 FROM outputs WHERE deployment = d.name)
         ORDER BY d.name {order}"
    )
}

type RunHead = (
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);
type LeaseHead = (Option<String>, Option<String>, Option<i64>, Option<String>);

fn summary(name: String, resources: i64, run: RunHead, lease: LeaseHead) -> DeploymentSummary {
    let last_run = match run {
        (Some(serial), Some(command), Some(outcome), Some(user), Some(host), Some(started_at)) => {
            Some(LastRun {
                serial,
                command,
                outcome,
                user,
                host,
                started_at,
            })
        }
        _ => None,
    };
    let locked_by = match lease {
        (Some(user), Some(host), Some(pid), process) => Some(Owner {
            user,
            host,
            pid: u32::try_from(pid).unwrap_or(0),
            process,
        }),
        _ => None,
    };
    DeploymentSummary {
        name,
        resources,
        last_run,
        locked_by,
    }
}

impl Overview for SqliteStore {
    fn overview(&self) -> StoreResult<Vec<DeploymentSummary>> {
        const WHAT: &str = "listing deployments";
        self.read(WHAT, |tx| {
            let mut stmt = tx.prepare(&query("")).ctx(WHAT)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok(summary(
                        row.get(0)?,
                        row.get(1)?,
                        (
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                            row.get(5)?,
                            row.get(6)?,
                            row.get(7)?,
                        ),
                        (row.get(8)?, row.get(9)?, row.get(10)?, row.get(11)?),
                    ))
                })
                .ctx(WHAT)?;
            rows.collect::<Result<_, _>>().ctx(WHAT)
        })
    }
}

impl Overview for PgStore {
    fn overview(&self) -> StoreResult<Vec<DeploymentSummary>> {
        const WHAT: &str = "listing deployments";
        self.tx(WHAT, |tx, _| {
            tx.query(&query("COLLATE \"C\""), &[], WHAT)?
                .iter()
                .map(|row| {
                    Ok(summary(
                        col(row, 0, WHAT)?,
                        col(row, 1, WHAT)?,
                        (
                            col(row, 2, WHAT)?,
                            col(row, 3, WHAT)?,
                            col(row, 4, WHAT)?,
                            col(row, 5, WHAT)?,
                            col(row, 6, WHAT)?,
                            col(row, 7, WHAT)?,
                        ),
                        (
                            col(row, 8, WHAT)?,
                            col(row, 9, WHAT)?,
                            col(row, 10, WHAT)?,
                            col(row, 11, WHAT)?,
                        ),
                    ))
                })
                .collect()
        })
    }
}
