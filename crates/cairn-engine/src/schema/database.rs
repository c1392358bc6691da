//! A `database`'s properties as one typed model, read once for every
//! target ([`typed::read`](super::typed::read)). The names it makes (the
//! database and its owner) follow the rule both targets share, so a name
//! one of them would refuse is found when the template is evaluated:
//! RDS takes 1 to 63 letters, digits and underscores starting with a
//! letter, and the local cluster makes them as PostgreSQL identifiers,
//! which the same rule keeps unquoted and unambiguous.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};

use super::typed::{self, PropError, gigabytes};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Postgres,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
        }
    }
}

/// The portable sizes; aws maps them to DB instance classes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbSize {
    Micro,
    #[default]
    Small,
    Medium,
    Large,
}

impl DbSize {
    pub const ALL: [DbSize; 4] = [DbSize::Micro, DbSize::Small, DbSize::Medium, DbSize::Large];

    pub fn as_str(self) -> &'static str {
        match self {
            DbSize::Micro => "micro",
            DbSize::Small => "small",
            DbSize::Medium => "medium",
            DbSize::Large => "large",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Database {
    /// The target's name for it; derived from the deployment when unset.
    #[serde(default)]
    pub name: Option<String>,
    pub engine: Engine,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub size: DbSize,
    #[serde(default = "ten", deserialize_with = "gigabytes")]
    pub storage_gb: u32,
    /// The database made for the owner.
    #[serde(default = "app", deserialize_with = "identifier")]
    pub database: String,
    #[serde(default = "app", deserialize_with = "identifier")]
    pub owner: String,
    pub owner_password: String,
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub firewalls: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn ten() -> u32 {
    10
}

fn app() -> String {
    "app".into()
}

/// A name the database makes: 1 to 63 ASCII letters, digits and
/// underscores, starting with a letter.
fn identifier<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let starts_with_letter = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if starts_with_letter && rest_ok && s.len() <= 63 {
        Ok(s)
    } else {
        Err(D::Error::custom(format!(
            "`{s}` is not a database name: 1 to 63 letters, digits or underscores, starting with a letter"
        )))
    }
}

impl Database {
    /// Reads a `database`'s properties (as a request carries them).
    pub fn read(props: &serde_json::Value) -> Result<Database, PropError> {
        typed::read(props)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_database_reads_with_the_schema_defaults() {
        let d = Database::read(&json!({
            "engine": "postgres", "owner_password": "pw", "size": null, "storage_gb": null,
            "database": null, "owner": null, "subnets": ["s-1", "s-2"],
        }))
        .unwrap();
        assert_eq!(
            (d.engine, d.size, d.storage_gb),
            (Engine::Postgres, DbSize::Small, 10)
        );
        assert_eq!((d.database.as_str(), d.owner.as_str()), ("app", "app"));
        assert_eq!(d.subnets, ["s-1", "s-2"]);
        for size in DbSize::ALL {
            let d = Database::read(
                &json!({"engine": "postgres", "owner_password": "pw", "size": size.as_str()}),
            )
            .unwrap();
            assert_eq!(d.size, size);
        }
    }

    #[test]
    fn a_bad_database_is_named_by_its_path() {
        let bad = |extra: serde_json::Value| {
            let mut p = json!({"engine": "postgres", "owner_password": "pw"});
            p.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            Database::read(&p).unwrap_err().to_string()
        };
        assert_eq!(
            bad(json!({"storage_gb": -5})),
            "storage_gb: -5 is not a size in gigabytes: 1 or more"
        );
        assert_eq!(
            bad(json!({"owner": "my-app"})),
            "owner: `my-app` is not a database name: 1 to 63 letters, digits or underscores, starting with a letter"
        );
        assert!(bad(json!({"database": "1st"})).starts_with("database: `1st` is not"));
        assert!(bad(json!({"database": "a".repeat(64)})).starts_with("database: `aaaa"));
        assert!(bad(json!({"size": "xlarge"})).starts_with("size: unknown variant `xlarge`"));
        assert!(bad(json!({"engine": "mysql"})).starts_with("engine: unknown variant `mysql`"));
        assert_eq!(
            Database::read(&json!({"engine": "postgres"}))
                .unwrap_err()
                .to_string(),
            "properties: missing field `owner_password`"
        );
    }
}
