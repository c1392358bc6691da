//! `cairn inventory`: the deployment's servers and the `-i` sources merged
//! by cairn-orch, printed as Ansible's dynamic-inventory JSON.

use cairn_engine::store::StateStore;
use cairn_orch::Inventory;
use cairn_orch::inventory::deployment;
use cairn_state::SqliteStore;
use cairn_template::loader::{TEMPLATE_FILES, locate_deployment};

use super::state::{key_source, state_path};
use crate::cli::{Format, GlobalArgs, InventoryArgs};
use crate::output::emit_as;
use crate::report::{CliError, Status};

pub fn run(args: &InventoryArgs, global: &GlobalArgs) -> Result<Status, CliError> {
    let mut inv = Inventory::new();
    if let Some(servers) = deployment_hosts(args, global)? {
        inv.merge(servers);
    }
    for path in &args.inventory {
        // A source that cannot be read is bad input: exit 2, naming it.
        inv.merge(Inventory::load(path).map_err(|e| CliError::Usage(e.to_string()))?);
    }
    let value = match &args.host {
        Some(h) => inv
            .ansible_host(h)
            .ok_or_else(|| CliError::Usage(format!("no host `{h}` in the inventory")))?,
        None => inv.ansible_list(),
    };
    emit_as(value, global, global.output.unwrap_or(Format::Json))?;
    Ok(Status::Success)
}

/// The deployment's servers: always without `-i`; with `-i` only when the
/// directory holds a template or `-e` names an environment. A deployment
/// with no state yet has no servers (the state is not created).
fn deployment_hosts(
    args: &InventoryArgs,
    global: &GlobalArgs,
) -> Result<Option<Inventory>, CliError> {
    let t = &args.template;
    let has_template = t.dir.is_file() || TEMPLATE_FILES.iter().any(|f| t.dir.join(f).is_file());
    if !args.inventory.is_empty() && !has_template && t.env.is_none() {
        return Ok(None);
    }
    let (dir, d) = locate_deployment(&t.dir, t.env.as_deref())?;
    let path = state_path(global, &dir)?;
    if !path.exists() {
        return Ok(Some(Inventory::new()));
    }
    let store = SqliteStore::open(&path, key_source()?).map_err(|e| {
        CliError::Failure(anyhow::anyhow!("opening the state {}: {e}", path.display()))
    })?;
    let store: &dyn StateStore = &store;
    deployment::from_store(store, &d.name, &d.env)
        .map(Some)
        .map_err(CliError::failure)
}
