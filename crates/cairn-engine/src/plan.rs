//! Planning: the desired instances against the recorded state. Each address
//! gets create, update (in place), replace (a force-new property changed),
//! delete or no-op, with a property diff. The plan is data; views render it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use cairn_template::Value;
use cairn_template::value::{SECRET_TEXT, UNKNOWN_TEXT};

use crate::evaluate::{Desired, Instance, KnownAttributes};
use crate::provider::Json;
use crate::schema::ResourceSchema;
use crate::store::ResourceRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
    NoOp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertyDiff {
    pub path: String,
    /// Redacted: secrets show as `(secret)`, unknowns as `(known after apply)`.
    pub before: Option<Json>,
    pub after: Option<Json>,
    pub force_new: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceChange {
    pub address: String,
    /// The declaration's name (`web` for `web[0]`).
    pub resource: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<PropertyDiff>,
    /// The force-new properties that make this a replace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace_because: Vec<String>,
    /// Replaced because `--replace` named it (a server that is broken
    /// beyond repair), whatever its properties say.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_requested: bool,
    /// Resource names this one depends on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    pub data_holding: bool,
    pub create_before_destroy: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    pub no_op: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub deployment: String,
    /// The state's serial when planned: applying a saved plan refuses if it moved.
    pub state_serial: i64,
    pub changes: Vec<ResourceChange>,
    pub summary: Summary,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::NoOp)
    }
}

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Only these resources (names or addresses) and what they need.
    pub targets: Vec<String>,
    /// Not these resources, nor what depends on them.
    pub excludes: Vec<String>,
    /// Plan to delete everything (`destroy`).
    pub destroy: bool,
    pub allow_data_loss: bool,
    /// Addresses to replace even though nothing about them changed
    /// (`--replace web[1]`, Terraform's `-replace`).
    pub replace: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("{address} has `prevent_destroy` and this plan would {verb} it")]
    PreventDestroy { address: String, verb: &'static str },
    #[error("{address} holds data ({kind}); deleting it needs --allow-data-loss")]
    DataLoss { address: String, kind: String },
    #[error("--target/--exclude names `{0}`, which is not a resource of this template or state")]
    UnknownTarget(String),
    #[error(
        "--replace names `{address}`, which is not a resource in this deployment's state{hint}"
    )]
    UnknownReplace { address: String, hint: String },
}

/// Attributes from the state, with those of resources that will be replaced
/// or created treated as unknown (they change when the new one exists).
pub struct StateAttributes<'a> {
    records: HashMap<&'a str, &'a ResourceRecord>,
    pending: BTreeSet<String>,
}

impl<'a> StateAttributes<'a> {
    pub fn new(records: &'a [ResourceRecord]) -> StateAttributes<'a> {
        StateAttributes {
            records: records.iter().map(|r| (r.address.as_str(), r)).collect(),
            pending: BTreeSet::new(),
        }
    }
}

impl KnownAttributes for StateAttributes<'_> {
    fn attributes(&self, address: &str) -> Option<IndexMap<String, Value>> {
        if self.pending.contains(address) {
            return None;
        }
        let r = self.records.get(address)?;
        let mut m: IndexMap<String, Value> = match &r.attributes {
            Json::Object(o) => o
                .iter()
                .map(|(k, v)| (k.clone(), Value::from_json(v)))
                .collect(),
            _ => IndexMap::new(),
        };
        for (path, v) in &r.secrets {
            if let Some(name) = path.strip_prefix("attributes.") {
                m.insert(
                    name.to_string(),
                    Value::Sensitive(Box::new(Value::from_json(v))),
                );
            }
        }
        m.insert("id".into(), Value::Str(r.id.clone()));
        Some(m)
    }
}

