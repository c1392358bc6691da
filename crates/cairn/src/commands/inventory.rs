//! `cairn inventory`: the deployment's servers and the `-i` sources merged
//! by cairn-orch, printed as Ansible's dynamic-inventory JSON.

use super::hosts;
use crate::cli::{Format, GlobalArgs, InventoryArgs};
use crate::output::emit_as;
use crate::report::{CliError, Status};

pub fn run(args: &InventoryArgs, global: &GlobalArgs) -> Result<Status, CliError> {
    let t = &args.template;
    let inv = hosts::load(&t.dir, t.env.as_deref(), &args.inventory, global)?.inventory;
    let value = match &args.host {
        Some(h) => inv
            .ansible_host(h)
            .ok_or_else(|| CliError::Usage(format!("no host `{h}` in the inventory")))?,
        None => inv.ansible_list(),
    };
    emit_as(value, global, global.output.unwrap_or(Format::Json))?;
    Ok(Status::Success)
}
