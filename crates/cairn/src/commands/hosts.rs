//! The hosts a command operates: a deployment's servers merged with the
//! `-i` inventories, as cairn-orch reads them. Shared by `inventory`,
//! `run` and `state apply`, so the three see the same hosts.

use std::path::{Path, PathBuf};

use cairn_engine::store::StateStore;
use cairn_orch::Inventory;
use cairn_orch::inventory::deployment;
use cairn_state::Location;
use cairn_template::loader::{Deployment, TEMPLATE_FILES, locate_deployment};

use super::state::{open_location, state_location};
use crate::cli::GlobalArgs;
use crate::report::CliError;

/// The merged inventory, and the deployment it came from when there was
/// one (its target says how to reach its servers).
pub struct Hosts {
    pub inventory: Inventory,
    pub deployment: Option<Deployment>,
    /// The directory whose state file keeps this command's jobs.
    pub state_dir: PathBuf,
}

/// The deployment's servers: always without `-i`; with `-i` only when the
/// directory holds a template or `-e` names an environment. A deployment
/// with no state yet has no servers (the state is not created).
pub fn load(
    dir: &Path,
    env: Option<&str>,
    inventories: &[PathBuf],
    global: &GlobalArgs,
) -> Result<Hosts, CliError> {
    let mut inv = Inventory::new();
    let has_template = dir.is_file() || TEMPLATE_FILES.iter().any(|f| dir.join(f).is_file());
    let mut found = None;
    let mut state_dir = dir.to_path_buf();
    if inventories.is_empty() || has_template || env.is_some() {
        let (tdir, d) = locate_deployment(dir, env)?;
        let location = state_location(global, &tdir)?;
        // A SQLite state not written yet holds no servers (and is not
        // created by listing them).
        if !matches!(&location, Location::Sqlite(path) if !path.exists()) {
            let store = open_location(&location)?;
            let store: &dyn StateStore = &*store;
            inv.merge(deployment::from_store(store, &d.name, &d.env).map_err(CliError::failure)?);
        }
        state_dir = tdir;
        found = Some(d);
    }
    for path in inventories {
        // A source that cannot be read is bad input: exit 2, naming it.
        inv.merge(Inventory::load(path).map_err(|e| CliError::Usage(e.to_string()))?);
    }
    Ok(Hosts {
        inventory: inv,
        deployment: found,
        state_dir,
    })
}
