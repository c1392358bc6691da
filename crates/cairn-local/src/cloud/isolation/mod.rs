//! `runc` isolation: the cloud's servers as small hosts, made from the
//! building blocks in `crate::host`.
//!
//! A cloud chooses its isolation once, when it is made, and keeps it in its
//! record: `process` (a server is a supervised process on a loopback
//! address; the default) or `runc` (a server is a container with its own
//! namespaces, on a bridge per network in the cloud's own network
//! namespace, behind nftables rules). The two cannot mix in one cloud: the
//! addresses, firewalls and teardown differ.
//!
//! In `runc` mode a network reserves its CIDR on the machine (an
//! `unreachable` route that stays until the network is destroyed, also
//! while the daemon is stopped), a server gets an address of its subnet,
//! and every change that affects the firewalls replaces the cloud
//! namespace's nftables table. Load balancers stay in the daemon, each on
//! an address of its own on the machine's end of the cloud's link: the
//! machine has it, servers reach it through their gateway, and it is the
//! source of the balancer's connections to backends (through the machine's
//! route into the cloud namespace), so that the firewalls tell it apart
//! from the machine itself. Public addresses come from a block of
//! the cloud's own in 198.18.0.0/15, claimed with the first and released
//! with the last, routed into the cloud namespace like the networks and
//! translated there by the same table.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use cairn_engine::provider::{Json, ProviderError, ProviderResult};
use ipnet::{IpNet, Ipv4Net};
use serde_json::json;

use crate::cloud::dirs::{LocalDirs, remove_dir};
use crate::cloud::model::{CloudState, LocalResource};
use crate::cloud::props::{parse_cidr, permanent, prop_str};
use crate::host::command::Cmd;
use crate::host::firewall::{self as nft, Ruleset};
use crate::host::image::ImageCache;
use crate::host::nat::{self, Nat};
use crate::host::network::{self, CloudNet, Network, ServerNet, UNREACHABLE_METRIC};
use crate::host::runtime::{Server, ServerSpec, USER_DATA_PATH};
use crate::host::{HostError, preflight, ssh};

mod databases;
mod images;
mod master;
mod names;
mod rules;

use images::ImageRoot;
use names::{machine_nameservers, resolv_conf};
pub use rules::{LinkAddresses, ruleset};

/// How a cloud runs its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// A supervised process on a loopback address, sharing the machine's
    /// filesystem, processes and network stack.
    Process,
    /// A container started by runc: its own root, hostname, processes and
    /// network namespace, with an address of its subnet.
    Runc,
}

impl Isolation {
    /// The name in the record, on the command line and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Process => "process",
            Isolation::Runc => "runc",
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Isolation {
    type Err = IsolationError;

    fn from_str(s: &str) -> Result<Isolation, IsolationError> {
        match s {
            "process" => Ok(Isolation::Process),
            "runc" => Ok(Isolation::Runc),
            other => Err(IsolationError::Unknown(other.to_string())),
        }
    }
}

/// Why a cloud cannot run with the isolation asked for.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// A name that is not an isolation.
    #[error("unknown isolation `{0}`: use `process` or `runc`")]
    Unknown(String),
    /// The cloud was made with the other isolation.
    #[error(
        "the local cloud in {dir} was made with `{made}` isolation and cannot run with `{asked}`; \
         use another directory (CAIRN_LOCAL_DIR) for a `{asked}` cloud, or destroy this one's \
         deployments, stop it and remove {dir}"
    )]
    Mismatch {
        /// The cloud's directory.
        dir: String,
        /// The isolation it was made with.
        made: Isolation,
        /// The isolation asked for.
        asked: Isolation,
    },
    /// The machine cannot run `runc` servers (not root, a tool missing).
    #[error("`runc` isolation: {0}")]
    Host(#[from] HostError),
}

/// The isolation a cloud runs with: the recorded one, else the one asked
/// for (a cloud with no record of it and resources already is an old
/// process cloud), else, for a new cloud, `runc` when the machine can run
/// it (`runc_ready`: root and the tools) and `process` when it cannot.
/// Servers are hosts wherever that is possible; a machine without root
/// still gets a working cloud. Refuses a mismatch.
pub fn choose(
    dir: &str,
    recorded: Option<&str>,
    has_resources: bool,
    asked: Option<Isolation>,
    runc_ready: impl FnOnce() -> Result<(), HostError>,
) -> Result<Isolation, IsolationError> {
    let made = match recorded {
        Some(text) => Some(text.parse()?),
        None if has_resources => Some(Isolation::Process),
        None => None,
    };
    match (made, asked) {
        (Some(made), Some(asked)) if made != asked => Err(IsolationError::Mismatch {
            dir: dir.to_string(),
            made,
            asked,
        }),
        (Some(made), _) => Ok(made),
        (None, Some(asked)) => Ok(asked),
        (None, None) => match runc_ready() {
            Ok(()) => Ok(Isolation::Runc),
            Err(e) => {
                tracing::warn!("a new cloud in {dir} runs its servers as processes: {e}");
                Ok(Isolation::Process)
            }
        },
    }
}

/// The id that names a cloud's kernel objects (hashed into them): its
/// directory.
pub fn cloud_id(dirs: &LocalDirs) -> String {
    std::fs::canonicalize(&dirs.root)
        .unwrap_or_else(|_| dirs.root.clone())
        .display()
        .to_string()
}

/// The runc container id of server `server_id` of the cloud in `dirs`
/// (`cairn local exec` runs commands in it).
pub fn container_id(dirs: &LocalDirs, server_id: &str) -> String {
    let names = CloudNet::new(&cloud_id(dirs), Ipv4Net::default());
    format!("{}-{server_id}", names.netns)
}

