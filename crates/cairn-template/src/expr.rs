//! Expressions: `{{ ... }}` inside string values, evaluated with minijinja.
//!
//! A string that is exactly one `{{ expr }}` keeps the expression's type; any
//! other string with template syntax renders to a string. Unknown and secret
//! values are tracked dynamically: reading an unknown value or a secret out of
//! a [`Tracked`] container sets a per-thread mark, and the result of the whole
//! expression is then unknown or sensitive (Terraform's rule: anything derived
//! from an unknown is unknown).

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::value::{Enumerator, Object, ObjectRepr, Value as Mj, ValueKind};
use minijinja::{Environment, ErrorKind, Expression, UndefinedBehavior};

use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::functions::{self, FunctionContext};
use crate::node::{Node, NodeKind, Style};
use crate::source::{Sources, Span};
use crate::value::{UNKNOWN_TEXT, Value};

const MARK_UNKNOWN: u8 = 1;
const MARK_SENSITIVE: u8 = 2;

thread_local! {
    static MARKS: Cell<u8> = const { Cell::new(0) };
}

fn mark(bits: u8) {
    MARKS.with(|m| m.set(m.get() | bits));
}

/// Names every expression can see besides resources.
pub const SCOPE_NAMES: &[&str] = &["params", "vars", "deployment", "index", "each"];

/// minijinja's own global functions, which stay available.
const BUILTIN_FUNCTIONS: &[&str] = &["dict", "namespace", "debug", "lipsum", "cycler", "joiner"];

/// How a string value is to be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// No template syntax: the string itself.
    Literal,
    /// Exactly one `{{ expr }}`: the inner expression, result keeps its type.
    Expr(&'a str),
    /// Text mixed with expressions or blocks: renders to a string.
    Template,
}

pub fn classify(s: &str) -> Piece<'_> {
    if !(s.contains("{{") || s.contains("{%") || s.contains("{#")) {
        return Piece::Literal;
    }
    let t = s.trim();
    if let Some(inner) = t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
        let inner = inner.strip_prefix('-').unwrap_or(inner);
        let inner = inner.strip_suffix('-').unwrap_or(inner);
        if !inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%") {
            return Piece::Expr(inner);
        }
    }
    Piece::Template
}

/// The value placed where something is known only after apply.
#[derive(Debug)]
pub struct UnknownObj;

impl Object for UnknownObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, _key: &Mj) -> Option<Mj> {
        mark(MARK_UNKNOWN);
        Some(Mj::from_object(UnknownObj))
    }
    fn is_true(self: &Arc<Self>) -> bool {
        mark(MARK_UNKNOWN);
        true
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        mark(MARK_UNKNOWN);
        Enumerator::NonEnumerable
    }
    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        mark(MARK_UNKNOWN);
        None
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        mark(MARK_UNKNOWN);
        f.write_str(UNKNOWN_TEXT)
    }
}

pub fn unknown() -> Mj {
    Mj::from_object(UnknownObj)
}

/// A map or list whose entries may be unknown or secret; reading such an
/// entry marks the running evaluation.
#[derive(Debug)]
pub struct Tracked {
    entries: IndexMap<Mj, (Mj, u8)>,
    seq: bool,
}

impl Object for Tracked {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        if self.seq {
            ObjectRepr::Seq
        } else {
            ObjectRepr::Map
        }
    }
    fn get_value(self: &Arc<Self>, key: &Mj) -> Option<Mj> {
        let (v, marks) = self.entries.get(key)?;
        if *marks != 0 {
            mark(*marks);
        }
        Some(v.clone())
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        if self.seq {
            Enumerator::Seq(self.entries.len())
        } else {
            self.mapped_enumerator(|this| Box::new(this.entries.keys().cloned()))
        }
    }
}

use minijinja::value::ObjectExt;

/// Converts a value into minijinja's, keeping unknowns and secrets tracked.
pub fn to_mj(v: &Value) -> Mj {
    to_mj_marked(v).0
}

