//! Plain values to YAML text and back: the one YAML stack of cairn (`-o
//! yaml`, `import`'s declarations, cloud-config), on the same reader as
//! templates.
//!
//! Reading goes through [`crate::node`] (yaml-rust2's event parser, the YAML
//! 1.2 core schema, duplicate keys rejected), so a value reads the same
//! wherever cairn reads YAML.
//!
//! Writing is done here rather than with yaml-rust2's `YamlEmitter`, which
//! leaves strings such as `0o17` unquoted (they read back as integers),
//! drops the trailing newlines of multi-line strings, and opens every
//! document with `---`. The rules:
//! - key order is kept (serde_json's `preserve_order`);
//! - a string is plain only when it reads back as the same string here and
//!   would not read as another type in YAML 1.1 either (`yes`, `0644`,
//!   `1_000`, `2024-01-31`, for tools such as PyYAML); otherwise it is
//!   double-quoted, with escapes for what is not printable;
//! - a multi-line string is a literal block (`|` or `|-`) when it can be one
//!   exactly, so that scripts and certificates stay readable;
//! - sequences in a mapping sit at the key's indentation (`key:\n- a`), as
//!   libyaml and serde_yaml print them.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value as J;

use crate::node::{self, NodeKind, Style};
use crate::source::FileId;

/// YAML text that does not hold exactly one document of plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub message: String,
    /// 1-based, as editors count.
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for Error {}

/// Reads one YAML document as plain JSON data. An empty text is `null`;
/// `.nan` and the infinities, which JSON cannot hold, become `null`.
pub fn from_str(text: &str) -> Result<J, Error> {
    let error = |message: String, at: usize| {
        let before = &text[..at.min(text.len())];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Error {
            message,
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    };
    let mut docs = node::parse_documents(FileId(0), text)
        .map_err(|d| error(d.message.clone(), d.span().map_or(0, |s| s.start as usize)))?;
    match docs.len() {
        0 => Ok(J::Null),
        1 => Ok(docs.remove(0).to_json()),
        _ => Err(error(
            "expected one YAML document, found a second".into(),
            docs[1].span.start as usize,
        )),
    }
}

/// Writes a value as a YAML document ending in a newline.
pub fn to_string(value: &J) -> String {
    let mut out = String::new();
    match value {
        J::Object(m) if !m.is_empty() => write_map(&mut out, m, 0, false),
        J::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0, false),
        J::String(s) if literal_ok(s) => write_literal(&mut out, s, INDENT),
        _ => {
            write_scalar(&mut out, value);
            out.push('\n');
        }
    }
    out
}

const INDENT: usize = 2;

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// A non-empty mapping whose keys start at column `indent`; with `inline`,
/// the first key follows what is already on the line (`- `).
fn write_map(out: &mut String, map: &serde_json::Map<String, J>, indent: usize, inline: bool) {
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 || !inline {
            pad(out, indent);
        }
        write_str(out, k);
        out.push(':');
        match v {
            J::Object(m) if !m.is_empty() => {
                out.push('\n');
                write_map(out, m, indent + INDENT, false);
            }
            J::Array(a) if !a.is_empty() => {
                out.push('\n');
                write_seq(out, a, indent, false);
            }
            J::String(s) if literal_ok(s) => {
                out.push(' ');
                write_literal(out, s, indent + INDENT);
            }
            _ => {
                out.push(' ');
                write_scalar(out, v);
                out.push('\n');
            }
        }
    }
}

/// A non-empty sequence whose dashes are at column `indent`.
fn write_seq(out: &mut String, items: &[J], indent: usize, inline: bool) {
    for (i, v) in items.iter().enumerate() {
        if i > 0 || !inline {
            pad(out, indent);
        }
        out.push_str("- ");
        match v {
            J::Object(m) if !m.is_empty() => write_map(out, m, indent + INDENT, true),
            J::Array(a) if !a.is_empty() => write_seq(out, a, indent + INDENT, true),
            J::String(s) if literal_ok(s) => write_literal(out, s, indent + INDENT),
            _ => {
                write_scalar(out, v);
                out.push('\n');
            }
        }
    }
}

/// A scalar, or an empty collection in flow style, on the current line.
fn write_scalar(out: &mut String, v: &J) {
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // serde_json writes floats with a `.0` or an exponent, so they read
        // back as floats, and integers without.
        J::Number(n) => out.push_str(&n.to_string()),
        J::String(s) => write_str(out, s),
        J::Array(_) => out.push_str("[]"),
        J::Object(_) => out.push_str("{}"),
    }
}