fn host_err(what: &str, e: HostError) -> ProviderError {
    permanent(format!("{what}: {e}"))
}

fn v4(net: IpNet, what: &str) -> ProviderResult<Ipv4Net> {
    match net {
        IpNet::V4(n) => Ok(n),
        IpNet::V6(_) => Err(permanent(format!(
            "{what} {net}: servers as hosts (`runc` isolation) have IPv4 networks only"
        ))),
    }
}

/// The parts of a `runc` cloud that live outside its record: the network
/// namespace, the load balancers' addresses, the servers' runtime
/// handles.
pub struct Hosts {
    id: String,
    dirs: LocalDirs,
    images: ImageCache,
    cairn_binary: PathBuf,
    /// The cloud namespace and its link, once up (after the first network,
    /// or at restore).
    net: tokio::sync::Mutex<Option<CloudNet>>,
    /// Each load balancer's and each database's address on the link.
    link: std::sync::Mutex<LinkAddresses>,
    /// Each database's listener in the cloud namespace.
    db_listeners: std::sync::Mutex<HashMap<String, databases::Listener>>,
    /// The records of databases being made, until they are deleted: in
    /// every firewall snapshot (the record's own wins once it is there),
    /// so a database's rules are in place before it listens.
    staged_databases: std::sync::Mutex<HashMap<String, LocalResource>>,
    /// Firewall replacements asked for, and the last one whose changes an
    /// applied table holds: a replacement asked for while another waited
    /// is done by the one that takes its snapshot after both asked. With
    /// hundreds of servers made at once, the table is replaced a few
    /// times, not once per server (each replacement is the whole table).
    firewall_asked: std::sync::atomic::AtomicU64,
    firewall_done: std::sync::atomic::AtomicU64,
    /// Each running server's container and network place.
    servers: std::sync::Mutex<HashMap<String, (Server, ServerNet)>>,
    /// Held while the firewall table is computed and replaced, so that of
    /// two changes racing, the later state is the one applied; it guards
    /// the way out (slirp4netns, while a network has `internet: true`).
    firewall: tokio::sync::Mutex<Option<Nat>>,
    /// The cloud's zones, served to servers on the link ([`Hosts::serve_dns_on_link`]).
    zones: crate::dns::Zones,
    /// That listener while the link is up: its stop and its task.
    link_dns: std::sync::Mutex<Option<LinkDns>>,
    /// Held (shared) by every create and delete from its start until it is
    /// recorded, and (exclusive) by [`Hosts::down_if_idle`]: the namespace
    /// never goes down under a network or server being made.
    shape: tokio::sync::RwLock<()>,
    /// The cloud's master, which servers' agents reach on the link.
    agents: super::agents::Agents,
    /// The master's listener on the link while it is up.
    link_master: std::sync::Mutex<Option<master::LinkMaster>>,
    /// The block the cloud's public addresses come from, while it holds
    /// one (claimed with the first public address, released with the
    /// last): routed into the cloud namespace whenever that is up.
    public_block: std::sync::Mutex<Option<Ipv4Net>>,
    /// Held while the public block is claimed or released, and while a
    /// public address is reserved in it.
    public_claim: tokio::sync::Mutex<()>,
}

/// The DNS listener on the link: its stop, and its task.
type LinkDns = (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<Result<(), crate::dns::DnsError>>,
);

/// What `cairn local status` shows of a runc server.
pub const NOT_RUNNING: &str = "not running";

impl Hosts {
    /// The `runc` parts of the cloud in `dirs`; fails when the machine
    /// cannot run them (see [`preflight`]).
    pub fn new(
        dirs: &LocalDirs,
        images: ImageCache,
        zones: crate::dns::Zones,
        agents: super::agents::Agents,
    ) -> Result<Hosts, IsolationError> {
        preflight()?;
        let cairn_binary = std::env::current_exe()
            .map_err(|e| HostError::io("find the cairn binary to mount into servers", e))?;
        Ok(Hosts {
            id: cloud_id(dirs),
            dirs: dirs.clone(),
            images,
            cairn_binary,
            net: tokio::sync::Mutex::new(None),
            link: std::sync::Mutex::new(LinkAddresses::default()),
            db_listeners: std::sync::Mutex::new(HashMap::new()),
            staged_databases: std::sync::Mutex::new(HashMap::new()),
            firewall_asked: std::sync::atomic::AtomicU64::new(0),
            firewall_done: std::sync::atomic::AtomicU64::new(0),
            servers: std::sync::Mutex::new(HashMap::new()),
            firewall: tokio::sync::Mutex::new(None),
            zones,
            link_dns: std::sync::Mutex::new(None),
            shape: tokio::sync::RwLock::new(()),
            agents,
            link_master: std::sync::Mutex::new(None),
            public_block: std::sync::Mutex::new(None),
            public_claim: tokio::sync::Mutex::new(()),
        })
    }

    fn public_block_now(&self) -> Option<Ipv4Net> {
        *self.public_block.lock().expect("public block lock")
    }