fn to_mj_marked(v: &Value) -> (Mj, u8) {
    match v {
        Value::Null => (Mj::from(()), 0),
        Value::Bool(b) => (Mj::from(*b), 0),
        Value::Int(i) => (Mj::from(*i), 0),
        Value::Float(f) => (Mj::from(*f), 0),
        Value::Str(s) => (Mj::from(s.as_str()), 0),
        Value::Unknown => (unknown(), MARK_UNKNOWN),
        Value::Sensitive(inner) => {
            let (m, marks) = to_mj_marked(inner);
            (m, marks | MARK_SENSITIVE)
        }
        Value::List(items) => {
            let conv: Vec<(Mj, u8)> = items.iter().map(to_mj_marked).collect();
            if conv.iter().all(|(_, m)| *m == 0) {
                (
                    Mj::from(conv.into_iter().map(|(v, _)| v).collect::<Vec<_>>()),
                    0,
                )
            } else {
                let entries = conv
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| (Mj::from(i), e))
                    .collect();
                (Mj::from_object(Tracked { entries, seq: true }), 0)
            }
        }
        Value::Map(map) => {
            let conv: Vec<(&String, (Mj, u8))> =
                map.iter().map(|(k, v)| (k, to_mj_marked(v))).collect();
            if conv.iter().all(|(_, (_, m))| *m == 0) {
                (
                    Mj::from_pairs(conv.into_iter().map(|(k, (v, _))| (k.as_str(), v))),
                    0,
                )
            } else {
                let entries = conv
                    .into_iter()
                    .map(|(k, e)| (Mj::from(k.as_str()), e))
                    .collect();
                (
                    Mj::from_object(Tracked {
                        entries,
                        seq: false,
                    }),
                    0,
                )
            }
        }
    }
}

/// Converts minijinja's value back. Unknown placeholders become `Unknown`.
pub fn from_mj(v: &Mj) -> Value {
    if v.downcast_object_ref::<UnknownObj>().is_some() {
        return Value::Unknown;
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => Value::Null,
        ValueKind::Bool => Value::Bool(v.is_true()),
        ValueKind::Number => match i64::try_from(v.clone()) {
            Ok(i) if !v.to_string().contains(['.', 'e', 'E', 'n', 'i']) => Value::Int(i),
            _ => f64::try_from(v.clone()).map_or(Value::Null, Value::Float),
        },
        ValueKind::String => Value::Str(v.as_str().unwrap_or_default().to_string()),
        ValueKind::Bytes => {
            Value::Str(String::from_utf8_lossy(v.as_bytes().unwrap_or_default()).into_owned())
        }
        ValueKind::Seq | ValueKind::Iterable => Value::List(
            v.try_iter()
                .map(|it| it.map(|x| from_mj(&x)).collect())
                .unwrap_or_default(),
        ),
        ValueKind::Map => {
            let mut out = IndexMap::new();
            if let Ok(keys) = v.try_iter() {
                for k in keys {
                    let item = v.get_item(&k).unwrap_or_default();
                    out.insert(k.to_string(), from_mj(&item));
                }
            }
            Value::Map(out)
        }
        _ => Value::Str(v.to_string()),
    }
}

/// A name an expression refers to, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub root: String,
    pub attr: Option<String>,
    pub span: Span,
    /// Written as a call (`name(...)`).
    pub called: bool,
}

/// The minijinja environment with cairn's functions, strict about undefined names.
pub struct Evaluator {
    env: Environment<'static>,
    function_names: Vec<&'static str>,
}

impl Evaluator {
    pub fn new(ctx: &FunctionContext) -> Evaluator {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Templates produce values, not HTML.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        // user_data scripts end with a newline that must survive rendering.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        functions::register(&mut env, ctx);
        env.add_function("secret", |name: String| -> Result<Mj, minijinja::Error> {
            if name.is_empty() {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "secret() needs a name",
                ));
            }
            // Resolved at apply time by the target; never rendered into a plan.
            mark(MARK_UNKNOWN | MARK_SENSITIVE);
            Ok(unknown())
        });
        let mut function_names: Vec<&'static str> = functions::FUNCTION_NAMES.to_vec();
        function_names.extend(BUILTIN_FUNCTIONS);
        function_names.push("secret");
        if ctx.allow_utc_now && !function_names.contains(&"utc_now") {
            function_names.push("utc_now");
        }
        Evaluator {
            env,
            function_names,
        }
    }

    pub fn function_names(&self) -> &[&'static str] {
        &self.function_names
    }

    pub fn is_function(&self, name: &str) -> bool {
        self.function_names.contains(&name)
    }

    /// A cache of compiled expressions, alive as long as the strings it compiled.
    pub fn session<'a>(&'a self, sources: &'a Sources) -> Session<'a> {
        Session {
            ev: self,
            sources,
            exprs: HashMap::new(),
            templates: HashMap::new(),
            refs: HashMap::new(),
        }
    }
}

