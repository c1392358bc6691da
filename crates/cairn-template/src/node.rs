//! A YAML/JSON document as a tree of nodes that remember their source span.
//!
//! yaml-rust2's event parser gives the start of every node; this module builds
//! the tree, resolves plain scalars with the YAML 1.2 core schema, rejects
//! duplicate keys and multiple documents, and finds where each scalar ends so
//! labels underline the whole value.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diagnostic::{Code, Diagnostic};
use crate::source::{FileId, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Quoted,
    Block,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String, Style),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s, _) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value under a string key of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.key_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The text of a key: strings as they are, scalars as written.
    pub fn key_str(&self) -> Option<&str> {
        self.as_str()
    }

    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a number",
            NodeKind::Str(..) => "a string",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a map",
        }
    }

    /// The node as plain JSON (spans dropped).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.kind {
            NodeKind::Null => J::Null,
            NodeKind::Bool(b) => J::Bool(*b),
            NodeKind::Int(i) => J::from(*i),
            NodeKind::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            NodeKind::Str(s, _) => J::String(s.clone()),
            NodeKind::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar_text(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A scalar's text (for keys that are not strings, such as `1:`).
    pub fn scalar_text(&self) -> String {
        match &self.kind {
            NodeKind::Null => "null".into(),
            NodeKind::Bool(b) => b.to_string(),
            NodeKind::Int(i) => i.to_string(),
            NodeKind::Float(f) => f.to_string(),
            NodeKind::Str(s, _) => s.clone(),
            NodeKind::Seq(_) => "[...]".into(),
            NodeKind::Map(_) => "{...}".into(),
        }
    }
}

/// Parses a YAML document (JSON is a subset) into a node tree.
/// An empty document is an empty map.
pub fn parse_yaml(file: FileId, text: &str) -> Result<Node, Diagnostic> {
    let mut docs = parse_documents(file, text)?;
    match docs.len() {
        0 => Ok(Node {
            kind: NodeKind::Map(Vec::new()),
            span: Span::new(file, 0, 0),
        }),
        1 => {
            let doc = docs.remove(0);
            if matches!(doc.kind, NodeKind::Null) {
                return Ok(Node {
                    kind: NodeKind::Map(Vec::new()),
                    span: doc.span,
                });
            }
            Ok(doc)
        }
        _ => Err(
            Diagnostic::new(Code::Syntax, "a template file holds one YAML document")
                .at(docs[1].span, "a second document starts here")
                .help("remove the `---` separator, or split the documents into separate files"),
        ),
    }
}

/// Every document of a YAML stream, scalars resolved with the core schema
/// and duplicate keys rejected (the one YAML reader of cairn).
pub(crate) fn parse_documents(file: FileId, text: &str) -> Result<Vec<Node>, Diagnostic> {
    let offsets = CharOffsets::new(text);
    let mut builder = Builder {
        file,
        text,
        offsets: &offsets,
        stack: Vec::new(),
        anchors: HashMap::new(),
        docs: Vec::new(),
        error: None,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        let at = offsets.byte(e.marker().index());
        let span = Span::new(file, at, next_char_end(text, at));
        return Err(
            Diagnostic::new(Code::Syntax, format!("invalid YAML: {}", e.info())).at(span, "here"),
        );
    }
    match builder.error {
        Some(err) => Err(err),
        None => Ok(builder.docs),
    }
}

/// Parses JSON strictly (serde_json reports syntax errors precisely), then
/// builds the spanned tree with the YAML parser, of which JSON is a subset.
pub fn parse_json(file: FileId, text: &str) -> Result<Node, Diagnostic> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        let offset = line_col_to_offset(text, e.line(), e.column());
        let span = Span::new(file, offset, next_char_end(text, offset));
        let msg = e.to_string();
        let msg = msg.split(" at line").next().unwrap_or(&msg).to_string();
        return Err(Diagnostic::new(Code::Syntax, format!("invalid JSON: {msg}")).at(span, "here"));
    }
    parse_yaml(file, text)
}

fn line_col_to_offset(text: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let col_bytes: usize = l
                .chars()
                .take(col.saturating_sub(1))
                .map(char::len_utf8)
                .sum();
            return (offset + col_bytes).min(text.len());
        }
        offset += l.len();
    }
    text.len()
}

fn next_char_end(text: &str, at: usize) -> usize {
    text[at.min(text.len())..]
        .chars()
        .next()
        .map_or(at, |c| at + c.len_utf8())
}

/// Maps yaml-rust2's character indices to byte offsets.
struct CharOffsets {
    /// None when the text is ASCII and the two agree.
    table: Option<Vec<u32>>,
    len: usize,
}

