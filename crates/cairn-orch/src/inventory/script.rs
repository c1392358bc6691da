//! Ansible-style inventory scripts (the `script` inventory plugin): the
//! executable is run with `--list` and prints JSON, groups as keys (a list
//! of hosts, or `{hosts, vars, children}`); with `_meta.hostvars` that is
//! everything, without it the script is asked `--host H` for each host.

use std::path::Path;
use std::process::Command;

use serde_json::{Map, Value as J};

use super::error::InventoryError;
use super::host::Host;
use super::merge::Inventory;

pub fn run(path: &Path) -> Result<Inventory, InventoryError> {
    let shown = path.display().to_string();
    let fail = |message: String| InventoryError::Script {
        path: shown.clone(),
        message,
    };
    let list = call(path, &["--list"]).map_err(&fail)?;
    let J::Object(top) = list else {
        return Err(fail("`--list` must print a JSON object".into()));
    };
    let mut inv = Inventory::new();
    let hostvars: Option<Map<String, J>> = match top.get("_meta") {
        None => None,
        Some(meta) => match meta.get("hostvars") {
            None => Some(Map::new()),
            Some(J::Object(m)) => Some(m.clone()),
            Some(_) => return Err(fail("`_meta.hostvars` must be an object".into())),
        },
    };
    let mut order: Vec<(String, Option<String>)> = Vec::new();
    for (group, body) in &top {
        if group == "_meta" {
            continue;
        }
        inv.group_mut(group);
        let (hosts, vars, children) = match body {
            J::Array(hosts) => (hosts.clone(), Map::new(), Vec::new()),
            J::Object(m) => {
                let list = |key: &str| -> Result<Vec<J>, InventoryError> {
                    match m.get(key) {
                        None | Some(J::Null) => Ok(vec![]),
                        Some(J::Array(a)) => Ok(a.clone()),
                        Some(_) => Err(fail(format!("`{group}.{key}` must be a list"))),
                    }
                };
                let vars = match m.get("vars") {
                    None | Some(J::Null) => Map::new(),
                    Some(J::Object(v)) => v.clone(),
                    Some(_) => return Err(fail(format!("`{group}.vars` must be an object"))),
                };
                (list("hosts")?, vars, list("children")?)
            }
            _ => return Err(fail(format!("group `{group}` must be a list or an object"))),
        };
        inv.group_mut(group).vars.extend(vars);
        for c in children {
            let J::String(c) = c else {
                return Err(fail(format!("`{group}.children` must hold names")));
            };
            if group != "all" {
                inv.add_child(group, &c);
            }
        }
        for h in hosts {
            let J::String(h) = h else {
                return Err(fail(format!("`{group}.hosts` must hold names")));
            };
            let g = (group != "all" && group != "ungrouped").then(|| group.clone());
            order.push((h, g));
        }
    }
    // Hosts only in `_meta.hostvars` are ungrouped hosts.
    if let Some(hv) = &hostvars {
        for name in hv.keys() {
            if !order.iter().any(|(h, _)| h == name) {
                order.push((name.clone(), None));
            }
        }
    }
    for (name, group) in order {
        let vars = match &hostvars {
            Some(hv) => hv.get(&name).cloned().unwrap_or(J::Null),
            None => call(path, &["--host", &name]).map_err(&fail)?,
        };
        let mut h = Host::new(name.clone());
        h.groups.extend(group);
        match vars {
            J::Null => {}
            J::Object(m) => {
                for (k, v) in m {
                    h.set_var(&k, v)
                        .map_err(|e| fail(format!("host `{name}`: {e}")))?;
                }
            }
            _ => return Err(fail(format!("the variables of `{name}` must be an object"))),
        }
        h.sources.push(path.display().to_string());
        inv.add_host(h);
    }
    Ok(inv)
}

fn call(path: &Path, args: &[&str]) -> Result<J, String> {
    let shown = args.join(" ");
    let run = || {
        Command::new(path)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
    };
    // ETXTBSY: a script written a moment ago can still be open for
    // writing in a child another thread forked before its exec (the
    // descriptor is close-on-exec, but not yet closed); that passes.
    let mut result = run();
    for _ in 0..20 {
        match &result {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(25));
                result = run();
            }
            _ => break,
        }
    }
    let out = result.map_err(|e| format!("cannot run it with `{shown}`: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.trim_end().lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "`{shown}` failed ({}){}{}",
            out.status,
            if tail.is_empty() { "" } else { ": " },
            tail.join("\n")
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("`{shown}` did not print JSON: {e}"))
}
