//! The `deployments` and `resources` tables: each deployment's resources
//! as last applied, and the serial that moves with every change to them.

use cairn_engine::store::{ResourceRecord, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};

use crate::columns::{from_json, to_json};
use crate::error::Context;
use crate::seal::{Row, Sealer};

/// Makes sure `name` has a row, which the other tables reference.
pub(crate) fn ensure_deployment(conn: &Connection, name: &str) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO deployments (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
        [name],
    )
    .ctx("recording the deployment")?;
    Ok(())
}

fn bump_serial(conn: &Connection, deployment: &str) -> StoreResult<()> {
    conn.execute(
        "UPDATE deployments SET serial = serial + 1 WHERE name = ?1",
        [deployment],
    )
    .ctx("moving the deployment's serial")?;
    Ok(())
}

pub(crate) fn list(
    conn: &Connection,
    sealer: &Sealer,
    deployment: &str,
) -> StoreResult<Vec<ResourceRecord>> {
    const WHAT: &str = "reading resources";
    let mut stmt = conn
        .prepare_cached(
            "SELECT address, type, id, properties, attributes, secrets, tags, depends_on,
                    data_holding, prevent_destroy, create_before_destroy
             FROM resources WHERE deployment = ?1 ORDER BY address",
        )
        .ctx(WHAT)?;
    let mut rows = stmt.query([deployment]).ctx(WHAT)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().ctx(WHAT)? {
        let address: String = row.get(0).ctx(WHAT)?;
        let secrets: Vec<u8> = row.get(5).ctx(WHAT)?;
        let secrets = sealer.open_json(
            Row::Resource {
                deployment,
                address: &address,
            },
            &secrets,
        )?;
        out.push(ResourceRecord {
            kind: row.get(1).ctx(WHAT)?,
            id: row.get(2).ctx(WHAT)?,
            properties: from_json(&row.get::<_, String>(3).ctx(WHAT)?, "resource properties")?,
            attributes: from_json(&row.get::<_, String>(4).ctx(WHAT)?, "resource attributes")?,
            secrets,
            tags: from_json(&row.get::<_, String>(6).ctx(WHAT)?, "resource tags")?,
            depends_on: from_json(&row.get::<_, String>(7).ctx(WHAT)?, "resource depends_on")?,
            data_holding: row.get(8).ctx(WHAT)?,
            prevent_destroy: row.get(9).ctx(WHAT)?,
            create_before_destroy: row.get(10).ctx(WHAT)?,
            address,
        });
    }
    Ok(out)
}

pub(crate) fn put(
    conn: &Connection,
    sealer: &Sealer,
    deployment: &str,
    r: &ResourceRecord,
) -> StoreResult<()> {
    ensure_deployment(conn, deployment)?;
    let secrets = sealer.seal_json(
        Row::Resource {
            deployment,
            address: &r.address,
        },
        &r.secrets,
    )?;
    conn.execute(
        "INSERT OR REPLACE INTO resources
             (deployment, address, type, id, properties, attributes, secrets, tags, depends_on,
              data_holding, prevent_destroy, create_before_destroy)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            deployment,
            r.address,
            r.kind,
            r.id,
            to_json(&r.properties, "resource properties")?,
            to_json(&r.attributes, "resource attributes")?,
            secrets,
            to_json(&r.tags, "resource tags")?,
            to_json(&r.depends_on, "resource depends_on")?,
            r.data_holding,
            r.prevent_destroy,
            r.create_before_destroy,
        ],
    )
    .ctx("writing the resource")?;
    bump_serial(conn, deployment)
}

/// Deleting an address the state does not hold changes nothing, so it
/// leaves the serial (a saved plan stays valid).
pub(crate) fn delete(conn: &Connection, deployment: &str, address: &str) -> StoreResult<()> {
    let deleted = conn
        .execute(
            "DELETE FROM resources WHERE deployment = ?1 AND address = ?2",
            [deployment, address],
        )
        .ctx("deleting the resource")?;
    if deleted > 0 {
        bump_serial(conn, deployment)?;
    }
    Ok(())
}

pub(crate) fn set_serial(conn: &Connection, deployment: &str, serial: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE deployments SET serial = ?2 WHERE name = ?1",
        params![deployment, serial],
    )
    .ctx("setting the deployment's serial")?;
    Ok(())
}

