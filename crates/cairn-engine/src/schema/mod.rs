//! Resource type schemas: property names and types, required, defaults,
//! force-new, computed attributes, and whether a type holds data. Portable
//! types (every target implements them) live in [`portable`]; types of one
//! target (`aws.iam_role`) in a module named after it ([`aws`]). A template
//! that uses a target-specific type deploys only to that target.

use serde::Serialize;

mod aws;
pub mod balancer;
pub mod credentials;
pub mod database;
pub mod dns;
pub mod firewall;
mod kind;
pub mod limits;
pub mod network;
mod portable;
pub mod server;
pub mod storage;
pub mod typed;

pub use aws::AWS;
pub use kind::{Kind, UnknownKind};
pub use portable::PORTABLE;

/// Target-specific types, by target. A type's kind starts with its
/// target's name and a dot.
const TARGET_SPECIFIC: &[(&str, &[ResourceSchema])] = &[("aws", AWS)];

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

/// The schema of a portable type.
pub fn portable(kind: &str) -> Option<&'static ResourceSchema> {
    PORTABLE.iter().find(|s| s.kind == kind)
}

pub fn portable_kinds() -> Vec<&'static str> {
    PORTABLE.iter().map(|s| s.kind).collect()
}

/// The schema of any type this cairn knows: portable or target-specific.
/// Use this wherever "this kind's schema" is meant; [`portable`] only where
/// the portable types alone are meant.
pub fn lookup(kind: &str) -> Option<&'static ResourceSchema> {
    portable(kind).or_else(|| {
        TARGET_SPECIFIC
            .iter()
            .flat_map(|(_, schemas)| schemas.iter())
            .find(|s| s.kind == kind)
    })
}

/// The one target a target-specific type deploys to (`aws` for
/// `aws.iam_role`); `None` for a portable type or one this cairn does not know.
pub fn target_of(kind: &str) -> Option<&'static str> {
    TARGET_SPECIFIC
        .iter()
        .find(|(_, schemas)| schemas.iter().any(|s| s.kind == kind))
        .map(|(target, _)| *target)
}

/// Every target-specific type, `aws.iam_role` style.
pub fn target_kinds() -> Vec<&'static str> {
    TARGET_SPECIFIC
        .iter()
        .flat_map(|(_, schemas)| schemas.iter().map(|s| s.kind))
        .collect()
}

/// Parses a document written as a JSON string (`'{"Version": ...}'`); a
/// document must be a JSON object.
pub fn parse_document(text: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(other) => Err(format!(
            "a JSON {}, not an object",
            match other {
                serde_json::Value::Array(_) => "list",
                serde_json::Value::String(_) => "string",
                serde_json::Value::Number(_) => "number",
                serde_json::Value::Bool(_) => "boolean",
                _ => "null",
            }
        )),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// `30s` → 30_000 ms. Accepts ms, s, m, h and a bare number of seconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1000)
    };
    let n: f64 = num.trim().parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_design_type_has_a_schema_with_an_id() {
        for kind in [
            "network",
            "subnet",
            "firewall",
            "server",
            "ip_address",
            "load_balancer",
            "dns_zone",
            "dns_record",
            "database",
            "bucket",
            "secret",
            "key_pair",
            "volume",
            "snapshot",
            "image",
        ] {
            let s = portable(kind).unwrap_or_else(|| panic!("{kind} has no schema"));
            assert!(s.attribute("id").is_some(), "{kind} has no id");
            for p in s.properties {
                if let Some(d) = p.default {
                    assert!(
                        serde_json::from_str::<serde_json::Value>(d).is_ok(),
                        "{kind}.{} default",
                        p.name
                    );
                }
            }
        }
    }

    #[test]
    fn computed_attributes_match_across_targets() {
        assert!(portable("server").unwrap().attribute("address").is_some());
        assert!(
            portable("server")
                .unwrap()
                .attribute("private_ip")
                .is_some()
        );
        for a in ["address", "port", "dns_name"] {
            assert!(portable("load_balancer").unwrap().attribute(a).is_some());
        }
        for a in ["endpoint", "port"] {
            assert!(portable("database").unwrap().attribute(a).is_some());
        }
        assert!(portable("dns_record").unwrap().attribute("fqdn").is_some());
    }

    #[test]
    fn data_holding_types() {
        let holding: Vec<_> = PORTABLE
            .iter()
            .filter(|s| s.data_holding)
            .map(|s| s.kind)
            .collect();
        assert_eq!(holding, ["database", "bucket", "secret", "volume"]);
    }

    #[test]
    fn lookup_knows_portable_and_target_specific_types() {
        assert_eq!(lookup("server").map(|s| s.kind), Some("server"));
        for kind in ["aws.iam_role", "aws.iam_instance_profile"] {
            let s = lookup(kind).unwrap_or_else(|| panic!("{kind} has no schema"));
            assert_eq!(s.kind, kind);
            assert!(s.attribute("id").is_some() && s.attribute("arn").is_some());
            assert!(portable(kind).is_none(), "{kind} is not portable");
            for p in s.properties {
                if let Some(d) = p.default {
                    assert!(serde_json::from_str::<serde_json::Value>(d).is_ok());
                }
            }
        }
        assert!(lookup("aws.route_table").is_none());
        assert!(lookup("sever").is_none());
        assert_eq!(target_kinds(), ["aws.iam_role", "aws.iam_instance_profile"]);
    }

    #[test]
    fn target_of_names_the_one_target_of_a_specific_type() {
        assert_eq!(target_of("aws.iam_role"), Some("aws"));
        assert_eq!(target_of("aws.iam_instance_profile"), Some("aws"));
        assert_eq!(target_of("server"), None);
        assert_eq!(target_of("aws.nothing"), None);
        assert!(
            target_kinds()
                .iter()
                .all(|k| k.starts_with(&format!("{}.", target_of(k).unwrap())))
        );
    }

    #[test]
    fn documents_parse_to_objects_only() {
        let d = parse_document(r#"{"Version": "2012-10-17", "Statement": []}"#).unwrap();
        assert_eq!(d["Version"], "2012-10-17");
        assert_eq!(
            parse_document("[1]").unwrap_err(),
            "a JSON list, not an object"
        );
        assert!(
            parse_document("{nope")
                .unwrap_err()
                .starts_with("not JSON: ")
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("2s"), Some(2000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("1m"), Some(60_000));
        assert_eq!(parse_duration_ms("3"), Some(3000));
        assert_eq!(parse_duration_ms("x"), None);
    }
}
