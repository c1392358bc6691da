//! Random inputs: expressions, Jinja strings, YAML trees rendered to text,
//! plausible templates, and mutations of them.

use proptest::prelude::*;
use proptest::sample::select;

// ---------------------------------------------------------------- expressions

/// Names an expression may read, known and unknown.
const NAMES: &[&str] = &[
    "params",
    "params.env",
    "params.count",
    "params.pw",
    "params.list",
    "params.map",
    "params.missing",
    "vars",
    "vars.prefix",
    "deployment",
    "deployment.name",
    "net",
    "net.id",
    "net.cidr",
    "web",
    "web[0].address",
    "db",
    "db.endpoint",
    "index",
    "each",
    "each.key",
    "each.value",
    "self",
    "loop",
    "undefined_name",
    "x",
    "é",
    "none",
    "true",
    "false",
];

const LITERALS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "8",
    "24",
    "255",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999999",
    "1.5",
    "-0.0",
    "1e308",
    "1e-320",
    "0x1F",
    "0b101",
    "0o17",
    "1_000",
    "''",
    "\"\"",
    "'a'",
    "'10.0.0.0/16'",
    "'192.168.1.0/24'",
    "'::1/128'",
    "'fd00::/8'",
    "'a,b;c'",
    "'{\"a\": [1, 2]}'",
    "'P1D'",
    "'PT1H30M'",
    "'2024-02-29T12:00:00Z'",
    "'aGVsbG8='",
    "'%s-%d'",
    "'{0}-{1}'",
    "'é日本😀'",
    "'\\n\\t\\\\'",
    "'\\u00e9'",
    "[]",
    "{}",
    "[1, 'a', none]",
    "{'a': 1, 'b': [2]}",
];

const BINARY: &[&str] = &[
    "+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", "<=", ">", ">=", "and", "or", "in",
    "not in",
];

const TESTS: &[&str] = &[
    "defined",
    "undefined",
    "none",
    "number",
    "string",
    "sequence",
    "mapping",
    "odd",
    "even",
    "true",
    "divisibleby(3)",
    "startingwith('a')",
    "no_such_test",
];

/// Filters written with and without arguments.
const FILTERS: &[&str] = &[
    "length",
    "upper",
    "lower",
    "trim",
    "first",
    "last",
    "list",
    "sort",
    "unique",
    "reverse",
    "int",
    "float",
    "string",
    "bool",
    "abs",
    "round",
    "tojson",
    "items",
    "dictsort",
    "join",
    "join(',')",
    "default(1)",
    "default('x', true)",
    "map(attribute='address')",
    "map('upper')",
    "select('odd')",
    "reject('none')",
    "selectattr('id')",
    "replace('a', 'b')",
    "split",
    "split(',')",
    "split([',', ';'])",
    "split(',', 1)",
    "batch(2)",
    "slice(2)",
    "indent(2)",
    "title",
    "capitalize",
    "urlencode",
    "base64",
    "base64_decode",
    "to_json",
    "from_json",
    "pad_left(5)",
    "pad_left(3, '0')",
    "substring(1)",
    "substring(1, 2)",
    "unique_string",
    "sum",
    "min",
    "max",
    "count",
    "attr('id')",
    "safe",
    "no_such_filter",
];

/// Functions, cairn's (from the library's own list, so new ones are
/// generated too) and minijinja's, and some that do not exist.
fn functions() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = cairn_template::functions::FUNCTION_NAMES.to_vec();
    v.extend([
        "secret",
        "dict",
        "namespace",
        "debug",
        "cycler",
        "joiner",
        "lipsum",
        "uniq_string",
        "params",
    ]);
    v
}

/// Bits of syntax that break expressions in interesting ways.
const JUNK: &[&str] = &[
    "{{", "}}", "{%", "%}", "{#", "#}", "(", ")", "[", "]", "{", "}", ",", ":", ".", "|", "'",
    "\"", "\\", "-", "+", "=", "!", "~", "*", "**", " ", "\n", "\t", "é", "😀", "\u{0}",
    "\u{feff}", "if", "else", "not", "is", "in", "for", "endfor", "set", "raw", "endraw", "none",
    "1e", "0x", "..", "::", "=>",
];

