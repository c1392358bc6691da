//! The local cloud: every portable type made real on this machine, behind
//! the engine's `Provider` trait. The daemon serves it over its control
//! API; tests drive it in-process.

mod addresses;
pub mod agents;
mod dirs;
mod drain;
mod firewall;
mod isolation;
mod model;
mod props;
mod public;
mod record;
mod relay;
mod seal;
mod services;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use cairn_engine::provider::*;
use cairn_engine::schema::database::Database;
use cairn_engine::schema::dns::DnsRecord as DnsRecordProps;
use cairn_engine::schema::server::Server;
use cairn_engine::schema::{Kind, ResourceSchema, portable};
use ipnet::IpNet;
use serde_json::json;

use crate::dns::{RecordSet, RecordType, Zones, record_fqdn};
use crate::host;
use crate::supervisor::{ServerSpec, Supervisor};
pub use addresses::DEFAULT_POOL;
pub use dirs::LocalDirs;
use dirs::{copy_tree, remove_dir};
pub use isolation::{Isolation, IsolationError, cloud_id, container_id};
pub use model::{CloudState, LocalResource};
use props::{overlaps, parse_cidr, permanent, prop, prop_str};
pub use record::{read_isolation, read_resources};

pub struct Cloud {
    dirs: LocalDirs,
    state: Mutex<CloudState>,
    record: record::CloudRecord,
    servers: Supervisor,
    /// Every zone, served by the daemon's DNS server.
    zones: Zones,
    /// The running load balancers, by resource id.
    lbs: Mutex<HashMap<String, services::RunningLb>>,
    /// The public addresses associated with servers, by resource id.
    publics: Mutex<HashMap<String, public::PublicAddress>>,
    /// Put first on every server's PATH (where the `cairn` binary is).
    path: Vec<PathBuf>,
    /// How long a server's init must stay up to count as ready.
    pub settle: Duration,
    /// How servers run, chosen when the cloud was made.
    isolation: Isolation,
    /// With `runc` isolation: the cloud's namespaces, containers and
    /// firewall table.
    hosts: Option<isolation::Hosts>,
    /// The cloud's master and its servers' agents.
    agents: agents::Agents,
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
            record::CloudRecord::open(&dirs.state(), &dirs.legacy_state(), &dirs.key())?;
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
        let agents = agents::Agents::open(&dirs, state.pool.unwrap_or(pool))?;
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

    /// Brings back what the recorded resources run: zones and their
    /// records, then the servers' processes (after a restart).
    pub async fn restore(&self) -> Vec<String> {
        let (zones, records, servers, lbs, databases, publics) = {
            let st = self.lock();
            let of = |k: &str| -> Vec<LocalResource> { st.of_kind(k).cloned().collect() };
            (
                of("dns_zone"),
                of("dns_record"),
                of("server"),
                of("load_balancer"),
                of("database"),
                of("ip_address"),
            )
        };
        let mut problems = Vec::new();
        for z in &zones {
            if let Err(e) = self
                .zones
                .upsert_zone(prop_str(&z.properties, "name").unwrap_or_default())
            {
                problems.push(format!("{}: {e}", z.id));
            }
        }
        for r in &records {
            if let Err(e) = self.put_record(&r.properties) {
                problems.push(format!("{}: {e}", r.id));
            }
        }
        if let Some(hosts) = &self.hosts {
            problems.extend(hosts.restore(&self.snapshot()).await);
        } else {
            for r in servers {
                if let Err(e) = self.servers.start(self.server_spec(&r)) {
                    problems.push(e.to_string());
                    continue;
                }
                let ip = r.ip.unwrap_or(Ipv4Addr::LOCALHOST);
                if let Err(e) = self.agents.start_process(&r.id, ip) {
                    problems.push(e);
                }
            }
        }
        for r in databases {
            let ip = r.ip.unwrap_or(Ipv4Addr::LOCALHOST);
            if let Err(e) = self.start_database(&r.id, ip, &r.properties).await {
                problems.push(format!("{}: {e}", r.id));
                continue;
            }
            if self.hosts.is_none() {
                continue;
            }
            let had = r
                .attributes
                .get("address")
                .and_then(Json::as_str)
                .and_then(|a| a.parse().ok());
            match self.reach_database(&r.id, ip, &r.properties, had).await {
                // The link moved (its block was taken while the cloud was
                // stopped): the endpoint the deployment knows is stale.
                Ok(now) if had != Some(now) => {
                    let endpoint = format!("{now}:{}", services::DB_PORT);
                    problems.push(format!(
                        "{}: the database now answers at {endpoint} (was {}): the cloud's link \
                         moved; the next `cairn up` reads the new endpoint",
                        r.id,
                        had.map_or("-".to_string(), |a| a.to_string())
                    ));
                    self.set_attributes(
                        &r.id,
                        json!({"endpoint": endpoint, "address": now.to_string()}),
                    );
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("{}: {e}", r.id)),
            }
        }
        for r in lbs {
            let port = r.attributes.get("port").and_then(Json::as_u64).unwrap_or(0) as u16;
            let at = r.ip.or(Some(Ipv4Addr::LOCALHOST));
            match self.start_lb(&r.id, at, port, &r.properties).await {
                // A `runc` balancer whose link moved (its block was taken
                // while the cloud was stopped), or one an earlier cairn
                // put on loopback: the address the deployment knows is
                // stale.
                Ok((now, _)) if r.ip != Some(now) => {
                    problems.push(format!(
                        "{}: the load balancer now listens at {now} (was {}): the next `cairn                          up` reads the new address",
                        r.id,
                        r.ip.map_or("-".to_string(), |a| a.to_string())
                    ));
                    self.move_ip(&r.id, now);
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("{}: {e}", r.id)),
            }
        }
        for r in publics {
            let ip = r.ip.unwrap_or(Ipv4Addr::LOCALHOST);
            if let Err(e) = self.associate(&r.id, ip, &r.properties).await {
                problems.push(format!("{}: {e}", r.id));
            }
        }
        // Again, now that the load balancers have their addresses.
        if let Err(e) = self.refresh_host_firewall(Kind::LoadBalancer).await {
            problems.push(e.to_string());
        }
        problems
    }

