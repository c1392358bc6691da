//! The hosts cairn can operate, merged from three kinds of source:
//! a deployment's `server` records ([`deployment`]), Ansible static
//! inventory files in YAML ([`yaml`]) and INI ([`ini`]), and Ansible-style
//! inventory scripts ([`script`]). [`Inventory::load`] picks the reader for
//! a path as Ansible does: an executable file is a script, `.yaml`, `.yml`
//! and `.json` files are YAML, other files INI, a directory is every file in
//! it (sorted), and a path that does not exist but holds a `,` is a host
//! list (`web-1,web-2,`).
//!
//! Merging follows Ansible: a host or group seen twice is one, later
//! variables win, memberships add up. Ansible's connection variables
//! (`ansible_host`, `ansible_port`, `ansible_user`,
//! `ansible_ssh_private_key_file`, `ansible_become`, and the older
//! `ansible_ssh_*` spellings) set a host's typed fields when given as host
//! variables; as group variables they stay variables, and
//! [`Inventory::connection`] resolves them for a host.
//!
//! [`Inventory::ansible_list`] and [`Inventory::ansible_host`] give Ansible's
//! dynamic-inventory JSON (`--list`, `--host`).

pub mod deployment;
mod error;
mod host;
pub mod ini;
mod merge;
pub mod range;
pub mod script;
mod vars;
pub mod yaml;

use std::path::Path;

pub use error::InventoryError;
pub use host::{Host, PrivateKey};
pub use merge::{Group, Inventory};
pub use vars::CONNECTION_VARS;

impl Inventory {
    /// Reads one `-i` source; see the module documentation for how its
    /// kind is chosen.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let shown = path.display().to_string();
        let read_err = |source| InventoryError::Read {
            path: shown.clone(),
            source,
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(_) if shown.contains(',') => return Ok(host_list(&shown)),
            Err(e) => return Err(read_err(e)),
        };
        if meta.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .map_err(read_err)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                    name.is_some_and(|n| {
                        !n.starts_with('.')
                            && !n.ends_with('~')
                            && ![".retry", ".pyc", ".orig", ".cfg", ".md"]
                                .iter()
                                .any(|x| n.ends_with(x))
                    })
                })
                .collect();
            entries.sort();
            let mut inv = Inventory::new();
            for p in entries {
                inv.merge(Inventory::load(&p)?);
            }
            return Ok(inv);
        }
        if is_executable(&meta) {
            return script::run(path);
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml" | "json") => yaml::parse(&shown, &text),
            _ => ini::parse(&shown, &text),
        }
    }
}

/// Ansible's `host_list` source: `a,b,c` (a trailing comma for one host).
fn host_list(list: &str) -> Inventory {
    let mut inv = Inventory::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let mut h = Host::new(name);
        h.sources.push(list.to_string());
        inv.add_host(h);
    }
    inv
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests;