/// A random expression, mostly well formed.
pub fn expr() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        4 => select(NAMES).prop_map(str::to_string),
        4 => select(LITERALS).prop_map(str::to_string),
        1 => any::<i64>().prop_map(|i| i.to_string()),
        1 => "'[a-zA-Z0-9 ./:,{}%-]{0,10}'",
        1 => "[a-z_][a-z0-9_]{0,5}",
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            3 => (inner.clone(), select(BINARY), inner.clone())
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            1 => (select(&["not ", "-", "+"][..]), inner.clone())
                .prop_map(|(op, a)| format!("{op}{a}")),
            3 => (inner.clone(), select(FILTERS)).prop_map(|(a, f)| format!("{a} | {f}")),
            3 => (select(functions()), prop::collection::vec(inner.clone(), 0..4))
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
            1 => (select(functions()), "[a-z]{1,6}", inner.clone())
                .prop_map(|(f, k, v)| format!("{f}({k}={v})")),
            2 => (inner.clone(), "[a-z_]{1,7}").prop_map(|(a, attr)| format!("{a}.{attr}")),
            2 => (inner.clone(), inner.clone()).prop_map(|(a, i)| format!("{a}[{i}]")),
            1 => (
                inner.clone(),
                prop::option::of(inner.clone()),
                prop::option::of(inner.clone())
            )
                .prop_map(|(a, b, c)| {
                    format!(
                        "{a}[{}:{}]",
                        b.unwrap_or_default(),
                        c.unwrap_or_default()
                    )
                }),
            1 => prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            1 => prop::collection::vec(("'[a-z]{0,3}'", inner.clone()), 0..3).prop_map(
                |entries| {
                    let e: Vec<String> =
                        entries.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                    format!("{{{}}}", e.join(", "))
                }
            ),
            1 => (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, c, b)| format!("{a} if {c} else {b}")),
            1 => inner.clone().prop_map(|a| format!("({a})")),
            1 => (inner.clone(), any::<bool>(), select(TESTS)).prop_map(|(a, not, t)| {
                format!("{a} is {}{t}", if not { "not " } else { "" })
            }),
        ]
    })
    .boxed()
}

/// An expression, sometimes with a piece of junk inserted.
pub fn expr_or_junk() -> BoxedStrategy<String> {
    prop_oneof![
        6 => expr(),
        3 => (expr(), any::<prop::sample::Index>(), select(JUNK))
            .prop_map(|(e, at, junk)| insert_at(&e, at, junk)),
        1 => prop::collection::vec(select(JUNK), 0..12).prop_map(|v| v.concat()),
        1 => "\\PC{0,30}",
    ]
    .boxed()
}

/// A string value as templates hold them: one expression, text with
/// expressions, blocks, comments, or broken syntax.
pub fn jinja() -> BoxedStrategy<String> {
    let text = "[a-z ./:-]{0,6}";
    prop_oneof![
        5 => expr().prop_map(|e| format!("{{{{ {e} }}}}")),
        1 => expr().prop_map(|e| format!("{{{{{e}}}}}")),
        1 => expr().prop_map(|e| format!("{{{{- {e} -}}}}")),
        3 => (text, expr(), text).prop_map(|(a, e, b)| format!("{a}{{{{ {e} }}}}{b}")),
        1 => (expr(), expr()).prop_map(|(a, b)| format!("{{{{ {a} }}}}-{{{{ {b} }}}}")),
        1 => (expr(), text, text).prop_map(|(c, a, b)| {
            format!("{{% if {c} %}}{a}{{% else %}}{b}{{% endif %}}")
        }),
        1 => expr().prop_map(|e| format!("{{% for x in {e} %}}{{{{ x }}}},{{% endfor %}}")),
        1 => expr().prop_map(|e| format!("{{% set y = {e} %}}{{{{ y }}}}")),
        1 => expr().prop_map(|e| format!("{{# {e} #}}{{{{ {e} }}}}")),
        1 => expr().prop_map(|e| format!("{{% raw %}}{{{{ {e} }}}}{{% endraw %}}")),
        2 => expr_or_junk().prop_map(|e| format!("{{{{ {e} }}}}")),
        1 => prop::collection::vec(select(JUNK), 0..10).prop_map(|v| v.concat()),
    ]
    .boxed()
}

