//! The document model: what a `cairn.yaml` declares, with spans, before any
//! expression is evaluated.

use indexmap::IndexMap;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::node::{Node, NodeKind};
use crate::params::{ParamDecl, parse_param_decl};
pub use crate::shape::Name;
use crate::shape::{expect_map, expect_string, key_name, type_error, unknown_key};
use crate::source::{FileId, Span};

pub const TEMPLATE_KEYS: &[&str] = &[
    "cairn",
    "description",
    "parameters",
    "variables",
    "resources",
    "outputs",
    "apps",
    "tests",
];
pub const RESOURCE_KEYS: &[&str] = &[
    "type",
    "description",
    "properties",
    "count",
    "for_each",
    "condition",
    "depends_on",
    "lifecycle",
    "tags",
    "aws",
    "local",
];
pub const LIFECYCLE_KEYS: &[&str] = &["prevent_destroy", "create_before_destroy", "ignore_changes"];
pub const OUTPUT_KEYS: &[&str] = &["value", "description", "secret"];
/// What an app (`apps:`) declares; see `cairn-release` for their meaning.
pub const APP_KEYS: &[&str] = &[
    "description",
    "build",
    "install",
    "service",
    "health",
    "port",
    "load_balancer",
    "servers",
    "hooks",
    "keep",
    "store",
    "heal",
];
/// The keys of an app's nested maps, by the key that holds them.
pub const APP_NESTED_KEYS: &[(&str, &[&str])] = &[
    ("build", &["command", "dir", "output"]),
    ("service", &["command", "stop_timeout", "user", "unit"]),
    ("health", &["path", "port", "timeout", "interval"]),
    ("hooks", &["pre", "post"]),
    ("heal", &["grace", "restart", "replace", "interval"]),
];
/// What a test (`tests:`, run by `cairn test`) declares: one kind, what
/// it expects, and how long the deployment may take to meet it.
pub const TEST_KEYS: &[&str] = &[
    "description",
    "http",
    "dns",
    "sql",
    "command",
    "expect",
    "timeout",
    "interval",
];
/// Each test kind with the keys of its request and of its `expect`.
pub const TEST_KINDS: &[(&str, &[&str], &[&str])] = &[
    (
        "http",
        &["url", "lb", "path", "host", "scheme"],
        &["status", "body_contains", "body_equals", "body_regex"],
    ),
    ("dns", &["name", "type", "server"], &["values", "contains"]),
    (
        "sql",
        &[
            "database", "endpoint", "user", "password", "dbname", "query",
        ],
        &["rows", "first_value"],
    ),
    (
        "command",
        &["hosts", "run"],
        &["exit_code", "stdout_contains", "stdout_equals"],
    ),
];
/// Names a resource, variable or parameter may not take: they are scope names.
pub const RESERVED: &[&str] = &[
    "params",
    "vars",
    "deployment",
    "index",
    "each",
    "self",
    "true",
    "false",
    "none",
    "null",
];
/// Target blocks a resource may carry.
pub const TARGET_BLOCKS: &[&str] = &["aws", "local"];

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub file: FileId,
    pub version_span: Option<Span>,
    pub description: Option<String>,
    pub parameters: IndexMap<String, ParamDecl>,
    pub variables: IndexMap<String, (Name, Node)>,
    pub resources: IndexMap<String, ResourceDecl>,
    pub outputs: IndexMap<String, OutputDecl>,
    /// Applications released onto the deployment's servers (`cairn release`).
    pub apps: IndexMap<String, AppDecl>,
    /// Expectations `cairn test` checks against a fresh deployment.
    pub tests: IndexMap<String, TestDecl>,
}

/// A test as written: its keys are checked here, its values (expressions
/// that may name resources) are evaluated with the outputs, once the
/// deployment is up.
#[derive(Debug, Clone, PartialEq)]
pub struct TestDecl {
    pub name: Name,
    /// `http`, `dns`, `sql` or `command`, where it is written.
    pub kind: Name,
    pub body: Node,
}

