//! What evaluation yields: the desired resources, their instances and the
//! outputs, and what it is told about instances the target already has.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Serialize;

use cairn_template::Value;
use cairn_template::expr::NameLookup;
use cairn_template::loader::Deployment;

use crate::graph::DeclGraph;
use crate::schema::Kind;

/// How a resource expands into instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Single,
    Count,
    ForEach,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum InstanceKey {
    None,
    Index(i64),
    Key(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LifecycleValues {
    pub prevent_destroy: bool,
    pub create_before_destroy: bool,
    pub ignore_changes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    /// `web[0]`, `sites["blog"]`, or the resource name.
    pub address: String,
    pub resource: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub key: InstanceKey,
    pub properties: IndexMap<String, Value>,
    pub tags: IndexMap<String, Value>,
    pub lifecycle: LifecycleValues,
    /// Target-only fields, by target.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub target: IndexMap<String, Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DesiredResource {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub mode: Mode,
    pub data_holding: bool,
    /// Resources this one depends on, directly or through variables.
    pub depends_on: Vec<String>,
    pub instances: Vec<Instance>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputValue {
    pub value: Value,
    pub secret: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What the template asks for, fully evaluated (up to unknowns).
#[derive(Debug, Serialize)]
pub struct Desired {
    pub deployment: Deployment,
    pub variables: IndexMap<String, Value>,
    pub resources: IndexMap<String, DesiredResource>,
    pub outputs: IndexMap<String, OutputValue>,
    /// Each app's declaration, evaluated (`cairn release` reads it).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub apps: IndexMap<String, Value>,
    /// Each test's declaration, evaluated (`cairn test` reads it once the
    /// deployment is up, when its references are known).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub tests: IndexMap<String, Value>,
    #[serde(skip)]
    pub graph: DeclGraph,
    /// The names expressions saw, for evaluating more expressions later (`cairn eval`).
    #[serde(skip)]
    pub scope: Arc<dyn NameLookup>,
}

impl Desired {
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.resources.values().flat_map(|r| r.instances.iter())
    }
}

/// Attributes the target already reported for instances (from the state).
/// During `validate` there are none, and every computed attribute is unknown.
pub trait KnownAttributes {
    fn attributes(&self, address: &str) -> Option<IndexMap<String, Value>>;
}

pub struct NoAttributes;

impl KnownAttributes for NoAttributes {
    fn attributes(&self, _: &str) -> Option<IndexMap<String, Value>> {
        None
    }
}
