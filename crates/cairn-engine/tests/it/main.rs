//! cairn-engine's integration tests: one binary.
//!
//! A property test writes random but plausible templates (real resource
//! types and properties, references between resources, `count`,
//! `for_each`, parameters, variables, outputs) into a temporary directory,
//! loads and validates them, and checks that nothing panics and that every
//! diagnostic points at a valid range of its file.
//! `PROPTEST_CASES=N` runs N cases instead of the default.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use cairn_template::{Diagnostic, LoadOptions, Sources, load};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value as J, json};

fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        ..Config::default()
    }
}

// ---------------------------------------------------------------- checks

fn check_diagnostic(sources: &Sources, d: &Diagnostic) {
    for label in d.primary.iter().chain(&d.secondary) {
        let text: &str = &sources.get(label.span.file).text;
        let (start, end) = (label.span.start as usize, label.span.end as usize);
        let what = format!(
            "{} ({}), label `{}`",
            d.code.as_str(),
            d.message,
            label.text
        );
        assert!(
            start <= end && end <= text.len(),
            "{what}: span {start}..{end} is outside the text ({} bytes):\n{text}",
            text.len()
        );
        assert!(
            text.is_char_boundary(start) && text.is_char_boundary(end),
            "{what}: span {start}..{end} splits a character:\n{text}"
        );
    }
    // Building the renderable form reads every secondary label's location.
    let _ = cairn_template::diagnostic::Rendered::new(d, sources);
}

/// How far a template got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reached {
    Load,
    Validate,
    Valid,
}

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cairn-engine-proptest-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check_template(file: &str, text: &str) -> Reached {
    let dir = TempDir::new();
    std::fs::write(dir.0.join(file), text).expect("write the template");
    std::fs::write(dir.0.join("data.txt"), "some data\n").expect("write a data file");
    check_dir(&dir.0)
}

fn check_dir(dir: &Path) -> Reached {
    let loaded = match load(&LoadOptions::new(dir)) {
        Ok(loaded) => loaded,
        Err(e) => {
            assert!(
                !e.diagnostics.is_empty(),
                "a load error carries a diagnostic"
            );
            for d in e.diagnostics.iter() {
                check_diagnostic(&e.sources, d);
            }
            return Reached::Load;
        }
    };
    match cairn_engine::validate::validate(&loaded) {
        Ok(_) => Reached::Valid,
        Err(ds) => {
            assert!(!ds.is_empty(), "a validation error carries a diagnostic");
            for d in ds.iter() {
                check_diagnostic(&loaded.sources, d);
            }
            Reached::Validate
        }
    }
}

// ---------------------------------------------------------------- templates

const RESOURCES: &[&str] = &[
    "net", "sub", "fw", "web", "lb", "db", "zone", "rec", "key", "b",
];

/// Resource types and the properties worth setting on them.
const TYPES: &[(&str, &[&str])] = &[
    ("network", &["cidr", "name", "internet", "tags"]),
    ("subnet", &["network", "cidr", "zone", "public"]),
    ("firewall", &["network", "ingress", "egress", "description"]),
    (
        "server",
        &[
            "image",
            "size",
            "subnet",
            "firewalls",
            "key_pair",
            "user_data",
            "volumes",
        ],
    ),
    ("ip_address", &["server"]),
    (
        "load_balancer",
        &[
            "listen",
            "health_check",
            "backend_port",
            "backends",
            "subnets",
        ],
    ),
    ("dns_zone", &["name", "private"]),
    ("dns_record", &["zone", "name", "type", "ttl", "values"]),
    (
        "database",
        &["engine", "size", "storage_gb", "owner_password", "subnets"],
    ),
    ("bucket", &["versioning", "public"]),
    ("secret", &["value", "description"]),
    ("key_pair", &["name", "public_key"]),
    ("volume", &["size_gb", "snapshot", "zone"]),
    ("snapshot", &["volume"]),
    ("no_such_type", &["x"]),
];

