//! The rendered YAML of a state file into states, as Salt's high data:
//!
//! ```yaml
//! include:
//!   - common.sls          # relative to this file
//! nginx-conf:             # the state's id
//!   file.managed:         # its one module.function
//!     - name: /etc/nginx/nginx.conf
//!     - require:
//!       - pkg: nginx      # module: id-or-name
//! nginx:
//!   pkg.installed: {}     # a plain mapping works too
//!   # `pkg: [installed]` (the function as a bare string) is the same
//! ```
//!
//! `name` defaults to the id, as in Salt, so `nginx: {pkg.installed: []}`
//! installs nginx. Requisites are taken out of the arguments; everything
//! else goes to the module untouched for it to check.

use std::collections::HashMap;
use std::ops::Range;

use cairn_template::FileId;
use cairn_template::node::{self, Node, NodeKind};
use serde_json::Value as J;

use super::error::{StateError, StateErrorKind};
use super::render::Source;
use super::resolved::{Requisite, RequisiteKind, State};
use crate::module::Args;

/// A requisite as written, before its target is looked up.
#[derive(Debug, Clone)]
pub(crate) struct RawRequisite {
    pub kind: RequisiteKind,
    /// `watch_in`: the target gets the requisite, pointing back here.
    pub reverse: bool,
    /// `pkg` in `- pkg: nginx`.
    pub module: Option<String>,
    pub target: String,
    pub span: Range<usize>,
}

/// One state as written, in one file.
#[derive(Debug, Clone)]
pub(crate) struct RawState {
    pub file: usize,
    pub id: String,
    pub id_span: Range<usize>,
    pub module: String,
    pub module_span: Range<usize>,
    pub args: Args,
    pub requisites: Vec<RawRequisite>,
}

/// A parsed file: what it includes (as written, with where) and its states.
pub(crate) struct Parsed {
    pub includes: Vec<(String, Range<usize>)>,
    pub states: Vec<RawState>,
}

fn range(n: &Node) -> Range<usize> {
    // yaml-rust2 starts a block mapping at its first `:`; people read it as
    // starting at its first key.
    let start = match &n.kind {
        NodeKind::Map(entries) => entries
            .first()
            .map_or(n.span.start, |(k, _)| k.span.start.min(n.span.start)),
        _ => n.span.start,
    };
    start as usize..n.span.end as usize
}

fn shape(source: &Source, n: &Node, message: impl Into<String>, label: &str) -> StateError {
    StateError::at(StateErrorKind::Shape, message, source, range(n), label)
}

/// Requisite keywords of Salt that cairn does not implement: refused by
/// name rather than handed to a module that would call them unknown.
const UNSUPPORTED: &[&str] = &[
    "prereq",
    "prereq_in",
    "use",
    "use_in",
    "listen",
    "listen_in",
    "require_any",
    "watch_any",
    "onfail_all",
    "onfail_stop",
    "order",
];

fn requisite_kind(key: &str) -> Option<(RequisiteKind, bool)> {
    Some(match key {
        "require" => (RequisiteKind::Require, false),
        "watch" => (RequisiteKind::Watch, false),
        // Salt's `onchanges` and `onfail` already fire on any one of their
        // targets; the `_any` spellings are the same thing.
        "onchanges" | "onchanges_any" => (RequisiteKind::Onchanges, false),
        "onfail" | "onfail_any" => (RequisiteKind::Onfail, false),
        "require_in" => (RequisiteKind::Require, true),
        "watch_in" => (RequisiteKind::Watch, true),
        "onchanges_in" => (RequisiteKind::Onchanges, true),
        "onfail_in" => (RequisiteKind::Onfail, true),
        _ => return None,
    })
}

pub(crate) fn parse_file(file: usize, source: &Source) -> Result<Parsed, StateError> {
    let doc = node::parse_yaml(FileId(file as u32), &source.rendered).map_err(|d| {
        let span = d.span().map_or(0..0, |s| s.start as usize..s.end as usize);
        let label = d.primary.as_ref().map_or("here", |l| l.text.as_str());
        let mut err = StateError::at(StateErrorKind::Syntax, &d.message, source, span, label)
            .maybe_help(d.help.clone());
        for l in &d.secondary {
            err = err.also(
                source,
                l.span.start as usize..l.span.end as usize,
                l.text.clone(),
            );
        }
        err
    })?;
    let mut parsed = Parsed {
        includes: Vec::new(),
        states: Vec::new(),
    };
    let entries = match &doc.kind {
        NodeKind::Map(entries) => entries,
        NodeKind::Null => return Ok(parsed),
        _ => {
            return Err(shape(
                source,
                &doc,
                format!(
                    "a state file is a map of state ids, not {}",
                    doc.type_name()
                ),
                "expected `ID: {MODULE.FUNCTION: [ARGS]}`",
            ));
        }
    };
    for (key, body) in entries {
        let id = key.scalar_text();
        match id.as_str() {
            "include" => parsed.includes = includes(source, body)?,
            "extend" | "exclude" => {
                return Err(shape(
                    source,
                    key,
                    format!("`{id}` is not supported in cairn state files"),
                    "not supported",
                )
                .help("edit the state where it is declared, or give this one another id"));
            }
            _ => parsed.states.push(state(file, source, key, id, body)?),
        }
    }
    Ok(parsed)
}