    /// The cloud's master and its servers' agents.
    pub fn agents(&self) -> &agents::Agents {
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
    async fn refresh_host_firewall(&self, kind: Kind) -> ProviderResult<()> {
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

    /// The zone name of a `dns_record`'s `zone` (an id).
    fn zone_name(&self, p: &Json) -> ProviderResult<String> {
        let record = DnsRecordProps::read(p).map_err(|e| permanent(format!("dns record {e}")))?;
        let zone = self.get(&record.zone, "dns_zone")?;
        Ok(prop_str(&zone.properties, "name")
            .unwrap_or_default()
            .to_string())
    }

    /// The record set a `dns_record`'s properties describe, read in the
    /// engine's typed model (the one the aws target reads too).
    fn record_set(p: &Json) -> ProviderResult<RecordSet> {
        use cairn_engine::schema::dns::RecordType as Portable;
        let record = DnsRecordProps::read(p).map_err(|e| permanent(format!("dns record {e}")))?;
        Ok(RecordSet {
            name: record.name,
            rtype: match record.rtype {
                Portable::A => RecordType::A,
                Portable::Aaaa => RecordType::Aaaa,
                Portable::Cname => RecordType::Cname,
                Portable::Txt => RecordType::Txt,
                Portable::Mx => RecordType::Mx,
                Portable::Ns => RecordType::Ns,
                Portable::Srv => RecordType::Srv,
                Portable::Caa => RecordType::Caa,
            },
            ttl: record.ttl,
            values: record.values,
        })
    }

    fn put_record(&self, p: &Json) -> ProviderResult<String> {
        let zone = self.zone_name(p)?;
        let set = Self::record_set(p)?;
        let fqdn = record_fqdn(&zone, &set.name).map_err(|e| permanent(e.to_string()))?;
        self.zones
            .upsert_record(&zone, set)
            .map_err(|e| permanent(e.to_string()))?;
        Ok(fqdn)
    }

    pub fn snapshot(&self) -> CloudState {
        self.lock().clone()
    }

    /// Stops everything the cloud runs (the resources stay recorded).
    pub async fn shutdown(&self) {
        let publics: Vec<String> = self
            .publics
            .lock()
            .expect("publics lock")
            .keys()
            .cloned()
            .collect();
        for id in publics {
            self.disassociate(&id).await;
        }
        let lbs: Vec<String> = self.lbs.lock().expect("lbs lock").keys().cloned().collect();
        for id in lbs {
            self.stop_lb(&id).await;
        }
        let databases: Vec<LocalResource> = self.lock().of_kind("database").cloned().collect();
        for db in databases {
            if let Err(e) = self.stop_database(&db, false).await {
                tracing::warn!("stopping {}: {e}", db.id);
            }
        }
        self.servers.stop_all(Duration::from_secs(5)).await;
        if let Some(hosts) = &self.hosts {
            hosts.shutdown().await;
        }
        self.agents.shutdown().await;
    }

    /// The backends' health of a load balancer, for `cairn local status`.
    pub fn load_balancer_status(&self, id: &str) -> Option<Json> {
        self.lb_status(id)
    }

    /// The next free address, or the fixed one asked for, reserved until
    /// the create that asked for it is recorded or fails (see `create`):
    /// parallel creates never get the same address.
    fn allocate_ip(&self, id: &str) -> ProviderResult<Ipv4Addr> {
        self.reserve_ip(id, None)
    }

    fn reserve_ip(&self, id: &str, fixed: Option<Ipv4Addr>) -> ProviderResult<Ipv4Addr> {
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
    fn reserve_public(&self, id: &str, block: ipnet::Ipv4Net) -> ProviderResult<Ipv4Addr> {
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
    async fn release_public_block(&self) {
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
    fn reserve_block(
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

    fn lock(&self) -> std::sync::MutexGuard<'_, CloudState> {
        self.state.lock().expect("cloud state lock")
    }

    /// Records a resource made or changed: one row, one transaction.
    /// Sets some attributes of a recorded resource (a warning when the
    /// record cannot be written: it is written again at the next change).
    fn set_attributes(&self, id: &str, set: Json) {
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
    fn move_ip(&self, id: &str, ip: Ipv4Addr) {
        if let Some(r) = self.lock().resources.get_mut(id) {
            r.ip = Some(ip);
        }
        self.set_attributes(id, json!({"address": ip.to_string()}));
    }

    fn save(&self, r: &LocalResource, next_id: u64) -> ProviderResult<()> {
        self.record
            .put(r, next_id)
            .map_err(ProviderError::Transient)
    }

    fn server_spec(&self, r: &LocalResource) -> ServerSpec {
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

    fn get(&self, id: &str, kind: &str) -> ProviderResult<LocalResource> {
        self.lock()
            .resources
            .get(id)
            .filter(|r| r.kind == kind)
            .cloned()
            .ok_or_else(|| permanent(format!("there is no {kind} {id} in the local cloud")))
    }

    fn network_of(&self, p: &Json) -> ProviderResult<(LocalResource, IpNet)> {
        let id = prop_str(p, "network").ok_or_else(|| permanent("`network` is required"))?;
        let net = self.get(id, "network")?;
        let cidr = parse_cidr(prop_str(&net.properties, "cidr").unwrap_or_default())?;
        Ok((net, cidr))
    }

    /// Validates and computes the attributes of a new resource; the record
    /// is written by the caller.
    async fn make(
        &self,
        id: &str,
        req: &CreateRequest,
    ) -> ProviderResult<(Json, Option<Ipv4Addr>)> {
        let p = &req.properties;
        match req.kind {
            Kind::Network => {
                let cidr = parse_cidr(prop_str(p, "cidr").unwrap_or_default())?;
                self.reserve_block(id, "network", &req.deployment, cidr, &req.address)?;
                if let Some(hosts) = &self.hosts {
                    hosts.make_network(id, cidr).await?;
                }
                Ok((json!({"id": id}), None))
            }
            Kind::Subnet => {
                let (net, net_cidr) = self.network_of(p)?;
                let cidr = parse_cidr(prop_str(p, "cidr").unwrap_or_default())?;
                if !net_cidr.contains(&cidr) {
                    return Err(permanent(format!(
                        "subnet {cidr} is not inside its network {net_cidr} ({})",
                        net.address
                    )));
                }
                self.reserve_block(id, "subnet", &net.id, cidr, &req.address)?;
                Ok((json!({"id": id}), None))
            }
            Kind::Firewall => {
                self.network_of(p)?;
                firewall::check_rules(&self.lock(), p).map_err(permanent)?;
                Ok((json!({"id": id}), None))
            }
            Kind::IpAddress => {
                let ip = match &self.hosts {
                    Some(hosts) => {
                        hosts
                            .public_address(|block| self.reserve_public(id, block))
                            .await?
                    }
                    None => self.allocate_ip(id)?,
                };
                if let Err(e) = self.associate(id, ip, p).await {
                    self.lock().release(id);
                    self.release_public_block().await;
                    return Err(e);
                }
                Ok((json!({"id": id, "address": ip.to_string()}), Some(ip)))
            }
            Kind::Server => match &self.hosts {
                Some(hosts) => {
                    let (net, _, address) =
                        isolation::Hosts::reserve_address(&mut self.lock(), id, p)?;
                    let authorized = match prop_str(p, "key_pair") {
                        Some(k) => Some(
                            self.get(k, "key_pair")?
                                .attributes
                                .get("public_key")
                                .and_then(Json::as_str)
                                .ok_or_else(|| {
                                    permanent(format!("key pair {k} has no public key"))
                                })?
                                .to_string(),
                        ),
                        None => None,
                    };
                    let attributes = hosts.make_server(id, p, &net, address, authorized).await?;
                    Ok((attributes, Some(address)))
                }
                None => self.make_server(id, req).await,
            },
            Kind::DnsZone => {
                let name = prop_str(p, "name").unwrap_or_default();
                let clash = self.lock().of_kind("dns_zone").any(|z| {
                    prop_str(&z.properties, "name").map(|n| n.trim_end_matches('.'))
                        == Some(name.trim_end_matches('.'))
                });
                if clash {
                    return Err(ProviderError::Conflict(format!(
                        "the zone {name} already exists in the local cloud"
                    )));
                }
                self.zones
                    .upsert_zone(name)
                    .map_err(|e| permanent(e.to_string()))?;
                Ok((json!({"id": id, "name_servers": ["localhost."]}), None))
            }
            Kind::DnsRecord => {
                let fqdn = self.put_record(p)?;
                Ok((json!({"id": id, "fqdn": fqdn}), None))
            }
            Kind::LoadBalancer => {
                Self::check_access(&self.lock(), p)?;
                // A `runc` cloud's balancer is on its link instead.
                let at = match &self.hosts {
                    Some(_) => None,
                    None => Some(self.allocate_ip(id)?),
                };
                let wanted = prop(p, "listen")
                    .and_then(|l| l.get("port"))
                    .and_then(Json::as_u64)
                    .unwrap_or(80) as u16;
                let (ip, port) = self.start_lb(id, at, wanted, p).await?;
                Ok((
                    json!({"id": id, "address": ip.to_string(), "port": port, "dns_name": format!("{id}.lb.cairn.local")}),
                    Some(ip),
                ))
            }
            Kind::Database => {
                // The shared rules (names both targets accept, storage of
                // 1 GB or more) before anything is made; a cluster already
                // recorded is started from its record as it is.
                Database::read(p).map_err(|e| permanent(format!("database {e}")))?;
                let ip = self.allocate_ip(id)?;
                if let Err(e) = self.start_database(id, ip, p).await {
                    // Nothing half-made: no cluster directory stays behind.
                    let _ = remove_dir(&self.dirs.of("database", id));
                    return Err(e);
                }
                let address = match self.reach_database(id, ip, p, None).await {
                    Ok(address) => address,
                    Err(e) => {
                        let _ = self
                            .stop_database(&services::database_record(id, ip, p), true)
                            .await;
                        return Err(e);
                    }
                };
                let port = services::DB_PORT;
                Ok((
                    json!({"id": id, "endpoint": format!("{address}:{port}"), "address": address.to_string(), "port": port}),
                    Some(ip),
                ))
            }
            Kind::KeyPair => {
                let mut a = services::key_pair(p)?;
                a["id"] = json!(id);
                Ok((a, None))
            }
            Kind::Secret => Ok((json!({"id": id, "version": "1"}), None)),
            Kind::Bucket => {
                let dir = self.dirs.of("bucket", id);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| permanent(format!("bucket {id}: {e}")))?;
                Ok((
                    json!({"id": id, "url": format!("file://{}", dir.display())}),
                    None,
                ))
            }
            Kind::Volume => {
                let dir = self.dirs.of("volume", id);
                if let Some(snap) = prop_str(p, "snapshot") {
                    let s = self.get(snap, "snapshot")?;
                    copy_tree(&self.dirs.of("snapshot", &s.id), &dir)
                        .map_err(|e| permanent(format!("volume {id}: {e}")))?;
                } else {
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| permanent(format!("volume {id}: {e}")))?;
                }
                Ok((json!({"id": id, "path": dir.display().to_string()}), None))
            }
            Kind::Snapshot => {
                let vol_id =
                    prop_str(p, "volume").ok_or_else(|| permanent("`volume` is required"))?;
                let vol = self.get(vol_id, "volume")?;
                copy_tree(
                    &self.dirs.of("volume", &vol.id),
                    &self.dirs.of("snapshot", id),
                )
                .map_err(|e| permanent(format!("snapshot {id}: {e}")))?;
                Ok((
                    json!({"id": id, "size_gb": prop(&vol.properties, "size_gb").cloned().unwrap_or(Json::Null)}),
                    None,
                ))
            }
            Kind::Image if let Some(hosts) = &self.hosts => {
                let server_id =
                    prop_str(p, "server").ok_or_else(|| permanent("`server` is required"))?;
                let server = self.get(server_id, "server")?;
                hosts.capture_image(id, &server).await?;
                Ok((json!({"id": id}), None))
            }
            Kind::Image => {
                let server_id =
                    prop_str(p, "server").ok_or_else(|| permanent("`server` is required"))?;
                let server = self.get(server_id, "server")?;
                copy_tree(
                    &self.dirs.of("server", &server.id),
                    &self.dirs.of("image", id),
                )
                .map_err(|e| permanent(format!("image {id}: {e}")))?;
                // The image starts clean: its source's log is not part of it.
                let _ = std::fs::remove_file(self.dirs.of("image", id).join("console.log"));
                Ok((json!({"id": id}), None))
            }
            // Validation refuses these for a local environment already; a
            // request that reaches here anyway (a hand-made call) is refused.
            kind @ (Kind::AwsIamRole | Kind::AwsIamInstanceProfile) => Err(unsupported(kind)),
        }
    }

    async fn make_server(
        &self,
        id: &str,
        req: &CreateRequest,
    ) -> ProviderResult<(Json, Option<Ipv4Addr>)> {
        let server = Server::read(&req.properties).map_err(|e| permanent(format!("server {e}")))?;
        let subnet = self.get(&server.subnet, "subnet")?;
        let subnet_cidr = parse_cidr(prop_str(&subnet.properties, "cidr").unwrap_or_default())?;
        let fixed = server.address;
        if let Some(ip) = fixed {
            addresses::valid_fixed(ip).map_err(permanent)?;
        }
        let ip = self.reserve_ip(id, fixed)?;
        // The address inside its subnet, as a cloud would give: the first
        // host after those clouds reserve that no other server has.
        let private_ip = {
            let mut st = self.lock();
            let taken: std::collections::HashSet<String> = st
                .of_kind("server")
                .filter_map(|s| {
                    s.attributes
                        .get("private_ip")
                        .and_then(Json::as_str)
                        .map(str::to_string)
                })
                .chain(st.reserved_private.keys().cloned())
                .collect();
            let ip = subnet_cidr
                .hosts()
                .skip(3)
                .map(|h| h.to_string())
                .find(|h| !taken.contains(h))
                .unwrap_or_default();
            st.reserved_private.insert(ip.clone(), id.to_string());
            ip
        };
        let sandbox = self.dirs.of("server", id);
        if server.image.starts_with("image-") {
            let img = self.get(&server.image, "image")?;
            copy_tree(&self.dirs.of("image", &img.id), &sandbox)
                .map_err(|e| permanent(format!("server {id}: {e}")))?;
        }
        let spec = ServerSpec {
            name: id.to_string(),
            address: ip,
            sandbox: sandbox.clone(),
            user_data: server.user_data.unwrap_or_default(),
            path: self.path.clone(),
        };
        self.servers
            .start(spec)
            .map_err(|e| permanent(e.to_string()))?;
        if let Err(e) = self
            .servers
            .wait_ready(id, self.settle, Duration::from_secs(30))
            .await
        {
            // Nothing half-made stays behind: no process, no sandbox.
            let _ = self.servers.stop(id, Duration::from_secs(2)).await;
            let _ = std::fs::remove_dir_all(&sandbox);
            return Err(permanent(e.to_string()));
        }
        // The server is up without its agent, which the next start retries.
        if let Err(e) = self.agents.start_process(id, ip) {
            tracing::warn!("{e}");
        }
        Ok((
            json!({"id": id, "address": ip.to_string(), "private_ip": private_ip, "public_ip": Json::Null}),
            Some(ip),
        ))
    }

    async fn unmake(&self, r: &LocalResource) -> ProviderResult<()> {
        // Kept as its type string in the cloud's record; every record was
        // made from a request of a kind this build knows.
        let Some(kind) = Kind::parse(&r.kind) else {
            return Ok(());
        };
        match kind {
            Kind::Server => {
                if let Some(ip) = r.ip {
                    self.disassociate_server(ip).await;
                }
                // Its key first: the master closes its connection at once.
                self.agents.forget(&r.id).await;
                self.agents.remove_process(&r.id).await;
                if let Some(hosts) = &self.hosts {
                    return hosts.remove_server(r).await;
                }
                let _ = self.servers.stop(&r.id, Duration::from_secs(5)).await;
                remove_dir(&self.dirs.of("server", &r.id))
            }
            Kind::Network => match &self.hosts {
                Some(hosts) => hosts.remove_network(r).await,
                None => Ok(()),
            },
            Kind::Bucket | Kind::Volume | Kind::Snapshot | Kind::Image => {
                remove_dir(&self.dirs.of(&r.kind, &r.id))
            }
            Kind::LoadBalancer => {
                self.stop_lb(&r.id).await;
                Ok(())
            }
            Kind::IpAddress => {
                self.disassociate(&r.id).await;
                Ok(())
            }
            Kind::Database => self.stop_database(r, true).await,
            Kind::DnsZone => {
                let _ = self
                    .zones
                    .remove_zone(prop_str(&r.properties, "name").unwrap_or_default());
                Ok(())
            }
            Kind::DnsRecord => {
                if let (Ok(zone), Ok(set)) = (
                    self.zone_name(&r.properties),
                    Self::record_set(&r.properties),
                ) {
                    let _ = self.zones.remove_record(&zone, &set.name, set.rtype);
                }
                Ok(())
            }
            // Records only: nothing outside the cloud's record to remove.
            Kind::Subnet | Kind::Firewall | Kind::KeyPair | Kind::Secret => Ok(()),
            kind @ (Kind::AwsIamRole | Kind::AwsIamInstanceProfile) => Err(unsupported(kind)),
        }
    }
}

/// A type of another target: validation refuses it for a local
/// environment, so only a hand-made call gets here.
fn unsupported(kind: Kind) -> ProviderError {
    permanent(format!(
        "the local target does not make `{kind}` resources: it is a type of the {} target",
        kind.target().unwrap_or("aws")
    ))
}

#[async_trait::async_trait]
impl Provider for Cloud {
    fn name(&self) -> &str {
        "local"
    }

    fn backend_control(&self) -> Option<&dyn cairn_engine::backend::BackendControl> {
        Some(self)
    }

    fn schema(&self, kind: &str) -> Option<&'static ResourceSchema> {
        portable(kind)
    }

    async fn create(&self, req: CreateRequest) -> ProviderResult<Created> {
        // A first attempt cannot find an earlier one: skip the scan.
        let earlier = match req.may_exist {
            true => self.lock().by_token(&req.token).cloned(),
            false => None,
        };
        if let Some(r) = earlier {
            // A retry after the firewall could not be replaced: again.
            self.refresh_host_firewall(req.kind).await?;
            return Ok(Created {
                id: r.id,
                attributes: r.attributes,
            });
        }
        let changing = match &self.hosts {
            Some(h) => Some(h.changing().await),
            None => None,
        };
        let id = self.lock().new_id(req.kind.as_str());
        let made = self.make(&id, &req).await;
        let (attributes, ip) = match made {
            Ok(made) => made,
            Err(e) => {
                self.lock().release(&id);
                return Err(e);
            }
        };
        let record = LocalResource {
            id: id.clone(),
            kind: req.kind.to_string(),
            deployment: req.deployment.clone(),
            address: req.address.clone(),
            token: req.token.clone(),
            properties: req.properties.clone(),
            attributes: attributes.clone(),
            tags: req.tags.clone(),
            ip,
            sensitive: req.sensitive.clone(),
        };
        let next_id = {
            let mut st = self.lock();
            // The reservation ends under the same lock that records the
            // address: in between, a parallel create could be given it too.
            st.release(&id);
            st.resources.insert(id.clone(), record.clone());
            st.next_id
        };
        self.save(&record, next_id)?;
        drop(changing);
        self.refresh_access();
        self.refresh_host_firewall(req.kind).await?;
        Ok(Created { id, attributes })
    }

    async fn read(&self, req: ReadRequest) -> ProviderResult<Option<Observed>> {
        let st = self.lock();
        Ok(st.resources.get(&req.id).map(|r| {
            let mut attributes = r.attributes.clone();
            if r.kind == "server"
                && let Some(a) = attributes.as_object_mut()
            {
                let public = public::public_ip_of(&st, &r.id);
                a.insert("public_ip".into(), json!(public.map(|ip| ip.to_string())));
            }
            Observed {
                properties: r.properties.clone(),
                attributes,
                tags: r.tags.clone(),
            }
        }))
    }

    async fn update(&self, req: UpdateRequest) -> ProviderResult<Json> {
        match req.kind {
            Kind::DnsRecord => {
                self.put_record(&req.properties)?;
            }
            Kind::LoadBalancer => self.update_lb(&req.id, &req.properties).await?,
            Kind::IpAddress => {
                let ip = self.get(&req.id, "ip_address")?.ip;
                let ip = ip.ok_or_else(|| permanent(format!("{} has no address", req.id)))?;
                self.associate(&req.id, ip, &req.properties).await?
            }
            Kind::Firewall => {
                firewall::check_rules(&self.lock(), &req.properties).map_err(permanent)?
            }
            // Every other property of these that can change in place is
            // bookkeeping (flags, sizes, tags, values): the record below.
            Kind::Network
            | Kind::Subnet
            | Kind::Server
            | Kind::DnsZone
            | Kind::Database
            | Kind::Bucket
            | Kind::Secret
            | Kind::KeyPair
            | Kind::Volume
            | Kind::Snapshot
            | Kind::Image => {}
            kind @ (Kind::AwsIamRole | Kind::AwsIamInstanceProfile) => {
                return Err(unsupported(kind));
            }
        }
        let (attributes, changed, next_id) = {
            let mut st = self.lock();
            let r = st
                .resources
                .get_mut(&req.id)
                .ok_or_else(|| ProviderError::NotFound(req.id.clone()))?;
            // Every property of the local types that can change in place is
            // bookkeeping (rules, flags, sizes): record it.
            r.properties = req.properties;
            r.tags = req.tags;
            r.sensitive = req.sensitive;
            let attributes = r.attributes.clone();
            let changed = r.clone();
            (attributes, changed, st.next_id)
        };
        self.save(&changed, next_id)?;
        self.refresh_access();
        self.refresh_host_firewall(req.kind).await?;
        Ok(attributes)
    }

    async fn delete(&self, req: DeleteRequest) -> ProviderResult<()> {
        let r = self
            .lock()
            .resources
            .get(&req.id)
            .cloned()
            .ok_or_else(|| ProviderError::NotFound(req.id.clone()))?;
        let changing = match &self.hosts {
            Some(h) => Some(h.changing().await),
            None => None,
        };
        self.unmake(&r).await?;
        self.lock().resources.remove(&req.id);
        self.record
            .remove(&req.id)
            .map_err(ProviderError::Transient)?;
        drop(changing);
        self.refresh_access();
        if let Some(kind) = Kind::parse(&r.kind) {
            self.refresh_host_firewall(kind).await?;
        }
        if r.kind == "ip_address" {
            // After the table: no translation into the block is left.
            self.release_public_block().await;
        }
        if let Some(hosts) = &self.hosts {
            hosts.down_if_idle(|| self.snapshot()).await?;
        }
        Ok(())
    }

    async fn find(&self, req: FindRequest) -> ProviderResult<Option<Created>> {
        Ok(self.lock().by_token(&req.token).map(|r| Created {
            id: r.id.clone(),
            attributes: r.attributes.clone(),
        }))
    }

    async fn list(&self, deployment: &str) -> ProviderResult<Vec<Listed>> {
        Ok(self
            .lock()
            .resources
            .values()
            .filter(|r| r.deployment == deployment)
            .filter_map(|r| {
                Some(Listed {
                    kind: Kind::parse(&r.kind)?,
                    id: r.id.clone(),
                    address: Some(r.address.clone()),
                })
            })
            .collect())
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

#[cfg(test)]
mod tests;
