//! Copying a deployment's whole state between stores (`cairn state
//! migrate`): [`Transfer::export`] reads it in one transaction (a
//! consistent snapshot), [`Transfer::import`] writes it in one transaction
//! (a half-copied deployment is never visible), and [`DeploymentDump::tables`]
//! gives per-table row counts and digests to check the copy with;
//! [`job_tables`] the same for the orchestration jobs, which belong to no
//! deployment and travel with the whole state.
//!
//! Secrets travel opened, in memory only, and are sealed again by the
//! target with its key and bound to their row there: the copy works
//! whether or not both stores use the same key, and a sealed blob is never
//! moved as bytes (its nonce is drawn again, so digests are taken over
//! the opened values, never printed).

use std::collections::BTreeMap;

use cairn_engine::store::{JournalEntry, ResourceRecord, RunRecord, StoreError, StoreResult};
use cairn_orch::job::JobRecord;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Context;
use crate::pg::PgStore;
use crate::pg::{history as pg_history, jobs as pg_jobs, journal as pg_journal};
use crate::pg::{resources as pg_resources, values as pg_values};
use crate::store::SqliteStore;
use crate::{history, jobs, journal, resources, values};

type Outputs = (serde_json::Value, BTreeMap<String, serde_json::Value>);

/// Everything a store keeps about one deployment, but its lease (a run in
/// progress is not copied: `state migrate` refuses a leased deployment).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentDump {
    pub name: String,
    /// The serial of its resources (saved plans compare it).
    pub serial: i64,
    /// By address.
    pub resources: Vec<ResourceRecord>,
    /// By serial.
    pub runs: Vec<RunRecord>,
    /// Oldest first; `seq` is the source's and is given anew by the target.
    pub journal: Vec<JournalEntry>,
    pub generated_secrets: BTreeMap<String, String>,
    /// `None` when the deployment never had outputs.
    pub outputs: Option<Outputs>,
}

/// One table of a dump: its rows and a SHA-256 over their contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCheck {
    pub table: &'static str,
    pub rows: usize,
    pub digest: String,
}

/// SHA-256 of a value's JSON: how a copied table is compared with its source.
pub fn digest<T: Serialize + ?Sized>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

impl DeploymentDump {
    /// Per table: rows and digest. The journal is taken without its
    /// sequence numbers (a target numbers entries anew, in the same order).
    pub fn tables(&self) -> Vec<TableCheck> {
        let journal: Vec<JournalEntry> = self
            .journal
            .iter()
            .map(|e| JournalEntry {
                seq: 0,
                ..e.clone()
            })
            .collect();
        vec![
            TableCheck {
                table: "deployments",
                rows: 1,
                digest: digest(&(&self.name, self.serial)),
            },
            TableCheck {
                table: "resources",
                rows: self.resources.len(),
                digest: digest(&self.resources),
            },
            TableCheck {
                table: "runs",
                rows: self.runs.len(),
                digest: digest(&self.runs),
            },
            TableCheck {
                table: "journal",
                rows: journal.len(),
                digest: digest(&journal),
            },
            TableCheck {
                table: "generated_secrets",
                rows: self.generated_secrets.len(),
                digest: digest(&self.generated_secrets),
            },
            TableCheck {
                table: "outputs",
                rows: usize::from(self.outputs.is_some()),
                digest: digest(&self.outputs),
            },
        ]
    }
}

/// The `jobs` and `job_hosts` tables of `jobs` (orchestration jobs,
/// which belong to no deployment): rows and digests, as
/// [`DeploymentDump::tables`] gives them for a deployment.
pub fn job_tables(jobs: &[JobRecord]) -> Vec<TableCheck> {
    let heads: Vec<JobRecord> = jobs
        .iter()
        .map(|j| JobRecord {
            hosts: Vec::new(),
            ..j.clone()
        })
        .collect();
    let hosts: Vec<_> = jobs
        .iter()
        .flat_map(|j| j.hosts.iter().map(move |h| (&j.id, h)))
        .collect();
    vec![
        TableCheck {
            table: "jobs",
            rows: heads.len(),
            digest: digest(&heads),
        },
        TableCheck {
            table: "job_hosts",
            rows: hosts.len(),
            digest: digest(&hosts),
        },
    ]
}

/// What `state migrate` needs from a store beyond [`StateStore`].
///
/// [`StateStore`]: cairn_engine::store::StateStore
pub trait Transfer {
    /// The whole state of `deployment`, read in one transaction.
    fn export(&self, deployment: &str) -> StoreResult<DeploymentDump>;
    /// Writes `dump` in one transaction. Refused when this store already
    /// holds the deployment, unless `replace`, which removes it first.
    fn import(&self, dump: &DeploymentDump, replace: bool) -> StoreResult<()>;
    /// Whether the store has any row for `deployment`.
    fn holds(&self, deployment: &str) -> StoreResult<bool>;
    /// Every journal entry of `deployment`, closed ones too, oldest first.
    fn journal(&self, deployment: &str) -> StoreResult<Vec<JournalEntry>>;
    /// Every orchestration job, oldest first, read in one transaction.
    fn export_jobs(&self) -> StoreResult<Vec<JobRecord>>;
    /// Writes `jobs` in one transaction. Refused when this store already
    /// holds a job of the same id, unless `replace`.
    fn import_jobs(&self, jobs: &[JobRecord], replace: bool) -> StoreResult<()>;
}

