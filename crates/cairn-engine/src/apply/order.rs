//! The order of the walk: which nodes wait for which.

use std::collections::HashMap;

use crate::plan::{Action, ResourceChange};

/// Node `i` waits for: (creates, updates, replaces) the nodes of resources it
/// depends on; (deletes) the deletes, replaces and updates of what depends
/// on it, so that a load balancer stops using a server before it goes.
pub(super) fn dependencies(nodes: &[&ResourceChange]) -> Vec<Vec<usize>> {
    let mut by_resource: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        by_resource.entry(n.resource.as_str()).or_default().push(i);
    }
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if n.action == Action::Delete {
                nodes
                    .iter()
                    .enumerate()
                    .filter(|(j, m)| {
                        *j != i
                            && matches!(m.action, Action::Delete | Action::Replace | Action::Update)
                            && m.depends_on.iter().any(|d| d == &n.resource)
                    })
                    .map(|(j, _)| j)
                    .collect()
            } else {
                n.depends_on
                    .iter()
                    .flat_map(|d| by_resource.get(d.as_str()).into_iter().flatten())
                    .copied()
                    .filter(|&j| j != i && nodes[j].action != Action::Delete)
                    .collect()
            }
        })
        .collect()
}

/// For each node, the creates, updates and replaces of resources that
/// depend on it: what must use a replacement before its old half goes.
pub(super) fn users(nodes: &[&ResourceChange]) -> Vec<Vec<usize>> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            nodes
                .iter()
                .enumerate()
                .filter(|(j, m)| {
                    *j != i
                        && m.action != Action::Delete
                        && m.depends_on.iter().any(|d| d == &n.resource)
                })
                .map(|(j, _)| j)
                .collect()
        })
        .collect()
}