    /// A public address, reserved by `reserve` in the cloud's public block
    /// (which it picks a free address of, under the cloud's lock). The
    /// first claims the block: an `unreachable` route that keeps it on the
    /// machine until the last public address goes, and its route into the
    /// cloud namespace.
    pub async fn public_address(
        &self,
        reserve: impl FnOnce(Ipv4Net) -> ProviderResult<Ipv4Addr>,
    ) -> ProviderResult<Ipv4Addr> {
        let _claim = self.public_claim.lock().await;
        let block = match self.public_block_now() {
            Some(block) => block,
            None => {
                let block = network::claim_public_block(&self.id)
                    .await
                    .map_err(|e| host_err("the cloud's public addresses", e))?;
                *self.public_block.lock().expect("public block lock") = Some(block);
                if let Some(cloud) = self.net_if_up().await
                    && let Err(e) = cloud.route_public(block).await
                {
                    *self.public_block.lock().expect("public block lock") = None;
                    let _ = network::release_cidr(block).await;
                    return Err(host_err("the cloud's public addresses", e));
                }
                tracing::info!(%block, "public addresses' block claimed");
                block
            }
        };
        reserve(block)
    }

    /// Releases the public block once `used` (asked under the claim) says
    /// no address of it is recorded or being made.
    pub async fn release_public_block_if_unused(
        &self,
        used: impl FnOnce(Ipv4Net) -> bool,
    ) -> ProviderResult<()> {
        let _claim = self.public_claim.lock().await;
        let Some(block) = self.public_block_now() else {
            return Ok(());
        };
        if used(block) {
            return Ok(());
        }
        let fail = |e| ProviderError::Transient(format!("the cloud's public addresses: {e}"));
        if let Some(cloud) = self.net_if_up().await {
            cloud.unroute_public(block).await.map_err(fail)?;
        }
        network::release_cidr(block).await.map_err(fail)?;
        *self.public_block.lock().expect("public block lock") = None;
        tracing::info!(%block, "public addresses' block released");
        Ok(())
    }

    /// Takes the recorded public addresses' block back (its `unreachable`
    /// route again if the machine lost it).
    async fn restore_public_block(&self, state: &CloudState) -> Vec<String> {
        let (block, mut problems) = recorded_public_block(state);
        let Some(block) = block else {
            return problems;
        };
        let _claim = self.public_claim.lock().await;
        match network::reclaim_public_block(block).await {
            Ok(()) => *self.public_block.lock().expect("public block lock") = Some(block),
            Err(e) => problems.push(format!("the cloud's public addresses {block}: {e}")),
        }
        problems
    }

    /// The cloud namespace and link, made when first needed. What a
    /// daemon that died left of them is removed first.
    async fn net(&self) -> ProviderResult<CloudNet> {
        let mut slot = self.net.lock().await;
        if let Some(net) = slot.as_ref() {
            return Ok(net.clone());
        }
        let fail = |e| host_err("the cloud's network namespace", e);
        CloudNet::new(&self.id, Ipv4Net::default())
            .down()
            .await
            .map_err(fail)?;
        let link = network::choose_link(&self.id).await.map_err(fail)?;
        let net = CloudNet::new(&self.id, link);
        net.up().await.map_err(fail)?;
        if let Err(e) = self.serve_dns_on_link(&net).await {
            let _ = net.down().await;
            return Err(fail(e));
        }
        if let Err(e) = self.serve_master_on_link(&net).await {
            self.stop_dns_on_link().await;
            let _ = net.down().await;
            return Err(fail(e));
        }
        if let Some(block) = self.public_block_now()
            && let Err(e) = net.route_public(block).await
        {
            self.stop_master_on_link().await;
            self.stop_dns_on_link().await;
            let _ = net.down().await;
            return Err(fail(e));
        }
        *slot = Some(net.clone());
        Ok(net)
    }

    /// The cloud namespace, if it is up.
    async fn net_if_up(&self) -> Option<CloudNet> {
        self.net.lock().await.clone()
    }

    fn network(r: &LocalResource) -> ProviderResult<Network> {
        let cidr = v4(
            parse_cidr(prop_str(&r.properties, "cidr").unwrap_or_default())?,
            "network",
        )?;
        Network::new(&r.id, cidr).map_err(|e| host_err(&r.id, e))
    }

    /// A new network: its CIDR reserved on the machine (refused when it
    /// overlaps a route of the machine), its bridge in the cloud namespace.
    /// Nothing stays behind when it fails.
    pub async fn make_network(&self, id: &str, cidr: IpNet) -> ProviderResult<()> {
        let cidr = v4(cidr, "network")?;
        nat::check_free(cidr).map_err(permanent)?;
        let net = Network::new(id, cidr).map_err(|e| host_err(id, e))?;
        network::reserve_cidr(net.cidr)
            .await
            .map_err(|e| permanent(e.to_string()))?;
        let made = async {
            let cloud = self.net().await?;
            cloud
                .add_network(&net)
                .await
                .map_err(|e| host_err(&format!("network {id}"), e))
        }
        .await;
        if made.is_err() {
            let _ = network::release_cidr(net.cidr).await;
        }
        made
    }

    /// Brings a recorded network back: its CIDR reserved again if the
    /// route went (a reboot), its bridge made anew.
    async fn restore_network(&self, r: &LocalResource) -> ProviderResult<()> {
        let net = Self::network(r)?;
        let routes = network::machine_routes()
            .await
            .map_err(|e| host_err(&r.id, e))?;
        let cidr = net.cidr.to_string();
        let reserved = routes.iter().any(|route| {
            route.kind.as_deref() == Some("unreachable")
                && route.dst == cidr
                && route.metric == Some(UNREACHABLE_METRIC)
        });
        if !reserved {
            network::reserve_cidr(net.cidr)
                .await
                .map_err(|e| host_err(&r.id, e))?;
        }
        let cloud = self.net().await?;
        cloud
            .remove_network(&net)
            .await
            .map_err(|e| host_err(&r.id, e))?;
        cloud
            .add_network(&net)
            .await
            .map_err(|e| host_err(&r.id, e))
    }