fn already(deployment: &str) -> StoreError {
    StoreError::Storage(format!(
        "the target already holds deployment `{deployment}` (pass --force to replace it)"
    ))
}

impl Transfer for SqliteStore {
    fn export(&self, deployment: &str) -> StoreResult<DeploymentDump> {
        self.read("exporting a deployment", |tx| {
            Ok(DeploymentDump {
                name: deployment.into(),
                serial: resources::serial(tx, deployment)?,
                resources: resources::list(tx, &self.sealer, deployment)?,
                runs: history::list(tx, deployment, None)?,
                journal: journal::list(tx, deployment, false)?,
                generated_secrets: values::generated_secrets(tx, &self.sealer, deployment)?,
                outputs: if values::has_outputs(tx, deployment)? {
                    Some(values::outputs(tx, &self.sealer, deployment)?)
                } else {
                    None
                },
            })
        })
    }

    fn import(&self, dump: &DeploymentDump, replace: bool) -> StoreResult<()> {
        let d = dump.name.as_str();
        self.write("importing a deployment", |tx| {
            if sqlite_holds(tx, d)? {
                if !replace {
                    return Err(already(d));
                }
                resources::delete_deployment(tx, d)?;
            }
            resources::ensure_deployment(tx, d)?;
            for r in &dump.resources {
                resources::put(tx, &self.sealer, d, r)?;
            }
            for run in &dump.runs {
                history::insert(tx, run.serial, run)?;
            }
            for entry in &dump.journal {
                journal::intent(tx, entry)?;
            }
            for (name, value) in &dump.generated_secrets {
                values::put_generated_secret(tx, &self.sealer, d, name, value)?;
            }
            if let Some((public, secrets)) = &dump.outputs {
                values::put_outputs(tx, &self.sealer, d, public, secrets)?;
            }
            resources::set_serial(tx, d, dump.serial)
        })
    }

    fn journal(&self, deployment: &str) -> StoreResult<Vec<JournalEntry>> {
        SqliteStore::journal(self, deployment)
    }

    fn holds(&self, deployment: &str) -> StoreResult<bool> {
        self.read("looking for a deployment", |tx| {
            sqlite_holds(tx, deployment)
        })
    }

    fn export_jobs(&self) -> StoreResult<Vec<JobRecord>> {
        self.read("exporting jobs", |tx| jobs::all(tx))
    }

    fn import_jobs(&self, list: &[JobRecord], replace: bool) -> StoreResult<()> {
        self.write("importing jobs", |tx| jobs::import(tx, list, replace))
    }
}

fn sqlite_holds(conn: &rusqlite::Connection, deployment: &str) -> StoreResult<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM deployments WHERE name = ?1)",
        [deployment],
        |row| row.get(0),
    )
    .ctx("looking for a deployment")
}

impl Transfer for PgStore {
    fn export(&self, deployment: &str) -> StoreResult<DeploymentDump> {
        let d = deployment.to_owned();
        self.tx("exporting a deployment", move |tx, sealer| {
            // REPEATABLE READ: every read below sees one snapshot.
            tx.batch(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY",
                "exporting a deployment",
            )?;
            Ok(DeploymentDump {
                serial: pg_resources::serial(tx, &d)?,
                resources: pg_resources::list(tx, sealer, &d)?,
                runs: pg_history::list(tx, &d, None)?,
                journal: pg_journal::list(tx, &d, false)?,
                generated_secrets: pg_values::generated_secrets(tx, sealer, &d)?,
                outputs: pg_values::stored_outputs(tx, sealer, &d)?,
                name: d,
            })
        })
    }

    fn import(&self, dump: &DeploymentDump, replace: bool) -> StoreResult<()> {
        let dump = dump.clone();
        self.tx("importing a deployment", move |tx, sealer| {
            let d = dump.name.as_str();
            if pg_resources::holds(tx, d)? {
                if !replace {
                    return Err(already(d));
                }
                pg_resources::delete_deployment(tx, d)?;
            }
            pg_resources::ensure_deployment(tx, d)?;
            for r in &dump.resources {
                pg_resources::put(tx, sealer, d, r)?;
            }
            for run in &dump.runs {
                pg_history::write(tx, run.serial, d, run, true)?;
            }
            for entry in &dump.journal {
                pg_journal::intent(tx, entry)?;
            }
            for (name, value) in &dump.generated_secrets {
                pg_values::put_generated_secret(tx, sealer, d, name, value)?;
            }
            if let Some((public, secrets)) = &dump.outputs {
                pg_values::put_outputs(tx, sealer, d, public, secrets)?;
            }
            pg_resources::set_serial(tx, d, dump.serial)
        })
    }

    fn journal(&self, deployment: &str) -> StoreResult<Vec<JournalEntry>> {
        PgStore::journal(self, deployment)
    }

    fn holds(&self, deployment: &str) -> StoreResult<bool> {
        let d = deployment.to_owned();
        self.tx("looking for a deployment", move |tx, _| {
            pg_resources::holds(tx, &d)
        })
    }

    fn export_jobs(&self) -> StoreResult<Vec<JobRecord>> {
        self.tx("exporting jobs", |tx, _| {
            tx.batch(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY",
                "exporting jobs",
            )?;
            pg_jobs::all(tx)
        })
    }

    fn import_jobs(&self, list: &[JobRecord], replace: bool) -> StoreResult<()> {
        let list = list.to_vec();
        self.tx("importing jobs", move |tx, _| {
            pg_jobs::import(tx, &list, replace)
        })
    }
}
