//! Ansible's YAML inventory format (the `yaml` inventory plugin):
//!
//! ```yaml
//! all:
//!   vars: {ntp: ntp.example.test}
//!   hosts:
//!     bastion: {ansible_host: 192.0.2.1}
//!   children:
//!     web:
//!       hosts:
//!         web[01:03].example.test:
//! ```
//!
//! Top-level keys are groups; a group holds `hosts` (name or range →
//! variables or nothing), `vars` and `children` (more groups). JSON is YAML.

use serde_json::{Map, Value as J};

use super::error::InventoryError;
use super::host::Host;
use super::merge::Inventory;
use super::range;

pub fn parse(path: &str, text: &str) -> Result<Inventory, InventoryError> {
    let doc = cairn_template::yaml::from_str(text).map_err(|e| InventoryError::Syntax {
        path: path.to_string(),
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    let invalid = |message: String| InventoryError::Invalid {
        path: path.to_string(),
        message,
    };
    let mut inv = Inventory::new();
    match doc {
        J::Null => {}
        J::Object(groups) => {
            for (name, body) in groups {
                group(path, &mut inv, &name, &body).map_err(invalid)?;
            }
        }
        other => {
            return Err(invalid(format!(
                "an inventory is a mapping of groups, not {}",
                kind(&other)
            )));
        }
    }
    Ok(inv)
}

fn group(path: &str, inv: &mut Inventory, name: &str, body: &J) -> Result<(), String> {
    inv.group_mut(name);
    let body = match body {
        J::Null => return Ok(()),
        J::Object(m) => m,
        other => {
            return Err(format!(
                "group `{name}` must be a mapping (hosts, vars, children), not {}",
                kind(other)
            ));
        }
    };
    for (key, value) in body {
        match key.as_str() {
            "vars" => {
                let vars = mapping(value, || format!("`{name}.vars`"))?;
                inv.group_mut(name).vars.extend(vars);
            }
            "hosts" => {
                let hosts = mapping(value, || format!("`{name}.hosts`"))?;
                for (pattern, vars) in hosts {
                    let vars = mapping(&vars, || format!("host `{pattern}` in `{name}`"))?;
                    for host_name in range::expand(&pattern)? {
                        let mut h = Host::new(host_name);
                        if name != "all" {
                            h.groups.push(name.to_string());
                        }
                        for (k, v) in &vars {
                            h.set_var(k, v.clone())
                                .map_err(|m| format!("host `{}`: {m}", h.name))?;
                        }
                        h.sources.push(path.to_string());
                        inv.add_host(h);
                    }
                }
            }
            "children" => {
                let children = mapping(value, || format!("`{name}.children`"))?;
                for (child, child_body) in children {
                    if child == name {
                        return Err(format!("group `{name}` cannot be its own child"));
                    }
                    if name != "all" {
                        inv.add_child(name, &child);
                    }
                    group(path, inv, &child, &child_body)?;
                }
            }
            other => {
                return Err(format!(
                    "group `{name}` has `{other}`; a group holds hosts, vars and children"
                ));
            }
        }
    }
    Ok(())
}

/// A mapping, or nothing (an empty one).
fn mapping(v: &J, what: impl Fn() -> String) -> Result<Map<String, J>, String> {
    match v {
        J::Null => Ok(Map::new()),
        J::Object(m) => Ok(m.clone()),
        other => Err(format!("{} must be a mapping, not {}", what(), kind(other))),
    }
}

fn kind(v: &J) -> &'static str {
    match v {
        J::Null => "nothing",
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        J::String(_) => "a string",
        J::Array(_) => "a list",
        J::Object(_) => "a mapping",
    }
}
