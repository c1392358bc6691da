//! Why a state file cannot be applied, at the file:line:col people edit.
//!
//! One error type with a kind rather than an enum of look-alike variants:
//! every kind carries the same things (a place, a label, perhaps more
//! places and a help line), and the miette code is what differs.

use std::fmt;
use std::ops::Range;

use miette::{LabeledSpan, NamedSource, SourceSpan};
use thiserror::Error;

/// What kind of mistake a [`StateError`] reports; the miette code users grep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateErrorKind {
    /// The file or an included file could not be read.
    Read,
    /// Jinja failed: a syntax error, an undefined name, a bad filter.
    Render,
    /// The rendered text is not YAML (or has a duplicate key).
    Syntax,
    /// YAML, but not the shape of a state file.
    Shape,
    /// Two states with one id.
    DuplicateId,
    /// A requisite names no state.
    UnknownRequisite,
    /// States that require each other.
    Cycle,
    /// The module loader refused a state's module or arguments.
    Module,
}

impl StateErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            StateErrorKind::Read => "cairn::orch::state::read",
            StateErrorKind::Render => "cairn::orch::state::render",
            StateErrorKind::Syntax => "cairn::orch::state::syntax",
            StateErrorKind::Shape => "cairn::orch::state::shape",
            StateErrorKind::DuplicateId => "cairn::orch::state::duplicate_id",
            StateErrorKind::UnknownRequisite => "cairn::orch::state::unknown_requisite",
            StateErrorKind::Cycle => "cairn::orch::state::cycle",
            StateErrorKind::Module => "cairn::orch::state::module",
        }
    }
}

/// A 1-based line and column (in characters) in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file as it was named to cairn; `NAME (rendered)` when the place
    /// is only known in the text Jinja produced (see [`super::render`]).
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Why a state file cannot be applied (see [`StateErrorKind`]); shown as
/// `FILE:LINE:COL: message`, with the source and labels through miette.
#[derive(Debug, Error)]
#[error(transparent)]
pub struct StateError(Box<Repr>);

/// Boxed: errors travel through every `Result` of parsing, whose `Ok` side
/// is small.
#[derive(Debug, Error)]
#[error("{}{message}", location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default())]
struct Repr {
    kind: StateErrorKind,
    message: String,
    location: Option<Location>,
    src: Option<NamedSource<String>>,
    /// The name of `src`, to tell whether a further label can be drawn on it.
    src_name: String,
    labels: Vec<LabeledSpan>,
    /// Places in another text than `src`, which miette cannot draw.
    elsewhere: Vec<String>,
    help: Option<String>,
    #[source]
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StateError {
    pub(crate) fn read(path: &str, cause: std::io::Error) -> StateError {
        StateError(Box::new(Repr {
            kind: StateErrorKind::Read,
            message: format!("cannot read {path}: {cause}"),
            location: None,
            src: None,
            src_name: String::new(),
            labels: Vec::new(),
            elsewhere: Vec::new(),
            help: None,
            cause: Some(Box::new(cause)),
        }))
    }

    /// An error at `range` of `source`'s rendered text.
    pub(crate) fn at(
        kind: StateErrorKind,
        message: impl Into<String>,
        source: &impl Places,
        range: Range<usize>,
        label: impl Into<String>,
    ) -> StateError {
        StateError::at_place(kind, message.into(), source.place(range), label.into())
    }

    /// An error at a byte range of `source`'s text as written (before
    /// rendering): where Jinja reports its own errors.
    pub(crate) fn at_original(
        kind: StateErrorKind,
        message: impl Into<String>,
        source: &impl Places,
        range: Range<usize>,
        label: impl Into<String>,
    ) -> StateError {
        StateError::at_place(
            kind,
            message.into(),
            source.place_original(range),
            label.into(),
        )
    }

    fn at_place(
        kind: StateErrorKind,
        message: String,
        place: Place<'_>,
        label: String,
    ) -> StateError {
        StateError(Box::new(Repr {
            kind,
            message,
            src: Some(
                NamedSource::new(place.name.clone(), place.text.to_string()).with_language("yaml"),
            ),
            src_name: place.name,
            labels: vec![LabeledSpan::new_primary_with_span(Some(label), place.span)],
            location: Some(place.location),
            elsewhere: Vec::new(),
            help: None,
            cause: None,
        }))
    }

    /// Another place that takes part (each member of a cycle).
    pub(crate) fn also(
        mut self,
        source: &impl Places,
        range: Range<usize>,
        label: impl Into<String>,
    ) -> StateError {
        let place = source.place(range);
        let label = label.into();
        if place.name == self.0.src_name {
            self.0
                .labels
                .push(LabeledSpan::new_with_span(Some(label), place.span));
        } else {
            self.0
                .elsewhere
                .push(format!("{}: {label}", place.location));
        }
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> StateError {
        self.0.help = Some(help.into());
        self
    }

    pub(crate) fn maybe_help(self, help: Option<String>) -> StateError {
        match help {
            Some(h) => self.help(h),
            None => self,
        }
    }

    pub(crate) fn caused_by(
        mut self,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> StateError {
        self.0.cause = Some(Box::new(cause));
        self
    }

    pub fn kind(&self) -> StateErrorKind {
        self.0.kind
    }

    /// The message without its location.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Where the error is; `None` only for a file that could not be read.
    pub fn location(&self) -> Option<&Location> {
        self.0.location.as_ref()
    }
}

impl miette::Diagnostic for StateError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.0.kind.code()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let mut parts = self.0.elsewhere.clone();
        parts.extend(self.0.help.clone());
        if parts.is_empty() {
            None
        } else {
            Some(Box::new(parts.join("\n")))
        }
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.0.src.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.0.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.0.labels.iter().cloned()))
        }
    }
}

/// Where a range of a file's text lands for display.
pub(crate) struct Place<'a> {
    pub name: String,
    pub text: &'a str,
    pub span: SourceSpan,
    pub location: Location,
}

/// A text errors point into (a state file, `super::render::Source`): where
/// a byte range of it lands, as rendered or as written.
pub(crate) trait Places {
    fn place(&self, range: Range<usize>) -> Place<'_>;
    fn place_original(&self, range: Range<usize>) -> Place<'_>;
}
