//! `cairn graph`: the resource dependency graph as DOT, Mermaid, or data.

use serde::Serialize;

use cairn_engine::validate::validate;

use crate::cli::{GlobalArgs, GraphFormat, TemplateArgs};
use crate::output::emit;
use crate::report::{CliError, Status};

#[derive(Debug, Serialize)]
pub struct GraphNode {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub instances: usize,
}

#[derive(Debug, Serialize)]
pub struct GraphEdge {
    /// Depends on `to`.
    pub from: String,
    pub to: String,
}

#[derive(Debug, Serialize)]
pub struct ResourceGraph {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

pub fn run(t: &TemplateArgs, format: GraphFormat, global: &GlobalArgs) -> Result<Status, CliError> {
    let loaded = cairn_template::load(&super::template_options::load_options(t))?;
    let (_, desired) = validate(&loaded).map_err(|diagnostics| CliError::Template {
        sources: loaded.sources.clone(),
        diagnostics,
    })?;
    let graph = ResourceGraph {
        nodes: desired
            .resources
            .values()
            .map(|r| GraphNode {
                name: r.name.clone(),
                kind: r.kind.to_string(),
                instances: r.instances.len(),
            })
            .collect(),
        edges: desired
            .resources
            .values()
            .flat_map(|r| {
                r.depends_on.iter().map(|d| GraphEdge {
                    from: r.name.clone(),
                    to: d.clone(),
                })
            })
            .collect(),
    };
    if global.output.is_some() || global.query.is_some() {
        emit(
            serde_json::to_value(&graph).map_err(anyhow::Error::from)?,
            global,
        )?;
    } else {
        let text = match format {
            GraphFormat::Dot => dot(&graph),
            GraphFormat::Mermaid => mermaid(&graph),
        };
        print!("{text}");
    }
    Ok(Status::Success)
}

/// How both formats show a resource's instance count: nothing for one,
/// ` ×N` otherwise.
fn instances(n: usize) -> String {
    if n == 1 {
        String::new()
    } else {
        format!(" ×{n}")
    }
}

fn dot(g: &ResourceGraph) -> String {
    let mut s = String::from("digraph cairn {\n  rankdir = \"BT\";\n  node [shape = box];\n");
    for n in &g.nodes {
        let count = instances(n.instances);
        s.push_str(&format!(
            "  \"{}\" [label = \"{}\\n({}{count})\"];\n",
            n.name, n.name, n.kind
        ));
    }
    for e in &g.edges {
        s.push_str(&format!("  \"{}\" -> \"{}\";\n", e.from, e.to));
    }
    s.push_str("}\n");
    s
}

fn mermaid(g: &ResourceGraph) -> String {
    let mut s = String::from("flowchart BT\n");
    for n in &g.nodes {
        let count = instances(n.instances);
        s.push_str(&format!(
            "  {}[\"{} ({}{count})\"]\n",
            n.name, n.name, n.kind
        ));
    }
    for e in &g.edges {
        s.push_str(&format!("  {} --> {}\n", e.from, e.to));
    }
    s
}
