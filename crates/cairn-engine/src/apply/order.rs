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

/// For each node, how many nodes the longest chain of waiters starting at it
/// holds, itself included: a network that subnets, servers and a balancer
/// wait for one after another is 4, a bucket nothing waits for 1. Of the
/// nodes ready at once, the walk gives the free slots to the tallest first
/// (the critical path first, as list schedulers do), so that a long chain
/// does not wait behind leaves that could as well run beside it. Every
/// node counts as one step: what a step costs
/// is not known before it runs. A cycle (the plan refuses one) would count
/// its nodes once.
pub(super) fn heights(deps: &[Vec<usize>]) -> Vec<usize> {
    let mut waiters = vec![Vec::new(); deps.len()];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            waiters[d].push(i);
        }
    }
    // Depth-first with an explicit stack: a chain may be thousands long.
    let mut height = vec![0usize; deps.len()];
    let mut visiting = vec![false; deps.len()];
    for root in 0..deps.len() {
        if height[root] > 0 {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        visiting[root] = true;
        while let Some(&mut (n, ref mut next)) = stack.last_mut() {
            if let Some(&w) = waiters[n].get(*next) {
                *next += 1;
                if height[w] == 0 && !visiting[w] {
                    visiting[w] = true;
                    stack.push((w, 0));
                }
                continue;
            }
            height[n] = 1 + waiters[n].iter().map(|&w| height[w]).max().unwrap_or(0);
            visiting[n] = false;
            stack.pop();
        }
    }
    height
}

#[cfg(test)]
mod tests {
    use super::heights;

    #[test]
    fn a_chain_is_as_tall_as_it_is_long_and_a_leaf_is_one() {
        // 0 <- 1 <- 2 <- 3 (1 waits for 0, ...), 4 waits for 0, 5 alone.
        let deps = vec![vec![], vec![0], vec![1], vec![2], vec![0], vec![]];
        assert_eq!(heights(&deps), vec![4, 3, 2, 1, 1, 1]);
    }

    #[test]
    fn a_diamond_counts_its_longest_side() {
        // 1 and 2 wait for 0; 3 waits for both; 4 waits for 3 and 2.
        let deps = vec![vec![], vec![0], vec![0], vec![1, 2], vec![3, 2]];
        assert_eq!(heights(&deps), vec![4, 3, 3, 2, 1]);
    }

    #[test]
    fn a_long_chain_does_not_overflow_the_stack_and_a_cycle_ends() {
        let n = 100_000;
        let deps: Vec<Vec<usize>> = (0..n)
            .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
            .collect();
        let h = heights(&deps);
        assert_eq!((h[0], h[n - 1]), (n, 1));
        // 0 and 1 wait for each other: each counted once, no endless loop.
        let h = heights(&[vec![1], vec![0]]);
        assert!(h.iter().all(|&x| (1..=2).contains(&x)), "{h:?}");
    }
}
