//! The `Cloud` itself: what it holds, opening it, and the bookkeeping
//! every part of it uses (the state's lock, the record, the reservations
//! of addresses and blocks while a create is under way). The parts are
//! `impl Cloud` blocks above this file: `zones`, `services`, `public`,
//! `drain`, then `make`, `provider` and `lifecycle`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use cairn_engine::provider::{Json, ProviderError, ProviderResult};
use cairn_engine::schema::Kind;
use ipnet::IpNet;
use serde_json::json;

use super::addresses::{self, DEFAULT_POOL};
use super::agents::Agents;
use super::balancer::RunningLb;
use super::dirs::LocalDirs;
use super::forward::PublicAddress;
use super::isolation::{self, Hosts, Isolation};
use super::model::{self, CloudState, LocalResource};
use super::props::{overlaps, parse_cidr, permanent, prop_str};
use super::record::CloudRecord;
use crate::dns::Zones;
use crate::host;
use crate::supervisor::{ServerSpec, Supervisor};

pub struct Cloud {
    pub(super) dirs: LocalDirs,
    pub(super) state: Mutex<CloudState>,
    pub(super) record: CloudRecord,
    pub(super) servers: Supervisor,
    /// Every zone, served by the daemon's DNS server.
    pub(super) zones: Zones,
    /// The running load balancers, by resource id.
    pub(super) lbs: Mutex<HashMap<String, RunningLb>>,
    /// The public addresses associated with servers, by resource id.
    pub(super) publics: Mutex<HashMap<String, PublicAddress>>,
    /// Put first on every server's PATH (where the `cairn` binary is).
    pub(super) path: Vec<PathBuf>,
    /// How long a server's init must stay up to count as ready.
    pub settle: Duration,
    /// How servers run, chosen when the cloud was made.
    pub(super) isolation: Isolation,
    /// With `runc` isolation: the cloud's namespaces, containers and
    /// firewall table.
    pub(super) hosts: Option<Hosts>,
    /// The cloud's master and its servers' agents.
    pub(super) agents: Agents,
}

impl Cloud {
    /// Opens (or creates) the `process` cloud in `dirs` and brings back
    /// every server it had.
    pub fn open(dirs: LocalDirs, path: Vec<PathBuf>) -> Result<Cloud, String> {
        Cloud::open_with_pool(dirs, path, DEFAULT_POOL)
    }

    /// Opens a `process` cloud; a new one takes its addresses from
    /// 127.`pool`.0.0/16, an existing one keeps the block it was made with.
    pub fn open_with_pool(dirs: LocalDirs, path: Vec<PathBuf>, pool: u8) -> Result<Cloud, String> {
        Cloud::open_with(dirs, path, pool, Some(Isolation::Process))
    }