/// Inserts `piece` at a character boundary of `s` chosen by `at`.
pub fn insert_at(s: &str, at: prop::sample::Index, piece: &str) -> String {
    let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
    let i = bounds[at.index(bounds.len())];
    format!("{}{piece}{}", &s[..i], &s[i..])
}

// ---------------------------------------------------------------- text

/// Awkward strings: control characters, non-ASCII, YAML and Jinja syntax.
const WEIRD: &[&str] = &[
    "",
    " ",
    "\t",
    "a\tb",
    "\r\n",
    "line one\nline two",
    "trailing\n",
    "\n\n",
    "\u{0}",
    "\u{7f}",
    "\u{85}",
    "\u{a0}",
    "\u{2028}",
    "\u{feff}",
    "\u{200b}",
    "e\u{301}",
    "é",
    "日本語",
    "😀",
    "'",
    "\"",
    "''",
    "\\",
    "\\n",
    "a: b",
    "a #b",
    "- x",
    "? x",
    "&a",
    "*a",
    "!tag",
    "%YAML",
    "@x",
    "`x`",
    "{{",
    "}}",
    "{%",
    "{#",
    "{{ }}",
    "{{ a }",
    "{ a }}",
    "#",
];

/// The content of a string value.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-z][a-z0-9 ./_-]{0,10}",
        2 => "\\PC{0,12}",
        2 => select(WEIRD).prop_map(str::to_string),
        1 => prop::collection::vec(select(WEIRD), 0..4).prop_map(|v| v.concat()),
        4 => jinja(),
    ]
    .boxed()
}

// ---------------------------------------------------------------- YAML trees

#[derive(Debug, Clone)]
pub enum Scalar {
    /// Written as it is when that is valid YAML, quoted otherwise.
    Plain(String),
    Single(String),
    Double {
        text: String,
        escape_all: bool,
    },
    Literal(String),
    Folded(String),
}

#[derive(Debug, Clone)]
pub enum Tree {
    Scalar(Scalar),
    Seq {
        items: Vec<Tree>,
        flow: bool,
    },
    Map {
        entries: Vec<(Key, Tree)>,
        flow: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Key {
    pub text: String,
    pub quoted: bool,
}

impl Key {
    fn plain(text: &str) -> Key {
        Key {
            text: text.to_string(),
            quoted: false,
        }
    }
}

impl Tree {
    pub fn plain(s: &str) -> Tree {
        Tree::Scalar(Scalar::Plain(s.to_string()))
    }

    /// Block style where the tree asks for it, flow style inside flow.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        match self {
            Tree::Map { entries, flow } if !*flow && !entries.is_empty() => {
                block_map(entries, 0, false, &mut out)
            }
            Tree::Seq { items, flow } if !*flow && !items.is_empty() => {
                block_seq(items, 0, &mut out)
            }
            Tree::Scalar(s) => {
                out.push_str(&scalar(s, 2, false));
                out.push('\n');
            }
            other => {
                out.push_str(&flow(other));
                out.push('\n');
            }
        }
        out
    }

    fn is_block(&self) -> bool {
        match self {
            Tree::Scalar(_) => false,
            Tree::Seq { items, flow } => !flow && !items.is_empty(),
            Tree::Map { entries, flow } => !flow && !entries.is_empty(),
        }
    }
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A block map at `indent`; with `inline`, the first key continues the
/// current line (after `- `).
fn block_map(entries: &[(Key, Tree)], indent: usize, inline: bool, out: &mut String) {
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 || !inline {
            pad(out, indent);
        }
        out.push_str(&key(k, false));
        out.push(':');
        value_after_indicator(v, indent, out);
    }
}

fn block_seq(items: &[Tree], indent: usize, out: &mut String) {
    for item in items {
        pad(out, indent);
        out.push('-');
        match item {
            Tree::Map { entries, .. } if item.is_block() => {
                out.push(' ');
                block_map(entries, indent + 2, true, out);
            }
            _ => value_after_indicator(item, indent, out),
        }
    }
}