/// A dotted name an expression reads: root and first attribute (`net`, `id`).
type Path = (String, Option<String>);

/// A compiled expression or template, or the fact that it does not compile.
/// The error is made again to report it, at the offset of that use (errors
/// are rare, and minijinja errors are not `Clone`).
type Compiled<T> = Result<T, ()>;

pub struct Session<'a> {
    ev: &'a Evaluator,
    sources: &'a Sources,
    exprs: HashMap<&'a str, Compiled<Expression<'a, 'a>>>,
    templates: HashMap<&'a str, Compiled<minijinja::Template<'a, 'a>>>,
    refs: HashMap<&'a str, Arc<Vec<Path>>>,
}

impl<'a> Session<'a> {
    /// Evaluates every string in a node against a scope value.
    pub fn eval(&mut self, node: &'a Node, scope: &Mj) -> Result<Value, Diagnostic> {
        Ok(match &node.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Int(i) => Value::Int(*i),
            NodeKind::Float(f) => Value::Float(*f),
            NodeKind::Str(s, _) => return self.eval_str(node, s, scope),
            NodeKind::Seq(items) => Value::List(
                items
                    .iter()
                    .map(|n| self.eval(n, scope))
                    .collect::<Result<_, _>>()?,
            ),
            NodeKind::Map(entries) => {
                let mut out = IndexMap::with_capacity(entries.len());
                for (k, v) in entries {
                    out.insert(k.scalar_text(), self.eval(v, scope)?);
                }
                Value::Map(out)
            }
        })
    }

    fn eval_str(&mut self, node: &'a Node, s: &'a str, scope: &Mj) -> Result<Value, Diagnostic> {
        let piece = classify(s);
        MARKS.with(|m| m.set(0));
        let result = match piece {
            Piece::Literal => return Ok(Value::Str(s.to_string())),
            Piece::Expr(inner) => {
                let offset = inner.as_ptr() as usize - s.as_ptr() as usize;
                let env = &self.ev.env;
                // The cache is keyed by the expression alone: the same
                // expression sits at other offsets in other strings.
                let compiled = self
                    .exprs
                    .entry(inner)
                    .or_insert_with(|| env.compile_expression(inner).map_err(|_| ()));
                match compiled {
                    Ok(expr) => expr
                        .eval(scope.clone())
                        .map(|v| from_mj(&v))
                        .map_err(|e| (e, offset)),
                    Err(()) => Err((
                        env.compile_expression(inner).err().unwrap_or_else(internal),
                        offset,
                    )),
                }
            }
            Piece::Template => {
                let env = &self.ev.env;
                let compiled = self
                    .templates
                    .entry(s)
                    .or_insert_with(|| env.template_from_str(s).map_err(|_| ()));
                match compiled {
                    Ok(t) => t.render(scope.clone()).map(Value::Str).map_err(|e| (e, 0)),
                    Err(()) => Err((env.template_from_str(s).err().unwrap_or_else(internal), 0)),
                }
            }
        };
        let marks = MARKS.with(|m| m.replace(0));
        match result {
            Ok(v) => {
                let v = if marks & MARK_UNKNOWN != 0 {
                    Value::Unknown
                } else {
                    v
                };
                Ok(if marks & MARK_SENSITIVE != 0 {
                    Value::Sensitive(Box::new(v))
                } else {
                    v
                })
            }
            // An operation that failed on a value known only after apply
            // (`net.id | length`) has an unknown result, not an error yet.
            Err((e, _)) if marks & MARK_UNKNOWN != 0 && e.kind() != ErrorKind::SyntaxError => {
                Ok(if marks & MARK_SENSITIVE != 0 {
                    Value::Sensitive(Box::new(Value::Unknown))
                } else {
                    Value::Unknown
                })
            }
            Err((e, offset)) => Err(self.error(node, s, offset, &e)),
        }
    }

    /// Every name the strings in a node refer to (including called functions).
    pub fn references(
        &mut self,
        node: &'a Node,
        out: &mut Vec<Reference>,
    ) -> Result<(), Diagnostic> {
        match &node.kind {
            NodeKind::Str(s, _) => self.str_references(node, s, out),
            NodeKind::Seq(items) => items.iter().try_for_each(|n| self.references(n, out)),
            NodeKind::Map(entries) => entries
                .iter()
                .try_for_each(|(_, v)| self.references(v, out)),
            _ => Ok(()),
        }
    }

    fn str_references(
        &mut self,
        node: &'a Node,
        s: &'a str,
        out: &mut Vec<Reference>,
    ) -> Result<(), Diagnostic> {
        let names = match self.refs.get(s) {
            Some(n) => n.clone(),
            None => {
                let names: Vec<Path> = match classify(s) {
                    Piece::Literal => Vec::new(),
                    Piece::Expr(inner) => {
                        let offset = inner.as_ptr() as usize - s.as_ptr() as usize;
                        let expr = self
                            .ev
                            .env
                            .compile_expression(inner)
                            .map_err(|e| self.error(node, s, offset, &e))?;
                        split_paths(expr.undeclared_variables(true))
                    }
                    Piece::Template => {
                        let t = self
                            .ev
                            .env
                            .template_from_str(s)
                            .map_err(|e| self.error(node, s, 0, &e))?;
                        split_paths(t.undeclared_variables(true))
                    }
                };
                let names = Arc::new(names);
                self.refs.insert(s, names.clone());
                names
            }
        };
        for (root, attr) in names.iter() {
            let (span, called) = self.locate_name(node, s, root, attr.as_deref());
            out.push(Reference {
                root: root.clone(),
                attr: attr.clone(),
                span,
                called,
            });
        }
        Ok(())
    }

    /// Where in the source a name inside a string value is written.
    fn locate_name(&self, node: &Node, s: &str, root: &str, attr: Option<&str>) -> (Span, bool) {
        let full = match attr {
            Some(a) => format!("{root}.{a}"),
            None => root.to_string(),
        };
        let found = find_word(s, &full).or_else(|| find_word(s, root));
        match found {
            Some(at) => {
                let len = if find_word(s, &full).is_some() {
                    full.len()
                } else {
                    root.len()
                };
                let called = s[at + len..].trim_start().starts_with('(');
                (self.span_in(node, s, at, len), called)
            }
            None => (node.span, false),
        }
    }

    /// The source span of `s[offset..offset+len]`, where `s` is the value of `node`.
    pub fn span_in(&self, node: &Node, s: &str, offset: usize, len: usize) -> Span {
        // Offsets from minijinja may fall inside a multi-byte character.
        let offset = s.floor_char_boundary(offset.min(s.len()));
        let len = s.ceil_char_boundary(offset + len.min(s.len() - offset)) - offset;
        let needle = &s[offset..offset + len];
        let raw = self.sources.text(node.span);
        let quoted = matches!(node.kind, NodeKind::Str(_, Style::Quoted));
        // Plain and simply quoted scalars map one to one.
        let direct = usize::from(quoted) + offset;
        if raw.get(direct..direct + len) == Some(needle) {
            return node.span.sub(direct, len);
        }
        // Block scalars and escapes: find the same text in the source.
        if !needle.is_empty() {
            let line_no = s[..offset].matches('\n').count();
            let mut from = 0;
            for _ in 0..line_no {
                match raw[from..].find('\n') {
                    Some(i) => from += i + 1,
                    None => break,
                }
            }
            if let Some(i) = raw[from..]
                .find(needle)
                .or_else(|| raw.find(needle).map(|i| i.wrapping_sub(from)))
            {
                let at = from.wrapping_add(i);
                return node.span.sub(at, len);
            }
        }
        node.span
    }

    fn error(&self, node: &Node, s: &str, offset: usize, e: &minijinja::Error) -> Diagnostic {
        let span = match e.range() {
            Some(r) => self.span_in(
                node,
                s,
                offset + r.start,
                r.end.saturating_sub(r.start).max(1),
            ),
            None => node.span,
        };
        let detail = e
            .detail()
            .map(str::to_string)
            .unwrap_or_else(|| e.kind().to_string());
        match e.kind() {
            ErrorKind::SyntaxError => Diagnostic::new(
                Code::Expression,
                format!("expression syntax error: {detail}"),
            )
            .at(span, "here")
            .help("expressions use Jinja syntax, e.g. `{{ net.id }}` or `{{ params.count + 1 }}`"),
            ErrorKind::UnknownFunction | ErrorKind::UnknownFilter | ErrorKind::UnknownTest => {
                let name = detail.split_whitespace().next().unwrap_or("").to_string();
                Diagnostic::new(
                    Code::UnknownFunction,
                    format!("unknown function or filter `{name}`"),
                )
                .at(span, "not a known function")
                .maybe_help(did_you_mean(&name, self.ev.function_names()))
            }
            ErrorKind::UndefinedError => Diagnostic::new(
                Code::UnknownAttribute,
                "the expression reads a value that does not exist",
            )
            .at(span, "undefined here")
            .help("check the attribute or key name; `cairn eval` shows what a name holds"),
            _ => Diagnostic::new(Code::Expression, format!("expression failed: {detail}"))
                .at(span, "while evaluating this"),
        }
    }
}

