//! What an evaluation carries: the names expressions see (filled in as the
//! graph is walked) and the diagnostics so far.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use minijinja::value::Value as Mj;

use cairn_template::diagnostic::Diagnostics;
use cairn_template::expr::NameLookup;
use cairn_template::loader::Loaded;
use cairn_template::model::Template;

/// The names an expression sees; resources and variables are filled in as
/// evaluation walks the graph.
#[derive(Debug)]
pub(super) struct Names {
    pub(super) params: Mj,
    pub(super) deployment: Mj,
    /// Every variable evaluated so far, converted once per variable (not
    /// once per read: `vars.prefix` is read by every instance).
    pub(super) vars: RwLock<Mj>,
    pub(super) resources: RwLock<HashMap<String, Mj>>,
}

impl NameLookup for Names {
    fn lookup(&self, name: &str) -> Option<Mj> {
        match name {
            "params" => Some(self.params.clone()),
            "deployment" => Some(self.deployment.clone()),
            "vars" => self.vars.read().ok().map(|v| v.clone()),
            _ => self.resources.read().ok()?.get(name).cloned(),
        }
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = vec!["params".into(), "deployment".into(), "vars".into()];
        if let Ok(r) = self.resources.read() {
            v.extend(r.keys().cloned());
        }
        v
    }
}

pub(super) struct Ctx<'a> {
    pub(super) loaded: &'a Loaded,
    pub(super) template: &'a Template,
    pub(super) names: Arc<Names>,
    pub(super) d: Diagnostics,
}
