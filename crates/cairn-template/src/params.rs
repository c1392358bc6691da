//! Parameters: declarations, and the values that reach them from defaults,
//! the environment file, `--param-file`, `-p k=v` and `CAIRN_PARAM_<NAME>`, in
//! rising priority. A secret value is never echoed in any message.

use std::collections::HashMap;

use indexmap::IndexMap;
use regex::Regex;
use serde::Serialize;

use crate::diagnostic::{Code, Diagnostic, Diagnostics, did_you_mean};
use crate::node::{Node, NodeKind};
use crate::shape::{Name, expect_map, expect_string, key_name, type_error, unknown_key};
use crate::source::Span;
use crate::value::Value;

pub const PARAM_KEYS: &[&str] = &[
    "type",
    "default",
    "allowed",
    "min",
    "max",
    "min_length",
    "max_length",
    "pattern",
    "description",
    "generate",
];
pub const PARAM_TYPES: &[&str] = &["string", "int", "number", "bool", "list", "map", "secret"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Int,
    Number,
    Bool,
    List,
    Map,
    Secret,
}

impl ParamType {
    fn parse(s: &str) -> Option<ParamType> {
        Some(match s {
            "string" => ParamType::String,
            "int" => ParamType::Int,
            "number" => ParamType::Number,
            "bool" => ParamType::Bool,
            "list" => ParamType::List,
            "map" => ParamType::Map,
            "secret" => ParamType::Secret,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        PARAM_TYPES[self as usize]
    }

    fn expected(self) -> &'static str {
        match self {
            ParamType::String | ParamType::Secret => "a string",
            ParamType::Int => "an integer",
            ParamType::Number => "a number",
            ParamType::Bool => "true or false",
            ParamType::List => "a list",
            ParamType::Map => "a map",
        }
    }

    /// Whether a value given on the command line is taken as text as it is
    /// (rather than parsed as YAML).
    pub fn is_textual(self) -> bool {
        matches!(self, ParamType::String | ParamType::Secret)
    }
}

#[derive(Debug, Clone)]
pub struct Generate {
    pub length: usize,
    pub special: bool,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct ParamDecl {
    pub name: Name,
    pub ty: ParamType,
    pub default: Option<Node>,
    pub allowed: Option<Node>,
    pub min: Option<(f64, Span)>,
    pub max: Option<(f64, Span)>,
    pub min_length: Option<(usize, Span)>,
    pub max_length: Option<(usize, Span)>,
    pub pattern: Option<(Regex, Span)>,
    pub description: Option<String>,
    pub generate: Option<Generate>,
}

impl PartialEq for ParamDecl {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.ty == other.ty && self.default == other.default
    }
}

pub(crate) fn parse_param_decl(name: Name, node: &Node, d: &mut Diagnostics) -> Option<ParamDecl> {
    let entries = expect_map(node, "a parameter declaration", d)?;
    let mut ty: Option<ParamType> = None;
    let mut p = ParamDecl {
        name: name.clone(),
        ty: ParamType::String,
        default: None,
        allowed: None,
        min: None,
        max: None,
        min_length: None,
        max_length: None,
        pattern: None,
        description: None,
        generate: None,
    };
    let before = d.len();
    for (k, v) in entries {
        let Some(key) = key_name(k, d) else { continue };
        match key.as_str() {
            "type" => {
                if let Some(s) = expect_string(v, d) {
                    match ParamType::parse(&s) {
                        Some(t) => ty = Some(t),
                        None => d.push(
                            Diagnostic::new(Code::Type, format!("unknown parameter type `{s}`"))
                                .at(v.span, "not a parameter type")
                                .maybe_help(did_you_mean(&s, PARAM_TYPES)),
                        ),
                    }
                }
            }
            "default" => p.default = Some(v.clone()),
            "allowed" => match v.kind {
                NodeKind::Seq(_) => p.allowed = Some(v.clone()),
                _ => d.push(type_error(v, "a list of allowed values")),
            },
            "min" | "max" => {
                let n = match v.kind {
                    NodeKind::Int(i) => Some(i as f64),
                    NodeKind::Float(f) => Some(f),
                    _ => {
                        d.push(type_error(v, "a number"));
                        None
                    }
                };
                if let Some(n) = n {
                    if key == "min" {
                        p.min = Some((n, v.span));
                    } else {
                        p.max = Some((n, v.span));
                    }
                }
            }
            "min_length" | "max_length" => match v.kind {
                NodeKind::Int(i) if i >= 0 => {
                    if key == "min_length" {
                        p.min_length = Some((i as usize, v.span));
                    } else {
                        p.max_length = Some((i as usize, v.span));
                    }
                }
                _ => d.push(type_error(v, "a non-negative integer")),
            },
            "pattern" => {
                if let Some(s) = expect_string(v, d) {
                    match Regex::new(&format!("^(?:{s})$")) {
                        Ok(re) => p.pattern = Some((re, v.span)),
                        Err(e) => d.push(
                            Diagnostic::new(Code::Type, "invalid regular expression").at(
                                v.span,
                                e.to_string()
                                    .lines()
                                    .last()
                                    .unwrap_or("invalid")
                                    .to_string(),
                            ),
                        ),
                    }
                }
            }
            "description" => p.description = expect_string(v, d),
            "generate" => {
                if let Some(g) = expect_map(v, "`generate`", d) {
                    let mut length = 0usize;
                    let mut special = false;
                    for (gk, gv) in g {
                        match (gk.key_str(), &gv.kind) {
                            (Some("length"), NodeKind::Int(n)) if (8..=4096).contains(n) => {
                                length = *n as usize
                            }
                            (Some("length"), _) => {
                                d.push(type_error(gv, "an integer from 8 to 4096"))
                            }
                            (Some("special"), NodeKind::Bool(b)) => special = *b,
                            (Some("special"), _) => d.push(type_error(gv, "true or false")),
                            _ => d.push(unknown_key(
                                gk,
                                &gk.scalar_text(),
                                "`generate`",
                                &["length", "special"],
                            )),
                        }
                    }
                    if length == 0 && g.iter().all(|(k, _)| k.key_str() != Some("length")) {
                        length = 32;
                    }
                    p.generate = Some(Generate {
                        length,
                        special,
                        span: v.span,
                    });
                }
            }
            other => d.push(unknown_key(k, other, "a parameter declaration", PARAM_KEYS)),
        }
    }
    p.ty = match ty {
        Some(t) => t,
        None => {
            d.push(
                Diagnostic::new(
                    Code::MissingKey,
                    format!("parameter `{}` has no `type`", name.text),
                )
                .at(name.span, "this parameter")
                .help(format!(
                    "add `type:` with one of {}",
                    PARAM_TYPES.join(", ")
                )),
            );
            ParamType::String
        }
    };
    if let Some(g) = &p.generate
        && p.ty != ParamType::Secret
    {
        d.push(
            Diagnostic::new(Code::Type, "only secret parameters can be generated")
                .at(g.span, "`generate` here")
                .help("declare the parameter with `type: secret`"),
        );
    }
    (d.len() == before).then_some(p)
}

/// Where a parameter's value came from, lowest priority first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Default,
    Generated,
    EnvFile,
    ParamFile,
    CommandLine,
    Environment,
}

