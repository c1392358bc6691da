//! `cairn state migrate --from URL --to URL`: copies deployments' whole
//! state between stores (SQLite and PostgreSQL, either way).
//!
//! Each deployment is read in one transaction and written in one (the
//! target never shows half a deployment), its secrets opened in memory and
//! sealed again by the target (same key file: the target's key check must
//! pass first). Refused before anything is written when a deployment is
//! leased by a run in the source, or already in the target without
//! `--force`. The copy is read back and compared table by table (rows and
//! a SHA-256 digest) before it is reported done.

use serde_json::{Value as J, json};

use crate::cli::GlobalArgs;
use crate::output::emit;
use crate::report::{CliError, Status};

use super::state::{open_location, parse_location};

pub fn migrate(
    from: &str,
    to: &str,
    deployment: Option<&str>,
    force: bool,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let from = parse_location(from, "--from")?;
    let to = parse_location(to, "--to")?;
    if from == to {
        return Err(CliError::Usage(format!(
            "--from and --to are the same state ({from})"
        )));
    }
    let source = open_location(&from)?;
    let target = open_location(&to)?;
    let names = match deployment {
        Some(name) => {
            if !source.holds(name).map_err(CliError::failure)? {
                return Err(CliError::Usage(format!(
                    "{from} holds no deployment `{name}` (see `cairn list --all-deployments --state {from}`)"
                )));
            }
            vec![name.to_string()]
        }
        None => source.deployments().map_err(CliError::failure)?,
    };
    if names.is_empty() {
        return Err(CliError::Usage(format!("{from} holds no deployment")));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // Everything refused up front, before the first write.
    for name in &names {
        if let Some(lease) = source.lease(name).map_err(CliError::failure)?
            && lease.expires_at > now
        {
            return Err(CliError::failure(format!(
                "deployment `{name}` is locked in {from} by {} for `{}`: wait for that run to end (or `cairn lock break`)",
                lease.owner, lease.operation
            )));
        }
        if !force && target.holds(name).map_err(CliError::failure)? {
            return Err(CliError::Usage(format!(
                "{to} already holds deployment `{name}`: pass --force to replace it"
            )));
        }
    }
    let mut rows = Vec::new();
    for name in &names {
        let dump = source.export(name).map_err(CliError::failure)?;
        target.import(&dump, force).map_err(CliError::failure)?;
        let copied = target.export(name).map_err(CliError::failure)?;
        let (want, got) = (dump.tables(), copied.tables());
        for (w, g) in want.iter().zip(&got) {
            if w != g {
                return Err(CliError::failure(format!(
                    "the copy of `{name}` in {to} differs from {from} in table {}: {} rows (digest {}) against {} rows (digest {})",
                    w.table,
                    g.rows,
                    &g.digest[..16],
                    w.rows,
                    &w.digest[..16]
                )));
            }
            rows.push(json!({
                "deployment": name,
                "table": w.table,
                "rows": w.rows,
                "digest": &w.digest[..16],
                "check": "same",
            }));
        }
        tracing::info!(deployment = %name, from = %from, to = %to, "copied and checked");
    }
    emit(J::Array(rows), global)?;
    eprintln!(
        "migrated {} deployment{} from {from} to {to}: every table checked (rows and digest)",
        names.len(),
        if names.len() == 1 { "" } else { "s" }
    );
    Ok(Status::Success)
}
