//! References between declarations: each is checked against what it names
//! and becomes an edge of the graph that orders evaluation.

use std::collections::HashMap;

use cairn_template::Span;
use cairn_template::diagnostic::{Code, Diagnostic, did_you_mean};
use cairn_template::expr::{Evaluator, Reference, SCOPE_NAMES, Session};
use cairn_template::node::Node;

use crate::graph::{DeclGraph, DeclId, DeclKind};
use crate::schema::ResourceSchema;

use super::context::Ctx;
use super::desired::Mode;

/// Collects references, checks each names something real, and adds edges.
pub(super) fn build_graph<'a>(
    cx: &mut Ctx<'a>,
    session: &mut Session<'a>,
    ev: &Evaluator,
    schemas: &HashMap<&str, &'static ResourceSchema>,
) -> DeclGraph {
    let t = cx.template;
    let mut g = DeclGraph::default();
    for (name, (n, _)) in &t.variables {
        g.add(DeclId::var(name), n.span);
    }
    for (name, r) in &t.resources {
        g.add(DeclId::resource(name), r.name.span);
    }
    for (name, o) in &t.outputs {
        g.add(DeclId::output(name), o.name.span);
    }
    for (name, a) in &t.apps {
        g.add(DeclId::app(name), a.name.span);
    }
    for (name, test) in &t.tests {
        g.add(DeclId::test(name), test.name.span);
    }

    let mut items: Vec<(DeclId, Vec<&'a Node>, Mode)> = Vec::new();
    for (name, (_, node)) in &t.variables {
        items.push((DeclId::var(name), vec![node], Mode::Single));
    }
    for (name, r) in &t.resources {
        let mut nodes: Vec<&Node> = Vec::new();
        nodes.extend(r.properties.iter());
        nodes.extend(r.count.iter());
        nodes.extend(r.for_each.iter());
        nodes.extend(r.condition.iter());
        nodes.extend(r.tags.iter());
        nodes.extend(r.lifecycle.prevent_destroy.iter());
        nodes.extend(r.lifecycle.create_before_destroy.iter());
        nodes.extend(r.lifecycle.ignore_changes.iter());
        nodes.extend(r.target_blocks.values());
        let mode = if r.count.is_some() {
            Mode::Count
        } else if r.for_each.is_some() {
            Mode::ForEach
        } else {
            Mode::Single
        };
        items.push((DeclId::resource(name), nodes, mode));
    }
    for (name, o) in &t.outputs {
        items.push((DeclId::output(name), vec![&o.value], Mode::Single));
    }
    for (name, a) in &t.apps {
        items.push((DeclId::app(name), vec![&a.body], Mode::Single));
    }
    for (name, test) in &t.tests {
        items.push((DeclId::test(name), vec![&test.body], Mode::Single));
    }

    for (id, nodes, mode) in items {
        let mut refs: Vec<Reference> = Vec::new();
        for node in nodes {
            if let Err(e) = session.references(node, &mut refs) {
                cx.d.push(e);
            }
        }
        // `count`/`for_each` themselves cannot use `index`/`each`.
        let (count_node, each_node) = match id.kind {
            DeclKind::Resource => {
                let r = &t.resources[&id.name];
                (r.count.as_ref(), r.for_each.as_ref())
            }
            _ => (None, None),
        };
        for r in refs {
            let in_expansion = count_node
                .into_iter()
                .chain(each_node)
                .any(|n| contains(n.span, r.span));
            if let Some(target) = check_reference(cx, ev, schemas, mode, in_expansion, &r) {
                g.depend(&id, &target, r.span);
            }
        }
        if id.kind == DeclKind::Resource {
            for dep in &t.resources[&id.name].depends_on {
                if t.resources.contains_key(&dep.text) {
                    g.depend(&id, &DeclId::resource(&dep.text), dep.span);
                } else {
                    let names: Vec<&str> = t.resources.keys().map(String::as_str).collect();
                    cx.d.push(
                        Diagnostic::new(
                            Code::UnknownReference,
                            format!("`depends_on` names an unknown resource `{}`", dep.text),
                        )
                        .at(dep.span, "no resource has this name")
                        .maybe_help(did_you_mean(&dep.text, &names)),
                    );
                }
            }
        }
    }
    g
}

/// Checks a reference; returns the declaration it makes a dependency on.
pub(super) fn check_reference(
    cx: &mut Ctx<'_>,
    ev: &Evaluator,
    schemas: &HashMap<&str, &'static ResourceSchema>,
    mode: Mode,
    in_expansion: bool,
    r: &Reference,
) -> Option<DeclId> {
    let t = cx.template;
    let attr = r.attr.as_deref();
    let unknown_attr = |what: &str, name: &str, candidates: &[&str]| {
        Diagnostic::new(
            Code::UnknownAttribute,
            format!("{what} has no attribute `{name}`"),
        )
        .at(r.span, "no such attribute")
        .maybe_help(did_you_mean(name, candidates))
    };
    match r.root.as_str() {
        "params" => {
            if let Some(a) = attr
                && !t.parameters.contains_key(a)
            {
                let names: Vec<&str> = t.parameters.keys().map(String::as_str).collect();
                cx.d.push(
                    Diagnostic::new(Code::UnknownReference, format!("unknown parameter `{a}`"))
                        .at(r.span, "not declared under `parameters`")
                        .maybe_help(did_you_mean(a, &names)),
                );
            }
            None
        }
        "vars" => {
            let a = attr?;
            if t.variables.contains_key(a) {
                Some(DeclId::var(a))
            } else {
                let names: Vec<&str> = t.variables.keys().map(String::as_str).collect();
                cx.d.push(
                    Diagnostic::new(Code::UnknownReference, format!("unknown variable `{a}`"))
                        .at(r.span, "not declared under `variables`")
                        .maybe_help(did_you_mean(a, &names)),
                );
                None
            }
        }
        "deployment" => {
            if let Some(a) = attr {
                const FIELDS: &[&str] = &["name", "env", "target"];
                if !FIELDS.contains(&a) {
                    cx.d.push(unknown_attr("`deployment`", a, FIELDS));
                }
            }
            None
        }
        "index" | "each" => {
            let needed = if r.root == "index" {
                Mode::Count
            } else {
                Mode::ForEach
            };
            if mode != needed || in_expansion {
                let (what, key) = if needed == Mode::Count {
                    ("`index`", "`count`")
                } else {
                    ("`each`", "`for_each`")
                };
                cx.d.push(
                    Diagnostic::new(
                        Code::UnknownReference,
                        format!("{what} is only defined inside a resource with {key}"),
                    )
                    .at(r.span, "not defined here")
                    .help(format!(
                        "add {key} to the resource, or refer to a specific value"
                    )),
                );
            } else if r.root == "each"
                && let Some(a) = attr
                && a != "key"
                && a != "value"
            {
                cx.d.push(unknown_attr("`each`", a, &["key", "value"]));
            }
            None
        }
        name if t.resources.contains_key(name) => {
            let decl = &t.resources[name];
            if let (Some(a), Some(schema)) = (attr, schemas.get(name)) {
                if decl.count.is_some() || decl.for_each.is_some() {
                    let how = if decl.count.is_some() {
                        "a list (it has `count`)"
                    } else {
                        "a map (it has `for_each`)"
                    };
                    let example = if decl.count.is_some() {
                        format!("{name}[0].{a}")
                    } else {
                        format!("{name}['key'].{a}")
                    };
                    cx.d.push(
                        Diagnostic::new(Code::UnknownAttribute, format!("`{name}` is {how}, not a single resource"))
                            .at(r.span, "a collection of instances")
                            .help(format!(
                                "pick one instance, as in `{example}`, or all of them with `{name} | map(attribute='{a}') | list`"
                            )),
                    );
                } else if !schema.readable_names().contains(&a) {
                    cx.d.push(unknown_attr(
                        &format!("resource `{name}` ({})", schema.kind),
                        a,
                        &schema.readable_names(),
                    ));
                }
            }
            Some(DeclId::resource(name))
        }
        // A function, called or used as a value: nothing to depend on.
        name if ev.is_function(name) => None,
        name => {
            let mut candidates: Vec<&str> = SCOPE_NAMES.to_vec();
            candidates.extend(t.resources.keys().map(String::as_str));
            let d = if r.called {
                Diagnostic::new(Code::UnknownFunction, format!("unknown function `{name}`"))
                    .at(r.span, "not a known function")
                    .maybe_help(did_you_mean(name, ev.function_names()))
            } else {
                Diagnostic::new(Code::UnknownReference, format!("unknown name `{name}`"))
                    .at(r.span, "not a resource, parameter or variable")
                    .maybe_help(did_you_mean(name, &candidates).or_else(|| {
                        Some("use `params.NAME`, `vars.NAME`, or a resource's name".to_string())
                    }))
            };
            cx.d.push(d);
            None
        }
    }
}

/// Resource dependencies, seeing through variables.
pub(super) fn resource_dependencies(g: &DeclGraph, id: &DeclId) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut stack: Vec<&DeclId> = g.dependencies(id);
    let mut seen: Vec<&DeclId> = Vec::new();
    while let Some(d) = stack.pop() {
        if seen.contains(&d) {
            continue;
        }
        seen.push(d);
        match d.kind {
            DeclKind::Resource => out.push(d.name.clone()),
            DeclKind::Variable => stack.extend(g.dependencies(d)),
            DeclKind::Output | DeclKind::App | DeclKind::Test => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

fn contains(outer: Span, inner: Span) -> bool {
    outer.file == inner.file && outer.start <= inner.start && inner.end <= outer.end
}