impl CharOffsets {
    fn new(text: &str) -> CharOffsets {
        let table =
            (!text.is_ascii()).then(|| text.char_indices().map(|(i, _)| i as u32).collect());
        CharOffsets {
            table,
            len: text.len(),
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        match &self.table {
            None => char_index.min(self.len),
            Some(t) => t.get(char_index).map_or(self.len, |&b| b as usize),
        }
    }
}

enum Frame {
    Seq {
        start: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: usize,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        /// Key text to its index in `entries`: duplicate detection in O(1).
        seen: HashMap<String, usize>,
    },
}

struct Builder<'a> {
    file: FileId,
    text: &'a str,
    offsets: &'a CharOffsets,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    docs: Vec<Node>,
    error: Option<Diagnostic>,
}

impl Builder<'_> {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                seen,
                ..
            }) => match pending_key.take() {
                None => {
                    let dup = match seen.entry(node.scalar_text()) {
                        std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(entries.len());
                            None
                        }
                    };
                    if let Some((first, _)) = dup.and_then(|i| entries.get(i))
                        && first.kind == node.kind
                        && self.error.is_none()
                    {
                        self.error = Some(
                            Diagnostic::new(
                                Code::DuplicateKey,
                                format!("duplicate key `{}`", node.scalar_text()),
                            )
                            .at(node.span, "this key is already defined")
                            .also(first.span, "first defined here")
                            .help("each key may appear only once in a map; remove or rename one"),
                        );
                    }
                    *pending_key = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }

    /// Where a scalar starting at `start` ends in the source.
    fn scalar_end(&self, start: usize, style: TScalarStyle) -> usize {
        let rest = &self.text[start.min(self.text.len())..];
        let end = match style {
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => {
                let quote = if style == TScalarStyle::SingleQuoted {
                    '\''
                } else {
                    '"'
                };
                let mut chars = rest.char_indices().skip(1);
                let mut end = rest.len();
                while let Some((i, c)) = chars.next() {
                    if quote == '"' && c == '\\' {
                        chars.next();
                    } else if c == quote {
                        if quote == '\'' && rest[i + 1..].starts_with('\'') {
                            chars.next();
                            continue;
                        }
                        end = i + 1;
                        break;
                    }
                }
                end
            }
            TScalarStyle::Literal | TScalarStyle::Folded => {
                // The mark is at the first content line; the block runs while
                // lines are blank or indented at least as deep as that one.
                let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
                let content_indent = indent_of(&self.text[line_start..]);
                let mut end = rest.find('\n').map_or(rest.len(), |i| i + 1);
                let mut last_content = rest.find('\n').unwrap_or(rest.len());
                for line in rest[end..].split_inclusive('\n') {
                    if !line.trim().is_empty() {
                        if indent_of(line) < content_indent {
                            break;
                        }
                        last_content = end + line.trim_end().len();
                    }
                    end += line.len();
                }
                last_content
            }
            _ => {
                let line = rest.split('\n').next().unwrap_or("");
                let in_flow = self.in_flow(start);
                let mut end = line.len();
                for (i, c) in line.char_indices() {
                    let next = line[i + c.len_utf8()..].chars().next();
                    let stop = match c {
                        ',' | ']' | '}' if in_flow => true,
                        ':' => next.is_none_or(|n| {
                            n == ' ' || n == '\t' || (in_flow && ",]}".contains(n))
                        }),
                        '#' => i > 0 && line[..i].ends_with([' ', '\t']),
                        _ => false,
                    };
                    if stop {
                        end = i;
                        break;
                    }
                }
                line[..end].trim_end().len()
            }
        };
        start + end
    }

    fn in_flow(&self, start: usize) -> bool {
        // Crude but sufficient for label widths: inside `[`/`{` on the same line.
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let before = &self.text[line_start..start];
        before.matches(['[', '{']).count() > before.matches([']', '}']).count()
    }
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let at = self.offsets.byte(mark.index());
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let end = self.scalar_end(at, style);
                let span = Span::new(self.file, at, end);
                let kind = resolve_scalar(value, style, tag.as_ref().map(|t| t.suffix.as_str()));
                self.push_node(Node { kind, span }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                start: at,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                start: at,
                anchor,
                entries: Vec::new(),
                pending_key: None,
                seen: HashMap::new(),
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return;
                };
                let (start, anchor, kind) = match frame {
                    Frame::Seq {
                        start,
                        anchor,
                        items,
                    } => (start, anchor, NodeKind::Seq(items)),
                    Frame::Map {
                        start,
                        anchor,
                        entries,
                        ..
                    } => (start, anchor, NodeKind::Map(entries)),
                };
                let span = Span::new(self.file, start, at.max(start));
                self.push_node(Node { kind, span }, anchor);
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(mut node) => {
                    node.span = Span::new(self.file, at, self.scalar_end(at, TScalarStyle::Plain));
                    self.push_node(node, 0);
                }
                None => {
                    self.error = Some(
                        Diagnostic::new(Code::Syntax, "alias to an unknown anchor")
                            .at(Span::new(self.file, at, at + 1), "this alias"),
                    );
                }
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// YAML 1.2 core schema for plain scalars; quoted and block scalars are strings.
pub(crate) fn resolve_scalar(value: String, style: TScalarStyle, tag: Option<&str>) -> NodeKind {
    match style {
        TScalarStyle::Plain => {}
        TScalarStyle::Literal | TScalarStyle::Folded => return NodeKind::Str(value, Style::Block),
        _ => return NodeKind::Str(value, Style::Quoted),
    }
    if tag == Some("str") {
        return NodeKind::Str(value, Style::Quoted);
    }
    match value.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return NodeKind::Null,
        "true" | "True" | "TRUE" => return NodeKind::Bool(true),
        "false" | "False" | "FALSE" => return NodeKind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" => return NodeKind::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return NodeKind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeKind::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = value.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return NodeKind::Int(i);
    }
    if let Some(oct) = value.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return NodeKind::Int(i);
    }
    let looks_numeric = value
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        && value.bytes().any(|b| b.is_ascii_digit());
    if looks_numeric {
        if let Ok(i) = value.parse::<i64>() {
            return NodeKind::Int(i);
        }
        if let Ok(f) = value.parse::<f64>() {
            return NodeKind::Float(f);
        }
    }
    NodeKind::Str(value, Style::Plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Node, Diagnostic> {
        parse_yaml(FileId(0), text)
    }

    #[test]
    fn scalars_resolve_with_the_core_schema() {
        let n = parse("a: 1\nb: 1.5\nc: true\nd: ~\ne: '1'\nf: 10.20.0.0/16\ng: yes\n").unwrap();
        assert_eq!(n.get("a").unwrap().kind, NodeKind::Int(1));
        assert_eq!(n.get("b").unwrap().kind, NodeKind::Float(1.5));
        assert_eq!(n.get("c").unwrap().kind, NodeKind::Bool(true));
        assert_eq!(n.get("d").unwrap().kind, NodeKind::Null);
        assert_eq!(n.get("e").unwrap().as_str(), Some("1"));
        assert_eq!(n.get("f").unwrap().as_str(), Some("10.20.0.0/16"));
        assert_eq!(n.get("g").unwrap().as_str(), Some("yes"));
    }

    #[test]
    fn spans_cover_whole_scalars() {
        let text =
            "net:\n  cidr: \"10.0.0.0/16\"  # c\n  name: web server\n  f: {a: x y, b: 'q'}\n";
        let n = parse(text).unwrap();
        let net = n.get("net").unwrap();
        let span = |k: &str| {
            let s = net.get(k).unwrap().span;
            &text[s.start as usize..s.end as usize]
        };
        assert_eq!(span("cidr"), "\"10.0.0.0/16\"");
        assert_eq!(span("name"), "web server");
        let f = net.get("f").unwrap();
        let a = f.get("a").unwrap().span;
        assert_eq!(&text[a.start as usize..a.end as usize], "x y");
    }

    #[test]
    fn non_ascii_text_maps_to_byte_offsets() {
        let text = "d: é\nx: [1, zz]\n";
        let n = parse(text).unwrap();
        let s = n.get("x").unwrap().as_seq().unwrap()[1].span;
        assert_eq!(&text[s.start as usize..s.end as usize], "zz");
    }

    #[test]
    fn duplicate_keys_are_an_error() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.code, Code::DuplicateKey);
        assert_eq!(e.span().unwrap().start, 10);
    }

    #[test]
    fn block_scalar_span_ends_at_its_last_line() {
        let text = "a:\n  s: |\n    one\n    two\n  t: 1\n";
        let n = parse(text).unwrap();
        let s = n.get("a").unwrap().get("s").unwrap();
        assert_eq!(s.as_str(), Some("one\ntwo\n"));
        assert_eq!(
            &text[s.span.start as usize..s.span.end as usize],
            "one\n    two"
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(e.code, Code::Syntax);
        let e = parse_json(FileId(0), "{\"a\": 1,}").unwrap_err();
        assert_eq!(e.code, Code::Syntax);
        assert_eq!(e.span().unwrap().start, 8);
    }

    #[test]
    fn empty_document_is_an_empty_map() {
        assert_eq!(parse("").unwrap().kind, NodeKind::Map(vec![]));
        assert_eq!(
            parse("# only a comment\n").unwrap().kind,
            NodeKind::Map(vec![])
        );
    }

    #[test]
    fn anchors_and_aliases_resolve() {
        let n = parse("a: &x {k: 1}\nb: *x\n").unwrap();
        assert_eq!(n.get("b").unwrap().get("k").unwrap().kind, NodeKind::Int(1));
    }
}
