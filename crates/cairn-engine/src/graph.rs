//! The dependency graph of a template's declarations (variables, resources,
//! outputs): edges come from references and `depends_on`. Cycles are an
//! error naming every member, each at the reference that closes the loop.

use indexmap::IndexMap;
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;

use cairn_template::Span;
use cairn_template::diagnostic::{Code, Diagnostic};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclKind {
    Variable,
    Resource,
    Output,
    App,
    Test,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DeclId {
    pub kind: DeclKind,
    pub name: String,
}

impl DeclId {
    pub fn var(name: &str) -> DeclId {
        DeclId {
            kind: DeclKind::Variable,
            name: name.to_string(),
        }
    }
    pub fn resource(name: &str) -> DeclId {
        DeclId {
            kind: DeclKind::Resource,
            name: name.to_string(),
        }
    }
    pub fn output(name: &str) -> DeclId {
        DeclId {
            kind: DeclKind::Output,
            name: name.to_string(),
        }
    }
    pub fn app(name: &str) -> DeclId {
        DeclId {
            kind: DeclKind::App,
            name: name.to_string(),
        }
    }
    pub fn test(name: &str) -> DeclId {
        DeclId {
            kind: DeclKind::Test,
            name: name.to_string(),
        }
    }

    /// How a person writes it in an expression.
    pub fn display(&self) -> String {
        match self.kind {
            DeclKind::Variable => format!("vars.{}", self.name),
            DeclKind::Resource => self.name.clone(),
            DeclKind::Output => format!("output {}", self.name),
            DeclKind::App => format!("app {}", self.name),
            DeclKind::Test => format!("test {}", self.name),
        }
    }
}

/// Declarations and their dependencies, `from` depends on `to`.
#[derive(Debug, Default)]
pub struct DeclGraph {
    graph: DiGraph<DeclId, Span>,
    index: IndexMap<DeclId, NodeIndex>,
    spans: IndexMap<DeclId, Span>,
}

impl DeclGraph {
    pub fn add(&mut self, id: DeclId, span: Span) {
        if !self.index.contains_key(&id) {
            let ix = self.graph.add_node(id.clone());
            self.index.insert(id.clone(), ix);
            self.spans.insert(id, span);
        }
    }

    /// `from` depends on `to`; `span` is where `from` refers to `to`.
    pub fn depend(&mut self, from: &DeclId, to: &DeclId, span: Span) {
        if let (Some(&a), Some(&b)) = (self.index.get(from), self.index.get(to))
            && !self.graph.contains_edge(a, b)
        {
            self.graph.add_edge(a, b, span);
        }
    }

    pub fn dependencies(&self, id: &DeclId) -> Vec<&DeclId> {
        let Some(&ix) = self.index.get(id) else {
            return Vec::new();
        };
        let mut v: Vec<&DeclId> = self.graph.neighbors(ix).map(|n| &self.graph[n]).collect();
        v.sort();
        v
    }

    pub fn ids(&self) -> impl Iterator<Item = &DeclId> {
        self.index.keys()
    }

    /// Declarations in an order where each comes after what it depends on,
    /// or one diagnostic per cycle.
    pub fn order(&self) -> Result<Vec<DeclId>, Vec<Diagnostic>> {
        match toposort(&self.graph, None) {
            Ok(order) => Ok(order
                .into_iter()
                .rev()
                .map(|ix| self.graph[ix].clone())
                .collect()),
            Err(_) => Err(self.cycles()),
        }
    }

    fn cycles(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for scc in tarjan_scc(&self.graph) {
            let self_loop = scc.len() == 1 && self.graph.contains_edge(scc[0], scc[0]);
            if scc.len() < 2 && !self_loop {
                continue;
            }
            // Walk the cycle in dependency order, starting from the first
            // member in the file, so the message reads like the template.
            let members: std::collections::HashSet<NodeIndex> = scc.iter().copied().collect();
            let start = *scc
                .iter()
                .min_by_key(|ix| self.spans[&self.graph[**ix]].start)
                .unwrap_or(&scc[0]);
            let mut path = vec![start];
            let mut edges: Vec<Span> = Vec::new();
            let mut current = start;
            loop {
                let mut next: Vec<(NodeIndex, Span)> = self
                    .graph
                    .edges(current)
                    .filter(|e| members.contains(&petgraph::visit::EdgeRef::target(e)))
                    .map(|e| (petgraph::visit::EdgeRef::target(&e), *e.weight()))
                    .collect();
                next.sort_by_key(|(ix, _)| {
                    (
                        !path.contains(ix) && *ix != start,
                        self.spans[&self.graph[*ix]].start,
                    )
                });
                // Prefer closing the loop at the start, else an unvisited member.
                let pick = next
                    .iter()
                    .find(|(ix, _)| *ix == start && path.len() == scc.len())
                    .or_else(|| next.iter().find(|(ix, _)| !path.contains(ix)))
                    .or_else(|| next.first())
                    .copied();
                let Some((ix, span)) = pick else { break };
                edges.push(span);
                if ix == start || path.contains(&ix) || path.len() > scc.len() {
                    break;
                }
                path.push(ix);
                current = ix;
            }
            let names: Vec<String> = path.iter().map(|ix| self.graph[*ix].display()).collect();
            let mut chain = names.clone();
            chain.push(names[0].clone());
            let mut d = Diagnostic::new(
                Code::Cycle,
                format!("dependency cycle: {}", chain.join(" -> ")),
            );
            for (i, span) in edges.iter().enumerate() {
                let from = &names[i];
                let to = &chain[i + 1];
                let label = format!("{from} depends on {to} here");
                d = if i == 0 {
                    d.at(*span, label)
                } else {
                    d.also(*span, label)
                };
            }
            out.push(d.help("break the cycle: remove one of these references, or pass the value in as a parameter"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_template::FileId;

    fn span(at: usize) -> Span {
        Span::new(FileId(0), at, at + 1)
    }

    #[test]
    fn order_puts_dependencies_first() {
        let mut g = DeclGraph::default();
        g.add(DeclId::resource("web"), span(10));
        g.add(DeclId::resource("net"), span(0));
        g.depend(&DeclId::resource("web"), &DeclId::resource("net"), span(12));
        let order = g.order().unwrap();
        assert_eq!(
            order,
            vec![DeclId::resource("net"), DeclId::resource("web")]
        );
    }

    #[test]
    fn cycles_name_every_member() {
        let mut g = DeclGraph::default();
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            g.add(DeclId::resource(n), span(i * 10));
        }
        g.depend(&DeclId::resource("a"), &DeclId::resource("b"), span(1));
        g.depend(&DeclId::resource("b"), &DeclId::resource("c"), span(11));
        g.depend(&DeclId::resource("c"), &DeclId::resource("a"), span(21));
        let errs = g.order().unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].message, "dependency cycle: a -> b -> c -> a");
        assert_eq!(errs[0].secondary.len(), 2);
    }

    #[test]
    fn self_reference_is_a_cycle() {
        let mut g = DeclGraph::default();
        g.add(DeclId::resource("a"), span(0));
        g.depend(&DeclId::resource("a"), &DeclId::resource("a"), span(3));
        assert_eq!(
            g.order().unwrap_err()[0].message,
            "dependency cycle: a -> a"
        );
    }
}