/// An app as written: its keys are checked here, its values (expressions
/// that may name resources) are evaluated with the outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct AppDecl {
    pub name: Name,
    pub body: Node,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDecl {
    pub name: Name,
    pub kind: Name,
    pub description: Option<String>,
    pub properties: Option<Node>,
    pub count: Option<Node>,
    pub for_each: Option<Node>,
    pub condition: Option<Node>,
    pub depends_on: Vec<Name>,
    pub lifecycle: Lifecycle,
    pub tags: Option<Node>,
    /// Target-only fields, by target name (`aws: {...}`).
    pub target_blocks: IndexMap<String, Node>,
    pub span: Span,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lifecycle {
    pub prevent_destroy: Option<Node>,
    pub create_before_destroy: Option<Node>,
    pub ignore_changes: Option<Node>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutputDecl {
    pub name: Name,
    pub value: Node,
    pub description: Option<String>,
    pub secret: bool,
}

/// Reads a template document; reports every problem found, not just the first.
pub fn parse_template(root: &Node) -> Result<Template, Diagnostics> {
    let mut d = Diagnostics::default();
    let mut t = Template {
        file: root.span.file,
        version_span: None,
        description: None,
        parameters: IndexMap::new(),
        variables: IndexMap::new(),
        resources: IndexMap::new(),
        outputs: IndexMap::new(),
        apps: IndexMap::new(),
        tests: IndexMap::new(),
    };
    let Some(entries) = expect_map(root, "the template", &mut d) else {
        return Err(d);
    };
    for (k, v) in entries {
        let Some(key) = key_name(k, &mut d) else {
            continue;
        };
        match key.as_str() {
            "cairn" => {
                t.version_span = Some(v.span);
                if v.kind != NodeKind::Int(1) {
                    d.push(
                        Diagnostic::new(Code::Type, "unsupported template version")
                            .at(v.span, "expected `1`")
                            .help("this cairn reads templates with `cairn: 1`"),
                    );
                }
            }
            "description" => t.description = expect_string(v, &mut d),
            "parameters" => {
                for (name, node) in named_entries(v, "parameters", &mut d) {
                    if let Some(p) = parse_param_decl(name.clone(), node, &mut d) {
                        t.parameters.insert(name.text, p);
                    }
                }
            }
            "variables" => {
                for (name, node) in named_entries(v, "variables", &mut d) {
                    t.variables.insert(name.text.clone(), (name, node.clone()));
                }
            }
            "resources" => {
                for (name, node) in named_entries(v, "resources", &mut d) {
                    if let Some(r) = parse_resource(name.clone(), node, &mut d) {
                        t.resources.insert(name.text, r);
                    }
                }
            }
            "outputs" => {
                for (name, node) in named_entries(v, "outputs", &mut d) {
                    t.outputs
                        .insert(name.text.clone(), parse_output(name, node, &mut d));
                }
            }
            "apps" => {
                for (name, node) in named_entries(v, "apps", &mut d) {
                    if let Some(app) = parse_app(name, node, &mut d) {
                        t.apps.insert(app.name.text.clone(), app);
                    }
                }
            }
            "tests" => {
                for (name, node) in named_entries(v, "tests", &mut d) {
                    if let Some(test) = parse_test(name, node, &mut d) {
                        t.tests.insert(test.name.text.clone(), test);
                    }
                }
            }
            other => d.push(unknown_key(k, other, "a template", TEMPLATE_KEYS)),
        }
    }
    if t.version_span.is_none() && !entries.is_empty() {
        // Optional, but a typo such as `cairm: 1` was reported above.
    }
    d.into_result(t)
}

fn parse_resource(name: Name, node: &Node, d: &mut Diagnostics) -> Option<ResourceDecl> {
    let entries = expect_map(node, "a resource", d)?;
    let mut kind: Option<Name> = None;
    let mut r = ResourceDecl {
        name: name.clone(),
        kind: Name {
            text: String::new(),
            span: name.span,
        },
        description: None,
        properties: None,
        count: None,
        for_each: None,
        condition: None,
        depends_on: Vec::new(),
        lifecycle: Lifecycle::default(),
        tags: None,
        target_blocks: IndexMap::new(),
        span: node.span,
    };
    for (k, v) in entries {
        let Some(key) = key_name(k, d) else { continue };
        match key.as_str() {
            "type" => {
                kind = expect_string(v, d).map(|text| Name { text, span: v.span });
            }
            "description" => r.description = expect_string(v, d),
            "properties" => {
                if expect_map(v, "`properties`", d).is_some() {
                    r.properties = Some(v.clone());
                }
            }
            "count" => r.count = Some(v.clone()),
            "for_each" => r.for_each = Some(v.clone()),
            "condition" => r.condition = Some(v.clone()),
            "depends_on" => match &v.kind {
                NodeKind::Seq(items) => {
                    for item in items {
                        if let Some(text) = expect_string(item, d) {
                            r.depends_on.push(Name {
                                text,
                                span: item.span,
                            });
                        }
                    }
                }
                NodeKind::Str(s, _) => r.depends_on.push(Name {
                    text: s.clone(),
                    span: v.span,
                }),
                _ => d.push(type_error(v, "a list of resource names")),
            },
            "lifecycle" => {
                if let Some(lc) = expect_map(v, "`lifecycle`", d) {
                    for (lk, lv) in lc {
                        match lk.key_str() {
                            Some("prevent_destroy") => {
                                r.lifecycle.prevent_destroy = Some(lv.clone())
                            }
                            Some("create_before_destroy") => {
                                r.lifecycle.create_before_destroy = Some(lv.clone())
                            }
                            Some("ignore_changes") => r.lifecycle.ignore_changes = Some(lv.clone()),
                            _ => d.push(unknown_key(
                                lk,
                                &lk.scalar_text(),
                                "`lifecycle`",
                                LIFECYCLE_KEYS,
                            )),
                        }
                    }
                }
            }
            "tags" => r.tags = Some(v.clone()),
            t if TARGET_BLOCKS.contains(&t) => {
                if expect_map(v, "a target block", d).is_some() {
                    r.target_blocks.insert(t.to_string(), v.clone());
                }
            }
            other => d.push(unknown_key(k, other, "a resource", RESOURCE_KEYS)),
        }
    }
    if let (Some(c), Some(f)) = (&r.count, &r.for_each) {
        d.push(
            Diagnostic::new(
                Code::Count,
                format!("resource `{}` has both `count` and `for_each`", name.text),
            )
            .at(f.span, "`for_each` here")
            .also(c.span, "`count` here")
            .help("use one of them: `count` for N alike copies, `for_each` for one copy per key"),
        );
    }
    match kind {
        Some(k) => r.kind = k,
        None => {
            d.push(
                Diagnostic::new(
                    Code::MissingKey,
                    format!("resource `{}` has no `type`", name.text),
                )
                .at(name.span, "this resource")
                .help("add `type: server` (or network, subnet, load_balancer, ...)"),
            );
            return None;
        }
    }
    Some(r)
}

fn parse_app(name: Name, node: &Node, d: &mut Diagnostics) -> Option<AppDecl> {
    let entries = expect_map(node, "an app", d)?;
    for (k, v) in entries {
        let Some(key) = key_name(k, d) else { continue };
        if !APP_KEYS.contains(&key.as_str()) {
            d.push(unknown_key(k, &key, "an app", APP_KEYS));
            continue;
        }
        let Some((_, nested)) = APP_NESTED_KEYS.iter().find(|(n, _)| *n == key) else {
            continue;
        };
        // A string may be an expression that makes the map; a literal map
        // has its keys checked now, where they are written.
        if let Some(inner) = v.as_map() {
            for (ik, _) in inner {
                let Some(ikey) = key_name(ik, d) else {
                    continue;
                };
                if !nested.contains(&ikey.as_str()) {
                    d.push(unknown_key(ik, &ikey, &format!("an app's `{key}`"), nested));
                }
            }
        }
    }
    for required in ["install", "servers"] {
        if node.get(required).is_none() {
            d.push(
                Diagnostic::new(
                    Code::MissingKey,
                    format!("app `{}` has no `{required}`", name.text),
                )
                .at(name.span, "this app")
                .help(match required {
                    "install" => "add `install: /srv/NAME`: releases go under it, `current` points at the live one",
                    _ => "add `servers: G@role:web` (a target expression) or a list of server names",
                }),
            );
        }
    }
    // A server is healed by what its health check says: the default check
    // (`GET /` on the port) is too weak a judge to restart or replace by.
    if let Some((k, _)) = entries.iter().find(|(k, _)| k.as_str() == Some("heal"))
        && node.get("health").is_none()
    {
        d.push(
            Diagnostic::new(
                Code::MissingKey,
                format!("app `{}` has `heal` but no `health`", name.text),
            )
            .at(k.span, "healing needs a health check")
            .help("add `health: {path: /healthz, timeout: 10s}`: a server failing it longer than `heal.grace` is restarted, then replaced"),
        );
    }
    Some(AppDecl {
        name,
        body: node.clone(),
    })
}

fn parse_test(name: Name, node: &Node, d: &mut Diagnostics) -> Option<TestDecl> {
    let entries = expect_map(node, "a test", d)?;
    let mut kinds: Vec<(Name, &Node)> = Vec::new();
    for (k, v) in entries {
        let Some(key) = key_name(k, d) else { continue };
        if !TEST_KEYS.contains(&key.as_str()) {
            d.push(unknown_key(k, &key, "a test", TEST_KEYS));
            continue;
        }
        if TEST_KINDS.iter().any(|(kind, _, _)| *kind == key) {
            kinds.push((
                Name {
                    text: key,
                    span: k.span,
                },
                v,
            ));
        }
    }
    let kind = match kinds.as_slice() {
        [] => {
            d.push(
                Diagnostic::new(
                    Code::MissingKey,
                    format!("test `{}` says nothing to check", name.text),
                )
                .at(name.span, "this test")
                .help("give it one of `http`, `dns`, `sql` or `command`, and an `expect`"),
            );
            return None;
        }
        [(kind, _)] => kind.clone(),
        [(first, _), (second, _), ..] => {
            d.push(
                Diagnostic::new(
                    Code::Type,
                    format!(
                        "test `{}` has both `{}` and `{}`",
                        name.text, first.text, second.text
                    ),
                )
                .at(second.span, "a second kind")
                .also(first.span, "the first")
                .help("a test checks one thing: split it into two tests"),
            );
            return None;
        }
    };
    let (_, request_keys, expect_keys) = TEST_KINDS
        .iter()
        .find(|(k, _, _)| *k == kind.text)
        .copied()?;
    // A string may be an expression that makes the map; a literal map has
    // its keys checked now, where they are written.
    let check_keys = |v: &Node, within: String, allowed: &[&str], d: &mut Diagnostics| {
        for (ik, _) in v.as_map().into_iter().flatten() {
            if let Some(ikey) = key_name(ik, d)
                && !allowed.contains(&ikey.as_str())
            {
                d.push(unknown_key(ik, &ikey, &within, allowed));
            }
        }
    };
    if let Some((_, request)) = kinds.first() {
        check_keys(
            request,
            format!("the `{}` of test `{}`", kind.text, name.text),
            request_keys,
            d,
        );
    }
    match node.get("expect") {
        Some(expect) => check_keys(
            expect,
            format!("the `expect` of test `{}`", name.text),
            expect_keys,
            d,
        ),
        None => d.push(
            Diagnostic::new(
                Code::MissingKey,
                format!("test `{}` has no `expect`", name.text),
            )
            .at(name.span, "this test")
            .help(format!(
                "add `expect:` with any of: {}",
                expect_keys.join(", ")
            )),
        ),
    }
    Some(TestDecl {
        name,
        kind,
        body: node.clone(),
    })
}

fn parse_output(name: Name, node: &Node, d: &mut Diagnostics) -> OutputDecl {
    // `name: value` or `name: {value: ..., secret: true, description: ...}`.
    let long_form = node.as_map().is_some_and(|m| {
        !m.is_empty()
            && m.iter()
                .all(|(k, _)| k.key_str().is_some_and(|k| OUTPUT_KEYS.contains(&k)))
    });
    if long_form && node.get("value").is_some() {
        let mut secret = false;
        if let Some(s) = node.get("secret") {
            match s.kind {
                NodeKind::Bool(b) => secret = b,
                _ => d.push(type_error(s, "true or false")),
            }
        }
        let description = node.get("description").and_then(|n| expect_string(n, d));
        return OutputDecl {
            name,
            value: node.get("value").cloned().unwrap_or_else(|| node.clone()),
            description,
            secret,
        };
    }
    OutputDecl {
        name,
        value: node.clone(),
        description: None,
        secret: false,
    }
}

/// The entries of a named section (`resources:`), with names checked.
fn named_entries<'n>(node: &'n Node, section: &str, d: &mut Diagnostics) -> Vec<(Name, &'n Node)> {
    if node.kind == NodeKind::Null {
        return Vec::new();
    }
    let Some(entries) = expect_map(node, &format!("`{section}`"), d) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let Some(text) = key_name(k, d) else { continue };
        if !is_identifier(&text) {
            d.push(
                Diagnostic::new(Code::Type, format!("`{text}` is not a valid name"))
                    .at(k.span, "names are letters, digits and `_`, starting with a letter or `_`")
                    .help("expressions refer to names like `{{ web_subnet.id }}`, so `-` and `.` cannot be used"),
            );
            continue;
        }
        if RESERVED.contains(&text.as_str()) {
            d.push(
                Diagnostic::new(Code::Type, format!("`{text}` is a reserved name"))
                    .at(k.span, "reserved for expressions")
                    .help(format!("reserved names: {}", RESERVED.join(", "))),
            );
            continue;
        }
        out.push((Name { text, span: k.span }, v));
    }
    out
}

pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