/// A value given from outside the template for a parameter.
#[derive(Debug, Clone)]
pub struct ParamInput {
    pub name: String,
    pub name_span: Span,
    pub value: Node,
    pub origin: Origin,
}

#[derive(Debug, Clone, Default)]
pub struct ResolvedParams {
    pub values: IndexMap<String, Value>,
    pub origins: IndexMap<String, Origin>,
    /// Secret parameters with `generate` that still need a value; the engine
    /// creates and stores them at the first deployment.
    pub to_generate: Vec<String>,
}

impl ResolvedParams {
    /// Values as shown to people: secrets redacted.
    pub fn redacted(&self) -> serde_json::Value {
        serde_json::to_value(&self.values).unwrap_or_default()
    }
}

/// Resolves every declared parameter. `inputs` are in rising priority (a later
/// input for the same name wins); `generated` holds secrets created earlier.
pub fn resolve<'n>(
    decls: &'n IndexMap<String, ParamDecl>,
    inputs: &[ParamInput],
    generated: &HashMap<String, String>,
    eval_default: &mut dyn FnMut(&'n Node) -> Result<Value, Diagnostic>,
) -> Result<ResolvedParams, Diagnostics> {
    let mut d = Diagnostics::default();
    let names: Vec<&str> = decls.keys().map(String::as_str).collect();
    for input in inputs {
        if !decls.contains_key(&input.name) {
            d.push(
                Diagnostic::new(
                    Code::UnknownParameter,
                    format!("unknown parameter `{}`", input.name),
                )
                .at(input.name_span, "the template declares no such parameter")
                .maybe_help(did_you_mean(&input.name, &names)),
            );
        }
    }
    let mut out = ResolvedParams::default();
    for (name, decl) in decls {
        let given = inputs.iter().rev().find(|i| &i.name == name);
        let (value, span, origin) = match given {
            Some(input) => (node_value(&input.value), input.value.span, input.origin),
            None => match (&decl.default, generated.get(name)) {
                (_, Some(secret)) => {
                    out.values.insert(
                        name.clone(),
                        Value::Sensitive(Box::new(Value::Str(secret.clone()))),
                    );
                    out.origins.insert(name.clone(), Origin::Generated);
                    continue;
                }
                (Some(default), None) => match eval_default(default) {
                    Ok(v) => (v, default.span, Origin::Default),
                    Err(e) => {
                        d.push(e);
                        continue;
                    }
                },
                (None, None) if decl.generate.is_some() => {
                    out.values
                        .insert(name.clone(), Value::Sensitive(Box::new(Value::Unknown)));
                    out.origins.insert(name.clone(), Origin::Generated);
                    out.to_generate.push(name.clone());
                    continue;
                }
                (None, None) => {
                    let env_name = format!("CAIRN_PARAM_{}", name.to_uppercase());
                    d.push(
                        Diagnostic::new(Code::MissingParameter, format!("parameter `{name}` has no value"))
                            .at(decl.name.span, "declared here without a default")
                            .help(format!(
                                "give it with `-p {name}=...`, under `parameters:` in the environment file, or in ${env_name}"
                            )),
                    );
                    continue;
                }
            },
        };
        match check(decl, value, span) {
            Ok(v) => {
                out.values.insert(name.clone(), v);
                out.origins.insert(name.clone(), origin);
            }
            Err(e) => d.push(e),
        }
    }
    d.into_result(out)
}