/// What follows `key:` or `-` on a line indented by `indent`.
fn value_after_indicator(v: &Tree, indent: usize, out: &mut String) {
    match v {
        Tree::Map { entries, .. } if v.is_block() => {
            out.push('\n');
            block_map(entries, indent + 2, false, out);
        }
        Tree::Seq { items, .. } if v.is_block() => {
            out.push('\n');
            block_seq(items, indent + 2, out);
        }
        Tree::Scalar(s) => {
            out.push(' ');
            out.push_str(&scalar(s, indent + 2, false));
            out.push('\n');
        }
        _ => {
            out.push(' ');
            out.push_str(&flow(v));
            out.push('\n');
        }
    }
}

fn flow(v: &Tree) -> String {
    match v {
        Tree::Scalar(s) => scalar(s, 0, true),
        Tree::Seq { items, .. } => {
            let items: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", items.join(", "))
        }
        Tree::Map { entries, .. } => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}: {}", key(k, true), flow(v)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

fn key(k: &Key, in_flow: bool) -> String {
    if !k.quoted && plain_ok(&k.text, in_flow) {
        k.text.clone()
    } else {
        quoted(&k.text, false)
    }
}

/// A scalar; block scalars' lines are indented by `indent`.
fn scalar(s: &Scalar, indent: usize, in_flow: bool) -> String {
    match s {
        Scalar::Plain(t) if plain_ok(t, in_flow) => t.clone(),
        Scalar::Plain(t) | Scalar::Single(t) => quoted(t, false),
        Scalar::Double { text, escape_all } => double_quoted(text, *escape_all),
        Scalar::Literal(t) | Scalar::Folded(t) if in_flow => double_quoted(t, false),
        Scalar::Literal(t) | Scalar::Folded(t) => {
            let mut out = String::from(if matches!(s, Scalar::Literal(_)) {
                "|"
            } else {
                ">"
            });
            if !t.ends_with('\n') {
                out.push('-');
            }
            out.push('\n');
            let mut first = true;
            for line in t.lines() {
                // The first line sets the indentation: no leading blanks there.
                let line = if first {
                    line.trim_start_matches([' ', '\t'])
                } else {
                    line
                };
                if !line.is_empty() {
                    first = false;
                    pad(&mut out, indent);
                    out.push_str(line);
                }
                out.push('\n');
            }
            // The caller ends the line.
            out.pop();
            out
        }
    }
}

/// Whether `t` may be written unquoted (conservatively).
fn plain_ok(t: &str, in_flow: bool) -> bool {
    let Some(first) = t.chars().next() else {
        return false;
    };
    let starts_ok = first.is_alphanumeric()
        || "._/(~=$^".contains(first)
        || (first == '-' && t[1..].starts_with(|c: char| c.is_ascii_digit() || c == '.'));
    starts_ok
        && t.trim() == t
        && !t.contains(": ")
        && !t.ends_with(':')
        && !t.contains(" #")
        && t.chars().all(|c| {
            !c.is_control() && !matches!(c, '\u{85}' | '\u{feff}' | '\u{2028}' | '\u{2029}')
        })
        && !(in_flow && t.contains([',', '[', ']', '{', '}', ':', '#']))
}

fn quoted(t: &str, escape_all: bool) -> String {
    if t.chars().all(|c| !c.is_control() && c != '\u{feff}') {
        format!("'{}'", t.replace('\'', "''"))
    } else {
        double_quoted(t, escape_all)
    }
}

fn double_quoted(t: &str, escape_all: bool) -> String {
    let mut out = String::from("\"");
    for c in t.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' if escape_all => out.push_str("\\t"),
            '\t' => out.push('\t'),
            c if c.is_control() || matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if escape_all && !c.is_ascii() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Plain values as YAML resolves them: numbers, booleans, nulls, words.
const PLAIN: &[&str] = &[
    "1",
    "0",
    "-1",
    "2",
    "3.5",
    "-.5",
    "1e3",
    "0x1F",
    "0o17",
    ".inf",
    "-.inf",
    ".nan",
    "99999999999999999999",
    "true",
    "false",
    "True",
    "null",
    "~",
    "yes",
    "no",
    "10.0.0.0/16",
    "0.0.0.0/0",
    "debian-12",
    "small",
    "web server",
    "é",
    "日本語",
    "2s",
    "http",
    "tcp",
    "80",
    "a:b",
    "a#b",
    "web-{{ index }}",
    "{{ net.id }}",
    "x {{ params.env }}",
];

pub fn scalar_strategy() -> BoxedStrategy<Scalar> {
    prop_oneof![
        4 => select(PLAIN).prop_map(|s| Scalar::Plain(s.to_string())),
        1 => any::<i64>().prop_map(|i| Scalar::Plain(i.to_string())),
        2 => jinja().prop_map(Scalar::Plain),
        2 => text().prop_map(Scalar::Single),
        2 => (text(), any::<bool>())
            .prop_map(|(text, escape_all)| Scalar::Double { text, escape_all }),
        1 => multiline().prop_map(Scalar::Literal),
        1 => multiline().prop_map(Scalar::Folded),
    ]
    .boxed()
}

fn multiline() -> impl Strategy<Value = String> {
    (prop::collection::vec(text(), 1..4), any::<bool>()).prop_map(|(lines, newline)| {
        let mut s = lines.join("\n");
        if newline {
            s.push('\n');
        }
        s
    })
}

const KEYS: &[&str] = &[
    "cairn",
    "description",
    "parameters",
    "variables",
    "resources",
    "outputs",
    "type",
    "properties",
    "count",
    "for_each",
    "condition",
    "depends_on",
    "lifecycle",
    "tags",
    "aws",
    "local",
    "prevent_destroy",
    "create_before_destroy",
    "ignore_changes",
    "value",
    "secret",
    "default",
    "allowed",
    "min",
    "max",
    "min_length",
    "max_length",
    "pattern",
    "generate",
    "length",
    "cidr",
    "network",
    "name",
    "net",
    "web",
    "params",
    "index",
    "a-b",
    "é",
    "1",
    "true",
    "null",
    "x y",
    "",
];

pub fn key_strategy() -> BoxedStrategy<Key> {
    prop_oneof![
        6 => (select(KEYS), prop::bool::weighted(0.1))
            .prop_map(|(k, quoted)| Key { text: k.to_string(), quoted }),
        2 => "[a-z_][a-z0-9_]{0,6}".prop_map(|k| Key { text: k, quoted: false }),
        1 => text().prop_map(|k| Key { text: k, quoted: true }),
    ]
    .boxed()
}

fn map_of(
    key: impl Strategy<Value = Key>,
    value: impl Strategy<Value = Tree>,
    size: std::ops::Range<usize>,
) -> impl Strategy<Value = Tree> {
    (
        prop::collection::vec((key, value), size),
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.01),
    )
        .prop_map(|(entries, flow, dups)| Tree::Map {
            entries: dedup(entries, dups),
            flow,
        })
}

/// Drops repeated keys (a duplicate key is a syntax error), unless `keep`.
fn dedup(mut entries: Vec<(Key, Tree)>, keep: bool) -> Vec<(Key, Tree)> {
    if !keep {
        let mut seen = std::collections::HashSet::new();
        entries.retain(|(k, _)| seen.insert(k.text.clone()));
    }
    entries
}

fn seq_of(
    value: impl Strategy<Value = Tree>,
    size: std::ops::Range<usize>,
) -> impl Strategy<Value = Tree> {
    (
        prop::collection::vec(value, size),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(items, flow)| Tree::Seq { items, flow })
}

/// Any tree of maps, lists and scalars.
pub fn tree(depth: u32) -> BoxedStrategy<Tree> {
    scalar_strategy()
        .prop_map(Tree::Scalar)
        .prop_recursive(depth, 48, 5, |inner| {
            prop_oneof![
                2 => map_of(key_strategy(), inner.clone(), 0..5),
                1 => seq_of(inner, 0..5),
            ]
        })
        .boxed()
}

// ---------------------------------------------------------------- templates

fn fixed(k: &str) -> impl Strategy<Value = Key> + use<> {
    Just(Key::plain(k))
}

/// A name for a parameter, variable, resource or output.
fn name() -> impl Strategy<Value = Key> {
    prop_oneof![
        6 => select(&["net", "web", "db", "lb", "zone", "sub", "n", "env", "a_b", "_x"][..])
            .prop_map(Key::plain),
        3 => "[a-z_][a-z0-9_]{0,6}".prop_map(|k| Key { text: k, quoted: false }),
        1 => select(&["a-b", "1x", "é", "params", "index", "each", "self", "", "a.b", "1"][..])
            .prop_map(Key::plain),
    ]
}

fn expr_scalar() -> impl Strategy<Value = Tree> {
    prop_oneof![
        3 => jinja().prop_map(|s| Tree::Scalar(Scalar::Double { text: s, escape_all: false })),
        2 => jinja().prop_map(|s| Tree::Scalar(Scalar::Single(s))),
        1 => jinja().prop_map(|s| Tree::Scalar(Scalar::Plain(s))),
        1 => jinja().prop_map(|s| Tree::Scalar(Scalar::Literal(s))),
    ]
}

fn value() -> BoxedStrategy<Tree> {
    prop_oneof![3 => tree(2), 2 => expr_scalar()].boxed()
}

fn entries(
    parts: Vec<BoxedStrategy<(Key, Tree)>>,
    size: std::ops::Range<usize>,
) -> impl Strategy<Value = Tree> {
    (
        prop::collection::vec(prop::strategy::Union::new(parts), size),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.01),
    )
        .prop_map(|(entries, flow, dups)| Tree::Map {
            entries: dedup(entries, dups),
            flow,
        })
}

