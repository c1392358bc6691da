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
pub mod ini;
pub mod range;
pub mod script;
mod vars;
pub mod yaml;

use std::net::IpAddr;
use std::path::Path;

use indexmap::{IndexMap, IndexSet};
use miette::Diagnostic;
use serde::Serialize;
use serde_json::{Map, Value as J, json};
use thiserror::Error;

use crate::targeting::{Candidate, Target};

pub use vars::CONNECTION_VARS;

/// A private key's text, redacted wherever it could be shown.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(pub String);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// A host: how to reach it, what it is in, what is known of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Host {
    /// The inventory name (`inventory_hostname`).
    pub name: String,
    /// Where to connect (`ansible_host`); the name when `None`.
    pub address: Option<String>,
    /// A deployment server's public address.
    pub public_address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub key_file: Option<String>,
    #[serde(rename = "become")]
    pub r#become: Option<bool>,
    /// The groups it was put in directly, in the order first seen.
    pub groups: Vec<String>,
    /// Host variables other than the connection variables.
    pub vars: Map<String, J>,
    /// Tags (a deployment's, plus `role`, `deployment`, `env`): grains for
    /// `G@`.
    pub tags: Map<String, J>,
    /// The host key a deployment recorded (OpenSSH public key line).
    pub host_key: Option<String>,
    /// The private key of a deployment server's key pair (OpenSSH PEM),
    /// held in memory only: never printed, never in Ansible's JSON.
    #[serde(skip)]
    pub private_key: Option<PrivateKey>,
    /// Where it came from (files, scripts, `deployment:NAME`).
    pub sources: Vec<String>,
}

impl Host {
    pub fn new(name: impl Into<String>) -> Host {
        Host {
            name: name.into(),
            ..Host::default()
        }
    }

    /// Sets a host variable, a connection variable going to its field.
    pub fn set_var(&mut self, key: &str, value: J) -> Result<(), String> {
        vars::set(self, key, value)
    }

