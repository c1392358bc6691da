//! `generated_secrets` and `outputs` on PostgreSQL (see `crate::values`):
//! each secret sealed before it is sent.

use std::collections::BTreeMap;

use cairn_engine::store::StoreResult;

use super::connection::{Tx, col};
use super::resources::ensure_deployment;
use crate::columns::{from_json, to_json};
use crate::seal::{Row, Sealer};

pub(crate) fn generated_secrets(
    tx: &mut Tx<'_>,
    sealer: &Sealer,
    deployment: &str,
) -> StoreResult<BTreeMap<String, String>> {
    const WHAT: &str = "reading generated secrets";
    let rows = tx.query(
        "SELECT name, value FROM generated_secrets WHERE deployment = $1",
        &[&deployment],
        WHAT,
    )?;
    let mut out = BTreeMap::new();
    for row in &rows {
        let name: String = col(row, 0, WHAT)?;
        let value: String = sealer.open_json(
            Row::Generated {
                deployment,
                name: &name,
            },
            col::<&[u8]>(row, 1, WHAT)?,
        )?;
        out.insert(name, value);
    }
    Ok(out)
}

pub(crate) fn put_generated_secret(
    tx: &mut Tx<'_>,
    sealer: &Sealer,
    deployment: &str,
    name: &str,
    value: &str,
) -> StoreResult<()> {
    ensure_deployment(tx, deployment)?;
    let blob = sealer.seal_json(Row::Generated { deployment, name }, value)?;
    tx.execute(
        "INSERT INTO generated_secrets (deployment, name, value) VALUES ($1, $2, $3)
         ON CONFLICT (deployment, name) DO UPDATE SET value = EXCLUDED.value",
        &[&deployment, &name, &blob],
        "writing a generated secret",
    )?;
    Ok(())
}

pub(crate) fn put_outputs(
    tx: &mut Tx<'_>,
    sealer: &Sealer,
    deployment: &str,
    public: &serde_json::Value,
    secrets: &BTreeMap<String, serde_json::Value>,
) -> StoreResult<()> {
    ensure_deployment(tx, deployment)?;
    let blob = sealer.seal_json(Row::Outputs { deployment }, secrets)?;
    tx.execute(
        "INSERT INTO outputs (deployment, public, secrets) VALUES ($1, $2, $3)
         ON CONFLICT (deployment) DO UPDATE SET public = EXCLUDED.public, secrets = EXCLUDED.secrets",
        &[&deployment, &to_json(public, "public outputs")?, &blob],
        "writing outputs",
    )?;
    Ok(())
}

/// `None` when the deployment never had outputs.
pub(crate) fn stored_outputs(
    tx: &mut Tx<'_>,
    sealer: &Sealer,
    deployment: &str,
) -> StoreResult<Option<(serde_json::Value, BTreeMap<String, serde_json::Value>)>> {
    const WHAT: &str = "reading outputs";
    let Some(row) = tx.query_opt(
        "SELECT public, secrets FROM outputs WHERE deployment = $1",
        &[&deployment],
        WHAT,
    )?
    else {
        return Ok(None);
    };
    Ok(Some((
        from_json(col(&row, 0, WHAT)?, "public outputs")?,
        sealer.open_json(Row::Outputs { deployment }, col::<&[u8]>(&row, 1, WHAT)?)?,
    )))
}

pub(crate) fn outputs(
    tx: &mut Tx<'_>,
    sealer: &Sealer,
    deployment: &str,
) -> StoreResult<(serde_json::Value, BTreeMap<String, serde_json::Value>)> {
    Ok(stored_outputs(tx, sealer, deployment)?
        .unwrap_or((serde_json::Value::Null, BTreeMap::new())))
}