fn includes(source: &Source, body: &Node) -> Result<Vec<(String, Range<usize>)>, StateError> {
    let items: Vec<&Node> = match &body.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        NodeKind::Str(..) => vec![body],
        _ => {
            return Err(shape(
                source,
                body,
                format!("`include` is a list of files, not {}", body.type_name()),
                "expected `- FILE`",
            ));
        }
    };
    items
        .into_iter()
        .map(|n| match n.as_str() {
            Some(s) if !s.is_empty() => Ok((s.to_string(), range(n))),
            _ => Err(shape(
                source,
                n,
                format!("an include is a file name, not {}", n.type_name()),
                "expected a path relative to this file",
            )),
        })
        .collect()
}

fn state(
    file: usize,
    source: &Source,
    key: &Node,
    id: String,
    body: &Node,
) -> Result<RawState, StateError> {
    if matches!(key.kind, NodeKind::Seq(_) | NodeKind::Map(_)) {
        return Err(shape(source, key, "a state id is a string", "not a string"));
    }
    let entries = match &body.kind {
        NodeKind::Map(entries) if !entries.is_empty() => entries,
        NodeKind::Map(_) | NodeKind::Null => {
            return Err(shape(
                source,
                key,
                format!("state `{id}` has no module"),
                "no `module.function` under this id",
            )
            .help("e.g. `file.managed: [{name: /etc/motd}]`"));
        }
        _ => {
            return Err(shape(
                source,
                body,
                format!(
                    "state `{id}` must be a map of one `module.function` to its arguments, not {}",
                    body.type_name()
                ),
                "expected `MODULE.FUNCTION: [ARGS]`",
            ));
        }
    };
    if let [(first, _), (second, _), ..] = entries.as_slice() {
        return Err(StateError::at(
            StateErrorKind::Shape,
            format!(
                "state `{id}` has two modules, `{}` and `{}`",
                first.scalar_text(),
                second.scalar_text()
            ),
            source,
            range(second),
            "a second module",
        )
        .also(source, range(first), "the first")
        .help("one id, one module: give the second its own id (and a `require` if it needs the first)"));
    }
    let (module_key, args_node) = &entries[0];
    let mut module = module_key.scalar_text();
    let mut args = Args::new();
    let mut requisites = Vec::new();
    let mut seen: HashMap<String, Range<usize>> = HashMap::new();
    let mut arg = |k: &Node, v: &Node, args: &mut Args| -> Result<(), StateError> {
        let name = k.scalar_text();
        if let Some(first) = seen.get(&name) {
            return Err(StateError::at(
                StateErrorKind::Shape,
                format!("state `{id}` sets `{name}` twice"),
                source,
                range(k),
                "again here",
            )
            .also(source, first.clone(), "first here"));
        }
        seen.insert(name.clone(), range(k));
        if UNSUPPORTED.contains(&name.as_str()) {
            return Err(shape(
                source,
                k,
                format!("`{name}` is not supported in cairn state files"),
                "not supported",
            )
            .help(
                "the requisites are require, watch, onchanges, onfail and their `_in` forms; \
                 states run in requisite order, then file order",
            ));
        }
        match requisite_kind(&name) {
            Some((kind, reverse)) => requisites.extend(requisite_list(source, kind, reverse, v)?),
            None => {
                args.insert(name, v.to_json());
            }
        }
        Ok(())
    };
    match &args_node.kind {
        NodeKind::Null => {}
        NodeKind::Map(pairs) => {
            for (k, v) in pairs {
                arg(k, v, &mut args)?;
            }
        }
        NodeKind::Seq(items) => {
            for item in items {
                match &item.kind {
                    NodeKind::Map(pairs) if pairs.len() == 1 => {
                        arg(&pairs[0].0, &pairs[0].1, &mut args)?
                    }
                    // Salt's `pkg: [installed]`: the function as a bare word.
                    NodeKind::Str(function, _) if !module.contains('.') => {
                        module = format!("{module}.{function}");
                    }
                    _ => {
                        return Err(shape(
                            source,
                            item,
                            format!(
                                "each argument of state `{id}` is a one-key map, not {}",
                                if item.as_map().is_some() {
                                    "a map of several keys"
                                } else {
                                    item.type_name()
                                }
                            ),
                            "expected `- KEY: VALUE`",
                        ));
                    }
                }
            }
        }
        _ => {
            return Err(shape(
                source,
                args_node,
                format!(
                    "the arguments of state `{id}` are a list of `- KEY: VALUE` or a map, not {}",
                    args_node.type_name()
                ),
                "expected a list or a map",
            ));
        }
    }
    if module.is_empty() {
        return Err(shape(source, module_key, "a module name is empty", "here"));
    }
    args.entry("name").or_insert_with(|| J::String(id.clone()));
    Ok(RawState {
        file,
        id,
        id_span: range(key),
        module,
        module_span: range(module_key),
        args,
        requisites,
    })
}

