//! Reading a resource's properties into the typed model of its kind (see
//! [`super::balancer`]), once, the same way for every target. The
//! evaluator reads them when the template is evaluated, and puts any fault
//! at the value it names (file:line:col); the targets read them again from
//! the request they get, so neither can take a value the other refuses.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde_json::Value as Json;

/// One step into a properties value, as people write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    Key(String),
    Index(usize),
}

/// A property value that does not fit its kind's model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", path_text(.path))]
pub struct PropError {
    /// Where (`backends[1].port`); empty for the properties as a whole.
    pub path: Vec<At>,
    pub message: String,
}

impl PropError {
    pub fn path_text(&self) -> String {
        path_text(&self.path)
    }
}

fn path_text(path: &[At]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            At::Key(k) if s.is_empty() => s.push_str(k),
            At::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            At::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    if s.is_empty() {
        s.push_str("properties");
    }
    s
}

/// Reads properties (a JSON object as the engine fills them: every
/// property present, `null` where unset) into `T`. A `null` is the same as
/// an absent key: the model's default applies.
pub fn read<T: DeserializeOwned>(props: &Json) -> Result<T, PropError> {
    let cleaned = without_nulls(props);
    serde_path_to_error::deserialize(&cleaned).map_err(|e| {
        let path = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(At::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(At::Index(*index)),
                _ => None,
            })
            .collect();
        PropError {
            path,
            message: e.into_inner().to_string(),
        }
    })
}

fn without_nulls(v: &Json) -> Json {
    match v {
        Json::Object(m) => Json::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// A duration as templates write it: `30s`, `2m`, `500ms`, or a number
/// of seconds.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Seconds(f64),
        Text(String),
    }
    let ms = match Written::deserialize(d).map_err(|_| {
        D::Error::custom(
            "expected a duration such as `30s`, `2m` or `500ms`, or a number of seconds",
        )
    })? {
        Written::Seconds(s) if s.is_finite() && s >= 0.0 => (s * 1000.0).round() as u64,
        Written::Seconds(s) => {
            return Err(D::Error::custom(format!(
                "{s} is not a duration: a number of seconds is 0 or more"
            )));
        }
        Written::Text(t) => super::parse::parse_duration_ms(&t).ok_or_else(|| {
            D::Error::custom(format!(
                "`{t}` is not a duration such as `30s`, `2m` or `500ms`"
            ))
        })?,
    };
    Ok(Duration::from_millis(ms))
}

/// A TCP or UDP port, 1 to 65535.
pub(crate) fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let n =
        i64::deserialize(d).map_err(|_| D::Error::custom("expected a port number (1 to 65535)"))?;
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| D::Error::custom(format!("{n} is not a port number (1 to 65535)")))
}

/// A number of consecutive checks, 1 or more.
pub(crate) fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = i64::deserialize(d).map_err(|_| D::Error::custom("expected a count (1 or more)"))?;
    u32::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| D::Error::custom(format!("{n} is not a count: 1 or more")))
}

/// A backend's share of the traffic, 0 (none) or more.
pub(crate) fn weight<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = i64::deserialize(d).map_err(|_| D::Error::custom("expected a weight (0 or more)"))?;
    u32::try_from(n)
        .map_err(|_| D::Error::custom(format!("{n} is not a weight: 0 (no traffic) or more")))
}

/// An IPv4 block written as `10.20.0.0/16`.
pub(crate) fn cidr<'de, D: Deserializer<'de>>(d: D) -> Result<ipnet::Ipv4Net, D::Error> {
    let s = String::deserialize(d)?;
    s.parse()
        .map_err(|_| D::Error::custom(format!("`{s}` is not an IPv4 block such as 10.20.0.0/16")))
}

/// A size in whole gigabytes, 1 or more.
pub(crate) fn gigabytes<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = i64::deserialize(d).map_err(|_| D::Error::custom("expected gigabytes (1 or more)"))?;
    u32::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| D::Error::custom(format!("{n} is not a size in gigabytes: 1 or more")))
}

/// A DNS TTL: whole seconds, 0 or more.
pub(crate) fn ttl<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = i64::deserialize(d).map_err(|_| D::Error::custom("expected a TTL in seconds"))?;
    u32::try_from(n)
        .map_err(|_| D::Error::custom(format!("{n} is not a TTL: whole seconds, 0 or more")))
}

/// As [`port`], for an optional one.
pub(crate) fn some_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    port(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        #[serde(deserialize_with = "duration", default)]
        every: Duration,
        #[serde(deserialize_with = "port")]
        port: u16,
        #[serde(default)]
        names: Vec<String>,
    }

    #[test]
    fn nulls_are_unset_and_durations_read_as_templates_write_them() {
        let p: Probe = read(&json!({"every": "1m", "port": 80, "names": null})).unwrap();
        assert_eq!(
            p,
            Probe {
                every: Duration::from_secs(60),
                port: 80,
                names: vec![]
            }
        );
        let p: Probe = read(&json!({"every": 1.5, "port": 443})).unwrap();
        assert_eq!(p.every, Duration::from_millis(1500));
    }

    #[test]
    fn a_fault_names_its_path_and_what_is_wanted() {
        let e = read::<Probe>(&json!({"every": "soon", "port": 80})).unwrap_err();
        assert_eq!(e.path, [At::Key("every".into())]);
        assert_eq!(
            e.to_string(),
            "every: `soon` is not a duration such as `30s`, `2m` or `500ms`"
        );
        let e = read::<Probe>(&json!({"port": 70000})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "port: 70000 is not a port number (1 to 65535)"
        );
        let e = read::<Probe>(&json!({"port": "http"})).unwrap_err();
        assert_eq!(e.to_string(), "port: expected a port number (1 to 65535)");
        let e = read::<Probe>(&json!({"every": -1, "port": 1})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "every: -1 is not a duration: a number of seconds is 0 or more"
        );
        let e = read::<Probe>(&json!({"port": 1, "names": ["a", 2]})).unwrap_err();
        assert_eq!(e.path_text(), "names[1]");
        let e = read::<Probe>(&json!({})).unwrap_err();
        assert_eq!(e.to_string(), "properties: missing field `port`");
    }
}