fn write_str(out: &mut String, s: &str) {
    if plain_ok(s) {
        out.push_str(s);
    } else {
        write_quoted(out, s);
    }
}

/// YAML's printable characters (1.2 §5.1), less the line breaks of YAML 1.1
/// (NEL, LS, PS) and the byte order mark, which readers treat specially.
fn printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

fn write_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if printable(c) => out.push(c),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02X}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
}

/// Whether a string can be written without quotes and read back as itself,
/// as a key or a value in block context.
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let second = s.chars().nth(1);
    let starts_ok = match first {
        // Indicators that may not start a plain scalar.
        ',' | '[' | ']' | '{' | '}' | '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%'
        | '@' | '`' => false,
        // These may when a non-space follows (`-x`, `:x`), never alone.
        '-' | '?' | ':' => second.is_some_and(|c| c != ' '),
        c => !c.is_whitespace(),
    };
    starts_ok
        && !s.ends_with(char::is_whitespace)
        && !s.ends_with(':')
        && s.chars()
            .all(|c| printable(c) && !matches!(c, '\t' | '\n' | '\r'))
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.starts_with("---")
        && !s.starts_with("...")
        && matches!(
            node::resolve_scalar(
                s.to_string(),
                yaml_rust2::scanner::TScalarStyle::Plain,
                None
            ),
            NodeKind::Str(_, Style::Plain)
        )
        && !YAML_1_1_NON_STRING.is_match(s)
}

