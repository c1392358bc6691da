//! Environment files (`env/<name>.yaml`): the target and its settings,
//! parameter values and default tags for one environment.

use indexmap::IndexMap;
use serde::Serialize;

use crate::diagnostic::{Code, Diagnostic, Diagnostics, did_you_mean};
use crate::node::Node;
use crate::params::{Origin, ParamInput};
use crate::shape::{expect_map, expect_string, key_name, unknown_key};
use crate::source::{FileId, Span};

pub const ENV_KEYS: &[&str] = &[
    "target",
    "region",
    "deployment",
    "description",
    "parameters",
    "tags",
    "aws",
    "local",
];
pub const TARGETS: &[&str] = &["local", "aws"];
pub const DEFAULT_ENV: &str = "dev";
pub const DEFAULT_TARGET: &str = "local";

#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub name: String,
    pub target: String,
    pub region: Option<String>,
    /// Overrides the deployment name (default `<template dir>-<env>`).
    pub deployment: Option<String>,
    pub tags: IndexMap<String, String>,
    /// Target settings (`aws: {profile: ...}`), kept as JSON for the provider.
    pub settings: IndexMap<String, serde_json::Value>,
    #[serde(skip)]
    pub parameters: Vec<ParamInput>,
    #[serde(skip)]
    pub file: Option<FileId>,
    #[serde(skip)]
    pub target_span: Option<Span>,
}

impl Environment {
    /// The environment used when no file exists for it (`dev` on `local`).
    pub fn implicit(name: &str) -> Environment {
        Environment {
            name: name.to_string(),
            target: DEFAULT_TARGET.to_string(),
            region: None,
            deployment: None,
            tags: IndexMap::new(),
            settings: IndexMap::new(),
            parameters: Vec::new(),
            file: None,
            target_span: None,
        }
    }
}

pub fn parse_environment(name: &str, root: &Node) -> Result<Environment, Diagnostics> {
    let mut d = Diagnostics::default();
    let mut env = Environment::implicit(name);
    env.file = Some(root.span.file);
    let Some(entries) = expect_map(root, "an environment file", &mut d) else {
        return Err(d);
    };
    for (k, v) in entries {
        let Some(key) = key_name(k, &mut d) else {
            continue;
        };
        match key.as_str() {
            "target" => {
                if let Some(t) = expect_string(v, &mut d) {
                    if TARGETS.contains(&t.as_str()) {
                        env.target = t;
                        env.target_span = Some(v.span);
                    } else {
                        d.push(
                            Diagnostic::new(Code::Environment, format!("unknown target `{t}`"))
                                .at(v.span, "not a target cairn knows")
                                .maybe_help(did_you_mean(&t, TARGETS)),
                        );
                    }
                }
            }
            "region" => env.region = expect_string(v, &mut d),
            "deployment" => env.deployment = expect_string(v, &mut d),
            "description" => {
                expect_string(v, &mut d);
            }
            "parameters" => {
                if let Some(params) = expect_map(v, "`parameters`", &mut d) {
                    for (pk, pv) in params {
                        if let Some(pname) = key_name(pk, &mut d) {
                            env.parameters.push(ParamInput {
                                name: pname,
                                name_span: pk.span,
                                value: pv.clone(),
                                origin: Origin::EnvFile,
                            });
                        }
                    }
                }
            }
            "tags" => {
                if let Some(tags) = expect_map(v, "`tags`", &mut d) {
                    for (tk, tv) in tags {
                        if let (Some(tk), Some(tv)) =
                            (key_name(tk, &mut d), scalar_string(tv, &mut d))
                        {
                            env.tags.insert(tk, tv);
                        }
                    }
                }
            }
            "aws" | "local" => {
                if expect_map(v, "target settings", &mut d).is_some() {
                    env.settings.insert(key.clone(), v.to_json());
                }
            }
            other => d.push(unknown_key(k, other, "an environment file", ENV_KEYS)),
        }
    }
    d.into_result(env)
}

fn scalar_string(n: &Node, d: &mut Diagnostics) -> Option<String> {
    match &n.kind {
        crate::node::NodeKind::Str(s, _) => Some(s.clone()),
        crate::node::NodeKind::Int(_)
        | crate::node::NodeKind::Float(_)
        | crate::node::NodeKind::Bool(_) => Some(n.scalar_text()),
        _ => {
            d.push(crate::shape::type_error(n, "a string"));
            None
        }
    }
}
