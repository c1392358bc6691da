//! The file `cairn plan --out FILE` writes and `cairn apply FILE` reads: the
//! inputs to plan again with, and the changes that planning again must
//! reproduce (the engine refuses to apply anything else).

use std::path::{Path, PathBuf};

use cairn_engine::plan::Plan;
use serde::{Deserialize, Serialize};

use super::target::Target;
use crate::cli::{ChangeArgs, TemplateArgs};
use crate::report::CliError;

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SavedPlan {
    /// Format version.
    pub cairn_plan: u32,
    pub dir: PathBuf,
    pub env: Option<String>,
    /// `-p` values of parameters that are not secret.
    pub params: Vec<String>,
    pub param_files: Vec<PathBuf>,
    pub state: PathBuf,
    pub targets: Vec<String>,
    pub excludes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace: Vec<String>,
    pub refresh: bool,
    pub prune: bool,
    pub plan: Plan,
}

const SAVED_PLAN_FORMAT: u32 = 1;

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Writes `plan` to `out` with what made it; secret `-p` values are left
/// out (they are given again to `apply`).
pub(super) fn save(
    out: &Path,
    t: &TemplateArgs,
    change: &ChangeArgs,
    tg: &Target,
    plan: &Plan,
) -> Result<(), CliError> {
    // Which `-p` values are secret is the template's to say.
    let mut load = super::super::template_options::load_options(t);
    load.generated = tg
        .store
        .generated_secrets(&tg.deployment)
        .map_err(CliError::failure)?
        .into_iter()
        .collect();
    let loaded = cairn_template::load(&load)?;
    let public = |arg: &String| {
        let name = arg.split_once('=').map_or(arg.as_str(), |(n, _)| n);
        loaded
            .params
            .values
            .get(name)
            .is_some_and(|v| !v.is_sensitive())
    };
    let saved = SavedPlan {
        cairn_plan: SAVED_PLAN_FORMAT,
        dir: absolute(&t.dir),
        env: t.env.clone(),
        params: t.params.iter().filter(|a| public(a)).cloned().collect(),
        param_files: t.param_files.iter().map(|p| absolute(p)).collect(),
        state: tg.state.clone(),
        targets: change.targets.clone(),
        excludes: change.excludes.clone(),
        replace: change.replace.clone(),
        refresh: !change.no_refresh,
        prune: change.prune,
        plan: plan.clone(),
    };
    let text = serde_json::to_string_pretty(&saved).map_err(CliError::failure)?;
    std::fs::write(out, text)
        .map_err(|e| CliError::failure(format!("writing the plan to {}: {e}", out.display())))?;
    eprintln!(
        "Saved the plan to {}; `cairn apply {}` applies exactly this.",
        out.display(),
        out.display()
    );
    Ok(())
}

impl SavedPlan {
    pub(super) fn read(file: &Path) -> Result<SavedPlan, CliError> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            CliError::Usage(format!("cannot read the plan {}: {e}", file.display()))
        })?;
        let saved: SavedPlan = serde_json::from_str(&text).map_err(|e| {
            CliError::Usage(format!(
                "{} is not a plan saved by `cairn plan --out`: {e}",
                file.display()
            ))
        })?;
        if saved.cairn_plan != SAVED_PLAN_FORMAT {
            return Err(CliError::Usage(format!(
                "{} is a plan of format {}; this cairn reads format {SAVED_PLAN_FORMAT}",
                file.display(),
                saved.cairn_plan
            )));
        }
        Ok(saved)
    }
}
