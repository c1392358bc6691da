//! Random expressions never make the evaluator panic, whichever way the
//! string that holds them is written in YAML.

use std::path::Path;

use cairn_template::Sources;
use cairn_template::expr::Evaluator;
use cairn_template::node::{Node, NodeKind, Style, parse_yaml};
use cairn_template::source::{FileId, Span};
use proptest::prelude::*;

use crate::generators::{expr_or_junk, jinja, text};
use crate::{check_diagnostic, check_string_node, config, function_context, scope};

/// Evaluates `value` written plainly (the whole file is the string), in a
/// double-quoted scalar, in a single-quoted one and in a literal block.
fn check_value(value: &str) {
    let mut sources = Sources::default();
    let mut nodes = Vec::new();

    let bare = sources.add("bare", Path::new("bare"), value);
    nodes.push(Node {
        kind: NodeKind::Str(value.to_string(), Style::Plain),
        span: Span::new(bare, 0, value.len()),
    });

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
    let docs: Vec<(FileId, String)> = [double, single, literal]
        .into_iter()
        .enumerate()
        .map(|(i, doc)| {
            let id = sources.add(format!("doc{i}.yaml"), Path::new("doc.yaml"), doc.as_str());
            (id, doc)
        })
        .collect();
    for (id, doc) in &docs {
        match parse_yaml(*id, doc) {
            Ok(root) => {
                if let Some(v) = root.get("v") {
                    nodes.push(v.clone());
                }
            }
            Err(d) => _ = check_diagnostic(&sources, &d),
        }
    }

    let ev = Evaluator::new(&function_context());
    let mut session = ev.session(&sources);
    let scope = scope();
    for node in &nodes {
        check_string_node(&sources, &mut session, &scope, node);
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn expressions(e in expr_or_junk()) {
        check_value(&format!("{{{{ {e} }}}}"));
    }

    #[test]
    fn template_strings(s in jinja()) {
        check_value(&s);
    }

    #[test]
    fn any_text(s in text()) {
        check_value(&s);
    }
}

/// One session caches compiled expressions by their text; an error in the
/// same expression after leading blanks sits at another offset, and its
/// error must point there.
#[test]
fn the_same_bad_expression_at_two_offsets() {
    let mut sources = Sources::default();
    let text = "a: ' {{ self[é] }}'\nb: '{{ self[é] }}'\n";
    let id = sources.add("t.yaml", Path::new("t.yaml"), text);
    let root = parse_yaml(id, text).expect("parses");
    let ev = Evaluator::new(&function_context());
    let mut session = ev.session(&sources);
    let scope = scope();
    for key in ["a", "b"] {
        let node = root.get(key).expect("key");
        let d = session.eval(node, &scope).expect_err("a syntax error");
        check_diagnostic(&sources, &d);
        let span = d.span().expect("a span");
        let line = &text[span.start as usize..];
        assert!(
            line.starts_with('é') || line.starts_with(']'),
            "{key}: {line:?}"
        );
    }
}

#[test]
fn edge_cases() {
    for value in [
        "{{ }}",
        "{{",
        "}}",
        "{{ é }}",
        "{{ ¡ }}",
        "{{params[é] | length}}",
        "{{ self[é] }}",
        "{{ net[é] }}",
        "é{{ x }}",
        "{{ 'é' ~ 1 + }}",
        "{{ 1 +\n }}",
        "é\n{{ 1 + }}",
        "\t{{ 1 + }}",
        "{{ params.pw ~ net.id | length }}",
        "{{ web | map(attribute='address') | list }}",
        "{{ 'x' * 9999999999999 }}",
        "{{ range(100000) }}",
        "{{ pad_left('a', 99999999999) }}",
        "{% for i in range(3) %}{{ i }}{% endfor %}",
        "{% if %}",
        "{% raw %}{{ x }}",
        "{#",
        "{{ 1 }}{#",
        "{{- 1 -}}",
        "{{ (((((((((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))))))))) }}",
        "{{ [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[ }}",
        "{{ 9223372036854775807 + 1 }}",
        "{{ -9223372036854775808 // -1 }}",
        "{{ 1 % 0 }}",
        "{{ 1 // 0 }}",
        "{{ 2 ** 99999 }}",
        "{{ cidr_subnet('10.0.0.0/8', 64, 1) }}",
        "{{ cidr_host('::/0', -1) }}",
        "{{ date_time_add('9999-12-31T23:59:59Z', 'P1Y') }}",
        "{{ substring('é', 1) }}",
        "{{ 'é日本😀' | pad_left(10, '日') }}",
        "{{ 'aGVsbG8' | base64_decode }}",
        "{{ '/9j/' | base64_decode }}",
        "{{ from_json('[') }}",
        "{{ secret('') }}",
        "{{ utc_now('yyyy') }}",
        "{{ file('../etc/passwd') }}",
    ] {
        check_value(value);
    }
}