fn param_decl() -> impl Strategy<Value = Tree> {
    let int = || {
        prop_oneof![
            select(&["0", "1", "3", "-1", "50", "1.5", "x"][..]).prop_map(Tree::plain),
            expr_scalar()
        ]
    };
    let decl = entries(
        vec![
            (
                fixed("type"),
                select(
                    &[
                        "string", "int", "number", "bool", "list", "map", "secret", "strng", "1",
                    ][..],
                )
                .prop_map(Tree::plain),
            )
                .boxed(),
            (fixed("default"), value()).boxed(),
            (fixed("allowed"), seq_of(value(), 0..4)).boxed(),
            (
                select(&["min", "max", "min_length", "max_length"][..]).prop_map(Key::plain),
                int(),
            )
                .boxed(),
            (
                fixed("pattern"),
                select(&["^[a-z]+$", "[a-", "(", "\\d{2,}", ".*", "é+"][..])
                    .prop_map(|p| Tree::Scalar(Scalar::Single(p.to_string()))),
            )
                .boxed(),
            (
                fixed("description"),
                text().prop_map(|t| Tree::Scalar(Scalar::Single(t))),
            )
                .boxed(),
            (
                fixed("generate"),
                map_of(
                    select(&["length", "chars", "special", "x"][..]).prop_map(Key::plain),
                    int(),
                    0..3,
                ),
            )
                .boxed(),
            (key_strategy(), value()).boxed(),
        ],
        0..5,
    );
    prop_oneof![6 => decl, 1 => value()]
}

