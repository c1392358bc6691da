//! Resource type schemas: property names and types, required, defaults,
//! force-new, computed attributes, and whether a type holds data. Portable
//! types (every target implements them) live in [`portable`].

use serde::Serialize;

mod portable;

pub use portable::PORTABLE;

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
    pub description: &'static str,
}

impl Prop {
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
    fn durations_parse() {
        assert_eq!(parse_duration_ms("2s"), Some(2000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("1m"), Some(60_000));
        assert_eq!(parse_duration_ms("3"), Some(3000));
        assert_eq!(parse_duration_ms("x"), None);
    }
}