    /// Opens a cloud with the isolation asked for: a new cloud records it
    /// (when none is asked for, `runc` if the machine can run it, else
    /// `process`: [`isolation::choose`]), an existing one refuses the
    /// other. `runc` isolation needs root, `runc` and `nft` (the error
    /// names what is missing).
    pub fn open_with(
        dirs: LocalDirs,
        path: Vec<PathBuf>,
        pool: u8,
        isolation: Option<Isolation>,
    ) -> Result<Cloud, String> {
        std::fs::create_dir_all(&dirs.root)
            .map_err(|e| format!("cannot create {}: {e}", dirs.root.display()))?;
        // The record holds the values resources were made with (secret ones
        // sealed, with the key beside it): only this user may read the
        // directory.
        std::fs::set_permissions(
            &dirs.root,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(|e| format!("cannot protect {}: {e}", dirs.root.display()))?;
        if !(1..=254).contains(&pool) {
            return Err(format!("address pool 127.{pool}.0.0/16 cannot be used"));
        }
        let (record, mut state) =
            CloudRecord::open(&dirs.state(), &dirs.legacy_state(), &dirs.key())?;
        let recorded = record.isolation()?;
        let isolation = isolation::choose(
            &dirs.root.display().to_string(),
            recorded.as_deref(),
            !state.resources.is_empty(),
            isolation,
            host::preflight,
        )
        .map_err(|e| e.to_string())?;
        let zones = Zones::new();
        let agents = Agents::open(&dirs, state.pool.unwrap_or(pool))?;
        let hosts = match isolation {
            Isolation::Process => None,
            Isolation::Runc => {
                let images = host::image::ImageCache::new(
                    host::image::ImageCache::default_root()
                        .unwrap_or_else(|| dirs.root.join("images")),
                );
                Some(
                    isolation::Hosts::new(&dirs, images, zones.clone(), agents.clone())
                        .map_err(|e| e.to_string())?,
                )
            }
        };
        if recorded.is_none() {
            record.set_isolation(isolation.as_str())?;
        }
        if state.pool.is_none() {
            record.set_pool(pool)?;
            state.pool = Some(pool);
        }
        let cloud = Cloud {
            dirs,
            state: Mutex::new(state),
            record,
            servers: Supervisor::new(),
            zones,
            lbs: Mutex::new(HashMap::new()),
            publics: Mutex::new(HashMap::new()),
            path,
            settle: Duration::from_millis(300),
            isolation,
            hosts,
            agents,
        };
        Ok(cloud)
    }

    /// The cloud's master and its servers' agents.
    pub fn agents(&self) -> &Agents {
        &self.agents
    }

    /// How this cloud runs its servers.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// runc's status of each server, by id (`runc` isolation; empty with
    /// `process` isolation, where the supervisor tells).
    pub async fn host_statuses(&self) -> HashMap<String, String> {
        match &self.hosts {
            Some(h) => h.statuses().await,
            None => HashMap::new(),
        }
    }

    /// With `runc` isolation, replaces the kernel's firewall rules after a
    /// change of a `kind` that they depend on.
    pub(super) async fn refresh_host_firewall(&self, kind: Kind) -> ProviderResult<()> {
        match &self.hosts {
            Some(h)
                if matches!(
                    kind,
                    Kind::Firewall
                        | Kind::Server
                        | Kind::LoadBalancer
                        | Kind::Network
                        | Kind::Database
                        | Kind::IpAddress
                ) =>
            {
                h.apply_firewall(|| self.snapshot()).await
            }
            _ => Ok(()),
        }
    }

    /// The second octet of this cloud's addresses: 127.`pool`.0.0/16.
    pub fn pool(&self) -> u8 {
        self.lock().pool.unwrap_or(DEFAULT_POOL)
    }

    pub fn supervisor(&self) -> &Supervisor {
        &self.servers
    }

    pub fn zones(&self) -> &Zones {
        &self.zones
    }

    pub fn snapshot(&self) -> CloudState {
        self.lock().clone()
    }

    /// The next free address, or the fixed one asked for, reserved until
    /// the create that asked for it is recorded or fails (see `create`):
    /// parallel creates never get the same address.
    pub(super) fn allocate_ip(&self, id: &str) -> ProviderResult<Ipv4Addr> {
        self.reserve_ip(id, None)
    }

    pub(super) fn reserve_ip(&self, id: &str, fixed: Option<Ipv4Addr>) -> ProviderResult<Ipv4Addr> {
        let mut st = self.lock();
        let ip = match fixed {
            Some(ip) => {
                if let Some((_, owner)) = st.used_ips().find(|(used, _)| *used == ip) {
                    return Err(ProviderError::Conflict(format!(
                        "address {ip} is already used by {} ({})",
                        owner.address, owner.id
                    )));
                }
                if st.reserved.contains_key(&ip) {
                    return Err(ProviderError::Conflict(format!(
                        "address {ip} is being given to another resource right now"
                    )));
                }
                ip
            }
            None => addresses::allocate(st.pool.unwrap_or(DEFAULT_POOL), st.taken_ips())
                .ok_or_else(|| {
                    permanent("no loopback address left in this local cloud's 127.x.0.0/16 block")
                })?,
        };
        st.reserved.insert(ip, id.to_string());
        Ok(ip)
    }

    /// The first free address of `block` (the public addresses' block of
    /// a `runc` cloud), reserved like [`Cloud::allocate_ip`]'s.
    pub(super) fn reserve_public(
        &self,
        id: &str,
        block: ipnet::Ipv4Net,
    ) -> ProviderResult<Ipv4Addr> {
        let mut st = self.lock();
        let taken: std::collections::HashSet<Ipv4Addr> = st.taken_ips().collect();
        let ip = block
            .hosts()
            .find(|ip| !taken.contains(ip))
            .ok_or_else(|| {
                permanent(format!(
                    "no public address left in this cloud's block {block} ({} addresses)",
                    block.hosts().count()
                ))
            })?;
        st.reserved.insert(ip, id.to_string());
        Ok(ip)
    }

    /// With `runc` isolation, gives the public addresses' block back once
    /// no address of it is recorded or being made.
    pub(super) async fn release_public_block(&self) {
        let Some(hosts) = &self.hosts else { return };
        let released = hosts
            .release_public_block_if_unused(|block| {
                self.lock().taken_ips().any(|ip| block.contains(&ip))
            })
            .await;
        if let Err(e) = released {
            tracing::warn!("{e}");
        }
    }

    /// Checks that `cidr` overlaps no recorded block of its kind in its
    /// scope (a network's deployment, a subnet's network) nor one another
    /// create is making right now, and claims it until this create is
    /// recorded or fails, in one hold of the lock.
    pub(super) fn reserve_block(
        &self,
        id: &str,
        kind: &'static str,
        scope: &str,
        cidr: IpNet,
        address: &str,
    ) -> ProviderResult<()> {
        let mut st = self.lock();
        let recorded = st.of_kind(kind).filter(|r| match kind {
            "network" => r.deployment == scope,
            _ => prop_str(&r.properties, "network") == Some(scope),
        });
        for other in recorded {
            let o = parse_cidr(prop_str(&other.properties, "cidr").unwrap_or_default())?;
            if overlaps(&cidr, &o) {
                return Err(ProviderError::Conflict(format!(
                    "{kind} {cidr} overlaps {o} of {} ({})",
                    other.address, other.id
                )));
            }
        }
        for (other_id, b) in &st.reserved_blocks {
            if b.kind == kind && b.scope == scope && overlaps(&cidr, &b.cidr) {
                return Err(ProviderError::Conflict(format!(
                    "{kind} {cidr} overlaps {} of {} ({other_id}), being made right now",
                    b.cidr, b.address
                )));
            }
        }
        st.reserved_blocks.insert(
            id.to_string(),
            model::ReservedBlock {
                kind,
                scope: scope.to_string(),
                cidr,
                address: address.to_string(),
            },
        );
        Ok(())
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, CloudState> {
        self.state.lock().expect("cloud state lock")
    }

    /// Records a resource made or changed: one row, one transaction.
    /// Sets some attributes of a recorded resource (a warning when the
    /// record cannot be written: it is written again at the next change).
    pub(super) fn set_attributes(&self, id: &str, set: Json) {
        let (changed, next_id) = {
            let mut st = self.lock();
            let next_id = st.next_id;
            let Some(r) = st.resources.get_mut(id) else {
                return;
            };
            if let (Some(a), Some(set)) = (r.attributes.as_object_mut(), set.as_object()) {
                a.extend(set.clone());
            }
            (r.clone(), next_id)
        };
        if let Err(e) = self.save(&changed, next_id) {
            tracing::warn!("recording {id}'s attributes: {e}");
        }
    }

    /// Records that resource `id` is now at `ip` (its `address` attribute
    /// too), as [`Cloud::set_attributes`] does.
    pub(super) fn move_ip(&self, id: &str, ip: Ipv4Addr) {
        if let Some(r) = self.lock().resources.get_mut(id) {
            r.ip = Some(ip);
        }
        self.set_attributes(id, json!({"address": ip.to_string()}));
    }

    pub(super) fn save(&self, r: &LocalResource, next_id: u64) -> ProviderResult<()> {
        self.record
            .put(r, next_id)
            .map_err(ProviderError::Transient)
    }

    pub(super) fn server_spec(&self, r: &LocalResource) -> ServerSpec {
        ServerSpec {
            name: r.id.clone(),
            address: r.ip.unwrap_or(Ipv4Addr::LOCALHOST),
            sandbox: self.dirs.of("server", &r.id),
            user_data: prop_str(&r.properties, "user_data")
                .unwrap_or_default()
                .to_string(),
            path: self.path.clone(),
        }
    }

    pub(super) fn get(&self, id: &str, kind: &str) -> ProviderResult<LocalResource> {
        self.lock()
            .resources
            .get(id)
            .filter(|r| r.kind == kind)
            .cloned()
            .ok_or_else(|| permanent(format!("there is no {kind} {id} in the local cloud")))
    }

    pub(super) fn network_of(&self, p: &Json) -> ProviderResult<(LocalResource, IpNet)> {
        let id = prop_str(p, "network").ok_or_else(|| permanent("`network` is required"))?;
        let net = self.get(id, "network")?;
        let cidr = parse_cidr(prop_str(&net.properties, "cidr").unwrap_or_default())?;
        Ok((net, cidr))
    }
}