fn resource() -> impl Strategy<Value = Tree> {
    let property = prop_oneof![
        4 => select(
            &[
                "cidr", "network", "name", "image", "size", "subnet", "firewalls", "key_pair",
                "user_data", "tags", "ingress", "listen", "backends", "backend_port", "zone",
                "type", "ttl", "values", "engine", "owner_password", "protocol", "port",
            ][..]
        )
        .prop_map(Key::plain),
        1 => key_strategy(),
    ];
    let decl = entries(
        vec![
            (
                fixed("type"),
                select(
                    &[
                        "network",
                        "subnet",
                        "firewall",
                        "server",
                        "load_balancer",
                        "dns_zone",
                        "dns_record",
                        "database",
                        "bucket",
                        "key_pair",
                        "netwrk",
                        "",
                    ][..],
                )
                .prop_map(Tree::plain),
            )
                .boxed(),
            (fixed("properties"), map_of(property, value(), 0..5)).boxed(),
            (
                select(&["count", "for_each", "condition"][..]).prop_map(Key::plain),
                prop_oneof![
                    select(&["0", "2", "-1", "true", "[a, b]", "{a: 1}", "x"][..])
                        .prop_map(Tree::plain),
                    expr_scalar(),
                    value()
                ],
            )
                .boxed(),
            (
                fixed("depends_on"),
                prop_oneof![
                    seq_of(name().prop_map(|k| Tree::plain(&k.text)), 0..3),
                    name().prop_map(|k| Tree::plain(&k.text)),
                    value()
                ],
            )
                .boxed(),
            (
                fixed("lifecycle"),
                map_of(
                    select(
                        &[
                            "prevent_destroy",
                            "create_before_destroy",
                            "ignore_changes",
                            "x",
                        ][..],
                    )
                    .prop_map(Key::plain),
                    value(),
                    0..3,
                ),
            )
                .boxed(),
            (
                select(&["tags", "aws", "local", "description"][..]).prop_map(Key::plain),
                value(),
            )
                .boxed(),
            (key_strategy(), value()).boxed(),
        ],
        0..6,
    );
    prop_oneof![8 => decl, 1 => value()]
}