    /// Folds a later definition of the same host in.
    fn merge(&mut self, other: Host) {
        macro_rules! later {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        later!(
            address,
            public_address,
            port,
            user,
            key_file,
            r#become,
            host_key,
            private_key
        );
        for g in other.groups {
            if !self.groups.contains(&g) {
                self.groups.push(g);
            }
        }
        self.vars.extend(other.vars);
        self.tags.extend(other.tags);
        for s in other.sources {
            if !self.sources.contains(&s) {
                self.sources.push(s);
            }
        }
    }

    /// Its own variables as Ansible sees them: the connection variables
    /// that are set, then the others.
    pub fn ansible_vars(&self) -> Map<String, J> {
        let mut out = Map::new();
        let mut put = |k: &str, v: Option<J>| {
            if let Some(v) = v {
                out.insert(k.to_string(), v);
            }
        };
        put("ansible_host", self.address.clone().map(J::String));
        put("ansible_port", self.port.map(J::from));
        put("ansible_user", self.user.clone().map(J::String));
        put(
            "ansible_ssh_private_key_file",
            self.key_file.clone().map(J::String),
        );
        put("ansible_become", self.r#become.map(J::Bool));
        out.extend(self.vars.clone());
        out
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Group {
    pub name: String,
    pub children: Vec<String>,
    pub vars: Map<String, J>,
}

/// Hosts and groups, in the order first seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    hosts: IndexMap<String, Host>,
    groups: IndexMap<String, Group>,
}

/// An inventory source that cannot be read; every variant names it.
#[derive(Debug, Error, Diagnostic)]
pub enum InventoryError {
    #[error("{path}: {source}")]
    #[diagnostic(code(cairn::inventory::read))]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    #[diagnostic(code(cairn::inventory::syntax))]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    #[diagnostic(code(cairn::inventory::invalid))]
    Invalid { path: String, message: String },
    #[error("{path}: {message}")]
    #[diagnostic(code(cairn::inventory::script))]
    Script { path: String, message: String },
    #[error("the state of deployment {deployment}: {message}")]
    #[diagnostic(code(cairn::inventory::state))]
    State { deployment: String, message: String },
}

impl Inventory {
    pub fn new() -> Inventory {
        Inventory::default()
    }

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

    /// Adds a host, or folds it into the one of that name.
    pub fn add_host(&mut self, host: Host) {
        for g in &host.groups {
            self.group_mut(g);
        }
        match self.hosts.get_mut(&host.name) {
            Some(h) => h.merge(host),
            None => {
                self.hosts.insert(host.name.clone(), host);
            }
        }
    }

    /// The group of that name, made if new (`all` and `ungrouped` are
    /// implicit but may hold variables).
    pub fn group_mut(&mut self, name: &str) -> &mut Group {
        self.groups
            .entry(name.to_string())
            .or_insert_with(|| Group {
                name: name.to_string(),
                ..Group::default()
            })
    }

    pub fn add_child(&mut self, parent: &str, child: &str) {
        self.group_mut(child);
        let p = self.group_mut(parent);
        if !p.children.iter().any(|c| c == child) {
            p.children.push(child.to_string());
        }
    }

    /// Folds another inventory in (it wins on variables).
    pub fn merge(&mut self, other: Inventory) {
        for (name, g) in other.groups {
            let mine = self.group_mut(&name);
            mine.vars.extend(g.vars);
            for c in g.children {
                if !mine.children.contains(&c) {
                    mine.children.push(c);
                }
            }
        }
        for (_, h) in other.hosts {
            self.add_host(h);
        }
    }

    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.values()
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.get(name)
    }

    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// Every group a host is in, nearest first then their ancestors,
    /// `ungrouped` when it has no group, `all` last. A cycle of children is
    /// walked once.
    pub fn groups_of(&self, host: &Host) -> Vec<String> {
        let mut seen: IndexSet<String> = IndexSet::new();
        let mut queue: Vec<String> = host
            .groups
            .iter()
            .filter(|g| g.as_str() != "all")
            .cloned()
            .collect();
        if queue.is_empty() {
            queue.push("ungrouped".into());
        }
        while !queue.is_empty() {
            let mut next = Vec::new();
            for g in queue {
                if g == "all" || !seen.insert(g.clone()) {
                    continue;
                }
                next.extend(
                    self.groups
                        .values()
                        .filter(|p| p.children.contains(&g))
                        .map(|p| p.name.clone()),
                );
            }
            queue = next;
        }
        seen.insert("all".into());
        seen.into_iter().collect()
    }

    /// Group variables from the farthest group (`all`) to the nearest, then
    /// the host's own: what Ansible's `--host` shows.
    pub fn effective_vars(&self, host: &Host) -> Map<String, J> {
        let mut out = Map::new();
        for g in self.groups_of(host).iter().rev() {
            if let Some(group) = self.groups.get(g) {
                out.extend(group.vars.clone());
            }
        }
        out.extend(host.ansible_vars());
        out
    }

    /// The host with connection variables from its groups applied under
    /// its own (what a transport connects with).
    pub fn connection(&self, host: &Host) -> Host {
        let mut h = Host::new(host.name.clone());
        for (k, v) in self.effective_vars(host) {
            // A group variable of the wrong type is left as a variable.
            if h.set_var(&k, v.clone()).is_err() {
                h.vars.insert(k, v);
            }
        }
        h.groups = host.groups.clone();
        h.tags = host.tags.clone();
        h.public_address = host.public_address.clone();
        h.host_key = host.host_key.clone();
        h.private_key = host.private_key.clone();
        h.sources = host.sources.clone();
        h
    }

    /// The hosts a target selects, in inventory order.
    pub fn select(&self, target: &Target) -> Vec<&Host> {
        let views: Vec<View<'_>> = self
            .hosts
            .values()
            .map(|h| View {
                host: h,
                groups: self.groups_of(h),
                addresses: [&h.address, &h.public_address]
                    .into_iter()
                    .flatten()
                    .chain(std::iter::once(&h.name))
                    .filter_map(|a| a.parse().ok())
                    .collect(),
            })
            .collect();
        target.select(&views).into_iter().map(|v| v.host).collect()
    }

    /// Ansible's `--list` JSON: `_meta.hostvars`, `all.children`, and each
    /// group's direct hosts, children and variables.
    pub fn ansible_list(&self) -> J {
        let mut out = Map::new();
        let mut hostvars = Map::new();
        for h in self.hosts.values() {
            hostvars.insert(h.name.clone(), J::Object(h.ansible_vars()));
        }
        out.insert("_meta".into(), json!({ "hostvars": hostvars }));
        let is_child: IndexSet<&str> = self
            .groups
            .values()
            .filter(|g| g.name != "all")
            .flat_map(|g| g.children.iter().map(String::as_str))
            .collect();
        let ungrouped: Vec<&str> = self
            .hosts
            .values()
            .filter(|h| h.groups.iter().all(|g| g == "all" || g == "ungrouped"))
            .map(|h| h.name.as_str())
            .collect();
        let mut top: Vec<String> = vec!["ungrouped".into()];
        top.extend(
            self.groups
                .keys()
                .filter(|g| !matches!(g.as_str(), "all" | "ungrouped"))
                .filter(|g| !is_child.contains(g.as_str()))
                .cloned(),
        );
        let mut all = Map::new();
        all.insert("children".into(), json!(top));
        if let Some(g) = self.groups.get("all")
            && !g.vars.is_empty()
        {
            all.insert("vars".into(), J::Object(g.vars.clone()));
        }
        out.insert("all".into(), J::Object(all));
        out.insert("ungrouped".into(), json!({ "hosts": ungrouped }));
        for g in self.groups.values() {
            if matches!(g.name.as_str(), "all" | "ungrouped") {
                continue;
            }
            let hosts: Vec<&str> = self
                .hosts
                .values()
                .filter(|h| h.groups.contains(&g.name))
                .map(|h| h.name.as_str())
                .collect();
            let mut body = Map::new();
            body.insert("hosts".into(), json!(hosts));
            if !g.children.is_empty() {
                body.insert("children".into(), json!(g.children));
            }
            if !g.vars.is_empty() {
                body.insert("vars".into(), J::Object(g.vars.clone()));
            }
            out.insert(g.name.clone(), J::Object(body));
        }
        J::Object(out)
    }

    /// Ansible's `--host H` JSON: the host's variables with its groups'
    /// under them, as `ansible-inventory --host` shows; `None` for a host
    /// the inventory does not hold.
    pub fn ansible_host(&self, name: &str) -> Option<J> {
        self.hosts
            .get(name)
            .map(|h| J::Object(self.effective_vars(h)))
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

struct View<'a> {
    host: &'a Host,
    groups: Vec<String>,
    addresses: Vec<IpAddr>,
}

impl Candidate for View<'_> {
    fn name(&self) -> &str {
        &self.host.name
    }
    fn addresses(&self) -> Vec<IpAddr> {
        self.addresses.clone()
    }
    fn groups(&self) -> &[String] {
        &self.groups
    }
    fn grain(&self, key: &str) -> Option<&J> {
        self.host.tags.get(key).or_else(|| self.host.vars.get(key))
    }
}

#[cfg(test)]
mod tests;