    /// Removes a destroyed network's bridge, route and reservation.
    pub async fn remove_network(&self, r: &LocalResource) -> ProviderResult<()> {
        let net = Self::network(r)?;
        if let Some(cloud) = self.net_if_up().await {
            cloud
                .remove_network(&net)
                .await
                .map_err(|e| host_err(&r.id, e))?;
        }
        network::release_cidr(net.cidr)
            .await
            .map_err(|e| host_err(&r.id, e))
    }

    /// The network a server's subnet is in, and the subnet's block.
    fn placement(
        state: &CloudState,
        p: &Json,
    ) -> ProviderResult<(Network, Ipv4Net, LocalResource)> {
        let subnet_id = prop_str(p, "subnet").ok_or_else(|| permanent("`subnet` is required"))?;
        let subnet = state
            .resources
            .get(subnet_id)
            .filter(|r| r.kind == "subnet")
            .ok_or_else(|| permanent(format!("there is no subnet {subnet_id} in the local cloud")))?
            .clone();
        let net_id = prop_str(&subnet.properties, "network").unwrap_or_default();
        let net = state
            .resources
            .get(net_id)
            .filter(|r| r.kind == "network")
            .ok_or_else(|| permanent(format!("there is no network {net_id} in the local cloud")))?;
        let cidr = v4(
            parse_cidr(prop_str(&subnet.properties, "cidr").unwrap_or_default())?,
            "subnet",
        )?;
        Ok((Self::network(net)?, cidr, subnet))
    }

    /// Chooses a new server's address in its subnet and reserves it until
    /// the create is recorded or fails: the `address` property when it is
    /// a usable address of the subnet, else the first free one from the
    /// subnet's 10th address up.
    pub fn reserve_address(
        state: &mut CloudState,
        id: &str,
        p: &Json,
    ) -> ProviderResult<(Network, Ipv4Net, Ipv4Addr)> {
        let (net, subnet, _) = Self::placement(state, p)?;
        let taken: std::collections::HashSet<Ipv4Addr> = state
            .of_kind("server")
            .filter_map(|s| s.ip)
            .chain(state.reserved_private.keys().filter_map(|k| k.parse().ok()))
            .collect();
        let address = match prop_str(p, "address") {
            Some(text) => {
                let ip: Ipv4Addr = text
                    .parse()
                    .map_err(|_| permanent(format!("`address` {text} is not an IPv4 address")))?;
                let usable = subnet.contains(&ip)
                    && ip != subnet.network()
                    && ip != subnet.broadcast()
                    && net.check_address(ip).is_ok();
                if !usable {
                    return Err(permanent(format!(
                        "`address` {ip} is not a usable address of the server's subnet {subnet} \
                         (network {}, gateway {})",
                        net.cidr,
                        net.gateway()
                    )));
                }
                if taken.contains(&ip) {
                    return Err(ProviderError::Conflict(format!(
                        "address {ip} is already given to another server"
                    )));
                }
                ip
            }
            None => subnet
                .hosts()
                .skip(9)
                .find(|h| !taken.contains(h) && net.check_address(*h).is_ok())
                .ok_or_else(|| permanent(format!("no address left in subnet {subnet}")))?,
        };
        state
            .reserved_private
            .insert(address.to_string(), id.to_string());
        Ok((net, subnet, address))
    }

    fn hostname(r_id: &str, p: &Json) -> String {
        prop_str(p, "name").unwrap_or(r_id).to_string()
    }

    fn server(
        &self,
        cloud: &CloudNet,
        id: &str,
        hostname: &str,
        root: ImageRoot,
        snet: &ServerNet,
    ) -> ProviderResult<Server> {
        Server::new(ServerSpec {
            id: format!("{}-{id}", cloud.netns),
            hostname: hostname.to_string(),
            dir: self.dirs.of("server", id),
            image: root.image,
            seed: root.seed,
            resolv_conf: Some(resolv_conf(cloud.host_address(), &machine_nameservers())),
            netns: snet.netns_path(),
            cairn_binary: self.cairn_binary.clone(),
            init: crate::host::runtime::INIT_ARGS
                .iter()
                .map(|a| a.to_string())
                .collect(),
            cgroup_parent: cloud.netns.clone(),
            env: [
                format!("CAIRN_ADDRESS={}", snet.address.addr()),
                format!("CAIRN_SERVER={id}"),
            ]
            .into_iter()
            .chain(self.agent_env(cloud))
            .collect(),
        })
        .map_err(|e| host_err(&format!("server {id}"), e))
    }

