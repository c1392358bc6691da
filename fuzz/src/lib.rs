//! What the fuzz targets check: nothing panics, and every diagnostic's labels
//! are byte ranges of their file on character boundaries, and render.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use cairn_template::diagnostic::Rendered;
use cairn_template::expr::{Evaluator, Scope, Session, StaticNames, to_mj};
use cairn_template::functions::FunctionContext;
use cairn_template::model::parse_template;
use cairn_template::node::{Node, NodeKind, Style, parse_json, parse_yaml};
use cairn_template::{Diagnostic, Sources, Span, Value};
use miette::{GraphicalReportHandler, GraphicalTheme};

/// Parses `text` as YAML and JSON, reads the template model, evaluates every
/// string in the tree and extracts its references.
pub fn check_document(text: &str) {
    let mut sources = Sources::default();
    let file = sources.add("cairn.yaml", Path::new("cairn.yaml"), text);
    match parse_json(file, text) {
        Ok(node) => check_node(text, &node),
        Err(d) => check_diagnostic(&sources, &d),
    }
    let node = match parse_yaml(file, text) {
        Ok(node) => node,
        Err(d) => return check_diagnostic(&sources, &d),
    };
    check_node(text, &node);
    if let Err(ds) = parse_template(&node) {
        assert!(!ds.is_empty(), "an error carries a diagnostic");
        for d in ds.iter() {
            check_diagnostic(&sources, d);
        }
    }
    let mut strings = Vec::new();
    collect_strings(&node, &mut strings);
    let mut session = evaluator().session(&sources);
    let scope = scope();
    for node in strings {
        check_string(&sources, &mut session, &scope, node);
    }
}

/// Evaluates `{{ text }}` and `text` itself, each written bare (the whole
/// file is the string) and in double-quoted, single-quoted and literal
/// block scalars.
pub fn check_expression(text: &str) {
    let mut sources = Sources::default();
    let mut nodes = Vec::new();
    for value in [format!("{{{{ {text} }}}}"), text.to_string()] {
        let bare = sources.add("bare", Path::new("bare"), value.as_str());
        nodes.push(Node {
            kind: NodeKind::Str(value.clone(), Style::Plain),
            span: Span::new(bare, 0, value.len()),
        });
        for doc in embeddings(&value) {
            let id = sources.add("doc.yaml", Path::new("doc.yaml"), doc.as_str());
            match parse_yaml(id, &doc) {
                Ok(root) => {
                    check_node(&doc, &root);
                    nodes.extend(root.get("v").cloned());
                }
                Err(d) => check_diagnostic(&sources, &d),
            }
        }
    }
    let mut session = evaluator().session(&sources);
    let scope = scope();
    for node in &nodes {
        check_string(&sources, &mut session, &scope, node);
    }
}

/// `v: <value>` in double quotes, single quotes and a literal block.
fn embeddings(value: &str) -> [String; 3] {
    let mut double = String::from("v: \"");
    for c in value.chars() {
        match c {
            '"' => double.push_str("\\\""),
            '\\' => double.push_str("\\\\"),
            '\n' => double.push_str("\\n"),
            c if c.is_control() => double.push_str(&format!("\\u{:04x}", c as u32)),
            c => double.push(c),
        }
    }
    double.push_str("\"\n");
    let single = format!("v: '{}'\n", value.replace('\'', "''"));
    let mut literal = String::from("v: |-\n");
    for line in value.split('\n') {
        literal.push_str("  ");
        literal.push_str(line);
        literal.push('\n');
    }
    [double, single, literal]
}

fn check_string<'a>(
    sources: &'a Sources,
    session: &mut Session<'a>,
    scope: &minijinja::Value,
    node: &'a Node,
) {
    if let Err(d) = session.eval(node, scope) {
        check_diagnostic(sources, &d);
    }
    let mut refs = Vec::new();
    match session.references(node, &mut refs) {
        Ok(()) => {
            let text = &sources.get(node.span.file).text;
            for r in &refs {
                check_span(text, r.span, "a reference");
            }
        }
        Err(d) => check_diagnostic(sources, &d),
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

pub fn check_span(text: &str, span: Span, what: &str) {
    let (start, end) = (span.start as usize, span.end as usize);
    assert!(
        start <= end && end <= text.len(),
        "{what}: span {start}..{end} is outside the text ({} bytes)",
        text.len()
    );
    assert!(
        text.is_char_boundary(start) && text.is_char_boundary(end),
        "{what}: span {start}..{end} splits a character"
    );
}

fn check_node(text: &str, node: &Node) {
    check_span(text, node.span, node.type_name());
    match &node.kind {
        NodeKind::Seq(items) => items.iter().for_each(|n| check_node(text, n)),
        NodeKind::Map(entries) => entries.iter().for_each(|(k, v)| {
            check_node(text, k);
            check_node(text, v);
        }),
        _ => {}
    }
}

pub fn check_diagnostic(sources: &Sources, d: &Diagnostic) {
    for label in d.primary.iter().chain(&d.secondary) {
        let text = &sources.get(label.span.file).text;
        let what = format!("{} label `{}`", d.code.as_str(), label.text);
        check_span(text, label.span, &what);
    }
    let rendered = Rendered::new(d, sources);
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .render_report(&mut out, &rendered)
        .expect("a diagnostic renders");
}

fn evaluator() -> &'static Evaluator {
    static EV: OnceLock<Evaluator> = OnceLock::new();
    EV.get_or_init(|| {
        Evaluator::new(&FunctionContext {
            // Nothing to read: `file()` fails instead of reading the disk.
            base_dir: PathBuf::from("/nonexistent/cairn-fuzz"),
            now: time::OffsetDateTime::UNIX_EPOCH,
            allow_utc_now: true,
        })
    })
}

/// Names as templates see them: plain values, unknowns and secrets.
///
/// Built for every input: a `minijinja::Value` kept in a static is reported
/// as a leak by LeakSanitizer (its packed representation hides the pointer).
fn scope() -> minijinja::Value {
    {
        let map = |entries: Vec<(&str, Value)>| {
            Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            )
        };
        let s = |s: &str| Value::Str(s.into());
        let server = |i: i64| {
            map(vec![
                ("id", Value::Unknown),
                ("address", Value::Unknown),
                ("name", s(&format!("web-{i}"))),
            ])
        };
        let names = [
            (
                "params",
                map(vec![
                    ("env", s("dev")),
                    ("count", Value::Int(2)),
                    ("pw", Value::Sensitive(Box::new(s("hunter2")))),
                    (
                        "list",
                        Value::List(vec![Value::Int(1), s("a"), Value::Null]),
                    ),
                    ("map", map(vec![("a", Value::Int(1))])),
                ]),
            ),
            ("vars", map(vec![("prefix", s("dev-abc"))])),
            (
                "deployment",
                map(vec![("name", s("app-dev")), ("env", s("dev"))]),
            ),
            (
                "net",
                map(vec![("id", Value::Unknown), ("cidr", s("10.0.0.0/16"))]),
            ),
            ("web", Value::List(vec![server(0), server(1)])),
            ("db", Value::Unknown),
        ];
        let names = StaticNames(
            names
                .iter()
                .map(|(k, v)| (k.to_string(), to_mj(v)))
                .collect(),
        );
        let each = to_mj(&map(vec![("key", s("a")), ("value", Value::Int(1))]));
        Scope::value(Arc::new(names), Some(minijinja::Value::from(1)), Some(each))
    }
}