fn node_value(n: &Node) -> Value {
    Value::from_json(&n.to_json())
}

/// Checks a value against a declaration's type and constraints.
pub fn check(decl: &ParamDecl, value: Value, span: Span) -> Result<Value, Diagnostic> {
    let name = &decl.name.text;
    let secret = decl.ty == ParamType::Secret;
    if !value.is_known() {
        return Ok(if secret {
            Value::Sensitive(Box::new(value))
        } else {
            value
        });
    }
    let plain = value.unmarked().clone();
    let type_ok = matches!(
        (decl.ty, &plain),
        (ParamType::String | ParamType::Secret, Value::Str(_))
            | (ParamType::Int, Value::Int(_))
            | (ParamType::Number, Value::Int(_) | Value::Float(_))
            | (ParamType::Bool, Value::Bool(_))
            | (ParamType::List, Value::List(_))
            | (ParamType::Map, Value::Map(_))
    );
    let fail = |msg: String, label: String| {
        Diagnostic::new(Code::Constraint, msg)
            .at(span, label)
            .also(decl.name.span, "parameter declared here")
    };
    if !type_ok {
        let mut e = fail(
            format!(
                "parameter `{name}` expects {}, found {}",
                decl.ty.expected(),
                plain.type_name()
            ),
            format!("expected {}", decl.ty.expected()),
        );
        e.code = Code::Type;
        return Err(e);
    }
    if let Some(allowed) = &decl.allowed {
        let list: Vec<serde_json::Value> = allowed
            .as_seq()
            .unwrap_or_default()
            .iter()
            .map(Node::to_json)
            .collect();
        let j = plain.to_json_revealed().unwrap_or_default();
        if !list.contains(&j) {
            let shown: Vec<String> = list.iter().map(|v| v.to_string()).collect();
            let got = if secret {
                String::new()
            } else {
                format!(" {j}")
            };
            return Err(fail(
                format!("value{got} is not allowed for parameter `{name}`"),
                "not one of the allowed values".into(),
            )
            .also(allowed.span, "allowed values")
            .help(format!("allowed: {}", shown.join(", "))));
        }
    }
    let number = match &plain {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    if let Some(n) = number {
        if let Some((min, mspan)) = decl.min
            && n < min
        {
            return Err(fail(
                format!("parameter `{name}` must be at least {min}, got {n}"),
                format!("less than {min}"),
            )
            .also(mspan, "minimum"));
        }
        if let Some((max, mspan)) = decl.max
            && n > max
        {
            return Err(fail(
                format!("parameter `{name}` must be at most {max}, got {n}"),
                format!("more than {max}"),
            )
            .also(mspan, "maximum"));
        }
    }
    let length = match &plain {
        Value::Str(s) => Some(s.chars().count()),
        Value::List(l) => Some(l.len()),
        Value::Map(m) => Some(m.len()),
        _ => None,
    };
    if let Some(len) = length {
        if let Some((min, mspan)) = decl.min_length
            && len < min
        {
            return Err(fail(
                format!("parameter `{name}` must have a length of at least {min}, got {len}"),
                "too short".into(),
            )
            .also(mspan, "minimum length"));
        }
        if let Some((max, mspan)) = decl.max_length
            && len > max
        {
            return Err(fail(
                format!("parameter `{name}` must have a length of at most {max}, got {len}"),
                "too long".into(),
            )
            .also(mspan, "maximum length"));
        }
    }
    if let (Some((re, pspan)), Value::Str(s)) = (&decl.pattern, &plain)
        && !re.is_match(s)
    {
        let pat = re
            .as_str()
            .trim_start_matches("^(?:")
            .trim_end_matches(")$");
        return Err(fail(
            format!("parameter `{name}` does not match the pattern `{pat}`"),
            "does not match".into(),
        )
        .also(*pspan, "pattern"));
    }
    Ok(if secret {
        Value::Sensitive(Box::new(plain))
    } else {
        plain
    })
}