    /// Makes a server: its namespace and veth on its network's bridge, its
    /// root (an overlay on its image), a host key of its own, root's
    /// authorized key from its key pair, its `user_data`, and starts it.
    /// Returns its attributes. Nothing stays behind when it fails.
    pub async fn make_server(
        &self,
        id: &str,
        p: &Json,
        net: &Network,
        address: Ipv4Addr,
        authorized_key: Option<String>,
    ) -> ProviderResult<Json> {
        let t0 = std::time::Instant::now();
        let image = self.image_root(p).await?;
        let cloud = self.net().await?;
        let hostname = Self::hostname(id, p);
        let names = cloud
            .server_net(net, id, address)
            .map_err(|e| host_err(&format!("server {id}"), e))?;
        let server = self.server(&cloud, id, &hostname, image, &names)?;
        let snet = cloud
            .add_server(net, id, address)
            .await
            .map_err(|e| host_err(&format!("server {id}"), e))?;
        let t_net = t0.elapsed();
        let started = async {
            let fail = |e| host_err(&format!("server {id}"), e);
            server.mount_root().await.map_err(fail)?;
            server.mask_image_services().map_err(fail)?;
            let key = ssh::generate_key(&hostname).map_err(fail)?;
            let host_key = ssh::install_host_key(&server.rootfs(), &key).map_err(fail)?;
            if let Some(public) = &authorized_key {
                ssh::install_authorized_key(&server.rootfs(), public).map_err(fail)?;
            }
            if let Some(user_data) = prop_str(p, "user_data") {
                server
                    .write_file(USER_DATA_PATH, user_data.as_bytes(), 0o755)
                    .map_err(fail)?;
            }
            self.enrol_agent(id, &server.rootfs()).map_err(permanent)?;
            let t_root = t0.elapsed();
            server.start().await.map_err(fail)?;
            tracing::debug!(
                server = id,
                net_ms = t_net.as_millis() as u64,
                root_ms = (t_root - t_net).as_millis() as u64,
                start_ms = (t0.elapsed() - t_root).as_millis() as u64,
                "server made"
            );
            Ok::<_, ProviderError>(host_key)
        }
        .await;
        match started {
            Ok(host_key) => {
                self.servers
                    .lock()
                    .expect("servers lock")
                    .insert(id.to_string(), (server, snet));
                Ok(json!({
                    "id": id,
                    "address": address.to_string(),
                    "private_ip": address.to_string(),
                    "public_ip": Json::Null,
                    "host_key": host_key,
                }))
            }
            Err(e) => {
                let _ = server.destroy().await;
                let _ = cloud.remove_server(&snet).await;
                // Its key went with its layer.
                self.agents.forget(id).await;
                Err(e)
            }
        }
    }

    /// Brings a recorded server back on its kept layer: its namespace and
    /// veth made anew (what a dead daemon left is removed first), the
    /// container started again.
    async fn restore_server(&self, state: &CloudState, r: &LocalResource) -> ProviderResult<()> {
        let (net, _, _) = Self::placement(state, &r.properties)?;
        let address =
            r.ip.ok_or_else(|| permanent(format!("server {} has no recorded address", r.id)))?;
        let image = self.image_root(&r.properties).await?;
        let cloud = self.net().await?;
        let fail = |e| host_err(&format!("server {}", r.id), e);
        let names = cloud.server_net(&net, &r.id, address).map_err(fail)?;
        let hostname = Self::hostname(&r.id, &r.properties);
        let server = self.server(&cloud, &r.id, &hostname, image, &names)?;
        server.stop(Duration::from_secs(2)).await.map_err(fail)?;
        cloud.remove_server(&names).await.map_err(fail)?;
        let snet = cloud.add_server(&net, &r.id, address).await.map_err(fail)?;
        // Enrolled again (kept key, same entry), so that a server made
        // before its cloud ran agents, or whose entry went, has one.
        server.mount_root().await.map_err(fail)?;
        if let Err(e) = self.enrol_agent(&r.id, &server.rootfs()) {
            tracing::warn!("{e}");
        }
        server.start().await.map_err(fail)?;
        self.servers
            .lock()
            .expect("servers lock")
            .insert(r.id.clone(), (server, snet));
        Ok(())
    }

    /// The runtime handle of a recorded server (made from its record when
    /// the daemon has none, e.g. after a failed restore).
    async fn handle(&self, r: &LocalResource) -> Option<(Server, ServerNet, CloudNet)> {
        let cloud = match self.net_if_up().await {
            Some(c) => c,
            None => CloudNet::new(&self.id, Ipv4Net::default()),
        };
        if let Some((s, n)) = self
            .servers
            .lock()
            .expect("servers lock")
            .get(&r.id)
            .cloned()
        {
            return Some((s, n, cloud));
        }
        let names = cloud.server_names(&r.id, Ipv4Net::from(r.ip?));
        let hostname = Self::hostname(&r.id, &r.properties);
        let root = ImageRoot {
            image: PathBuf::from("/"),
            seed: None,
        };
        let server = self.server(&cloud, &r.id, &hostname, root, &names).ok()?;
        Some((server, names, cloud))
    }

    /// Removes a destroyed server: container, overlay, layer directory,
    /// namespace and veth.
    pub async fn remove_server(&self, r: &LocalResource) -> ProviderResult<()> {
        let Some((server, snet, cloud)) = self.handle(r).await else {
            return remove_dir(&self.dirs.of("server", &r.id));
        };
        let fail = |e| ProviderError::Transient(format!("removing server {}: {e}", r.id));
        server.destroy().await.map_err(fail)?;
        cloud.remove_server(&snet).await.map_err(fail)?;
        self.servers.lock().expect("servers lock").remove(&r.id);
        Ok(())
    }

    /// runc's status of each server the daemon runs (`running`, `stopped`...).
    pub async fn statuses(&self) -> HashMap<String, String> {
        let servers: Vec<(String, Server)> = self
            .servers
            .lock()
            .expect("servers lock")
            .iter()
            .map(|(id, (s, _))| (id.clone(), s.clone()))
            .collect();
        let mut out = HashMap::new();
        for (id, s) in servers {
            let status = match s.state().await {
                Ok(Some(state)) => state.status,
                Ok(None) => NOT_RUNNING.to_string(),
                Err(e) => format!("unknown: {e}"),
            };
            out.insert(id, status);
        }
        out
    }

