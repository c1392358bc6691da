//! Evaluating a loaded template into the desired resources: references are
//! checked and become graph edges, declarations are evaluated in dependency
//! order, `count`/`for_each`/`condition` expand resources into instances, and
//! every instance is checked against its type's schema.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use indexmap::IndexMap;
use minijinja::value::Value as Mj;
use serde::Serialize;

use cairn_template::diagnostic::{Code, Diagnostic, Diagnostics, did_you_mean, suggest};
use cairn_template::expr::{Evaluator, NameLookup, Reference, SCOPE_NAMES, Scope, Session, to_mj};
use cairn_template::loader::{Deployment, Loaded};
use cairn_template::model::{ResourceDecl, Template};
use cairn_template::node::Node;
use cairn_template::{Span, Value};

use crate::check::{check_keys, check_value, parse_documents, with_defaults};
use crate::graph::{DeclGraph, DeclId, DeclKind};
use crate::schema::{Kind, ResourceSchema, portable_kinds, target_kinds, target_of};

/// How a resource expands into instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Single,
    Count,
    ForEach,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum InstanceKey {
    None,
    Index(i64),
    Key(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LifecycleValues {
    pub prevent_destroy: bool,
    pub create_before_destroy: bool,
    pub ignore_changes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    /// `web[0]`, `sites["blog"]`, or the resource name.
    pub address: String,
    pub resource: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub key: InstanceKey,
    pub properties: IndexMap<String, Value>,
    pub tags: IndexMap<String, Value>,
    pub lifecycle: LifecycleValues,
    /// Target-only fields, by target.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub target: IndexMap<String, Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DesiredResource {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub mode: Mode,
    pub data_holding: bool,
    /// Resources this one depends on, directly or through variables.
    pub depends_on: Vec<String>,
    pub instances: Vec<Instance>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputValue {
    pub value: Value,
    pub secret: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What the template asks for, fully evaluated (up to unknowns).
#[derive(Debug, Serialize)]
pub struct Desired {
    pub deployment: Deployment,
    pub variables: IndexMap<String, Value>,
    pub resources: IndexMap<String, DesiredResource>,
    pub outputs: IndexMap<String, OutputValue>,
    /// Each app's declaration, evaluated (`cairn release` reads it).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub apps: IndexMap<String, Value>,
    /// Each test's declaration, evaluated (`cairn test` reads it once the
    /// deployment is up, when its references are known).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub tests: IndexMap<String, Value>,
    #[serde(skip)]
    pub graph: DeclGraph,
    /// The names expressions saw, for evaluating more expressions later (`cairn eval`).
    #[serde(skip)]
    pub scope: Arc<dyn NameLookup>,
}

impl Desired {
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.resources.values().flat_map(|r| r.instances.iter())
    }
}

/// Attributes the target already reported for instances (from the state).
/// During `validate` there are none, and every computed attribute is unknown.
pub trait KnownAttributes {
    fn attributes(&self, address: &str) -> Option<IndexMap<String, Value>>;
}

pub struct NoAttributes;

impl KnownAttributes for NoAttributes {
    fn attributes(&self, _: &str) -> Option<IndexMap<String, Value>> {
        None
    }
}

/// The names an expression sees; resources and variables are filled in as
/// evaluation walks the graph.
#[derive(Debug)]
struct Names {
    params: Mj,
    deployment: Mj,
    /// Every variable evaluated so far, converted once per variable (not
    /// once per read: `vars.prefix` is read by every instance).
    vars: RwLock<Mj>,
    resources: RwLock<HashMap<String, Mj>>,
}

impl NameLookup for Names {
    fn lookup(&self, name: &str) -> Option<Mj> {
        match name {
            "params" => Some(self.params.clone()),
            "deployment" => Some(self.deployment.clone()),
            "vars" => self.vars.read().ok().map(|v| v.clone()),
            _ => self.resources.read().ok()?.get(name).cloned(),
        }
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = vec!["params".into(), "deployment".into(), "vars".into()];
        if let Ok(r) = self.resources.read() {
            v.extend(r.keys().cloned());
        }
        v
    }
}

struct Ctx<'a> {
    loaded: &'a Loaded,
    template: &'a Template,
    names: Arc<Names>,
    d: Diagnostics,
}

/// Evaluates a loaded template. Reports every error it can find.
pub fn evaluate(loaded: &Loaded, known: &dyn KnownAttributes) -> Result<Desired, Diagnostics> {
    let template = &loaded.template;
    let ev = Evaluator::new(&loaded.functions);
    let mut session = ev.session(&loaded.sources);
    let names = Arc::new(Names {
        params: to_mj(&Value::Map(loaded.params.values.clone())),
        deployment: to_mj(&loaded.deployment.to_value()),
        vars: RwLock::new(to_mj(&Value::Map(IndexMap::new()))),
        resources: RwLock::new(HashMap::new()),
    });
    let mut cx = Ctx {
        loaded,
        template,
        names,
        d: Diagnostics::default(),
    };

    // Types first: references to a resource of unknown type cannot be checked.
    let mut schemas: HashMap<&str, &'static ResourceSchema> = HashMap::new();
    for (name, r) in &template.resources {
        // The one place a type string becomes a kind.
        match Kind::parse(&r.kind.text).map(Kind::schema) {
            Some(s) => {
                if let Some(only) = target_of(s.kind)
                    && only != loaded.env.target
                {
                    cx.d.push(target_mismatch(r, only, &loaded.env));
                }
                schemas.insert(name, s);
                let at = r.properties.as_ref().map_or(r.name.span, |p| p.span);
                check_keys(s, name, r.properties.as_ref(), at, &mut cx.d);
            }
            None => cx.d.push(unknown_type(r)),
        }
    }

    let graph = build_graph(&mut cx, &mut session, &ev, &schemas);
    let order = match graph.order() {
        Ok(o) => o,
        Err(cycles) => {
            cx.d.0.extend(cycles);
            let mut d = cx.d;
            d.sort();
            return Err(d);
        }
    };
    if !cx.d.is_empty() {
        // Reference errors make evaluation errors that only repeat them.
        let mut d = cx.d;
        d.sort();
        return Err(d);
    }

    let mut variables = IndexMap::new();
    let mut resources = IndexMap::new();
    let mut outputs = IndexMap::new();
    let mut apps = IndexMap::new();
    let mut tests = IndexMap::new();
    let scope = Scope::value(cx.names.clone(), None, None);
    for id in &order {
        match id.kind {
            DeclKind::Variable => {
                let (_, node) = &template.variables[&id.name];
                let v = match session.eval(node, &scope) {
                    Ok(v) => v,
                    Err(e) => {
                        cx.d.push(e);
                        Value::Unknown
                    }
                };
                variables.insert(id.name.clone(), v);
                // Kept converted from our values, so unknown and secret marks survive.
                if let Ok(mut vars) = cx.names.vars.write() {
                    *vars = to_mj(&Value::Map(variables.clone()));
                }
            }
            DeclKind::Resource => {
                let decl = &template.resources[&id.name];
                let Some(schema) = schemas.get(id.name.as_str()) else {
                    continue;
                };
                let depends_on = resource_dependencies(&graph, id);
                let r = evaluate_resource(&mut cx, &mut session, decl, schema, depends_on, known);
                resources.insert(id.name.clone(), r);
            }
            DeclKind::Output => {
                let decl = &template.outputs[&id.name];
                match session.eval(&decl.value, &scope) {
                    Ok(value) => {
                        if value.is_sensitive() && !decl.secret {
                            cx.d.push(
                                Diagnostic::new(
                                    Code::SecretExposed,
                                    format!("output `{}` would print a secret", id.name),
                                )
                                .at(decl.value.span, "this value is derived from a secret")
                                .help(format!(
                                    "declare it as `{}: {{value: ..., secret: true}}` so that it is stored encrypted and shown only on request",
                                    id.name
                                )),
                            );
                        }
                        outputs.insert(
                            id.name.clone(),
                            OutputValue {
                                value,
                                secret: decl.secret,
                                description: decl.description.clone(),
                            },
                        );
                    }
                    Err(e) => cx.d.push(e),
                }
            }
            DeclKind::App => {
                let decl = &template.apps[&id.name];
                match session.eval(&decl.body, &scope) {
                    Ok(value) => {
                        apps.insert(id.name.clone(), value);
                    }
                    Err(e) => cx.d.push(e),
                }
            }
            DeclKind::Test => {
                let decl = &template.tests[&id.name];
                match session.eval(&decl.body, &scope) {
                    Ok(value) => {
                        tests.insert(id.name.clone(), value);
                    }
                    Err(e) => cx.d.push(e),
                }
            }
        }
    }
    // Keep the template's order for people; evaluation used the graph's.
    let mut ordered = IndexMap::new();
    for name in template.resources.keys() {
        if let Some(r) = resources.swap_remove(name) {
            ordered.insert(name.clone(), r);
        }
    }
    let Ctx { d, names, .. } = cx;
    d.into_result(Desired {
        deployment: loaded.deployment.clone(),
        variables,
        resources: ordered,
        outputs,
        apps,
        tests,
        graph,
        scope: names,
    })
}

fn unknown_type(r: &ResourceDecl) -> Diagnostic {
    let kind = &r.kind.text;
    let mut d = Diagnostic::new(Code::UnknownType, format!("unknown resource type `{kind}`"))
        .at(r.kind.span, "not a resource type");
    if let Some((target, name)) = kind.split_once('.') {
        let specific = target_kinds();
        // Compared without the shared `aws.`, which alone would look close.
        let siblings: Vec<&str> = specific
            .iter()
            .filter_map(|k| k.strip_prefix(target)?.strip_prefix('.'))
            .collect();
        let near = suggest(name, siblings.iter().copied());
        let help = near.map(|n| format!("did you mean `{target}.{n}`?")).unwrap_or_else(|| {
            format!(
                "`{target}.*` types are target-specific; this cairn knows {}, and the portable types: {}",
                specific
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                portable_kinds().join(", ")
            )
        });
        d = d.help(help);
    } else {
        let mut kinds = portable_kinds();
        kinds.extend(target_kinds());
        d = d.maybe_help(did_you_mean(kind, &kinds));
    }
    d
}

/// Values of a `kind` resource that the environment's target refuses
/// ([`crate::schema::limits`]), each at the node it was written at (or
/// the closest one there is, for a default).
fn check_target_limits(
    env: &cairn_template::environment::Environment,
    kind: &str,
    props: &IndexMap<String, Value>,
    props_node: &Node,
    d: &mut Diagnostics,
) {
    let json: serde_json::Map<String, serde_json::Value> = props
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.to_json_revealed()?)))
        .collect();
    for b in crate::schema::limits::check(&env.target, kind, &serde_json::Value::Object(json)) {
        let node = node_at(props_node, &b.path);
        d.push(
            Diagnostic::new(
                Code::TargetLimit,
                format!(
                    "{} (environment `{}` deploys to {})",
                    b.message, env.name, env.target
                ),
            )
            .at(node.span, format!("the {} target refuses this", env.target)),
        );
    }
}

