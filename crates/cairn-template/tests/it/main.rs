//! cairn-template's integration tests: one binary, a module per area.
//!
//! The property tests here feed random documents and expressions to the
//! parser, the document model and the evaluator, and check that nothing
//! panics and that every diagnostic points at a valid range of its source.
//! `PROPTEST_CASES=N` runs N cases per property instead of the default.

mod expressions;
mod generators;
mod never_panics;

use std::fmt::Display;
use std::path::Path;
use std::sync::Arc;

use cairn_template::diagnostic::Rendered;
use cairn_template::expr::{Evaluator, Reference, Scope, StaticNames, to_mj};
use cairn_template::functions::FunctionContext;
use cairn_template::model::parse_template;
use cairn_template::node::{Node, NodeKind, parse_json, parse_yaml};
use cairn_template::{Diagnostic, Sources, Span, Value};
use indexmap::IndexMap;
use miette::{GraphicalReportHandler, GraphicalTheme};
use proptest::test_runner::Config;

/// `cases` cases per property, unless `PROPTEST_CASES` says otherwise.
pub fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        ..Config::default()
    }
}

/// A span is a byte range of its file's text, on character boundaries.
pub fn check_span(text: &str, span: Span, what: &dyn Display) {
    let (start, end) = (span.start as usize, span.end as usize);
    assert!(
        start <= end && end <= text.len(),
        "{what}: span {start}..{end} is outside the text ({} bytes): {text:?}",
        text.len()
    );
    assert!(
        text.is_char_boundary(start) && text.is_char_boundary(end),
        "{what}: span {start}..{end} splits a character: {text:?}"
    );
}

/// Every label of a diagnostic is valid for its file, and the diagnostic
/// renders (as `cairn` prints it) without panicking.
pub fn check_diagnostic(sources: &Sources, d: &Diagnostic) -> String {
    for label in d.primary.iter().chain(&d.secondary) {
        let text = &sources.get(label.span.file).text;
        let what = format_args!(
            "{} ({}), label `{}`",
            d.code.as_str(),
            d.message,
            label.text
        );
        check_span(text, label.span, &what);
    }
    render(sources, d)
}

pub fn render(sources: &Sources, d: &Diagnostic) -> String {
    let rendered = Rendered::new(d, sources);
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .render_report(&mut out, &rendered)
        .unwrap_or_else(|e| panic!("rendering {d:?} failed: {e}"));
    assert!(
        out.contains(d.code.as_str()),
        "the rendered report names the code: {out}"
    );
    out
}

/// Every node of a parsed tree has a valid span.
pub fn check_node(text: &str, node: &Node) {
    check_span(text, node.span, &format_args!("{} node", node.type_name()));
    match &node.kind {
        NodeKind::Seq(items) => items.iter().for_each(|n| check_node(text, n)),
        NodeKind::Map(entries) => entries.iter().for_each(|(k, v)| {
            check_node(text, k);
            check_node(text, v);
        }),
        _ => {}
    }
}

/// How far a document got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// Not YAML.
    Syntax,
    /// YAML, but not a valid template.
    Model,
    /// A template.
    Template,
}

/// Parses a document as YAML and as JSON, reads the template model from it,
/// and evaluates every string in it, checking every diagnostic on the way.
pub fn check_document(text: &str) -> Reached {
    let mut sources = Sources::default();
    let file = sources.add("cairn.yaml", Path::new("cairn.yaml"), text);
    match parse_json(file, text) {
        Ok(node) => check_node(text, &node),
        Err(d) => _ = check_diagnostic(&sources, &d),
    }
    let node = match parse_yaml(file, text) {
        Ok(node) => node,
        Err(d) => {
            check_diagnostic(&sources, &d);
            return Reached::Syntax;
        }
    };
    check_node(text, &node);
    check_strings(&sources, &node);
    match parse_template(&node) {
        Ok(_) => Reached::Template,
        Err(ds) => {
            assert!(!ds.is_empty(), "an error carries a diagnostic");
            for d in ds.iter() {
                check_diagnostic(&sources, d);
            }
            Reached::Model
        }
    }
}

pub fn function_context() -> FunctionContext {
    FunctionContext {
        // Nothing to read: `file()` fails instead of reading the checkout.
        base_dir: std::env::temp_dir().join("cairn-template-proptest-no-such-dir"),
        now: time::OffsetDateTime::UNIX_EPOCH,
        allow_utc_now: true,
    }
}

/// A scope with the kinds of values templates see: plain, unknown, secret.
pub fn scope() -> minijinja::Value {
    let map = |entries: &[(&str, Value)]| {
        Value::Map(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    };
    let s = |s: &str| Value::Str(s.into());
    let server = |i: i64| {
        map(&[
            ("id", Value::Unknown),
            ("address", Value::Unknown),
            ("name", s(&format!("web-{i}"))),
        ])
    };
    let names: IndexMap<String, Value> = [
        (
            "params",
            map(&[
                ("env", s("dev")),
                ("count", Value::Int(2)),
                ("ratio", Value::Float(0.5)),
                ("on", Value::Bool(true)),
                ("pw", Value::Sensitive(Box::new(s("hunter2")))),
                (
                    "list",
                    Value::List(vec![Value::Int(1), s("a"), Value::Null]),
                ),
                ("map", map(&[("a", Value::Int(1)), ("é", s("日本"))])),
            ]),
        ),
        ("vars", map(&[("prefix", s("dev-abc"))])),
        (
            "deployment",
            map(&[
                ("name", s("app-dev")),
                ("env", s("dev")),
                ("target", s("local")),
            ]),
        ),
        (
            "net",
            map(&[("id", Value::Unknown), ("cidr", s("10.0.0.0/16"))]),
        ),
        ("web", Value::List(vec![server(0), server(1)])),
        ("db", Value::Unknown),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let names = StaticNames(names.iter().map(|(k, v)| (k.clone(), to_mj(v))).collect());
    let each = to_mj(&map(&[("key", s("a")), ("value", Value::Int(1))]));
    Scope::value(Arc::new(names), Some(minijinja::Value::from(1)), Some(each))
}

/// Evaluates every string of a tree and extracts its references, checking
/// every span that comes out.
pub fn check_strings(sources: &Sources, root: &Node) {
    let ev = Evaluator::new(&function_context());
    let mut session = ev.session(sources);
    let scope = scope();
    let mut strings = Vec::new();
    collect_strings(root, &mut strings);
    for node in strings {
        check_string_node(sources, &mut session, &scope, node);
    }
}

pub fn check_string_node<'a>(
    sources: &'a Sources,
    session: &mut cairn_template::expr::Session<'a>,
    scope: &minijinja::Value,
    node: &'a Node,
) {
    let text = &sources.get(node.span.file).text;
    if let Err(d) = session.eval(node, scope) {
        check_diagnostic(sources, &d);
    }
    let mut refs: Vec<Reference> = Vec::new();
    match session.references(node, &mut refs) {
        Ok(()) => {
            for r in &refs {
                check_span(text, r.span, &format_args!("reference to `{}`", r.root));
            }
        }
        Err(d) => _ = check_diagnostic(sources, &d),
    }
}

fn collect_strings<'a>(node: &'a Node, out: &mut Vec<&'a Node>) {
    match &node.kind {
        NodeKind::Str(..) => out.push(node),
        NodeKind::Seq(items) => items.iter().for_each(|n| collect_strings(n, out)),
        NodeKind::Map(entries) => entries.iter().for_each(|(k, v)| {
            collect_strings(k, out);
            collect_strings(v, out);
        }),
        _ => {}
    }
}