/// Plans until stable: a replaced resource's attributes become unknown for
/// what depends on it, which can turn more updates into replaces.
pub fn plan_with(
    evaluate: &mut (
             dyn FnMut(&dyn KnownAttributes) -> Result<Desired, cairn_template::Diagnostics> + Send
         ),
    prior: &[ResourceRecord],
    state_serial: i64,
    opts: &PlanOptions,
) -> Result<(Plan, Desired), PlanFailure> {
    let mut known = StateAttributes::new(prior);
    for _ in 0..64 {
        let desired = evaluate(&known).map_err(PlanFailure::Template)?;
        let plan = plan(&desired, prior, state_serial, opts).map_err(PlanFailure::Refused)?;
        let pending: BTreeSet<String> = plan
            .changes
            .iter()
            .filter(|c| matches!(c.action, Action::Replace | Action::Create))
            .map(|c| c.address.clone())
            .collect();
        if pending.is_subset(&known.pending) {
            return Ok((plan, desired));
        }
        known.pending.extend(pending);
    }
    Err(PlanFailure::Refused(vec![]))
}

#[derive(Debug)]
pub enum PlanFailure {
    Template(cairn_template::Diagnostics),
    Refused(Vec<PlanError>),
}

/// One pass: compares desired instances with the records.
pub fn plan(
    desired: &Desired,
    prior: &[ResourceRecord],
    state_serial: i64,
    opts: &PlanOptions,
) -> Result<Plan, Vec<PlanError>> {
    let by_address: HashMap<&str, &ResourceRecord> =
        prior.iter().map(|r| (r.address.as_str(), r)).collect();
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    if !opts.destroy {
        for r in desired.resources.values() {
            for i in &r.instances {
                seen.insert(&i.address);
                let schema = i.kind.schema();
                let change = match by_address.get(i.address.as_str()) {
                    None => ResourceChange {
                        address: i.address.clone(),
                        resource: i.resource.clone(),
                        kind: i.kind.to_string(),
                        action: Action::Create,
                        id: None,
                        diff: create_diff(i),
                        replace_because: Vec::new(),
                        replace_requested: false,
                        depends_on: r.depends_on.clone(),
                        data_holding: schema.data_holding,
                        create_before_destroy: i.lifecycle.create_before_destroy,
                    },
                    Some(rec) => {
                        let (diff, replace_because) = compare(schema, i, rec);
                        let replace_requested = opts.replace.contains(&i.address);
                        let action = if !replace_because.is_empty() || replace_requested {
                            Action::Replace
                        } else if diff.is_empty() {
                            Action::NoOp
                        } else {
                            Action::Update
                        };
                        if action == Action::Replace && i.lifecycle.prevent_destroy {
                            errors.push(PlanError::PreventDestroy {
                                address: i.address.clone(),
                                verb: "replace",
                            });
                        }
                        ResourceChange {
                            address: i.address.clone(),
                            resource: i.resource.clone(),
                            kind: i.kind.to_string(),
                            action,
                            id: Some(rec.id.clone()),
                            diff,
                            replace_because,
                            replace_requested,
                            depends_on: r.depends_on.clone(),
                            data_holding: schema.data_holding,
                            create_before_destroy: i.lifecycle.create_before_destroy,
                        }
                    }
                };
                changes.push(change);
            }
        }
    }
    for rec in prior {
        if seen.contains(rec.address.as_str()) {
            continue;
        }
        changes.push(ResourceChange {
            address: rec.address.clone(),
            resource: resource_name(&rec.address).to_string(),
            kind: rec.kind.clone(),
            action: Action::Delete,
            id: Some(rec.id.clone()),
            diff: Vec::new(),
            replace_because: Vec::new(),
            replace_requested: false,
            depends_on: rec.depends_on.clone(),
            data_holding: rec.data_holding,
            create_before_destroy: false,
        });
    }
    check_replace(opts, &changes, &mut errors);
    let changes = limit(changes, opts, &mut errors);
    // The template's lifecycle wins over the record's: adding
    // `prevent_destroy` protects a resource from then on.
    let template_protects: BTreeSet<&str> = desired
        .instances()
        .filter(|i| i.lifecycle.prevent_destroy)
        .map(|i| i.address.as_str())
        .collect();
    for c in &changes {
        let destroys = matches!(c.action, Action::Delete | Action::Replace);
        if !destroys {
            continue;
        }
        let rec = by_address.get(c.address.as_str());
        let protected = template_protects.contains(c.address.as_str())
            || rec.is_some_and(|r| r.prevent_destroy);
        if c.action == Action::Delete && protected {
            errors.push(PlanError::PreventDestroy {
                address: c.address.clone(),
                verb: "delete",
            });
        }
        if c.data_holding && !opts.allow_data_loss {
            errors.push(PlanError::DataLoss {
                address: c.address.clone(),
                kind: c.kind.clone(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut summary = Summary::default();
    for c in &changes {
        match c.action {
            Action::Create => summary.create += 1,
            Action::Update => summary.update += 1,
            Action::Replace => summary.replace += 1,
            Action::Delete => summary.delete += 1,
            Action::NoOp => summary.no_op += 1,
        }
    }
    Ok(Plan {
        deployment: desired.deployment.name.clone(),
        state_serial,
        changes,
        summary,
    })
}

/// Every `--replace` address must be a recorded instance the template
/// keeps: replacing one it deletes, or one not made yet, is a mistake.
fn check_replace(opts: &PlanOptions, changes: &[ResourceChange], errors: &mut Vec<PlanError>) {
    for address in &opts.replace {
        match changes.iter().find(|c| &c.address == address) {
            Some(c) if c.action == Action::Replace => {}
            Some(c) => errors.push(PlanError::UnknownReplace {
                address: address.clone(),
                hint: match c.action {
                    Action::Create => " (it is not made yet: `cairn up` creates it)".into(),
                    _ => " (the template no longer declares it: `cairn up` deletes it)".into(),
                },
            }),
            None => {
                let instances: Vec<&str> = changes
                    .iter()
                    .filter(|c| c.resource == *address && c.id.is_some())
                    .map(|c| c.address.as_str())
                    .collect();
                errors.push(PlanError::UnknownReplace {
                    address: address.clone(),
                    hint: if instances.is_empty() {
                        " (see `cairn state list`)".into()
                    } else {
                        format!(": name one instance, {}", instances.join(", "))
                    },
                });
            }
        }
    }
}

/// `web[0]` → `web`.
pub fn resource_name(address: &str) -> &str {
    address.split('[').next().unwrap_or(address)
}

/// `--target` keeps what targets need; `--exclude` drops what depends on excluded.
fn limit(
    changes: Vec<ResourceChange>,
    opts: &PlanOptions,
    errors: &mut Vec<PlanError>,
) -> Vec<ResourceChange> {
    if opts.targets.is_empty() && opts.excludes.is_empty() {
        return changes;
    }
    let deps: HashMap<&str, &Vec<String>> = changes
        .iter()
        .map(|c| (c.resource.as_str(), &c.depends_on))
        .collect();
    let matches = |c: &ResourceChange, name: &str| c.resource == name || c.address == name;
    for name in opts.targets.iter().chain(&opts.excludes) {
        if !changes.iter().any(|c| matches(c, name)) {
            errors.push(PlanError::UnknownTarget(name.clone()));
        }
    }
    // Resources kept: the targets and, transitively, what they depend on.
    let mut keep: BTreeSet<String> = BTreeSet::new();
    let mut reached_as_dependency: BTreeSet<String> = BTreeSet::new();
    if opts.targets.is_empty() {
        keep.extend(changes.iter().map(|c| c.resource.clone()));
    } else {
        let mut stack: Vec<(String, bool)> = changes
            .iter()
            .filter(|c| opts.targets.iter().any(|t| matches(c, t)))
            .map(|c| (c.resource.clone(), false))
            .collect();
        while let Some((n, as_dependency)) = stack.pop() {
            if as_dependency {
                reached_as_dependency.insert(n.clone());
            }
            if keep.insert(n.clone())
                && let Some(d) = deps.get(n.as_str())
            {
                stack.extend(d.iter().map(|x| (x.clone(), true)));
            }
        }
    }
    // Excluding a resource excludes whatever depends on it.
    let mut excluded: BTreeSet<String> = changes
        .iter()
        .filter(|c| opts.excludes.iter().any(|e| matches(c, e)))
        .map(|c| c.resource.clone())
        .collect();
    loop {
        let more: Vec<String> = deps
            .iter()
            .filter(|(n, d)| !excluded.contains(**n) && d.iter().any(|x| excluded.contains(x)))
            .map(|(n, _)| n.to_string())
            .collect();
        if more.is_empty() {
            break;
        }
        excluded.extend(more);
    }
    // `--target web[1]` keeps only that instance of `web`, unless `web` is
    // also targeted whole or needed by another target.
    let partial = |resource: &str| {
        !opts.targets.is_empty()
            && !opts.targets.iter().any(|t| t == resource)
            && !reached_as_dependency.contains(resource)
    };
    changes
        .into_iter()
        .filter(|c| keep.contains(&c.resource) && !excluded.contains(&c.resource))
        .filter(|c| !partial(&c.resource) || opts.targets.contains(&c.address))
        .collect()
}

fn redact(v: &Value) -> Json {
    v.to_json_redacted()
}

fn create_diff(i: &Instance) -> Vec<PropertyDiff> {
    i.properties
        .iter()
        .filter(|(_, v)| !matches!(v, Value::Null))
        .map(|(k, v)| PropertyDiff {
            path: k.clone(),
            before: None,
            after: Some(redact(v)),
            force_new: false,
        })
        .collect()
}

/// The prior value of a property, secrets included.
fn prior_property(rec: &ResourceRecord, name: &str) -> (Option<Json>, bool) {
    if let Some(v) = rec.secrets.get(&format!("properties.{name}")) {
        return (Some(v.clone()), true);
    }
    (rec.properties.get(name).cloned(), false)
}

/// The property diff and the force-new properties that changed.
fn compare(
    schema: &ResourceSchema,
    i: &Instance,
    rec: &ResourceRecord,
) -> (Vec<PropertyDiff>, Vec<String>) {
    let mut diff = Vec::new();
    let mut replace = Vec::new();
    for (name, desired) in &i.properties {
        if i.lifecycle.ignore_changes.iter().any(|p| p == name) {
            continue;
        }
        let (before, secret_before) = prior_property(rec, name);
        let changed = match desired.to_json_revealed() {
            None => true,
            Some(after) => before.as_ref().unwrap_or(&Json::Null) != &after,
        };
        if !changed {
            continue;
        }
        let force_new = schema.property(name).is_some_and(|p| p.force_new);
        if force_new {
            replace.push(name.clone());
        }
        let shown_before = before.map(|b| {
            if secret_before {
                Json::String(SECRET_TEXT.into())
            } else {
                b
            }
        });
        diff.push(PropertyDiff {
            path: name.clone(),
            before: shown_before,
            after: Some(redact(desired)),
            force_new,
        });
    }
    if !i.lifecycle.ignore_changes.iter().any(|p| p == "tags") {
        let desired_tags: BTreeMap<String, String> = i
            .tags
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str()
                        .map_or_else(|| UNKNOWN_TEXT.to_string(), str::to_string),
                )
            })
            .collect();
        if desired_tags != rec.tags {
            diff.push(PropertyDiff {
                path: "tags".into(),
                before: Some(serde_json::to_value(&rec.tags).unwrap_or_default()),
                after: Some(serde_json::to_value(&desired_tags).unwrap_or_default()),
                force_new: false,
            });
        }
    }
    (diff, replace)
}