/// The node a breach's path leads to, or the deepest one on the way (a
/// default, or a list an expression made, has no node of its own).
fn node_at<'n>(props_node: &'n Node, path: &[crate::schema::limits::Step]) -> &'n Node {
    use crate::schema::limits::Step;
    let mut node = props_node;
    for step in path {
        let next = match step {
            Step::Key(k) => node.get(k),
            Step::Index(i) => node.as_seq().and_then(|items| items.get(*i)),
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    node
}

/// Reads the properties of a kind with a typed model
/// ([`crate::schema::typed`]) as every target will, and reports a fault at
/// the value it names. Values not known yet are left out and read again
/// once they are; a fault that may come from leaving them out is not one.
fn check_typed(
    kind: Kind,
    props: &IndexMap<String, Value>,
    props_node: &Node,
    d: &mut Diagnostics,
) {
    use crate::schema::typed::{At, PropError};
    use crate::schema::{balancer, credentials, database, dns, network, server, storage};
    // Every kind is named: a new one must say how it is read, or this does
    // not compile. A firewall's rules are read rule by rule
    // (`schema::firewall::read_rule`, through `limits`); target-specific
    // kinds are checked by their target.
    let read: fn(&serde_json::Value) -> Result<(), PropError> = match kind {
        Kind::Network => |p| network::Network::read(p).map(|_| ()),
        Kind::Subnet => |p| network::Subnet::read(p).map(|_| ()),
        Kind::IpAddress => |p| network::IpAddress::read(p).map(|_| ()),
        Kind::Server => |p| server::Server::read(p).map(|_| ()),
        Kind::LoadBalancer => |p| balancer::LoadBalancer::read(p).map(|_| ()),
        Kind::DnsZone => |p| dns::DnsZone::read(p).map(|_| ()),
        Kind::DnsRecord => |p| dns::DnsRecord::read(p).map(|_| ()),
        Kind::Database => |p| database::Database::read(p).map(|_| ()),
        Kind::Bucket => |p| storage::Bucket::read(p).map(|_| ()),
        Kind::Volume => |p| storage::Volume::read(p).map(|_| ()),
        Kind::Snapshot => |p| storage::Snapshot::read(p).map(|_| ()),
        Kind::Image => |p| storage::Image::read(p).map(|_| ()),
        Kind::Secret => |p| credentials::Secret::read(p).map(|_| ()),
        Kind::KeyPair => |p| credentials::KeyPair::read(p).map(|_| ()),
        Kind::Firewall | Kind::AwsIamRole | Kind::AwsIamInstanceProfile => return,
    };
    let mut unknown = Vec::new();
    let json: serde_json::Map<String, serde_json::Value> = props
        .iter()
        .filter_map(|(k, v)| match v.to_json_revealed() {
            Some(j) => Some((k.clone(), j)),
            None => {
                unknown.push(k.as_str());
                None
            }
        })
        .collect();
    let Err(e) = read(&serde_json::Value::Object(json)) else {
        return;
    };
    let about_unknown = match e.path.first() {
        Some(At::Key(k)) => unknown.contains(&k.as_str()),
        _ => !unknown.is_empty(),
    };
    if about_unknown {
        return;
    }
    let mut node = props_node;
    for step in &e.path {
        let next = match step {
            At::Key(k) => node.get(k),
            At::Index(i) => node.as_seq().and_then(|items| items.get(*i)),
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    d.push(
        Diagnostic::new(
            Code::Constraint,
            format!("{} `{}`: {}", kind, e.path_text(), e.message),
        )
        .at(node.span, "this value"),
    );
}

/// A firewall's rules, checked the same way for every target
/// ([`crate::schema::firewall`]), each fault at its rule's key.
fn check_firewall_rules(
    kind: &str,
    props: &IndexMap<String, Value>,
    props_node: &Node,
    d: &mut Diagnostics,
) {
    use crate::schema::firewall::{Direction, check};
    if kind != "firewall" {
        return;
    }
    let lists: Vec<(Direction, Option<serde_json::Value>)> = Direction::BOTH
        .iter()
        .map(|dir| {
            (
                *dir,
                props.get(dir.list()).and_then(Value::to_json_revealed),
            )
        })
        .collect();
    let lists: Vec<(Direction, Option<&serde_json::Value>)> =
        lists.iter().map(|(dir, v)| (*dir, v.as_ref())).collect();
    for b in check(&lists) {
        d.push(
            Diagnostic::new(Code::Constraint, b.message)
                .at(node_at(props_node, &b.path).span, "this rule"),
        );
    }
}

/// A target-specific type in an environment of another target: the
/// template can deploy only to that one.
fn target_mismatch(
    r: &ResourceDecl,
    only: &str,
    env: &cairn_template::environment::Environment,
) -> Diagnostic {
    let kind = &r.kind.text;
    Diagnostic::new(
        Code::TargetMismatch,
        format!(
            "`{kind}` deploys only to the {only} target; environment `{}` deploys to {}",
            env.name, env.target
        ),
    )
    .at(r.kind.span, format!("a type of the {only} target"))
    .help(format!(
        "deploy this template with an environment whose `target: {only}`, or use portable types only"
    ))
}

/// Collects references, checks each names something real, and adds edges.
fn build_graph<'a>(
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

fn contains(outer: Span, inner: Span) -> bool {
    outer.file == inner.file && outer.start <= inner.start && inner.end <= outer.end
}

/// Checks a reference; returns the declaration it makes a dependency on.
fn check_reference(
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
fn resource_dependencies(g: &DeclGraph, id: &DeclId) -> Vec<String> {
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

/// Evaluates a value that must be known now (count, for_each, condition).
fn eval_known<'a>(
    cx: &mut Ctx<'_>,
    session: &mut Session<'a>,
    node: &'a Node,
    scope: &Mj,
    what: &str,
) -> Option<Value> {
    match session.eval(node, scope) {
        Ok(v) if !v.is_known() => {
            cx.d.push(
                Diagnostic::new(Code::UnknownAtPlan, format!("{what} depends on values known only after apply"))
                    .at(node.span, "cannot be decided before apply")
                    .help("use parameters or variables here, not attributes that a target assigns (ids, addresses)"),
            );
            None
        }
        Ok(v) if v.is_sensitive() && what != "`condition`" => {
            cx.d.push(
                Diagnostic::new(Code::SecretExposed, format!("{what} would print a secret"))
                    .at(node.span, "derived from a secret")
                    .help("instance keys and counts are shown in plans and state; do not derive them from secrets"),
            );
            None
        }
        Ok(v) => Some(v),
        Err(e) => {
            cx.d.push(e);
            None
        }
    }
}

fn evaluate_resource<'a>(
    cx: &mut Ctx<'_>,
    session: &mut Session<'a>,
    decl: &'a ResourceDecl,
    schema: &'static ResourceSchema,
    depends_on: Vec<String>,
    known: &dyn KnownAttributes,
) -> DesiredResource {
    let name = decl.name.text.as_str();
    let scope = Scope::value(cx.names.clone(), None, None);
    let mode = if decl.count.is_some() {
        Mode::Count
    } else if decl.for_each.is_some() {
        Mode::ForEach
    } else {
        Mode::Single
    };
    let mut out = DesiredResource {
        name: name.to_string(),
        kind: Kind::of(schema),
        mode,
        data_holding: schema.data_holding,
        depends_on,
        instances: Vec::new(),
    };
    let enabled = match &decl.condition {
        None => true,
        Some(node) => match eval_known(cx, session, node, &scope, "`condition`") {
            Some(v) => match v.as_bool() {
                Some(b) => b,
                None => {
                    cx.d.push(
                        Diagnostic::new(
                            Code::Type,
                            format!("`condition` must be true or false, found {}", v.type_name()),
                        )
                        .at(node.span, "expected true or false"),
                    );
                    false
                }
            },
            None => false,
        },
    };
    // (key, address, index value, each value)
    let mut keys: Vec<(InstanceKey, String, Option<Mj>, Option<Mj>)> = Vec::new();
    if enabled {
        if let Some(node) = &decl.count {
            if let Some(v) = eval_known(cx, session, node, &scope, "`count`") {
                match v.unmarked() {
                    Value::Int(n) if *n >= 0 => {
                        for i in 0..*n {
                            keys.push((
                                InstanceKey::Index(i),
                                format!("{name}[{i}]"),
                                Some(Mj::from(i)),
                                None,
                            ));
                        }
                    }
                    other => cx.d.push(
                        Diagnostic::new(
                            Code::Count,
                            format!(
                                "`count` must be a non-negative integer, found {}",
                                describe(other)
                            ),
                        )
                        .at(node.span, "expected 0, 1, 2, ...")
                        .help("for one instance per key of a map or list, use `for_each`"),
                    ),
                }
            }
        } else if let Some(node) = &decl.for_each {
            if let Some(v) = eval_known(cx, session, node, &scope, "`for_each`") {
                match v.unmarked() {
                    Value::Map(m) => {
                        for (k, val) in m {
                            let each = Mj::from_pairs([
                                ("key", Mj::from(k.as_str())),
                                ("value", to_mj(val)),
                            ]);
                            keys.push((
                                InstanceKey::Key(k.clone()),
                                format!("{name}[{k:?}]"),
                                None,
                                Some(each),
                            ));
                        }
                    }
                    Value::List(items) if items.iter().all(|i| matches!(i, Value::Str(_))) => {
                        let mut seen = std::collections::HashSet::new();
                        for item in items {
                            let k = item.as_str().unwrap_or_default().to_string();
                            if !seen.insert(k.clone()) {
                                continue;
                            }
                            let each = Mj::from_pairs([
                                ("key", Mj::from(k.as_str())),
                                ("value", Mj::from(k.as_str())),
                            ]);
                            keys.push((
                                InstanceKey::Key(k.clone()),
                                format!("{name}[{k:?}]"),
                                None,
                                Some(each),
                            ));
                        }
                    }
                    other => cx.d.push(
                        Diagnostic::new(
                            Code::ForEach,
                            format!(
                                "`for_each` needs a map or a list of strings, found {}",
                                describe(other)
                            ),
                        )
                        .at(node.span, "not a collection of keys")
                        .help("for N alike instances, use `count`"),
                    ),
                }
            }
        } else {
            keys.push((InstanceKey::None, name.to_string(), None, None));
        }
    }

    let props_node: &'a Node = decl.properties.as_ref().unwrap_or(&EMPTY_MAP);
    for (key, address, index, each) in keys {
        let scope = Scope::value(cx.names.clone(), index, each);
        let props = match session.eval(props_node, &scope) {
            Ok(Value::Map(m)) => m,
            Ok(_) => IndexMap::new(),
            Err(e) => {
                cx.d.push(e);
                continue;
            }
        };
        let before = cx.d.len();
        for p in schema.properties {
            if let Some(v) = props.get(p.name) {
                let node = props_node.get(p.name).unwrap_or(props_node);
                check_value(&p.ty, p.name, v, node, &mut cx.d);
            }
        }
        let shapes_fit = cx.d.len() == before;
        check_target_limits(&cx.loaded.env, schema.kind, &props, props_node, &mut cx.d);
        check_firewall_rules(schema.kind, &props, props_node, &mut cx.d);
        let mut props = props;
        parse_documents(schema, &mut props, props_node, &mut cx.d);
        let mut properties = with_defaults(schema, props);
        if shapes_fit {
            // What the shapes allow but the kind's model does not (a port
            // of 0, a duration of `2x`): the same read the targets make.
            check_typed(Kind::of(schema), &properties, props_node, &mut cx.d);
        }
        let mut tags: IndexMap<String, Value> = cx
            .loaded
            .env
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
            .collect();
        for (node, value) in [
            (
                decl.tags.as_ref(),
                decl.tags.as_ref().map(|n| session.eval(n, &scope)),
            ),
            (
                props_node.get("tags"),
                properties.shift_remove("tags").map(Ok),
            ),
        ] {
            match value {
                Some(Ok(Value::Map(m))) => {
                    if m.values().any(Value::is_sensitive)
                        && let Some(n) = node
                    {
                        cx.d.push(
                                Diagnostic::new(Code::SecretExposed, "tags would print a secret")
                                    .at(n.span, "derived from a secret")
                                    .help("tags are visible to anyone who can list resources; keep secrets out of them"),
                            );
                    }
                    tags.extend(m);
                }
                Some(Ok(Value::Null)) | None => {}
                Some(Ok(other)) => {
                    if let Some(n) = node {
                        cx.d.push(
                            Diagnostic::new(
                                Code::Type,
                                format!("`tags` must be a map, found {}", other.type_name()),
                            )
                            .at(n.span, "expected a map of strings"),
                        );
                    }
                }
                Some(Err(e)) => cx.d.push(e),
            }
        }
        tags.insert(
            "cairn:deployment".into(),
            Value::Str(cx.loaded.deployment.name.clone()),
        );
        tags.insert("cairn:resource".into(), Value::Str(address.clone()));
        if !schema.taggable {
            tags.clear();
        }
        let lifecycle = evaluate_lifecycle(cx, session, decl, schema, &scope);
        let mut target = IndexMap::new();
        for (t, node) in &decl.target_blocks {
            match session.eval(node, &scope) {
                Ok(v) => {
                    target.insert(t.clone(), v);
                }
                Err(e) => cx.d.push(e),
            }
        }
        out.instances.push(Instance {
            address,
            resource: name.to_string(),
            kind: Kind::of(schema),
            key,
            properties,
            tags,
            lifecycle,
            target,
        });
    }
    publish(cx, &out, schema, known);
    out
}

static EMPTY_MAP: Node = Node {
    kind: cairn_template::node::NodeKind::Map(Vec::new()),
    span: Span {
        file: cairn_template::FileId(0),
        start: 0,
        end: 0,
    },
};

fn describe(v: &Value) -> String {
    match v {
        Value::Int(i) => format!("`{i}`"),
        Value::Str(s) => format!("the string `{s}`"),
        other => other.type_name().to_string(),
    }
}

fn evaluate_lifecycle<'a>(
    cx: &mut Ctx<'_>,
    session: &mut Session<'a>,
    decl: &'a ResourceDecl,
    schema: &ResourceSchema,
    scope: &Mj,
) -> LifecycleValues {
    let mut lc = LifecycleValues::default();
    for (node, slot, what) in [
        (
            &decl.lifecycle.prevent_destroy,
            &mut lc.prevent_destroy,
            "`prevent_destroy`",
        ),
        (
            &decl.lifecycle.create_before_destroy,
            &mut lc.create_before_destroy,
            "`create_before_destroy`",
        ),
    ] {
        if let Some(node) = node
            && let Some(v) = eval_known(cx, session, node, scope, what)
        {
            match v.as_bool() {
                Some(b) => *slot = b,
                None => cx.d.push(
                    Diagnostic::new(
                        Code::Type,
                        format!("{what} must be true or false, found {}", v.type_name()),
                    )
                    .at(node.span, "expected true or false"),
                ),
            }
        }
    }
    if let Some(node) = &decl.lifecycle.ignore_changes
        && let Some(v) = eval_known(cx, session, node, scope, "`ignore_changes`")
    {
        let names = schema.property_names();
        match v.unmarked() {
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    let at = node.as_seq().and_then(|s| s.get(i)).unwrap_or(node);
                    match item.as_str() {
                        Some(p) if names.contains(&p) || p == "tags" => {
                            lc.ignore_changes.push(p.to_string())
                        }
                        Some(p) => cx.d.push(
                            Diagnostic::new(
                                Code::UnknownProperty,
                                format!("`ignore_changes` names an unknown property `{p}`"),
                            )
                            .at(at.span, "not a property of this type")
                            .maybe_help(did_you_mean(p, &names)),
                        ),
                        None => cx.d.push(
                            Diagnostic::new(Code::Type, "`ignore_changes` lists property names")
                                .at(at.span, "expected a property name"),
                        ),
                    }
                }
            }
            other => cx.d.push(
                Diagnostic::new(
                    Code::Type,
                    format!(
                        "`ignore_changes` must be a list of property names, found {}",
                        other.type_name()
                    ),
                )
                .at(node.span, "expected a list"),
            ),
        }
    }
    lc
}

