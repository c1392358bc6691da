//! A deployment's servers as hosts: every `server` record in the state.
//!
//! - name: its `name` property, else its address in the deployment
//!   (`web[0]`);
//! - address: `attributes.address` (where its neighbours reach it),
//!   public address: `attributes.public_ip`, host key: `attributes.host_key`;
//! - groups: the resource's name (`web` for `web[0]`), the deployment and
//!   the environment;
//! - tags: the record's tags, with `role` (the resource's name, unless a
//!   tag says otherwise), `deployment` and `env`;
//! - variables: `cairn_deployment`, `cairn_env`, `cairn_resource`,
//!   `cairn_id`, and `cairn_public_address` / `cairn_host_key` when known,
//!   so that Ansible sees them too;
//! - private key: its key pair's, when cairn made it (kept out of every
//!   output).

use cairn_engine::store::{ResourceRecord, StateStore};
use serde_json::{Value as J, json};

use super::error::InventoryError;
use super::host::{Host, PrivateKey};
use super::merge::Inventory;

/// The hosts of one deployment's state.
pub fn from_store(
    store: &dyn StateStore,
    deployment: &str,
    env: &str,
) -> Result<Inventory, InventoryError> {
    let records = store
        .resources(deployment)
        .map_err(|e| InventoryError::State {
            deployment: deployment.to_string(),
            message: e.to_string(),
        })?;
    Ok(from_records(deployment, env, &records))
}

pub fn from_records(deployment: &str, env: &str, records: &[ResourceRecord]) -> Inventory {
    let mut inv = Inventory::new();
    for r in records.iter().filter(|r| r.kind == "server") {
        let mut h = host(deployment, env, r);
        h.private_key = key_pair_of(r, records);
        inv.add_host(h);
    }
    inv
}

/// The private key of the key pair a server names (`key_pair:` holds the
/// key pair's id), when cairn made that key pair (an imported one has
/// no private key in the state).
fn key_pair_of(server: &ResourceRecord, records: &[ResourceRecord]) -> Option<PrivateKey> {
    let id = server.properties.get("key_pair")?.as_str()?;
    let pair = records
        .iter()
        .find(|r| r.kind == "key_pair" && r.id == id)?;
    // The store keeps secrets apart from the attributes.
    pair.secrets
        .get("attributes.private_key")
        .or_else(|| pair.attributes.get("private_key"))?
        .as_str()
        .filter(|k| !k.is_empty())
        .map(|k| PrivateKey(k.to_string()))
}

/// `web[0]` → `web`, `sites["blog"]` → `sites`.
pub fn resource_name(address: &str) -> &str {
    address.split('[').next().unwrap_or(address)
}

fn host(deployment: &str, env: &str, r: &ResourceRecord) -> Host {
    let resource = resource_name(&r.address);
    let name = r
        .properties
        .get("name")
        .and_then(J::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(&r.address);
    let attr = |k: &str| {
        r.attributes
            .get(k)
            .and_then(J::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let mut h = Host::new(name);
    h.address = attr("address");
    h.public_address = attr("public_ip");
    h.host_key = attr("host_key");
    for g in [resource, deployment, env] {
        if !h.groups.iter().any(|x| x == g) {
            h.groups.push(g.to_string());
        }
    }
    h.tags.insert("role".into(), json!(resource));
    for (k, v) in &r.tags {
        h.tags.insert(k.clone(), json!(v));
    }
    h.tags.insert("deployment".into(), json!(deployment));
    h.tags.insert("env".into(), json!(env));
    h.vars.insert("cairn_deployment".into(), json!(deployment));
    h.vars.insert("cairn_env".into(), json!(env));
    h.vars.insert("cairn_resource".into(), json!(r.address));
    h.vars.insert("cairn_id".into(), json!(r.id));
    if let Some(p) = &h.public_address {
        h.vars.insert("cairn_public_address".into(), json!(p));
    }
    if let Some(k) = &h.host_key {
        h.vars.insert("cairn_host_key".into(), json!(k));
    }
    h.vars
        .insert("cairn_tags".into(), J::Object(h.tags.clone()));
    h.sources.push(format!("deployment:{deployment}"));
    h
}
