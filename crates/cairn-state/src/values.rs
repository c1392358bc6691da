//! Values kept per deployment: generated secret parameters
//! (`generated_secrets`, each value sealed on its own row) and the outputs
//! as last applied (`outputs`: public JSON in clear, secret ones sealed).

use std::collections::BTreeMap;

use cairn_engine::store::StoreResult;
use rusqlite::{Connection, OptionalExtension, params};

use crate::columns::{from_json, to_json};
use crate::error::Context;
use crate::resources::ensure_deployment;
use crate::seal::{Row, Sealer};

pub(crate) fn generated_secrets(
    conn: &Connection,
    sealer: &Sealer,
    deployment: &str,
) -> StoreResult<BTreeMap<String, String>> {
    const WHAT: &str = "reading generated secrets";
    let mut stmt = conn
        .prepare_cached("SELECT name, value FROM generated_secrets WHERE deployment = ?1")
        .ctx(WHAT)?;
    let mut rows = stmt.query([deployment]).ctx(WHAT)?;
    let mut out = BTreeMap::new();
    while let Some(row) = rows.next().ctx(WHAT)? {
        let name: String = row.get(0).ctx(WHAT)?;
        let blob: Vec<u8> = row.get(1).ctx(WHAT)?;
        let value: String = sealer.open_json(
            Row::Generated {
                deployment,
                name: &name,
            },
            &blob,
        )?;
        out.insert(name, value);
    }
    Ok(out)
}

pub(crate) fn put_generated_secret(
    conn: &Connection,
    sealer: &Sealer,
    deployment: &str,
    name: &str,
    value: &str,
) -> StoreResult<()> {
    ensure_deployment(conn, deployment)?;
    let blob = sealer.seal_json(Row::Generated { deployment, name }, value)?;
    conn.execute(
        "INSERT OR REPLACE INTO generated_secrets (deployment, name, value) VALUES (?1, ?2, ?3)",
        params![deployment, name, blob],
    )
    .ctx("writing a generated secret")?;
    Ok(())
}

pub(crate) fn put_outputs(
    conn: &Connection,
    sealer: &Sealer,
    deployment: &str,
    public: &serde_json::Value,
    secrets: &BTreeMap<String, serde_json::Value>,
) -> StoreResult<()> {
    ensure_deployment(conn, deployment)?;
    let blob = sealer.seal_json(Row::Outputs { deployment }, secrets)?;
    conn.execute(
        "INSERT OR REPLACE INTO outputs (deployment, public, secrets) VALUES (?1, ?2, ?3)",
        params![deployment, to_json(public, "public outputs")?, blob],
    )
    .ctx("writing outputs")?;
    Ok(())
}

pub(crate) fn has_outputs(conn: &Connection, deployment: &str) -> StoreResult<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM outputs WHERE deployment = ?1)",
        [deployment],
        |row| row.get(0),
    )
    .ctx("reading outputs")
}

/// A deployment that never had outputs has `null` and no secrets.
pub(crate) fn outputs(
    conn: &Connection,
    sealer: &Sealer,
    deployment: &str,
) -> StoreResult<(serde_json::Value, BTreeMap<String, serde_json::Value>)> {
    let row: Option<(String, Vec<u8>)> = conn
        .query_row(
            "SELECT public, secrets FROM outputs WHERE deployment = ?1",
            [deployment],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .ctx("reading outputs")?;
    match row {
        None => Ok((serde_json::Value::Null, BTreeMap::new())),
        Some((public, blob)) => Ok((
            from_json(&public, "public outputs")?,
            sealer.open_json(Row::Outputs { deployment }, &blob)?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use cairn_engine::store::StateStore;
    use serde_json::json;

    use super::*;
    use crate::{KeySource, SqliteStore};

    fn store() -> SqliteStore {
        SqliteStore::open_in_memory(KeySource::Bytes([7; 32])).unwrap()
    }

    #[test]
    fn generated_secrets_per_deployment() {
        let s = store();
        assert!(s.generated_secrets("prod").unwrap().is_empty());
        s.put_generated_secret("prod", "db_password", "p1").unwrap();
        s.put_generated_secret("prod", "api_key", "k1").unwrap();
        s.put_generated_secret("staging", "db_password", "p2")
            .unwrap();
        s.put_generated_secret("prod", "api_key", "k2").unwrap();
        assert_eq!(
            s.generated_secrets("prod").unwrap(),
            BTreeMap::from([
                ("api_key".into(), "k2".into()),
                ("db_password".into(), "p1".into())
            ])
        );
    }

    #[test]
    fn outputs_replace_the_previous_ones() {
        let s = store();
        assert_eq!(s.outputs("prod").unwrap(), (json!(null), BTreeMap::new()));
        let secrets = BTreeMap::from([("token".into(), json!({"v": "t"}))]);
        s.put_outputs("prod", &json!({"url": "a"}), &secrets)
            .unwrap();
        s.put_outputs("prod", &json!({"url": "b"}), &BTreeMap::new())
            .unwrap();
        assert_eq!(
            s.outputs("prod").unwrap(),
            (json!({"url": "b"}), BTreeMap::new())
        );
    }
}
