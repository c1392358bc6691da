//! Jinja before YAML, as Salt renders SLS files (`jinja|yaml`), and the way
//! back from a place in the rendered text to the line people wrote.
//!
//! The YAML reader only ever sees the rendered text, so its spans are in
//! that text. Most state files render line for line (`{{ }}` inside a line,
//! `{% if %}` tags on lines of their own leave an empty line behind since
//! blocks are not trimmed), and then a rendered line *is* the written line
//! of the same number: the error is shown on the file as written. When
//! rendering added or removed lines (a `{% for %}`, a false `{% if %}`),
//! guessing would point at the wrong line, so the error is shown on the
//! rendered text, named `FILE (rendered)`.

use std::ops::Range;
use std::path::PathBuf;

use miette::SourceSpan;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value as Mj};
use serde_json::{Map, Value as J};

use super::error::{Location, Place, Places, StateError, StateErrorKind};

/// What a state file's Jinja sees for one host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderContext {
    /// The host's inventory name: `{{ host }}`.
    pub host: String,
    /// The host's facts (Salt's grains): `{{ facts.os }}`, also `{{ grains.os }}`.
    pub facts: J,
    /// Host and user variables, the user's winning: `{{ vars.port }}`.
    pub vars: Map<String, J>,
}

impl RenderContext {
    pub fn new(host: impl Into<String>) -> RenderContext {
        RenderContext {
            host: host.into(),
            facts: J::Object(Map::new()),
            vars: Map::new(),
        }
    }

    pub fn facts(mut self, facts: J) -> RenderContext {
        self.facts = facts;
        self
    }

    pub fn vars(mut self, vars: Map<String, J>) -> RenderContext {
        self.vars = vars;
        self
    }
}

/// One state file: as written and as rendered for a host.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// As the caller named it, for messages.
    pub name: String,
    pub path: PathBuf,
    pub original: String,
    pub rendered: String,
    /// Whether rendering kept every line where it was (see the module doc).
    same_lines: bool,
}

impl Source {
    /// Renders `original` with Jinja. An error points into `original`.
    pub fn render(
        name: String,
        path: PathBuf,
        original: String,
        ctx: &RenderContext,
    ) -> Result<Source, StateError> {
        let mut source = Source {
            name,
            path,
            rendered: String::new(),
            original,
            same_lines: true,
        };
        match render(&source.name, &source.original, ctx) {
            Ok(text) => {
                source.same_lines = text.lines().count() == source.original.lines().count();
                source.rendered = text;
                Ok(source)
            }
            Err(e) => Err(render_error(&source, &e)),
        }
    }

    /// Where a byte range of the rendered text is, in the written file when
    /// the two agree on that line.
    pub fn place(&self, range: Range<usize>) -> Place<'_> {
        let (start, end) = clamp(&self.rendered, range);
        if self.same_lines {
            let (line, col) = line_and_offset(&self.rendered, start);
            let r_line = nth_line(&self.rendered, line);
            let o_line = nth_line(&self.original, line);
            let o_start = line_start(&self.original, line);
            let len = end - start;
            // The same bytes up to and over the range: the range is exact.
            // `get`, not slicing: a column may fall inside a character of
            // the other line, and then the lines differ there anyway.
            let same = |n: usize| matches!((r_line.get(..n), o_line.get(..n)), (Some(a), Some(b)) if a == b);
            let (o_from, o_len) = if same(col + len) {
                (o_start + col, len)
            } else if same(col) {
                // Up to the range it agrees; what follows came from an
                // expression: underline the rest of the written line.
                (o_start + col, o_line.len() - col.min(o_line.len()))
            } else {
                let indent = o_line.len() - o_line.trim_start().len();
                (o_start + indent, o_line.trim().len())
            };
            return self.place_in(&self.name, &self.original, o_from, o_len);
        }
        let name = format!("{} (rendered)", self.name);
        self.place_in(&name, &self.rendered, start, end - start)
    }

    /// Where a byte range of the text as written is.
    pub fn place_original(&self, range: Range<usize>) -> Place<'_> {
        let (start, end) = clamp(&self.original, range);
        self.place_in(&self.name, &self.original, start, end - start)
    }

    fn place_in<'a>(&'a self, name: &str, text: &'a str, from: usize, len: usize) -> Place<'a> {
        let (line, col_bytes) = line_and_offset(text, from);
        let column = nth_line(text, line)
            .get(..col_bytes)
            .map_or(col_bytes, |s| s.chars().count())
            + 1;
        Place {
            name: name.to_string(),
            text,
            span: SourceSpan::new(from.into(), len),
            location: Location {
                file: name.to_string(),
                line: line + 1,
                column,
            },
        }
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Salt renders with StrictUndefined: a misspelt fact is an error, not
    // an empty string written into a config file.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    // Keeps the text line for line with the file (see the module doc), and
    // a literal block's last newline.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    // Without it minijinja does not keep the byte range of a failing
    // expression.
    env.set_debug(true);
    env
}