fn internal() -> minijinja::Error {
    minijinja::Error::new(
        ErrorKind::InvalidOperation,
        "compilation failed once and then succeeded",
    )
}

/// `a.b.c` paths as (root, first attribute).
fn split_paths(set: std::collections::HashSet<String>) -> Vec<Path> {
    let mut v: Vec<Path> = set
        .into_iter()
        .map(|p| match p.split_once('.') {
            Some((root, rest)) => (
                root.to_string(),
                Some(rest.split('.').next().unwrap_or(rest).to_string()),
            ),
            None => (p, None),
        })
        .collect();
    v.sort();
    v.dedup();
    // `a` and `a.b` both appear when nested paths are requested; keep the precise one.
    let with_attr: Vec<String> = v
        .iter()
        .filter(|(_, a)| a.is_some())
        .map(|(r, _)| r.clone())
        .collect();
    v.retain(|(r, a)| a.is_some() || !with_attr.contains(r));
    v
}

/// First occurrence of `word` not inside a longer identifier.
fn find_word(hay: &str, word: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(i) = hay[from..].find(word) {
        let at = from + i;
        let before = hay[..at].chars().next_back();
        let after = hay[at + word.len()..].chars().next();
        let quoted = before.is_some_and(|c| c == '\'' || c == '"');
        if !before.is_some_and(|c| is_ident(c) || c == '.')
            && !after.is_some_and(is_ident)
            && !quoted
        {
            return Some(at);
        }
        from = at + word.len().max(1);
    }
    None
}