    /// Load balancer `id`'s address on the machine's end of the link: it
    /// listens there and connects to backends from there. The machine has
    /// it as its own; servers reach it through their gateway and the link;
    /// the firewalls tell the balancer apart from the machine by it.
    /// `wanted` (its recorded address) when it is on the link and free,
    /// else the lowest free one from the link's 10th address up. Added to
    /// the link before it is returned, so a listener can bind at once.
    pub async fn lb_address(&self, id: &str, wanted: Option<Ipv4Addr>) -> ProviderResult<Ipv4Addr> {
        let cloud = self.net().await?;
        let address = {
            let mut link = self.link.lock().expect("link lock");
            if let Some(ip) = link.balancers.get(id) {
                return Ok(*ip);
            }
            let ip = pick_lb_address(cloud.link, &link.taken(), wanted).ok_or_else(|| {
                permanent("no address left on the cloud's link for a load balancer")
            })?;
            link.balancers.insert(id.to_string(), ip);
            ip
        };
        let added = Cmd::new("ip")
            .args(["addr", "replace"])
            .arg(format!("{address}/{}", cloud.link.prefix_len()))
            .args(["dev", &cloud.host_if])
            .run()
            .await;
        if let Err(e) = added {
            self.link.lock().expect("link lock").balancers.remove(id);
            return Err(host_err(
                &format!("load balancer {id}'s address {address}"),
                e,
            ));
        }
        Ok(address)
    }

    /// Takes a stopped or removed load balancer's address off the link.
    pub async fn release_lb_address(&self, id: &str) {
        let Some(ip) = self.link.lock().expect("link lock").balancers.remove(id) else {
            return;
        };
        if let Some(cloud) = self.net_if_up().await {
            let _ = Cmd::new("ip")
                .args(["addr", "del"])
                .arg(format!("{ip}/{}", cloud.link.prefix_len()))
                .args(["dev", &cloud.host_if])
                .output()
                .await;
        }
    }

    /// Replaces the cloud namespace's firewall table with the rules of
    /// `state` (taken while holding the firewall lock, by `snapshot`).
    pub async fn apply_firewall(
        &self,
        snapshot: impl FnOnce() -> CloudState,
    ) -> ProviderResult<()> {
        use std::sync::atomic::Ordering::SeqCst;
        // Every change a caller made is recorded before it asks.
        let ticket = self.firewall_asked.fetch_add(1, SeqCst) + 1;
        let mut way_out = self.firewall.lock().await;
        if self.firewall_done.load(SeqCst) >= ticket {
            return Ok(());
        }
        let Some(cloud) = self.net_if_up().await else {
            return Ok(());
        };
        // Read before the snapshot: every ticket up to here is in it.
        let covers = self.firewall_asked.load(SeqCst);
        let mut state = snapshot();
        for (id, r) in self.staged_databases.lock().expect("staged lock").iter() {
            state
                .resources
                .entry(id.clone())
                .or_insert_with(|| r.clone());
        }
        let link = self.link.lock().expect("link lock").clone();
        let mut rules = ruleset(&state, &link);
        let apply = |rules: Ruleset| {
            let netns = cloud.netns.clone();
            async move {
                nft::apply(&netns, &rules).await.map_err(|e| {
                    ProviderError::Transient(format!("the cloud's firewall rules: {e}"))
                })
            }
        };
        if rules.internet.is_empty() {
            // The way out goes before the rules that guard it.
            if let Some(nat) = way_out.take() {
                nat.stop().await;
            }
            apply(rules).await?;
            self.firewall_done.store(covers, SeqCst);
            return Ok(());
        }
        // The rules first: the tap's default route must find only the
        // networks with `internet: true` allowed out.
        rules.way_out = Some(nat::DEVICE.to_string());
        apply(rules).await?;
        self.firewall_done.store(covers, SeqCst);
        if way_out.is_none() {
            let started = Nat::start(&PathBuf::from("/run/netns").join(&cloud.netns))
                .await
                .map_err(|e| permanent(format!("the way to the internet: {e}")))?;
            tracing::info!(pid = ?started.pid(), "slirp4netns started for networks with internet");
            *way_out = Some(started);
        }
        Ok(())
    }

    /// Puts a database being made into every firewall snapshot until it
    /// is deleted (see [`Hosts::stop_serving_database`]).
    pub fn stage_database(&self, record: LocalResource) {
        self.staged_databases
            .lock()
            .expect("staged lock")
            .insert(record.id.clone(), record);
    }

    /// Stops the way out, if it runs.
    async fn close_way_out(&self) {
        if let Some(nat) = self.firewall.lock().await.take() {
            nat.stop().await;
        }
    }

    /// Takes the cloud namespace and link down once `state` has nothing
    /// that lives in them (no network, server or load balancer left), so a
    /// destroyed deployment leaves no namespace, link or table behind.
    pub async fn down_if_idle(&self, snapshot: impl FnOnce() -> CloudState) -> ProviderResult<()> {
        let _alone = self.shape.write().await;
        let state = snapshot();
        let busy = state.resources.values().any(|r| {
            matches!(
                r.kind.as_str(),
                "network" | "server" | "load_balancer" | "database"
            )
        });
        if busy {
            return Ok(());
        }
        self.close_way_out().await;
        self.stop_dns_on_link().await;
        self.stop_master_on_link().await;
        let mut slot = self.net.lock().await;
        if let Some(cloud) = slot.take() {
            cloud
                .down()
                .await
                .map_err(|e| ProviderError::Transient(format!("the cloud's namespace: {e}")))?;
        }
        Ok(())
    }

