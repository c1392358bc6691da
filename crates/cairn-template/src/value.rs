//! Values after evaluation. Like JSON, plus two marks that Terraform users
//! know: `Unknown` (known only after apply) and `Sensitive` (never printed).

use indexmap::IndexMap;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

pub const UNKNOWN_TEXT: &str = "(known after apply)";
pub const SECRET_TEXT: &str = "(secret)";

#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Map(IndexMap<String, Value>),
    /// Known only after apply: an id, an address, or anything derived from one.
    Unknown,
    /// A value derived from a secret; shown as `(secret)`.
    Sensitive(Box<Value>),
}

impl Value {
    pub fn from_json(j: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s.clone()),
            J::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            J::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// The plain value with secrets revealed, for handing to a provider.
    /// None when any part is still unknown.
    pub fn to_json_revealed(&self) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        Some(match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::List(l) => J::Array(
                l.iter()
                    .map(Value::to_json_revealed)
                    .collect::<Option<_>>()?,
            ),
            Value::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| Some((k.clone(), v.to_json_revealed()?)))
                    .collect::<Option<_>>()?,
            ),
            Value::Unknown => return None,
            Value::Sensitive(v) => return v.to_json_revealed(),
        })
    }

    /// The value as shown to people: unknowns and secrets replaced by text.
    pub fn to_json_redacted(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    pub fn is_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::List(l) => l.iter().all(Value::is_known),
            Value::Map(m) => m.values().all(Value::is_known),
            Value::Sensitive(v) => v.is_known(),
            _ => true,
        }
    }

    pub fn is_sensitive(&self) -> bool {
        match self {
            Value::Sensitive(_) => true,
            Value::List(l) => l.iter().any(Value::is_sensitive),
            Value::Map(m) => m.values().any(Value::is_sensitive),
            _ => false,
        }
    }

    /// Drops the sensitive mark at the top (the value itself stays).
    pub fn unmarked(&self) -> &Value {
        match self {
            Value::Sensitive(v) => v.unmarked(),
            v => v,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a map",
            Value::Unknown => "a value known only after apply",
            Value::Sensitive(v) => v.type_name(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self.unmarked() {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.unmarked() {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.unmarked() {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(v) => s.serialize_str(v),
            Value::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for v in l {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Value::Unknown => s.serialize_str(UNKNOWN_TEXT),
            Value::Sensitive(_) => s.serialize_str(SECRET_TEXT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_serialize() {
        let v = Value::Map(IndexMap::from([
            (
                "a".to_string(),
                Value::Sensitive(Box::new(Value::Str("hunter2".into()))),
            ),
            ("b".to_string(), Value::Unknown),
        ]));
        let text = serde_json::to_string(&v).unwrap();
        assert!(!text.contains("hunter2"));
        assert_eq!(text, r#"{"a":"(secret)","b":"(known after apply)"}"#);
        assert!(!v.is_known());
        assert!(v.is_sensitive());
        assert_eq!(v.to_json_revealed(), None);
    }

    #[test]
    fn revealed_json_unwraps_secrets() {
        let v = Value::List(vec![Value::Sensitive(Box::new(Value::Int(3)))]);
        assert_eq!(v.to_json_revealed(), Some(serde_json::json!([3])));
    }
}