/// Plain scalars that YAML 1.1 readers (PyYAML, older libyaml bindings) take
/// for booleans, numbers or timestamps although the core schema does not.
static YAML_1_1_NON_STRING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)^(?:
            y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF
            # integers: binary, octal with a leading 0, with _, sexagesimal
          | [-+]?0b[01_]+
          | [-+]?0[0-7_]+
          | [-+]?[0-9][0-9_]*
          | [-+]?0x[0-9a-fA-F_]+
          | [-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+
            # floats
          | [-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?
          | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
          | [-+]?\.(?:inf|Inf|INF)
          | \.(?:nan|NaN|NAN)
            # timestamps
          | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}
              (?:(?:[Tt]|[\ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?
                 (?:[\ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)?
          | =
        )$",
    )
    .expect("a valid pattern")
});

/// Whether a string reads back exactly from a literal block with clip (`|`)
/// or strip (`|-`) chomping and an indentation found from its first line.
fn literal_ok(s: &str) -> bool {
    let body = s.strip_suffix('\n').unwrap_or(s);
    body.contains('\n')
        && !body.ends_with('\n')
        && body.chars().next().is_some_and(|c| !c.is_whitespace())
        && body.chars().all(|c| printable(c) && c != '\r')
}

/// `|` or `|-`, then each line at column `indent` (empty lines stay empty).
fn write_literal(out: &mut String, s: &str, indent: usize) {
    let (body, header) = match s.strip_suffix('\n') {
        Some(body) => (body, "|\n"),
        None => (s, "|-\n"),
    };
    out.push_str(header);
    for line in body.split('\n') {
        if !line.is_empty() {
            pad(out, indent);
            out.push_str(line);
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn mappings_and_sequences_read_like_hand_written_yaml() {
        let v = json!({
            "name": "web",
            "count": 2,
            "ratio": 0.5,
            "on": true,
            "none": null,
            "tags": ["a", "b"],
            "nested": {"deep": {"x": 1}, "list": [{"k": 1, "l": [1, 2]}, [3, [4]]]},
            "empty": {"m": {}, "s": []},
        });
        assert_eq!(
            to_string(&v),
            "\
name: web
count: 2
ratio: 0.5
\"on\": true
none: null
tags:
- a
- b
nested:
  deep:
    x: 1
  list:
  - k: 1
    l:
    - 1
    - 2
  - - 3
    - - 4
empty:
  m: {}
  s: []
"
        );
    }

    #[test]
    fn key_order_is_kept() {
        let v: J = serde_json::from_str(r#"{"z": 1, "a": 2, "m": 3}"#).unwrap();
        assert_eq!(to_string(&v), "z: 1\na: 2\nm: 3\n");
        assert_eq!(from_str("z: 1\na: 2\nm: 3\n").unwrap(), v);
    }

    #[test]
    fn strings_that_would_read_as_something_else_are_quoted() {
        for s in [
            "true",
            "False",
            "null",
            "~",
            "",
            "1",
            "-1",
            "1.0",
            "1e3",
            ".inf",
            "0x1F",
            "0o17",
            "yes",
            "off",
            "0644",
            "1_000",
            "1:30",
            "2024-01-31",
            "2024-01-31 12:00:00Z",
            " x",
            "x ",
            "a: b",
            "a #b",
            "- x",
            "-",
            "? x",
            ":",
            "x:",
            "#c",
            "&a",
            "*a",
            "!t",
            "|",
            ">",
            "'q",
            "\"q",
            "%p",
            "@a",
            "`b",
            "[a",
            "{a",
            "---",
            "...",
            "a\tb",
            "\u{85}",
        ] {
            let text = to_string(&json!(s));
            assert!(text.starts_with('"'), "{s:?} is written {text:?}");
            assert_eq!(from_str(&text).unwrap(), json!(s), "{text}");
        }
    }

    #[test]
    fn ordinary_strings_are_plain() {
        for s in [
            "web",
            "10.0.0.0/16",
            "10.1.2.3",
            "a b",
            "a:b",
            "a#b",
            "-x",
            "http://x:80/p",
            "x-1",
            "é",
            "v1.2",
            "deadbeef",
            "2026-12-04T23:24:39+01:00x",
        ] {
            assert_eq!(to_string(&json!(s)), format!("{s}\n"));
            assert_eq!(from_str(&to_string(&json!(s))).unwrap(), json!(s));
        }
    }

    #[test]
    fn multi_line_strings_are_literal_blocks() {
        let v = json!({"script": "#!/bin/sh\necho hi\n\n  indented\n", "list": ["a\nb"]});
        let text = to_string(&v);
        assert_eq!(
            text,
            "script: |\n  #!/bin/sh\n  echo hi\n\n    indented\nlist:\n- |-\n  a\n  b\n"
        );
        assert_eq!(from_str(&text).unwrap(), v);
        // Those a literal block cannot hold exactly are quoted.
        for s in [" lead\nx", "x\n\n", "a\r\nb", "\nx"] {
            let text = to_string(&json!(s));
            assert!(text.starts_with('"'), "{text}");
            assert_eq!(from_str(&text).unwrap(), json!(s));
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        let s = "a\u{0}\u{7}\u{1b}\u{7f}\u{9f}\u{2028}\u{feff}\u{fffe}b";
        let text = to_string(&json!(s));
        assert!(text.is_ascii(), "{text}");
        assert_eq!(from_str(&text).unwrap(), json!(s));
    }

    #[test]
    fn reading_resolves_like_templates_and_reports_where() {
        assert_eq!(
            from_str("a: 0x10\nb: '1'\nc: 1.5\nd: yes\ne:\n").unwrap(),
            json!({"a": 16, "b": "1", "c": 1.5, "d": "yes", "e": null})
        );
        assert_eq!(from_str("").unwrap(), J::Null);
        let e = from_str("a: 1\nb: [1\n").unwrap_err();
        assert!(e.line >= 2, "{e}");
        let e = from_str("a: 1\na: 2\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 1), "{e}");
        assert!(from_str("a: 1\n---\nb: 2\n").is_err());
    }

    fn value() -> impl Strategy<Value = J> {
        let string = prop_oneof![
            // Words that look like other types, and the characters that matter.
            prop::sample::select(vec![
                "true",
                "no",
                "null",
                "~",
                "",
                "1",
                "0o7",
                "1.5",
                ".nan",
                "-",
                "#",
                ": ",
                "a: b",
                "x\n",
                "\n",
                " ",
                "0x1",
                "2024-01-01",
                "'",
                "\"",
                "\\",
                "\t",
                "é",
                "\u{85}",
            ])
            .prop_map(String::from),
            "[ -~\t\n\r\u{0}-\u{1f}\u{7f}-\u{a0}é\u{2028}\u{feff}]{0,12}",
            "[a-z0-9:#\\- \n]{0,16}",
        ];
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i64>().prop_map(J::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(J::from),
            string.clone().prop_map(J::String),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(J::Array),
                prop::collection::vec((string.clone(), inner), 0..6)
                    .prop_map(|kv| J::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn every_value_reads_back_as_written(v in value()) {
            let text = to_string(&v);
            prop_assert_eq!(from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?, v, "{}", text);
        }
    }
}