    /// Held for a create or delete from its start until it is recorded.
    pub async fn changing(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.shape.read().await
    }

    /// Brings back the networks and servers of `state` after a restart,
    /// and their firewall. Problems are returned, one per resource.
    pub async fn restore(&self, state: &CloudState) -> Vec<String> {
        // Before the namespace comes up, which routes the block into it.
        let mut problems = self.restore_public_block(state).await;
        let networks: Vec<&LocalResource> = state.of_kind("network").collect();
        let servers: Vec<&LocalResource> = state.of_kind("server").collect();
        if networks.is_empty() && servers.is_empty() {
            return problems;
        }
        for r in networks {
            if let Err(e) = self.restore_network(r).await {
                problems.push(format!("{}: {e}", r.id));
            }
        }
        // The rules first, so that no server is open for a moment.
        if let Err(e) = self.apply_firewall(|| state.clone()).await {
            problems.push(e.to_string());
        }
        for r in servers {
            if let Err(e) = self.restore_server(state, r).await {
                problems.push(format!("{}: {e}", r.id));
            }
        }
        problems
    }

    /// Stops every server (their layers stay) and takes the cloud
    /// namespace and link down; the networks' `unreachable` routes stay
    /// until they are destroyed.
    pub async fn shutdown(&self) {
        let servers: Vec<(Server, ServerNet)> = self
            .servers
            .lock()
            .expect("servers lock")
            .drain()
            .map(|(_, v)| v)
            .collect();
        self.close_way_out().await;
        self.stop_dns_on_link().await;
        self.stop_master_on_link().await;
        self.stop_databases().await;
        let cloud = self.net.lock().await.take();
        for (server, snet) in servers {
            if let Err(e) = server.stop(Duration::from_secs(5)).await {
                tracing::warn!("stopping {}: {e}", server.spec().id);
            }
            if let Some(cloud) = &cloud
                && let Err(e) = cloud.remove_server(&snet).await
            {
                tracing::warn!("removing {}'s namespace: {e}", server.spec().id);
            }
        }
        if let Some(cloud) = cloud
            && let Err(e) = cloud.down().await
        {
            tracing::warn!("taking the cloud's network namespace down: {e}");
        }
        self.link.lock().expect("link lock").balancers.clear();
    }
}

/// A load balancer's address on `link`: `wanted` when it is one of the
/// link's host addresses from the 10th up and not in `used` (the low ones
/// are the machine's and the cloud namespace's ends), else the lowest
/// free one from the 10th up; `None` when the link is full.
fn pick_lb_address(link: Ipv4Net, used: &[Ipv4Addr], wanted: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
    let base = u32::from(link.network());
    let usable = |ip: &Ipv4Addr| {
        let n = u32::from(*ip).wrapping_sub(base);
        link.contains(ip) && n >= 10 && *ip != link.broadcast() && !used.contains(ip)
    };
    wanted.filter(usable).or_else(|| {
        (10..u32::from(link.broadcast()).wrapping_sub(base))
            .map(|n| Ipv4Addr::from(base + n))
            .find(usable)
    })
}

