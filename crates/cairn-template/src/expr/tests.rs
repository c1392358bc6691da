use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;

use super::*;
use crate::node::parse_yaml;
use crate::source::Sources;

fn ctx() -> FunctionContext {
    FunctionContext {
        base_dir: ".".into(),
        now: time::OffsetDateTime::UNIX_EPOCH,
        allow_utc_now: false,
    }
}

/// Evaluates `v:` of a one-line YAML document against the given names.
fn eval_with(yaml: &str, names: IndexMap<String, Value>) -> Result<Value, Diagnostic> {
    let mut sources = Sources::default();
    let file = sources.add("t.yaml", Path::new("t.yaml"), yaml);
    let node = parse_yaml(file, yaml).unwrap();
    let ev = Evaluator::new(&ctx());
    let mut session = ev.session(&sources);
    let names = StaticNames(names.into_iter().map(|(k, v)| (k, to_mj(&v))).collect());
    let scope = Scope::value(Arc::new(names), Some(Mj::from(2)), None);
    session.eval(node.get("v").unwrap(), &scope)
}

fn eval(yaml: &str) -> Value {
    eval_with(yaml, IndexMap::new()).unwrap()
}

fn net() -> IndexMap<String, Value> {
    IndexMap::from([(
        "net".to_string(),
        Value::Map(IndexMap::from([
            ("cidr".to_string(), Value::Str("10.0.0.0/16".into())),
            ("id".to_string(), Value::Unknown),
        ])),
    )])
}

#[test]
fn single_expression_keeps_its_type() {
    assert_eq!(eval("v: '{{ 1 + 2 }}'"), Value::Int(3));
    assert_eq!(
        eval("v: '{{ [1, 2] }}'"),
        Value::List(vec![Value::Int(1), Value::Int(2)])
    );
    assert_eq!(eval("v: '{{ index }}'"), Value::Int(2));
    assert_eq!(eval("v: '{{ 1.5 }}'"), Value::Float(1.5));
    assert_eq!(eval("v: '{{ true }}'"), Value::Bool(true));
}

#[test]
fn mixed_text_renders_to_a_string() {
    assert_eq!(eval("v: 'web-{{ index }}'"), Value::Str("web-2".into()));
    assert_eq!(eval("v: plain"), Value::Str("plain".into()));
}

#[test]
fn unknown_attributes_make_the_result_unknown() {
    assert_eq!(
        eval_with("v: '{{ net.id }}'", net()).unwrap(),
        Value::Unknown
    );
    assert_eq!(
        eval_with("v: 'x-{{ net.id }}'", net()).unwrap(),
        Value::Unknown
    );
    assert_eq!(
        eval_with("v: '{{ net.cidr }}'", net()).unwrap(),
        Value::Str("10.0.0.0/16".into())
    );
}

#[test]
fn secrets_taint_what_they_touch() {
    let names = IndexMap::from([(
        "params".to_string(),
        Value::Map(IndexMap::from([(
            "pw".to_string(),
            Value::Sensitive(Box::new(Value::Str("hunter2".into()))),
        )])),
    )]);
    let v = eval_with("v: 'pw={{ params.pw }}'", names).unwrap();
    assert_eq!(
        v,
        Value::Sensitive(Box::new(Value::Str("pw=hunter2".into())))
    );
}

#[test]
fn syntax_errors_point_into_the_string() {
    let e = eval_with("v: '{{ 1 + }}'", IndexMap::new()).unwrap_err();
    assert_eq!(e.code, Code::Expression);
    let span = e.span().unwrap();
    assert!(span.start >= 4, "{span:?}");
}

#[test]
fn unknown_functions_are_named() {
    let e = eval_with("v: '{{ uniq_string(\"a\") }}'", IndexMap::new()).unwrap_err();
    assert_eq!(e.code, Code::UnknownFunction);
}

#[test]
fn references_are_extracted_with_spans() {
    let yaml = "v: 'a {{ net.id }} {{ web | length }}'";
    let mut sources = Sources::default();
    let file = sources.add("t.yaml", Path::new("t.yaml"), yaml);
    let node = parse_yaml(file, yaml).unwrap();
    let ev = Evaluator::new(&ctx());
    let mut session = ev.session(&sources);
    let mut refs = Vec::new();
    session
        .references(node.get("v").unwrap(), &mut refs)
        .unwrap();
    let net = refs.iter().find(|r| r.root == "net").unwrap();
    assert_eq!(net.attr.as_deref(), Some("id"));
    assert_eq!(
        &yaml[net.span.start as usize..net.span.end as usize],
        "net.id"
    );
    assert!(refs.iter().any(|r| r.root == "web" && r.attr.is_none()));
}

#[test]
fn classify_single_expressions() {
    assert_eq!(classify("{{ a }}"), Piece::Expr(" a "));
    assert_eq!(classify("{{ a }}-{{ b }}"), Piece::Template);
    assert_eq!(classify("x"), Piece::Literal);
    assert_eq!(classify("{% if a %}x{% endif %}"), Piece::Template);
}