/// Removes everything of `deployment` (for `state migrate --force`).
pub(crate) fn delete_deployment(conn: &Connection, deployment: &str) -> StoreResult<()> {
    for table in [
        "resources",
        "leases",
        "journal",
        "runs",
        "generated_secrets",
        "outputs",
    ] {
        conn.execute(
            &format!("DELETE FROM {table} WHERE deployment = ?1"),
            [deployment],
        )
        .ctx("removing the deployment")?;
    }
    conn.execute("DELETE FROM deployments WHERE name = ?1", [deployment])
        .ctx("removing the deployment")?;
    Ok(())
}

pub(crate) fn serial(conn: &Connection, deployment: &str) -> StoreResult<i64> {
    let serial = conn
        .query_row(
            "SELECT serial FROM deployments WHERE name = ?1",
            [deployment],
            |row| row.get(0),
        )
        .optional()
        .ctx("reading the serial")?;
    Ok(serial.unwrap_or(0))
}

/// Deployments that hold something to show: resources, history or outputs.
/// A lease alone, or a journal alone, does not make one.
pub(crate) fn deployments(conn: &Connection) -> StoreResult<Vec<String>> {
    const WHAT: &str = "listing deployments";
    let mut stmt = conn
        .prepare_cached(
            "SELECT name FROM deployments AS d
             WHERE EXISTS (SELECT 1 FROM resources WHERE deployment = d.name)
                OR EXISTS (SELECT 1 FROM runs WHERE deployment = d.name)
                OR EXISTS (SELECT 1 FROM outputs WHERE deployment = d.name)
             ORDER BY name",
        )
        .ctx(WHAT)?;
    stmt.query_map([], |row| row.get(0))
        .ctx(WHAT)?
        .collect::<Result<_, _>>()
        .ctx(WHAT)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cairn_engine::store::StateStore;
    use serde_json::json;

    use super::*;
    use crate::{KeySource, SqliteStore};

    fn store() -> SqliteStore {
        SqliteStore::open_in_memory(KeySource::Bytes([7; 32])).unwrap()
    }

    fn record(address: &str) -> ResourceRecord {
        ResourceRecord {
            address: address.into(),
            kind: "server".into(),
            id: format!("i-{address}"),
            properties: json!({"size": "small", "z": 1, "a": [true, null]}),
            attributes: json!({"ip": "10.0.0.1"}),
            secrets: BTreeMap::from([("attributes.password".into(), json!("pw"))]),
            tags: BTreeMap::from([("cairn:resource".into(), address.into())]),
            depends_on: vec!["net".into()],
            data_holding: true,
            prevent_destroy: false,
            create_before_destroy: true,
        }
    }

    #[test]
    fn lists_resources_by_address_per_deployment() {
        let s = store();
        for address in ["web[1]", "db", "web[0]"] {
            s.put_resource("prod", &record(address)).unwrap();
        }
        s.put_resource("staging", &record("other")).unwrap();
        let listed = s.resources("prod").unwrap();
        let addresses: Vec<_> = listed.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(addresses, ["db", "web[0]", "web[1]"]);
        assert_eq!(listed[0], record("db"));
        assert!(s.resources("nowhere").unwrap().is_empty());
    }

    #[test]
    fn put_replaces_and_delete_removes() {
        let s = store();
        s.put_resource("prod", &record("db")).unwrap();
        let mut changed = record("db");
        changed.id = "i-new".into();
        changed.secrets.clear();
        changed.data_holding = false;
        s.put_resource("prod", &changed).unwrap();
        assert_eq!(s.resources("prod").unwrap(), [changed]);
        s.delete_resource("prod", "db").unwrap();
        assert!(s.resources("prod").unwrap().is_empty());
    }

    #[test]
    fn the_serial_moves_on_every_change_only() {
        let s = store();
        assert_eq!(s.serial("prod").unwrap(), 0);
        s.put_resource("prod", &record("a")).unwrap();
        assert_eq!(s.serial("prod").unwrap(), 1);
        s.put_resource("prod", &record("a")).unwrap();
        s.put_resource("prod", &record("b")).unwrap();
        assert_eq!(s.serial("prod").unwrap(), 3);
        s.delete_resource("prod", "a").unwrap();
        assert_eq!(s.serial("prod").unwrap(), 4);
        s.delete_resource("prod", "a").unwrap();
        assert_eq!(s.serial("prod").unwrap(), 4, "deleting nothing moved it");
        assert_eq!(s.serial("staging").unwrap(), 0);
    }
}