/// Whether the Jinja of `text` may look up any of `names` (a static
/// reading: a name in a branch not taken counts). Text that does not parse
/// may use anything.
pub(crate) fn may_use(name: &str, text: &str, names: &[&str]) -> bool {
    let env = environment();
    match env.template_from_named_str(name, text) {
        Ok(t) => {
            let used = t.undeclared_variables(false);
            names.iter().any(|n| used.contains(*n))
        }
        Err(_) => true,
    }
}

fn render(name: &str, text: &str, ctx: &RenderContext) -> Result<String, minijinja::Error> {
    let env = environment();
    let template = env.template_from_named_str(name, text)?;
    let facts = Mj::from(minijinja::value::Serde(&ctx.facts));
    template.render(minijinja::context! {
        host => ctx.host.as_str(),
        grains => facts.clone(),
        facts => facts,
        vars => Mj::from(minijinja::value::Serde(&ctx.vars)),
    })
}

fn render_error(source: &Source, e: &minijinja::Error) -> StateError {
    let text = &source.original;
    let range = match (e.range(), e.line()) {
        (Some(r), _) => r,
        (None, Some(line)) => {
            let from = line_start(text, line.saturating_sub(1));
            let l = nth_line(text, line.saturating_sub(1));
            let indent = l.len() - l.trim_start().len();
            from + indent..from + l.trim_end().len()
        }
        (None, None) => 0..0,
    };
    let detail = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    let (message, label, help) = match e.kind() {
        ErrorKind::SyntaxError => (
            format!("Jinja syntax error: {detail}"),
            "here",
            Some("a state file is Jinja first: `{{ facts.os }}`, `{% if %}...{% endif %}`"),
        ),
        ErrorKind::UndefinedError => (
            format!("Jinja: {detail}"),
            "undefined here",
            Some("the names are `facts` (also `grains`), `vars` and `host`"),
        ),
        ErrorKind::UnknownFilter | ErrorKind::UnknownFunction | ErrorKind::UnknownTest => {
            (format!("Jinja: {detail}"), "not known", None)
        }
        _ => (format!("Jinja: {detail}"), "while rendering this", None),
    };
    let err = StateError::at_original(StateErrorKind::Render, message, source, range, label);
    match help {
        Some(h) => err.help(h),
        None => err,
    }
}

fn clamp(text: &str, range: Range<usize>) -> (usize, usize) {
    let start = floor(text, range.start.min(text.len()));
    let end = floor(text, range.end.min(text.len())).max(start);
    (start, end)
}

fn floor(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The 0-based line of a byte offset and the offset within that line.
fn line_and_offset(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line = before.bytes().filter(|&b| b == b'\n').count();
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, at - start)
}

/// The byte offset where 0-based line `n` starts (the end when there is none).
fn line_start(text: &str, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    text.match_indices('\n')
        .nth(n - 1)
        .map_or(text.len(), |(i, _)| i + 1)
}

/// 0-based line `n` without its line break.
fn nth_line(text: &str, n: usize) -> &str {
    let from = line_start(text, n);
    let rest = &text[from..];
    let line = rest.split('\n').next().unwrap_or("");
    line.strip_suffix('\r').unwrap_or(line)
}
impl Places for Source {
    fn place(&self, range: Range<usize>) -> Place<'_> {
        Source::place(self, range)
    }

    fn place_original(&self, range: Range<usize>) -> Place<'_> {
        Source::place_original(self, range)
    }
}
