//! `cairn state migrate --from URL --to URL`: copies deployments' whole
//! state between stores (SQLite and PostgreSQL, either way).
//!
//! Each deployment is read in one transaction and written in one (the
//! target never shows half a deployment), its secrets opened in memory and
//! sealed again by the target (same key file: the target's key check must
//! pass first). Refused before anything is written when a deployment is
//! leased by a run in the source, or already in the target without
//! `--force`. The copy is read back and compared table by table (rows and
//! a SHA-256 digest) before it is reported done. With `--all`, the
//! orchestration jobs (`jobs`, `job_hosts`, which belong to no deployment)
//! are copied too, in one transaction, and checked the same way, and so
//! are the release trail and the key that signs artifacts (still sealed
//! with the same key file), so that releases stay verifiable after a move.

use std::collections::HashSet;

use cairn_state::{Location, TableCheck, job_tables};
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
    // Orchestration jobs belong to no deployment: they travel with the
    // whole state (`--all`), not with one deployment.
    let jobs = match deployment {
        Some(_) => Vec::new(),
        None => source.export_jobs().map_err(CliError::failure)?,
    };
    if names.is_empty() && jobs.is_empty() {
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
    if !force && !jobs.is_empty() {
        let there: HashSet<String> = target
            .export_jobs()
            .map_err(CliError::failure)?
            .into_iter()
            .map(|j| j.id)
            .collect();
        if let Some(job) = jobs.iter().find(|j| there.contains(&j.id)) {
            return Err(CliError::Usage(format!(
                "{to} already holds job {}: pass --force to replace it",
                job.id
            )));
        }
    }
    // The release trail and the signing key travel with the whole state.
    let (releases, signing_key, heals) = match deployment {
        Some(_) => (Vec::new(), None, Vec::new()),
        None => (
            source.releases(None).map_err(CliError::failure)?,
            source
                .signing_key(super::release::SIGNING_KEY)
                .map_err(CliError::failure)?,
            source.heals(None, None, false).map_err(CliError::failure)?,
        ),
    };
    if let Some(key) = &signing_key
        && let Some(there) = target
            .signing_key(super::release::SIGNING_KEY)
            .map_err(CliError::failure)?
        && there.public != key.public
    {
        return Err(CliError::Usage(format!(
            "{to} has another key signing artifacts ({}) than {from} ({}): artifacts built with one would not verify with the other",
            there.public, key.public
        )));
    }
    let mut rows = Vec::new();
    for name in &names {
        let dump = source.export(name).map_err(CliError::failure)?;
        target.import(&dump, force).map_err(CliError::failure)?;
        let copied = target.export(name).map_err(CliError::failure)?;
        let (want, got) = (dump.tables(), copied.tables());
        check(
            &want,
            &got,
            &format!("`{name}`"),
            &from,
            &to,
            Some(name),
            &mut rows,
        )?;
        tracing::info!(deployment = %name, from = %from, to = %to, "copied and checked");
    }
    if !jobs.is_empty() {
        target
            .import_jobs(&jobs, force)
            .map_err(CliError::failure)?;
        let ids: HashSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        let copied: Vec<_> = target
            .export_jobs()
            .map_err(CliError::failure)?
            .into_iter()
            .filter(|j| ids.contains(j.id.as_str()))
            .collect();
        let (want, got) = (job_tables(&jobs), job_tables(&copied));
        check(&want, &got, "the jobs", &from, &to, None, &mut rows)?;
        tracing::info!(jobs = jobs.len(), from = %from, to = %to, "copied and checked");
    }
    if let Some(key) = &signing_key {
        target
            .put_signing_key(super::release::SIGNING_KEY, key)
            .map_err(CliError::failure)?;
    }
    if !releases.is_empty() {
        for r in releases.iter().rev() {
            target.finish_release(r).map_err(CliError::failure)?;
        }
        let ids: HashSet<&str> = releases.iter().map(|r| r.id.as_str()).collect();
        let copied: Vec<_> = target
            .releases(None)
            .map_err(CliError::failure)?
            .into_iter()
            .filter(|r| ids.contains(r.id.as_str()))
            .collect();
        let table = |list: &[cairn_release::ReleaseRecord]| {
            let mut sorted: Vec<_> = list.iter().collect();
            sorted.sort_by(|a, b| a.id.cmp(&b.id));
            vec![TableCheck {
                table: "releases",
                rows: sorted.len(),
                digest: cairn_state::digest(&sorted),
            }]
        };
        check(
            &table(&releases),
            &table(&copied),
            "the releases",
            &from,
            &to,
            None,
            &mut rows,
        )?;
    }
    if !heals.is_empty() {
        for h in &heals {
            target.put_heal(h).map_err(CliError::failure)?;
        }
        let ids: HashSet<&str> = heals.iter().map(|h| h.id.as_str()).collect();
        let copied: Vec<_> = target
            .heals(None, None, false)
            .map_err(CliError::failure)?
            .into_iter()
            .filter(|h| ids.contains(h.id.as_str()))
            .collect();
        let table = |list: &[cairn_release::HealRecord]| {
            let mut sorted: Vec<_> = list.iter().collect();
            sorted.sort_by(|a, b| a.id.cmp(&b.id));
            vec![TableCheck {
                table: "heals",
                rows: sorted.len(),
                digest: cairn_state::digest(&sorted),
            }]
        };
        check(
            &table(&heals),
            &table(&copied),
            "the heals",
            &from,
            &to,
            None,
            &mut rows,
        )?;
    }
    emit(J::Array(rows), global)?;
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let jobs_part = match jobs.len() {
        0 => String::new(),
        n => format!(" and {n} job{}", plural(n)),
    };
    eprintln!(
        "migrated {} deployment{}{jobs_part} from {from} to {to}: every table checked (rows and digest)",
        names.len(),
        plural(names.len()),
    );
    Ok(Status::Success)
}

/// Compares the tables read back from the target with the source's, and
/// adds one row per table to the command's result.
fn check(
    want: &[TableCheck],
    got: &[TableCheck],
    what: &str,
    from: &Location,
    to: &Location,
    deployment: Option<&str>,
    rows: &mut Vec<J>,
) -> Result<(), CliError> {
    for (w, g) in want.iter().zip(got) {
        if w != g {
            return Err(CliError::failure(format!(
                "the copy of {what} in {to} differs from {from} in table {}: {} rows (digest {}) against {} rows (digest {})",
                w.table,
                g.rows,
                &g.digest[..16],
                w.rows,
                &w.digest[..16]
            )));
        }
        rows.push(json!({
            "deployment": deployment,
            "table": w.table,
            "rows": w.rows,
            "digest": &w.digest[..16],
            "check": "same",
        }));
    }
    Ok(())
}