/// The scope an expression runs in: shared names plus `index`/`each`.
#[derive(Debug)]
pub struct Scope {
    pub names: Arc<dyn NameLookup>,
    pub index: Option<Mj>,
    pub each: Option<Mj>,
}

/// Resolves a top-level name (`params`, a resource, ...) for a [`Scope`].
pub trait NameLookup: fmt::Debug + Send + Sync {
    fn lookup(&self, name: &str) -> Option<Mj>;
    fn names(&self) -> Vec<String>;
}

impl Object for Scope {
    fn get_value(self: &Arc<Self>, key: &Mj) -> Option<Mj> {
        let key = key.as_str()?;
        match key {
            "index" => self.index.clone(),
            "each" => self.each.clone(),
            _ => self.names.lookup(key),
        }
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut names = self.names.names();
        if self.index.is_some() {
            names.push("index".into());
        }
        if self.each.is_some() {
            names.push("each".into());
        }
        Enumerator::Values(names.into_iter().map(Mj::from).collect())
    }
}

impl Scope {
    pub fn value(names: Arc<dyn NameLookup>, index: Option<Mj>, each: Option<Mj>) -> Mj {
        Mj::from_object(Scope { names, index, each })
    }
}

/// A fixed set of names, for `cairn eval` without a template and for tests.
#[derive(Debug, Default)]
pub struct StaticNames(pub IndexMap<String, Mj>);

impl NameLookup for StaticNames {
    fn lookup(&self, name: &str) -> Option<Mj> {
        self.0.get(name).cloned()
    }
    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests;