/// Makes a resource's instances visible to later expressions: properties,
/// tags and computed attributes (unknown until the target reports them).
fn publish(
    cx: &Ctx<'_>,
    r: &DesiredResource,
    schema: &ResourceSchema,
    known: &dyn KnownAttributes,
) {
    let object = |i: &Instance| -> Value {
        let mut m = i.properties.clone();
        m.insert("tags".into(), Value::Map(i.tags.clone()));
        let attrs = known.attributes(&i.address);
        for a in schema.attributes {
            let v = attrs
                .as_ref()
                .and_then(|k| k.get(a.name).cloned())
                .unwrap_or(Value::Unknown);
            let v = if a.sensitive {
                Value::Sensitive(Box::new(v))
            } else {
                v
            };
            m.insert(a.name.to_string(), v);
        }
        Value::Map(m)
    };
    let value = match r.mode {
        Mode::Single => r.instances.first().map(object).unwrap_or(Value::Null),
        Mode::Count => Value::List(r.instances.iter().map(object).collect()),
        Mode::ForEach => Value::Map(
            r.instances
                .iter()
                .map(|i| {
                    let k = match &i.key {
                        InstanceKey::Key(k) => k.clone(),
                        other => format!("{other:?}"),
                    };
                    (k, object(i))
                })
                .collect(),
        ),
    };
    if let Ok(mut res) = cx.names.resources.write() {
        res.insert(r.name.clone(), to_mj(&value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_template::{LoadOptions, load};

    const ROLE_TEMPLATE: &str = r#"cairn: 1
resources:
  app_role:
    type: aws.iam_role
    properties:
      assume_role_policy: '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}'
      inline_policies:
        logs: {Version: "2012-10-17", Statement: []}
  app_profile:
    type: aws.iam_instance_profile
    properties:
      role: "{{ app_role.id }}"
"#;

    /// A template directory with `dev` (local) and `aws` environments.
    fn dir(template: &str) -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("cairn-eval-{}-{n}", std::process::id()));
        std::fs::create_dir_all(dir.join("env")).unwrap();
        std::fs::write(dir.join("cairn.yaml"), template).unwrap();
        std::fs::write(dir.join("env/dev.yaml"), "target: local\n").unwrap();
        std::fs::write(dir.join("env/aws.yaml"), "target: aws\nregion: us-east-1\n").unwrap();
        dir
    }

    fn evaluate_in(dir: &std::path::Path, env: &str) -> (Loaded, Result<Desired, Diagnostics>) {
        let mut opts = LoadOptions::new(dir);
        opts.env = Some(env.into());
        let loaded = load(&opts).unwrap_or_else(|e| panic!("{e}"));
        let r = evaluate(&loaded, &NoAttributes);
        (loaded, r)
    }

    /// Each diagnostic as `CODE LINE:COL: MESSAGE` (the file left out).
    fn code_line_col(loaded: &Loaded, d: &Diagnostics) -> Vec<String> {
        d.iter()
            .map(|d| {
                let at = loaded.sources.location(d.span().unwrap());
                let line_col = at.rsplitn(3, ':').take(2).collect::<Vec<_>>();
                format!(
                    "{} {}:{}: {}",
                    d.code.as_str(),
                    line_col[1],
                    line_col[0],
                    d.message
                )
            })
            .collect()
    }

    #[test]
    fn a_value_the_target_refuses_is_an_error_at_it_for_that_target_only() {
        let dir = dir(r#"cairn: 1
resources:
  lb:
    type: load_balancer
    properties:
      listen: {protocol: http, port: 80}
      backend_port: 8080
      health_check:
        path: /healthz
        interval: 2s
        timeout: 1s
"#);
        let (_, local) = evaluate_in(&dir, "dev");
        assert!(local.is_ok(), "the local balancer takes 2s");
        let (loaded, r) = evaluate_in(&dir, "aws");
        let d = r.expect_err("ELB refuses a 2s interval");
        let found = code_line_col(&loaded, &d);
        assert_eq!(
            found,
            [
                "cairn::target_limit 10:19: health_check.interval 2s: ELB checks every 5s to 300s (environment `aws` deploys to aws)",
                "cairn::target_limit 11:18: health_check.timeout 1s: ELB wants 2s or more and less than the interval (2s) (environment `aws` deploys to aws)",
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn typed_models_refuse_a_value_at_it_and_wait_for_unknown_ones() {
        let dir = dir(r#"cairn: 1
resources:
  net: {type: network, properties: {cidr: 10.0.0.0/16}}
  sub: {type: subnet, properties: {network: "{{ net.id }}", cidr: 10.0.1.0/24}}
  web: {type: server, count: 2, properties: {image: debian-12, subnet: "{{ sub.id }}"}}
  lb:
    type: load_balancer
    properties:
      listen: {port: 70000}
      backends: "{{ web | map(attribute='address') | list }}"
      backend_port: 8080
  zone: {type: dns_zone, properties: {name: example.test}}
  www:
    type: dns_record
    properties: {zone: "{{ zone.id }}", name: www, type: A, values: ["{{ lb.address }}"]}
"#);
        for env in ["dev", "aws"] {
            let (loaded, r) = evaluate_in(&dir, env);
            let d = r.expect_err("a port of 70000");
            let found = code_line_col(&loaded, &d);
            // The backends and the record's zone and value are not known
            // yet: nothing is said about them.
            assert_eq!(
                found,
                [
                    "cairn::constraint 9:22: load_balancer `listen.port`: 70000 is not a port number (1 to 65535)"
                ],
                "{env}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_target_specific_type_is_refused_by_another_target_at_its_type() {
        let dir = dir(ROLE_TEMPLATE);
        let (loaded, r) = evaluate_in(&dir, "dev");
        let d = r.expect_err("dev deploys to local: refused");
        let found: Vec<String> = d
            .iter()
            .map(|d| {
                format!(
                    "{} {}: {}",
                    d.code.as_str(),
                    loaded.sources.location(d.span().unwrap()),
                    d.message
                )
            })
            .collect();
        let file = loaded.sources.get(d.0[0].span().unwrap().file).name.clone();
        assert!(file.ends_with("cairn.yaml"), "{file}");
        assert_eq!(
            found,
            [
                format!(
                    "cairn::target_mismatch {file}:4:11: `aws.iam_role` deploys only to the aws target; environment `dev` deploys to local"
                ),
                format!(
                    "cairn::target_mismatch {file}:10:11: `aws.iam_instance_profile` deploys only to the aws target; environment `dev` deploys to local"
                ),
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_aws_target_accepts_its_types_with_documents_as_maps() {
        let dir = dir(ROLE_TEMPLATE);
        let (_, r) = evaluate_in(&dir, "aws");
        let desired = r.unwrap_or_else(|d| panic!("{d}"));
        let role = &desired.resources["app_role"];
        assert_eq!(role.kind, "aws.iam_role");
        let p = Value::Map(role.instances[0].properties.clone())
            .to_json_revealed()
            .unwrap();
        // The JSON text became the map it spells; defaults are filled in.
        assert_eq!(
            p["assume_role_policy"]["Statement"][0]["Action"],
            "sts:AssumeRole"
        );
        assert_eq!(p["inline_policies"]["logs"]["Version"], "2012-10-17");
        assert_eq!(p["managed_policies"], serde_json::json!([]));
        assert_eq!(
            desired.resources["app_profile"].depends_on,
            ["app_role".to_string()]
        );
        assert!(role.instances[0].tags.contains_key("cairn:deployment"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn target_specific_types_have_their_property_checks() {
        let dir = dir(
            "cairn: 1\nresources:\n  r:\n    type: aws.iam_role\n    properties:\n      assume_role_policy: {}\n      managed_policy: []\n",
        );
        let (_, r) = evaluate_in(&dir, "aws");
        let d = r.expect_err("refused");
        let messages: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            ["unknown property `managed_policy` in resource `r` (aws.iam_role)"],
            "{d}"
        );
        assert_eq!(
            d.0[0].help.as_deref(),
            Some("did you mean `managed_policies`?")
        );
        let _ = std::fs::remove_dir_all(&dir);

        let dir = self::dir(
            "cairn: 1\nresources:\n  r:\n    type: aws.iam_role\n    properties:\n      assume_role_policy: '[1]'\n      managed_policies: [7]\n",
        );
        let (loaded, r) = evaluate_in(&dir, "aws");
        let d = r.expect_err("refused");
        let found: Vec<String> = d
            .iter()
            .map(|d| {
                format!(
                    "{}: {}",
                    loaded.sources.location(d.span().unwrap()),
                    d.message
                )
            })
            .collect();
        let file = loaded.sources.get(d.0[0].span().unwrap().file).name.clone();
        assert_eq!(
            found,
            [
                format!(
                    "{file}:6:27: `assume_role_policy` is not a policy document: a JSON list, not an object"
                ),
                format!("{file}:7:26: `managed_policies[0]` expects a string, found an integer"),
            ],
            "{d}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_target_types_are_suggested() {
        let dir = dir("cairn: 1\nresources:\n  r:\n    type: aws.iam_rol\n");
        let (_, r) = evaluate_in(&dir, "aws");
        let d = r.expect_err("refused");
        assert_eq!(d.0[0].help.as_deref(), Some("did you mean `aws.iam_role`?"));
        let dir2 = self::dir("cairn: 1\nresources:\n  r:\n    type: aws.route_table\n");
        let (_, r) = evaluate_in(&dir2, "aws");
        let help = r.err().unwrap().0[0].help.clone().unwrap();
        assert!(
            help.starts_with("`aws.*` types are target-specific; this cairn knows `aws.iam_role`, `aws.iam_instance_profile`, and the portable types: network, "),
            "{help}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&dir2);
    }
}
