//! What the local cloud holds, in memory. It is recorded row by row in
//! `cloud.db` (see `record`), so a restart (or a crash of the daemon)
//! brings back every resource at the same address; `load` and `save` read
//! and write the single JSON document earlier cairns kept instead.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalResource {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub deployment: String,
    /// The cairn address it was made for (`web[0]`).
    pub address: String,
    /// The idempotency token of the create that made it.
    pub token: String,
    pub properties: Json,
    pub attributes: Json,
    pub tags: BTreeMap<String, String>,
    /// The loopback address it owns, if any.
    pub ip: Option<Ipv4Addr>,
    /// Properties that hold or derive from a secret in this template (the
    /// engine says which), sealed on disk like the schema's own secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
}

/// An address block a create under way has claimed.
#[derive(Debug, Clone)]
pub struct ReservedBlock {
    /// `network` or `subnet`.
    pub kind: &'static str,
    /// Where blocks must not overlap: the deployment of a network, the
    /// network id of a subnet.
    pub scope: String,
    pub cidr: ipnet::IpNet,
    /// The address of the resource being made, for the error.
    pub address: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CloudState {
    /// The second octet of this cloud's addresses (127.P.0.0/16), chosen
    /// when the cloud is first made and kept so that restarts keep addresses.
    #[serde(default)]
    pub pool: Option<u8>,
    pub next_id: u64,
    pub resources: BTreeMap<String, LocalResource>,
    /// Addresses handed out to creates still under way: parallel creates
    /// must not get the same one before either is recorded.
    #[serde(skip)]
    pub reserved: BTreeMap<Ipv4Addr, String>,
    /// The same for servers' addresses inside their subnets.
    #[serde(skip)]
    pub reserved_private: BTreeMap<String, String>,
    /// The same for networks' and subnets' address blocks, by the id of
    /// the create: two parallel creates must not both pass the overlap
    /// check before either is recorded.
    #[serde(skip)]
    pub reserved_blocks: BTreeMap<String, ReservedBlock>,
    /// On disk only: each resource's sensitive values, sealed (see
    /// `seal`). Empty in memory, where the values are back in place.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sealed: BTreeMap<String, String>,
}

impl CloudState {
    pub fn load(path: &Path) -> Result<CloudState, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| format!("{} is damaged: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CloudState::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// The JSON document as an earlier cairn wrote it (tests of the
    /// migration make one).
    #[cfg(test)]
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            f.write_all(&text)
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
    }

    /// Ends the reservations a create made (it is recorded or it failed).
    pub fn release(&mut self, id: &str) {
        self.reserved.retain(|_, owner| owner != id);
        self.reserved_private.retain(|_, owner| owner != id);
        self.reserved_blocks.remove(id);
    }

    pub fn new_id(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("{}-{:05}", kind.replace('_', "-"), self.next_id)
    }

    pub fn by_token(&self, token: &str) -> Option<&LocalResource> {
        self.resources.values().find(|r| r.token == token)
    }

    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a LocalResource> + 'a {
        self.resources.values().filter(move |r| r.kind == kind)
    }

    pub fn used_ips(&self) -> impl Iterator<Item = (Ipv4Addr, &LocalResource)> {
        self.resources
            .values()
            .filter_map(|r| r.ip.map(|ip| (ip, r)))
    }

    /// Every address taken: recorded or reserved.
    pub fn taken_ips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.used_ips()
            .map(|(ip, _)| ip)
            .chain(self.reserved.keys().copied())
    }
}

/// Resources by id, for `cairn local status`.
pub fn inventory(state: &CloudState) -> BTreeMap<String, (String, String, Option<Ipv4Addr>)> {
    state
        .resources
        .values()
        .map(|r| (r.id.clone(), (r.kind.clone(), r.address.clone(), r.ip)))
        .collect()
}

/// Records a resource of deployment `d` whose address and token are its id
/// (for the cloud's unit tests).
#[cfg(test)]
pub(crate) fn put(state: &mut CloudState, id: &str, kind: &str, p: Json, ip: Option<&str>) {
    state.resources.insert(
        id.into(),
        LocalResource {
            id: id.into(),
            kind: kind.into(),
            deployment: "d".into(),
            address: id.into(),
            token: id.into(),
            properties: p,
            attributes: serde_json::json!({}),
            tags: BTreeMap::new(),
            ip: ip.map(|i| i.parse().unwrap()),
            sensitive: Vec::new(),
        },
    );
}