/// Expressions over parameters, variables, other resources and functions.
fn expr() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        2 => select(&["net.id", "net.cidr", "sub.id", "sub.cidr"][..]).prop_map(str::to_string),
        1 => (select(RESOURCES), select(&["id", "cidr", "address", "name", "port", "nope"][..]))
            .prop_map(|(r, a)| format!("{r}.{a}")),
        1 => select(RESOURCES).prop_map(str::to_string),
        3 => select(
            &[
                "params.n",
                "params.env",
                "params.pw",
                "params.tags",
                "params.missing",
                "vars.prefix",
                "vars.cidr",
                "vars.loop",
                "deployment.name",
                "deployment.env",
                "index",
                "each.key",
                "each.value",
                "self.id",
                "1",
                "0",
                "-1",
                "'a'",
                "'é日本'",
                "'10.1.0.0/16'",
                "[1, 2]",
                "['a', 'b']",
                "{'a': 1}",
                "none",
                "true",
            ][..]
        )
        .prop_map(str::to_string),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                select(&["+", "-", "~", "==", "and", "or", "in", "*", "//"][..]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            (
                inner.clone(),
                select(
                    &[
                        "length",
                        "upper",
                        "list",
                        "first",
                        "map(attribute='address')",
                        "map(attribute='id') | list",
                        "default('x')",
                        "to_json",
                        "unique_string",
                        "int",
                    ][..]
                )
            )
                .prop_map(|(a, f)| format!("{a} | {f}")),
            (
                select(
                    &[
                        "cidr_subnet",
                        "cidr_host",
                        "unique_string",
                        "range",
                        "format",
                        "coalesce",
                        "secret",
                        "file",
                        "guid",
                        "utc_now",
                        "nope",
                    ][..]
                ),
                prop::collection::vec(inner.clone(), 0..3)
            )
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}[{b}]")),
            (inner.clone(), inner.clone(), inner)
                .prop_map(|(a, c, b)| format!("{a} if {c} else {b}")),
        ]
    })
    .boxed()
}

/// A string value: a plain literal, one expression, or text around one.
fn string() -> BoxedStrategy<J> {
    prop_oneof![
        2 => select(
            &[
                "10.0.0.0/16",
                "10.0.1.0/24",
                "0.0.0.0/0",
                "debian-12",
                "small",
                "postgres",
                "tcp",
                "http",
                "5s",
                "A",
                "www",
                "example.test",
                "é日本",
                "",
                "{{",
                "data.txt",
            ][..]
        )
        .prop_map(J::from),
        4 => expr().prop_map(|e| J::from(format!("{{{{ {e} }}}}"))),
        1 => (expr(), "[a-z-]{0,4}").prop_map(|(e, t)| J::from(format!("{t}-{{{{ {e} }}}}"))),
        1 => expr().prop_map(|e| J::from(format!("#!/bin/sh\necho {{{{ {e} }}}}\n"))),
        1 => expr().prop_map(|e| J::from(format!("{{% for x in {e} %}}{{{{ x }}}}{{% endfor %}}"))),
    ]
    .boxed()
}