fn output() -> impl Strategy<Value = Tree> {
    prop_oneof![
        3 => value(),
        1 => entries(
            vec![
                (fixed("value"), value()).boxed(),
                (fixed("secret"), select(&["true", "false", "1", "yes"][..]).prop_map(Tree::plain)).boxed(),
                (fixed("description"), value()).boxed(),
            ],
            0..4,
        ),
    ]
}

/// A document shaped like a template, with random contents.
pub fn template() -> BoxedStrategy<Tree> {
    let section = prop_oneof![
        2 => (
            fixed("cairn"),
            select(&["1", "1", "1", "2", "'1'", "1.0", "~"][..]).prop_map(Tree::plain)
        ),
        1 => (fixed("description"), value()),
        3 => (fixed("parameters"), map_of(name(), param_decl(), 0..4)),
        2 => (fixed("variables"), map_of(name(), value(), 0..4)),
        4 => (fixed("resources"), map_of(name(), resource(), 0..5)),
        2 => (fixed("outputs"), map_of(name(), output(), 0..4)),
        1 => (key_strategy(), value()),
    ];
    (
        prop::collection::vec(section, 0..7),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.01),
    )
        .prop_map(|(entries, flow, dups)| Tree::Map {
            entries: dedup(entries, dups),
            flow,
        })
        .boxed()
}

// ---------------------------------------------------------------- raw text

/// Pieces of YAML and Jinja syntax, for token soup.
const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    ":",
    ": ",
    " ",
    "  ",
    "\n",
    "\n  ",
    "\n- ",
    "\t",
    "-",
    "- ",
    "'",
    "\"",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "!!str ",
    "!!int ",
    "!x ",
    "---\n",
    "...\n",
    "|",
    "|-\n",
    ">",
    "#",
    " # c",
    "é",
    "日",
    "😀",
    "\r",
    "\r\n",
    "\\",
    "\\u00e9",
    "key",
    "cairn",
    "resources",
    "parameters",
    "type",
    "properties",
    "count",
    "for_each",
    "net",
    "1",
    "true",
    "null",
    "~",
    "? ",
    "%YAML 1.2\n",
    "\u{feff}",
    "\u{0}",
    "\u{85}",
    "\u{2028}",
    "<<",
    "=",
    "@",
];

/// Documents that are mostly not YAML: arbitrary text and token soup.
pub fn raw_text() -> BoxedStrategy<String> {
    prop_oneof![
        2 => any::<String>(),
        2 => "\\PC{0,60}",
        4 => prop::collection::vec(select(TOKENS), 0..40).prop_map(|v| v.concat()),
    ]
    .boxed()
}

/// A template's text with a few random edits: most are no longer valid.
pub fn mutated_template() -> BoxedStrategy<String> {
    let edit = (
        any::<prop::sample::Index>(),
        0usize..6,
        prop::option::of(select(TOKENS)),
    );
    (template(), prop::collection::vec(edit, 1..4))
        .prop_map(|(t, edits)| {
            let mut s = t.to_yaml();
            for (at, delete, insert) in edits {
                let bounds: Vec<usize> =
                    s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
                let i = at.index(bounds.len());
                let (start, end) = (bounds[i], bounds[(i + delete).min(bounds.len() - 1)]);
                s.replace_range(start..end, insert.unwrap_or(""));
            }
            s
        })
        .boxed()
}
