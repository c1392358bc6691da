//! Hosts and groups merged as Ansible merges them, and what is asked of
//! them (groups, variables, targets, Ansible's JSON).

use std::net::IpAddr;

use indexmap::{IndexMap, IndexSet};
use serde::Serialize;
use serde_json::{Map, Value as J, json};

use super::host::Host;
use crate::targeting::{Candidate, Target};

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

impl Inventory {
    pub fn new() -> Inventory {
        Inventory::default()
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
