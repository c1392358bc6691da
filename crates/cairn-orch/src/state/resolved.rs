//! The states of a file once rendered and resolved, and their requisites.

use std::ops::Range;

use serde::Serialize;

use crate::module::Args;

/// How a state depends on another (see [`apply`](mod@super::apply) for what each does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequisiteKind {
    Require,
    Watch,
    Onchanges,
    Onfail,
}

/// A dependency of one state on another, `_in` forms already turned around.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requisite {
    pub kind: RequisiteKind,
    /// The id of the state depended on.
    pub target: String,
    #[serde(skip)]
    pub(super) index: usize,
    /// Where it is written (for `watch_in`, in the other state).
    #[serde(skip)]
    pub(super) file: usize,
    #[serde(skip)]
    pub(super) span: Range<usize>,
}

/// One state, rendered and resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct State {
    pub id: String,
    /// As written: `file.managed`, `cmd.run`, or a bare `cmd`.
    pub module: String,
    /// Everything but requisites; `name` defaults to the id.
    pub args: Args,
    pub requisites: Vec<Requisite>,
    #[serde(skip)]
    pub(super) file: usize,
    #[serde(skip)]
    pub(super) id_span: Range<usize>,
    #[serde(skip)]
    pub(super) module_span: Range<usize>,
}