/// The block of the recorded public addresses, and a problem for each
/// made by an earlier cairn on the machine's loopback (no longer
/// answering).
fn recorded_public_block(state: &CloudState) -> (Option<Ipv4Net>, Vec<String>) {
    let mut problems = Vec::new();
    let mut block = None;
    for r in state.of_kind("ip_address") {
        let Some(ip) = r.ip else { continue };
        if !network::PUBLIC_RANGE.contains(&ip) {
            problems.push(format!(
                "{}: public address {ip} was made by an earlier cairn on the machine's loopback \
                 and no longer answers; make it again (`cairn destroy` and `cairn up` of its \
                 deployment)",
                r.id
            ));
            continue;
        }
        let of_ip = Ipv4Net::new(ip, network::PUBLIC_BLOCK_LEN)
            .map(|n| n.trunc())
            .unwrap_or_default();
        block.get_or_insert(of_ip);
    }
    (block, problems)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    use crate::cloud::model::put;

    #[test]
    fn the_isolation_is_chosen_once_and_a_mismatch_is_refused() {
        use Isolation::*;
        let ready = || Ok(());
        let not_root = || {
            Err(HostError::Missing {
                what: vec!["root".into()],
                packages: vec![],
            })
        };
        // A new cloud: servers are hosts where the machine can run them.
        assert_eq!(choose("/d", None, false, None, ready).unwrap(), Runc);
        assert_eq!(choose("/d", None, false, None, not_root).unwrap(), Process);
        // Asked for: that, whatever the machine (runc's own check comes later).
        assert_eq!(choose("/d", None, false, Some(Runc), ready).unwrap(), Runc);
        assert_eq!(
            choose("/d", None, false, Some(Process), ready).unwrap(),
            Process
        );
        // Made: what it was made with, whatever the machine can do now.
        assert_eq!(
            choose("/d", Some("runc"), true, None, not_root).unwrap(),
            Runc
        );
        assert_eq!(
            choose("/d", Some("process"), true, None, ready).unwrap(),
            Process
        );
        // Resources and no record: a cloud made before the record said.
        assert_eq!(choose("/d", None, true, None, ready).unwrap(), Process);
        let err = choose("/d", Some("runc"), true, Some(Process), ready).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the local cloud in /d was made with `runc` isolation and cannot run with `process`; \
             use another directory (CAIRN_LOCAL_DIR) for a `process` cloud, or destroy this \
             one's deployments, stop it and remove /d"
        );
        let err = choose("/d", None, true, Some(Runc), ready).unwrap_err();
        assert!(err.to_string().contains("made with `process`"), "{err}");
        let err = "docker".parse::<Isolation>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown isolation `docker`: use `process` or `runc`"
        );
    }

    fn placed(state: &mut CloudState) {
        put(
            state,
            "net",
            "network",
            json!({"cidr": "10.9.0.0/16"}),
            None,
        );
        put(
            state,
            "sub",
            "subnet",
            json!({"network": "net", "cidr": "10.9.1.0/24"}),
            None,
        );
    }

    #[test]
    fn servers_get_addresses_of_their_subnet_from_the_tenth_up() {
        let mut st = CloudState::default();
        placed(&mut st);
        let p = json!({"subnet": "sub"});
        let (net, subnet, a) = Hosts::reserve_address(&mut st, "s1", &p).unwrap();
        assert_eq!(
            (net.gateway(), subnet.to_string()),
            ("10.9.0.1".parse().unwrap(), "10.9.1.0/24".into())
        );
        assert_eq!(a, Ipv4Addr::new(10, 9, 1, 10));
        let (_, _, b) = Hosts::reserve_address(&mut st, "s2", &p).unwrap();
        assert_eq!(b, Ipv4Addr::new(10, 9, 1, 11), "the first is reserved");
        let fixed = json!({"subnet": "sub", "address": "10.9.1.99"});
        assert_eq!(
            Hosts::reserve_address(&mut st, "s3", &fixed).unwrap().2,
            Ipv4Addr::new(10, 9, 1, 99)
        );
        let err = Hosts::reserve_address(&mut st, "s4", &fixed).unwrap_err();
        assert!(err.to_string().contains("already given"), "{err}");
        let outside = json!({"subnet": "sub", "address": "10.9.2.5"});
        let err = Hosts::reserve_address(&mut st, "s5", &outside).unwrap_err();
        assert!(
            err.to_string().contains(
                "`address` 10.9.2.5 is not a usable address of the server's subnet 10.9.1.0/24"
            ),
            "{err}"
        );
        let err = Hosts::reserve_address(&mut st, "s6", &json!({"subnet": "nope"})).unwrap_err();
        assert!(err.to_string().contains("no subnet nope"), "{err}");
    }

    #[test]
    fn the_public_block_is_the_recorded_addresses_and_loopback_ones_are_reported() {
        let mut st = CloudState::default();
        assert_eq!(recorded_public_block(&st), (None, vec![]));
        put(&mut st, "p1", "ip_address", json!({}), Some("198.19.3.7"));
        put(&mut st, "p2", "ip_address", json!({}), Some("198.19.3.9"));
        put(&mut st, "old", "ip_address", json!({}), Some("127.43.0.5"));
        let (block, problems) = recorded_public_block(&st);
        assert_eq!(block, Some("198.19.3.0/24".parse().unwrap()));
        assert_eq!(
            problems,
            [
                "old: public address 127.43.0.5 was made by an earlier cairn on the machine's \
              loopback and no longer answers; make it again (`cairn destroy` and `cairn up` of \
              its deployment)"
            ]
        );
    }

    #[test]
    fn a_balancer_keeps_its_link_address_when_free_else_takes_the_lowest_from_the_tenth() {
        let link: Ipv4Net = "169.254.7.0/24".parse().unwrap();
        let at = |n: u8| Ipv4Addr::new(169, 254, 7, n);
        assert_eq!(pick_lb_address(link, &[], None), Some(at(10)));
        assert_eq!(
            pick_lb_address(link, &[at(10), at(254)], None),
            Some(at(11))
        );
        // Its address before a restart, when it is still free.
        assert_eq!(pick_lb_address(link, &[at(10)], Some(at(42))), Some(at(42)));
        // Taken meanwhile, one of the link's ends, off the link (the link
        // moved, or an earlier cairn's loopback address): a new one.
        assert_eq!(pick_lb_address(link, &[at(42)], Some(at(42))), Some(at(10)));
        assert_eq!(pick_lb_address(link, &[], Some(at(1))), Some(at(10)));
        assert_eq!(pick_lb_address(link, &[], Some(at(255))), Some(at(10)));
        let elsewhere = Ipv4Addr::new(169, 254, 8, 42);
        assert_eq!(pick_lb_address(link, &[], Some(elsewhere)), Some(at(10)));
        let loopback = Ipv4Addr::new(127, 43, 0, 5);
        assert_eq!(pick_lb_address(link, &[], Some(loopback)), Some(at(10)));
        // A full link: none.
        let all: Vec<Ipv4Addr> = (10..=254).map(at).collect();
        assert_eq!(pick_lb_address(link, &all, None), None);
        assert_eq!(pick_lb_address(link, &all[1..], None), Some(at(10)));
    }

    #[test]
    fn ipv6_networks_are_refused_with_the_reason() {
        let err = v4("fd00::/64".parse().unwrap(), "network").unwrap_err();
        assert_eq!(
            err.to_string(),
            "network fd00::/64: servers as hosts (`runc` isolation) have IPv4 networks only"
        );
        assert!(v4("10.0.0.0/8".parse().unwrap(), "network").is_ok());
    }

    #[test]
    fn container_ids_are_per_cloud_directory() {
        let a = container_id(&LocalDirs::new("/nonexistent/a"), "server-00001");
        let b = container_id(&LocalDirs::new("/nonexistent/b"), "server-00001");
        assert_ne!(a, b);
        assert!(
            a.starts_with("cairn-") && a.ends_with("-server-00001"),
            "{a}"
        );
    }
}
