//! `validate`: load, type-check, resolve the graph, and summarize.

use indexmap::IndexMap;
use serde::Serialize;

use cairn_template::Diagnostics;
use cairn_template::loader::Loaded;

use crate::evaluate::{Desired, NoAttributes, evaluate};

/// The result of a successful validation, as printed by `cairn validate`.
#[derive(Debug, Serialize)]
pub struct Validation {
    pub valid: bool,
    pub template: String,
    pub deployment: String,
    pub environment: String,
    pub target: String,
    pub parameters: serde_json::Value,
    pub resources: usize,
    pub instances: usize,
    pub types: IndexMap<String, usize>,
    pub outputs: Vec<String>,
}

pub fn validate(loaded: &Loaded) -> Result<(Validation, Desired), Diagnostics> {
    let desired = evaluate(loaded, &NoAttributes)?;
    let mut types: IndexMap<String, usize> = IndexMap::new();
    for i in desired.instances() {
        *types.entry(i.kind.to_string()).or_default() += 1;
    }
    types.sort_keys();
    let v = Validation {
        valid: true,
        template: loaded.sources.get(loaded.template.file).name.clone(),
        deployment: loaded.deployment.name.clone(),
        environment: loaded.env.name.clone(),
        target: loaded.env.target.clone(),
        parameters: loaded.params.redacted(),
        resources: desired.resources.len(),
        instances: desired.instances().count(),
        types,
        outputs: desired.outputs.keys().cloned().collect(),
    };
    Ok((v, desired))
}