fn requisite_list(
    source: &Source,
    kind: RequisiteKind,
    reverse: bool,
    value: &Node,
) -> Result<Vec<RawRequisite>, StateError> {
    // One target may stand alone; Salt wants a list, but nothing is lost
    // by reading `require: nginx` as the list it obviously means.
    let items: Vec<&Node> = match &value.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        _ => vec![value],
    };
    items
        .into_iter()
        .map(|item| match &item.kind {
            NodeKind::Map(pairs) if pairs.len() == 1 => {
                let (m, t) = &pairs[0];
                match &t.kind {
                    NodeKind::Seq(_) | NodeKind::Map(_) | NodeKind::Null => Err(shape(
                        source,
                        t,
                        format!("a requisite target is a state id, not {}", t.type_name()),
                        "expected an id or a name",
                    )),
                    _ => Ok(RawRequisite {
                        kind,
                        reverse,
                        module: Some(m.scalar_text()),
                        target: t.scalar_text(),
                        span: range(item),
                    }),
                }
            }
            NodeKind::Str(..) | NodeKind::Int(_) | NodeKind::Bool(_) | NodeKind::Float(_) => {
                Ok(RawRequisite {
                    kind,
                    reverse,
                    module: None,
                    target: item.scalar_text(),
                    span: range(item),
                })
            }
            _ => Err(shape(
                source,
                item,
                format!(
                    "a requisite is `- MODULE: ID` or `- ID`, not {}",
                    item.type_name()
                ),
                "expected `- MODULE: ID` or `- ID`",
            )),
        })
        .collect()
}

/// Looks every requisite up and gives each state the requisites that point
/// from it (the `_in` forms land on their target).
pub(crate) fn resolve(sources: &[Source], raw: &[RawState]) -> Result<Vec<State>, StateError> {
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (i, s) in raw.iter().enumerate() {
        if let Some(&first) = by_id.get(s.id.as_str()) {
            let f = &raw[first];
            return Err(StateError::at(
                StateErrorKind::DuplicateId,
                format!("two states have the id `{}`", s.id),
                &sources[s.file],
                s.id_span.clone(),
                "again here",
            )
            .also(&sources[f.file], f.id_span.clone(), "first here")
            .help("ids are one namespace across included files"));
        }
        by_id.insert(&s.id, i);
    }
    let mut states: Vec<State> = raw
        .iter()
        .map(|s| State {
            id: s.id.clone(),
            module: s.module.clone(),
            args: s.args.clone(),
            requisites: Vec::new(),
            file: s.file,
            id_span: s.id_span.clone(),
            module_span: s.module_span.clone(),
        })
        .collect();
    for (from, s) in raw.iter().enumerate() {
        for r in &s.requisites {
            for to in targets(sources, raw, &by_id, s, r)? {
                let (owner, target) = if r.reverse { (to, from) } else { (from, to) };
                states[owner].requisites.push(Requisite {
                    kind: r.kind,
                    target: raw[target].id.clone(),
                    index: target,
                    file: s.file,
                    span: r.span.clone(),
                });
            }
        }
    }
    Ok(states)
}

/// Salt's matching: `- pkg: nginx` is the `pkg` state whose id is nginx,
/// else every `pkg` state whose `name` is nginx.
fn targets(
    sources: &[Source],
    raw: &[RawState],
    by_id: &HashMap<&str, usize>,
    from: &RawState,
    r: &RawRequisite,
) -> Result<Vec<usize>, StateError> {
    let module_of = |s: &RawState| s.module.split('.').next().unwrap_or("").to_string();
    let fits = |s: &RawState| r.module.as_ref().is_none_or(|m| *m == module_of(s));
    if let Some(&i) = by_id.get(r.target.as_str())
        && fits(&raw[i])
    {
        return Ok(vec![i]);
    }
    let by_name: Vec<usize> = raw
        .iter()
        .enumerate()
        .filter(|(_, s)| fits(s) && s.args.get("name").and_then(J::as_str) == Some(&r.target))
        .map(|(i, _)| i)
        .collect();
    if !by_name.is_empty() {
        return Ok(by_name);
    }
    let wanted = match &r.module {
        Some(m) => format!("`{m}: {}`", r.target),
        None => format!("`{}`", r.target),
    };
    let help = match by_id.get(r.target.as_str()) {
        Some(&i) => Some(format!(
            "`{}` is a `{}` state, not a `{}` one",
            r.target,
            raw[i].module,
            r.module.as_deref().unwrap_or_default()
        )),
        None => {
            let ids: Vec<&str> = raw.iter().map(|s| s.id.as_str()).collect();
            cairn_template::diagnostic::suggest(&r.target, ids.iter().copied())
                .map(|s| format!("did you mean `{s}`?"))
        }
    };
    Err(StateError::at(
        StateErrorKind::UnknownRequisite,
        format!("state `{}` names {wanted}, which is no state", from.id),
        &sources[from.file],
        r.span.clone(),
        "no state with this id or name",
    )
    .maybe_help(help))
}
