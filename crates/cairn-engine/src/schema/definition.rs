//! How a type's schema is written: its properties and their types, its
//! computed attributes, and the const constructors the tables use.

use serde::Serialize;

/// The type of a property value.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "of")]
pub enum PropType {
    String,
    Int,
    Number,
    Bool,
    /// `30s`, `2m`, `500ms`, `1h`, or a number of seconds.
    Duration,
    /// An IPv4 or IPv6 network in CIDR notation.
    Cidr,
    /// The `id` of another resource.
    Ref,
    Enum(&'static [&'static str]),
    List(&'static PropType),
    Map(&'static PropType),
    Object(&'static [Prop]),
    /// One of several shapes (a backend given as an address or a map).
    Either(&'static PropType, &'static PropType),
    Any,
}

impl PropType {
    pub fn describe(&self) -> String {
        match self {
            PropType::String => "a string".into(),
            PropType::Int => "an integer".into(),
            PropType::Number => "a number".into(),
            PropType::Bool => "true or false".into(),
            PropType::Duration => "a duration such as `30s` or `2m`".into(),
            PropType::Cidr => "a network in CIDR notation such as `10.0.0.0/16`".into(),
            PropType::Ref => "a resource id such as `{{ net.id }}`".into(),
            PropType::Enum(v) => format!(
                "one of {}",
                v.iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            PropType::List(t) => format!("a list of {}", plural(&t.describe())),
            PropType::Map(t) => format!("a map of {}", plural(&t.describe())),
            PropType::Object(_) => "a map".into(),
            PropType::Either(a, b) => format!("{} or {}", a.describe(), b.describe()),
            PropType::Any => "any value".into(),
        }
    }
}

fn plural(s: &str) -> String {
    let s = s
        .strip_prefix("an ")
        .or_else(|| s.strip_prefix("a "))
        .unwrap_or(s);
    match s {
        "true or false" => "booleans".into(),
        "map" => "maps".into(),
        _ if s.ends_with('s') || s.contains(' ') => s.to_string(),
        _ => format!("{s}s"),
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Prop {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub ty: PropType,
    pub required: bool,
    /// Default as JSON text (parsed when used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<&'static str>,
    /// Changing it replaces the resource.
    pub force_new: bool,
    /// Holds a secret: shown as `(secret)`, stored encrypted.
    pub sensitive: bool,
    /// Left unset (or at its default), the target chooses the value (a
    /// generated name, an availability zone, the default security group);
    /// what it chose is not drift.
    pub chosen: bool,
    /// Holds JSON documents (IAM policies): written as a map or as a JSON
    /// string, and kept as the map either way, so the two spellings, and
    /// what the target reports back, compare equal. On a `map` property
    /// each entry is a document.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub document: bool,
    pub description: &'static str,
}

pub(crate) const fn prop(name: &'static str, ty: PropType) -> Prop {
    Prop {
        name,
        ty,
        required: false,
        default: None,
        force_new: false,
        sensitive: false,
        chosen: false,
        document: false,
        description: "",
    }
}

impl Prop {
    pub(crate) const fn required(mut self) -> Prop {
        self.required = true;
        self
    }
    pub(crate) const fn force_new(mut self) -> Prop {
        self.force_new = true;
        self
    }
    pub(crate) const fn default(mut self, json: &'static str) -> Prop {
        self.default = Some(json);
        self
    }
    pub(crate) const fn sensitive(mut self) -> Prop {
        self.sensitive = true;
        self
    }
    pub(crate) const fn chosen(mut self) -> Prop {
        self.chosen = true;
        self
    }
    pub(crate) const fn document(mut self) -> Prop {
        self.document = true;
        self
    }
    pub(crate) const fn doc(mut self, d: &'static str) -> Prop {
        self.description = d;
        self
    }

    pub fn default_value(&self) -> Option<serde_json::Value> {
        self.default.and_then(|d| serde_json::from_str(d).ok())
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Attr {
    pub name: &'static str,
    pub sensitive: bool,
    pub description: &'static str,
}

pub(crate) const fn attr(name: &'static str, description: &'static str) -> Attr {
    Attr {
        name,
        sensitive: false,
        description,
    }
}

pub(crate) const fn secret_attr(name: &'static str, description: &'static str) -> Attr {
    Attr {
        name,
        sensitive: true,
        description,
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ResourceSchema {
    pub kind: &'static str,
    pub description: &'static str,
    pub properties: &'static [Prop],
    /// Known only after apply (every type has `id`).
    pub attributes: &'static [Attr],
    /// Deleting it loses data: needs `--allow-data-loss`.
    pub data_holding: bool,
    pub taggable: bool,
}

impl ResourceSchema {
    pub fn property(&self, name: &str) -> Option<&Prop> {
        self.properties.iter().find(|p| p.name == name)
    }

    pub fn attribute(&self, name: &str) -> Option<&Attr> {
        self.attributes.iter().find(|a| a.name == name)
    }

    pub fn property_names(&self) -> Vec<&'static str> {
        self.properties.iter().map(|p| p.name).collect()
    }

    /// Everything an expression may read from an instance of this type.
    pub fn readable_names(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.properties.iter().map(|p| p.name).collect();
        v.extend(self.attributes.iter().map(|a| a.name));
        if self.taggable && !v.contains(&"tags") {
            v.push("tags");
        }
        v
    }
}
