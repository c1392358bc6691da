//! Diagnostics: one type from YAML span to minijinja expression to CLI.
//!
//! A [`Diagnostic`] has a stable code, a one-line message, a primary label on
//! the most specific span, optional secondary labels and a help line. Library
//! code only builds them; the CLI renders them with miette (see [`Rendered`]).

use std::fmt;

use crate::source::{Sources, Span};

/// Stable error codes; users grep for them and tests snapshot them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Io,
    Syntax,
    DuplicateKey,
    UnknownKey,
    MissingKey,
    UnknownProperty,
    MissingProperty,
    Type,
    MissingParameter,
    UnknownParameter,
    Constraint,
    UnknownReference,
    UnknownAttribute,
    Cycle,
    UnknownFunction,
    Expression,
    Count,
    ForEach,
    UnknownType,
    SecretExposed,
    UnknownAtPlan,
    TargetMismatch,
    /// A value the portable type allows and the target refuses.
    TargetLimit,
    Environment,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Io => "cairn::io",
            Code::Syntax => "cairn::syntax",
            Code::DuplicateKey => "cairn::duplicate_key",
            Code::UnknownKey => "cairn::unknown_key",
            Code::MissingKey => "cairn::missing_key",
            Code::UnknownProperty => "cairn::unknown_property",
            Code::MissingProperty => "cairn::missing_property",
            Code::Type => "cairn::type",
            Code::MissingParameter => "cairn::missing_parameter",
            Code::UnknownParameter => "cairn::unknown_parameter",
            Code::Constraint => "cairn::constraint",
            Code::UnknownReference => "cairn::unknown_reference",
            Code::UnknownAttribute => "cairn::unknown_attribute",
            Code::Cycle => "cairn::cycle",
            Code::UnknownFunction => "cairn::unknown_function",
            Code::Expression => "cairn::expression",
            Code::Count => "cairn::count",
            Code::ForEach => "cairn::for_each",
            Code::UnknownType => "cairn::unknown_type",
            Code::SecretExposed => "cairn::secret_exposed",
            Code::UnknownAtPlan => "cairn::unknown_at_plan",
            Code::TargetLimit => "cairn::target_limit",
            Code::TargetMismatch => "cairn::target_mismatch",
            Code::Environment => "cairn::environment",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    /// The primary label: where the problem is and what was expected there.
    pub primary: Option<Label>,
    /// More places that take part (every member of a cycle, the first of two duplicates).
    pub secondary: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            help: None,
        }
    }

    pub fn at(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.primary = Some(Label {
            span,
            text: label.into(),
        });
        self
    }

    pub fn also(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.secondary.push(Label {
            span,
            text: label.into(),
        });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn maybe_help(self, help: Option<String>) -> Diagnostic {
        match help {
            Some(h) => self.help(h),
            None => self,
        }
    }

    pub fn span(&self) -> Option<Span> {
        self.primary.as_ref().map(|l| l.span)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Every error a pass found, in source order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
    /// Ok when nothing was reported, the diagnostics (sorted by position) otherwise.
    pub fn into_result<T>(mut self, value: T) -> Result<T, Diagnostics> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            self.sort();
            Err(self)
        }
    }
    pub fn sort(&mut self) {
        self.0
            .sort_by_key(|d| d.span().map(|s| (s.file, s.start)).unwrap_or_default());
        self.0.dedup();
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{}", d.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The closest candidate to a misspelt name, when it is close enough to help:
/// a small edit distance (typos, swapped letters) first, then similarity.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let candidates: Vec<&'a str> = candidates.into_iter().collect();
    let max_edits = (name.chars().count() / 3).max(1);
    let by_edits = candidates
        .iter()
        .map(|c| (strsim::osa_distance(name, c), *c))
        .filter(|(d, _)| *d <= max_edits)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    by_edits.or_else(|| {
        candidates
            .iter()
            .map(|c| (strsim::jaro_winkler(name, c), *c))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, c)| c)
    })
}

/// "did you mean `x`?" or a list of what is allowed, whichever helps more.
pub fn did_you_mean(name: &str, candidates: &[&str]) -> Option<String> {
    if let Some(s) = suggest(name, candidates.iter().copied()) {
        return Some(format!("did you mean `{s}`?"));
    }
    if candidates.is_empty() {
        return None;
    }
    if candidates.len() <= 12 {
        let list: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
        return Some(format!("expected one of {}", list.join(", ")));
    }
    None
}

/// A diagnostic bound to its source text, ready for miette to render.
#[derive(Debug)]
pub struct Rendered {
    diagnostic: Diagnostic,
    source: Option<miette::NamedSource<String>>,
    /// Labels in another file than the primary one cannot be drawn by
    /// miette; they are appended as text with their location.
    extra: Vec<String>,
}

impl Rendered {
    pub fn new(diagnostic: &Diagnostic, sources: &Sources) -> Rendered {
        let file = diagnostic.primary.as_ref().map(|l| l.span.file);
        let source = file.map(|f| {
            let file = sources.get(f);
            miette::NamedSource::new(file.name.clone(), file.text.to_string()).with_language("yaml")
        });
        let extra = diagnostic
            .secondary
            .iter()
            .filter(|l| Some(l.span.file) != file)
            .map(|l| format!("{}: {}", sources.location(l.span), l.text))
            .collect();
        Rendered {
            diagnostic: diagnostic.clone(),
            source,
            extra,
        }
    }
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Rendered {}

fn to_miette(label: &Label, primary: bool) -> miette::LabeledSpan {
    let span = miette::SourceSpan::new((label.span.start as usize).into(), label.span.len());
    if primary {
        miette::LabeledSpan::new_primary_with_span(Some(label.text.clone()), span)
    } else {
        miette::LabeledSpan::new_with_span(Some(label.text.clone()), span)
    }
}

impl miette::Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.diagnostic.code.as_str()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let mut parts: Vec<String> = self.extra.clone();
        parts.extend(self.diagnostic.help.clone());
        if parts.is_empty() {
            None
        } else {
            Some(Box::new(parts.join("\n")))
        }
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let primary = self.diagnostic.primary.as_ref()?;
        let mut labels = vec![to_miette(primary, true)];
        labels.extend(
            self.diagnostic
                .secondary
                .iter()
                .filter(|l| l.span.file == primary.span.file)
                .map(|l| to_miette(l, false)),
        );
        Some(Box::new(labels.into_iter()))
    }
}
