//! A state file: read, rendered, its includes followed, its states
//! resolved and ordered.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::error::{Location, StateError, StateErrorKind};
use super::render::{RenderContext, Source};
use super::resolved::State;
use super::{order, parse, render};

/// A state file rendered for one host, its states checked and ordered.
#[derive(Debug, Clone)]
pub struct StateFile {
    /// In file order (included files first, in the order included).
    pub(super) states: Vec<State>,
    /// Run order, as indices into `states`.
    pub(super) order: Vec<usize>,
    /// The file and what it includes; `State::file` indexes this.
    pub(super) sources: Vec<Source>,
}

impl StateFile {
    /// Reads and parses a state file (see [`StateFile::parse`]).
    pub fn load(path: &Path, ctx: &RenderContext) -> Result<StateFile, StateError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| StateError::read(&name, e))?;
        StateFile::parse(path, &text, ctx)
    }

    /// Renders `source` (the text of `path`) for one host, reads its states
    /// and those of the files it includes (read from disk, relative to
    /// `path`), resolves requisites and orders the states.
    pub fn parse(path: &Path, source: &str, ctx: &RenderContext) -> Result<StateFile, StateError> {
        let mut sources = Vec::new();
        let mut raw = Vec::new();
        let mut seen = HashSet::new();
        seen.insert(normal(path));
        let root = Source::render(
            path.display().to_string(),
            path.to_path_buf(),
            source.to_string(),
            ctx,
        )?;
        read_tree(root, ctx, &mut seen, &mut sources, &mut raw)?;
        let states = parse::resolve(&sources, &raw)?;
        let order = order::order(&sources, &states)?;
        Ok(StateFile {
            states,
            order,
            sources,
        })
    }

    /// The states in the order they run.
    pub fn states(&self) -> impl Iterator<Item = &State> {
        self.order.iter().map(|&i| &self.states[i])
    }

    pub fn get(&self, id: &str) -> Option<&State> {
        self.states.iter().find(|s| s.id == id)
    }

    /// Where a state's id is written.
    pub fn location(&self, id: &str) -> Option<Location> {
        let s = self.get(id)?;
        Some(self.sources[s.file].place(s.id_span.clone()).location)
    }

    /// Whether the Jinja of any file read (the state file and what it
    /// includes) may look at the host's facts. When none does, the file
    /// renders the same with or without them, includes and all, so a
    /// caller can skip reading them.
    pub fn uses_facts(&self) -> bool {
        // `debug()` prints the whole context, facts included.
        const NAMES: &[&str] = &["facts", "grains", "debug"];
        self.sources
            .iter()
            .any(|s| render::may_use(&s.name, &s.original, NAMES))
    }

    /// Every file read, the state file first.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.sources.iter().map(|s| s.path.as_path())
    }
}

/// Parses `source` and, depth first, what it includes; an included file's
/// states come before the including file's, as they are usually what it
/// builds on. A file included twice is read once (Salt does the same).
fn read_tree(
    source: Source,
    ctx: &RenderContext,
    seen: &mut HashSet<PathBuf>,
    sources: &mut Vec<Source>,
    raw: &mut Vec<parse::RawState>,
) -> Result<(), StateError> {
    let file = sources.len();
    sources.push(source);
    let parsed = parse::parse_file(file, &sources[file])?;
    let dir = sources[file]
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for (include, span) in parsed.includes {
        let path = dir.join(&include);
        if !seen.insert(normal(&path)) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            StateError::at(
                StateErrorKind::Read,
                format!("cannot read included {}: {e}", path.display()),
                &sources[file],
                span.clone(),
                "included here",
            )
        })?;
        let included = Source::render(path.display().to_string(), path, text, ctx)?;
        read_tree(included, ctx, seen, sources, raw)?;
    }
    raw.extend(parsed.states);
    Ok(())
}

/// A path without `.` and `a/..` parts, so one file included by two names
/// is read once (without touching the filesystem, which may not have it).
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}
