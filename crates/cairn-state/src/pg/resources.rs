//! `deployments` and `resources` on PostgreSQL (see `crate::resources`).

use cairn_engine::store::{ResourceRecord, StoreResult};

use super::connection::{Tx, col};
use crate::columns::{from_json, to_json};
use crate::seal::{Row, Sealer};

pub(crate) fn ensure_deployment(tx: &mut Tx<'_>, name: &str) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO deployments (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        &[&name],
        "recording the deployment",
    )?;
    Ok(())
}

/// Creates the deployment's row if needed and locks it until the end of
/// the transaction: what must not interleave per deployment (a lease's
/// read-then-write, a run's serial) takes this first. READ COMMITTED: the
/// statements after it see what the previous holder committed.
pub(crate) fn lock_deployment(tx: &mut Tx<'_>, name: &str) -> StoreResult<()> {
    ensure_deployment(tx, name)?;
    tx.query(
        "SELECT 1 FROM deployments WHERE name = $1 FOR UPDATE",
        &[&name],
        "locking the deployment",
    )?;
    Ok(())
}

fn bump_serial(tx: &mut Tx<'_>, deployment: &str) -> StoreResult<()> {
    tx.execute(
        "UPDATE deployments SET serial = serial + 1 WHERE name = $1",
        &[&deployment],
        "moving the deployment's serial",
    )?;
    Ok(())
}

pub(crate) fn list(
    tx: &mut Tx<'_>,
    sealer: &Sealer,
    deployment: &str,
) -> StoreResult<Vec<ResourceRecord>> {
    const WHAT: &str = "reading resources";
    let rows = tx.query(
        "SELECT address, type, id, properties, attributes, secrets, tags, depends_on,
                data_holding, prevent_destroy, create_before_destroy
         FROM resources WHERE deployment = $1 ORDER BY address COLLATE \"C\"",
        &[&deployment],
        WHAT,
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let address: String = col(row, 0, WHAT)?;
        let secrets = sealer.open_json(
            Row::Resource {
                deployment,
                address: &address,
            },
            col::<&[u8]>(row, 5, WHAT)?,
        )?;
        out.push(ResourceRecord {
            kind: col(row, 1, WHAT)?,
            id: col(row, 2, WHAT)?,
            properties: from_json(col(row, 3, WHAT)?, "resource properties")?,
            attributes: from_json(col(row, 4, WHAT)?, "resource attributes")?,
            secrets,
            tags: from_json(col(row, 6, WHAT)?, "resource tags")?,
            depends_on: from_json(col(row, 7, WHAT)?, "resource depends_on")?,
            data_holding: col(row, 8, WHAT)?,
            prevent_destroy: col(row, 9, WHAT)?,
            create_before_destroy: col(row, 10, WHAT)?,
            address,
        });
    }
    Ok(out)
}

pub(crate) fn put(
    tx: &mut Tx<'_>,
    sealer: &Sealer,
    deployment: &str,
    r: &ResourceRecord,
) -> StoreResult<()> {
    ensure_deployment(tx, deployment)?;
    let secrets = sealer.seal_json(
        Row::Resource {
            deployment,
            address: &r.address,
        },
        &r.secrets,
    )?;
    tx.execute(
        "INSERT INTO resources
             (deployment, address, type, id, properties, attributes, secrets, tags, depends_on,
              data_holding, prevent_destroy, create_before_destroy)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (deployment, address) DO UPDATE SET
             type = EXCLUDED.type, id = EXCLUDED.id, properties = EXCLUDED.properties,
             attributes = EXCLUDED.attributes, secrets = EXCLUDED.secrets, tags = EXCLUDED.tags,
             depends_on = EXCLUDED.depends_on, data_holding = EXCLUDED.data_holding,
             prevent_destroy = EXCLUDED.prevent_destroy,
             create_before_destroy = EXCLUDED.create_before_destroy",
        &[
            &deployment,
            &r.address,
            &r.kind,
            &r.id,
            &to_json(&r.properties, "resource properties")?,
            &to_json(&r.attributes, "resource attributes")?,
            &secrets,
            &to_json(&r.tags, "resource tags")?,
            &to_json(&r.depends_on, "resource depends_on")?,
            &r.data_holding,
            &r.prevent_destroy,
            &r.create_before_destroy,
        ],
        "writing the resource",
    )?;
    bump_serial(tx, deployment)
}

pub(crate) fn delete(tx: &mut Tx<'_>, deployment: &str, address: &str) -> StoreResult<()> {
    let deleted = tx.execute(
        "DELETE FROM resources WHERE deployment = $1 AND address = $2",
        &[&deployment, &address],
        "deleting the resource",
    )?;
    if deleted > 0 {
        bump_serial(tx, deployment)?;
    }
    Ok(())
}

pub(crate) fn serial(tx: &mut Tx<'_>, deployment: &str) -> StoreResult<i64> {
    const WHAT: &str = "reading the serial";
    match tx.query_opt(
        "SELECT serial FROM deployments WHERE name = $1",
        &[&deployment],
        WHAT,
    )? {
        Some(row) => col(&row, 0, WHAT),
        None => Ok(0),
    }
}

pub(crate) fn set_serial(tx: &mut Tx<'_>, deployment: &str, serial: i64) -> StoreResult<()> {
    tx.execute(
        "UPDATE deployments SET serial = $2 WHERE name = $1",
        &[&deployment, &serial],
        "setting the deployment's serial",
    )?;
    Ok(())
}

/// Deployments that hold resources, history or outputs (as in SQLite).
pub(crate) fn deployments(tx: &mut Tx<'_>) -> StoreResult<Vec<String>> {
    const WHAT: &str = "listing deployments";
    tx.query(
        "SELECT name FROM deployments AS d
         WHERE EXISTS (SELECT 1 FROM resources WHERE deployment = d.name)
            OR EXISTS (SELECT 1 FROM runs WHERE deployment = d.name)
            OR EXISTS (SELECT 1 FROM outputs WHERE deployment = d.name)
         ORDER BY name COLLATE \"C\"",
        &[],
        WHAT,
    )?
    .iter()
    .map(|row| col(row, 0, WHAT))
    .collect()
}

/// Removes everything of `deployment` (for `state migrate --force`).
pub(crate) fn delete_deployment(tx: &mut Tx<'_>, deployment: &str) -> StoreResult<()> {
    for table in [
        "resources",
        "leases",
        "journal",
        "runs",
        "generated_secrets",
        "outputs",
    ] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE deployment = $1"),
            &[&deployment],
            "removing the deployment",
        )?;
    }
    tx.execute(
        "DELETE FROM deployments WHERE name = $1",
        &[&deployment],
        "removing the deployment",
    )?;
    Ok(())
}

/// Whether the database has a row for `deployment` (`crate::transfer`).
pub(crate) fn holds(tx: &mut Tx<'_>, deployment: &str) -> StoreResult<bool> {
    const WHAT: &str = "looking for a deployment";
    let row = tx.query_one(
        "SELECT EXISTS (SELECT 1 FROM deployments WHERE name = $1)",
        &[&deployment],
        WHAT,
    )?;
    col(&row, 0, WHAT)
}