fn value() -> BoxedStrategy<J> {
    let leaf = prop_oneof![
        4 => string(),
        1 => (-2i64..100).prop_map(J::from),
        1 => any::<bool>().prop_map(J::from),
        1 => Just(J::Null),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(J::from),
            prop::collection::vec(
                (
                    select(&["protocol", "port", "from", "address", "path", "a"][..]),
                    inner
                ),
                0..3
            )
            .prop_map(|e| J::Object(e.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
    .boxed()
}

fn resource() -> impl Strategy<Value = J> {
    (
        select(TYPES),
        prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        prop::collection::vec(value(), 5),
        prop_oneof![
            4 => Just(None),
            1 => prop_oneof![
                (0i64..4).prop_map(J::from),
                Just(json!("{{ params.n }}")),
                Just(json!("{{ params.n - 3 }}")),
                Just(json!("{{ net.id }}")),
                Just(json!("two")),
            ]
            .prop_map(|c| Some(("count", c))),
            1 => prop_oneof![
                Just(json!(["a", "b"])),
                Just(json!({"a": 1, "b": 2})),
                Just(json!("{{ ['x', 'y'] }}")),
                Just(json!("{{ params.tags }}")),
                Just(json!("{{ web }}")),
                Just(json!(3)),
            ]
            .prop_map(|c| Some(("for_each", c))),
        ],
        prop::collection::vec(select(RESOURCES), 0..2),
        prop::option::of(prop_oneof![
            Just(json!(true)),
            Just(json!("{{ params.n > 1 }}")),
            string()
        ]),
    )
        .prop_map(
            |((kind, props), picks, values, repeat, depends_on, condition)| {
                let mut properties = Map::new();
                for (pick, v) in picks.iter().zip(values) {
                    properties.insert(pick.get(props).to_string(), v);
                }
                let mut r = Map::new();
                r.insert("type".into(), J::from(kind));
                r.insert("properties".into(), J::Object(properties));
                if let Some((k, v)) = repeat {
                    r.insert(k.into(), v);
                }
                if !depends_on.is_empty() {
                    r.insert("depends_on".into(), J::from(depends_on));
                }
                if let Some(c) = condition {
                    r.insert("condition".into(), c);
                }
                J::Object(r)
            },
        )
}

fn template() -> impl Strategy<Value = J> {
    (
        prop::collection::vec((select(RESOURCES), resource()), 0..6),
        prop::collection::vec(
            (select(&["prefix", "cidr", "loop", "x"][..]), value()),
            0..3,
        ),
        prop::collection::vec((select(&["o", "url", "ids"][..]), value()), 0..3),
        prop_oneof![
            6 => Just(json!(2)),
            1 => Just(json!("{{ 1 + 1 }}")),
            1 => Just(json!("two"))
        ],
    )
        .prop_map(|(resources, variables, outputs, n_default)| {
            let obj = |v: Vec<(&str, J)>| {
                J::Object(v.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            };
            // A network and a subnet that the others can refer to, unless
            // a random resource of the same name replaces them.
            let mut all = vec![
                (
                    "net",
                    json!({"type": "network", "properties": {"cidr": "10.0.0.0/16"}}),
                ),
                (
                    "sub",
                    json!({"type": "subnet", "properties": {
                        "network": "{{ net.id }}",
                        "cidr": "{{ cidr_subnet(net.cidr, 8, 1) }}",
                    }}),
                ),
            ];
            all.extend(resources);
            json!({
                "cairn": 1,
                "parameters": {
                    "n": {"type": "int", "default": n_default, "min": 0, "max": 5},
                    "env": {"type": "string", "allowed": ["dev", "prod"], "default": "dev"},
                    "pw": {"type": "secret", "generate": {"length": 12}},
                    "tags": {"type": "map", "default": {"team": "web"}},
                },
                "variables": obj(variables),
                "resources": obj(all),
                "outputs": obj(outputs),
            })
        })
}

/// The same template as block YAML, flow YAML (JSON text) or JSON.
fn render(t: &J, style: u8) -> (&'static str, String) {
    match style {
        0 => ("cairn.json", serde_json::to_string_pretty(t).unwrap()),
        1 => ("cairn.yaml", serde_json::to_string(t).unwrap()),
        _ => {
            let mut out = String::new();
            block(t, 0, &mut out);
            ("cairn.yaml", out)
        }
    }
}

fn block(v: &J, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        J::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                out.push_str(&format!("{pad}{k}:"));
                if matches!(v, J::Object(m) if !m.is_empty()) {
                    out.push('\n');
                    block(v, indent + 2, out);
                } else if let J::String(s) = v
                    && s.contains('\n')
                {
                    // A literal block, as user_data scripts are written.
                    out.push_str(" |\n");
                    for line in s.lines() {
                        out.push_str(&format!("{pad}  {line}\n"));
                    }
                } else {
                    out.push_str(&format!(" {v}\n"));
                }
            }
        }
        other => out.push_str(&format!("{pad}{other}\n")),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn plausible_templates_load_and_validate(t in template(), style in 0u8..3) {
        let (file, text) = render(&t, style);
        check_template(file, &text);
    }
}

/// The generated templates get past loading, and some are valid.
#[test]
fn generated_templates_reach_the_engine() {
    let mut runner = TestRunner::deterministic();
    let strategy = template();
    let mut counts = [0usize; 3];
    let n = 60;
    for i in 0..n {
        let t = strategy.new_tree(&mut runner).unwrap().current();
        let (file, text) = render(&t, (i % 3) as u8);
        counts[check_template(file, &text) as usize] += 1;
    }
    let [load, validate, valid] = counts;
    eprintln!("{n} generated templates: {load} failed to load, {validate} invalid, {valid} valid");
    assert!(load * 2 < n, "{load} of {n} failed to load");
    assert!(valid > 0, "none of {n} is valid");
}

#[test]
fn the_examples_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for example in ["webapp", "secrets", "static-sites"] {
        // Say why when an example does not load (this once failed in a
        // full workspace run and never alone).
        if let Err(e) = load(&LoadOptions::new(root.join(example))) {
            let why: Vec<&str> = e.diagnostics.iter().map(|d| d.message.as_str()).collect();
            panic!("{example} does not load: {why:?}");
        }
        assert_eq!(check_dir(&root.join(example)), Reached::Valid, "{example}");
    }
}
