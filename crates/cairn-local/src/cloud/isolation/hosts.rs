//! The parts of a `runc` cloud that live outside its record (`Hosts`),
//! and the names its kernel objects take. Above this file, the other files
//! of `isolation` (all but `mode`, `rules` and `listeners`, below it) are
//! `impl Hosts` blocks, each a part of it (its network, servers, firewall
//! table...).

use std::collections::HashMap;
use std::path::PathBuf;

use cairn_engine::provider::{ProviderError, ProviderResult};
use ipnet::{IpNet, Ipv4Net};

use super::listeners::{LinkDns, LinkMaster, Listener};
use super::mode::IsolationError;
use super::rules::LinkAddresses;
use crate::cloud::agents::Agents;
use crate::cloud::dirs::LocalDirs;
use crate::cloud::model::LocalResource;
use crate::cloud::props::permanent;
use crate::host::image::ImageCache;
use crate::host::nat::Nat;
use crate::host::network::{CloudNet, ServerNet};
use crate::host::runtime::Server;
use crate::host::{HostError, preflight};

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

pub(super) fn host_err(what: &str, e: HostError) -> ProviderError {
    permanent(format!("{what}: {e}"))
}

pub(super) fn v4(net: IpNet, what: &str) -> ProviderResult<Ipv4Net> {
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
    pub(super) id: String,
    pub(super) dirs: LocalDirs,
    pub(super) images: ImageCache,
    pub(super) cairn_binary: PathBuf,
    /// The cloud namespace and its link, once up (after the first network,
    /// or at restore).
    pub(super) net: tokio::sync::Mutex<Option<CloudNet>>,
    /// Each load balancer's and each database's address on the link.
    pub(super) link: std::sync::Mutex<LinkAddresses>,
    /// Each database's listener in the cloud namespace.
    pub(super) db_listeners: std::sync::Mutex<HashMap<String, Listener>>,
    /// The records of databases being made, until they are deleted: in
    /// every firewall snapshot (the record's own wins once it is there),
    /// so a database's rules are in place before it listens.
    pub(super) staged_databases: std::sync::Mutex<HashMap<String, LocalResource>>,
    /// Firewall replacements asked for, and the last one whose changes an
    /// applied table holds: a replacement asked for while another waited
    /// is done by the one that takes its snapshot after both asked. With
    /// hundreds of servers made at once, the table is replaced a few
    /// times, not once per server (each replacement is the whole table).
    pub(super) firewall_asked: std::sync::atomic::AtomicU64,
    pub(super) firewall_done: std::sync::atomic::AtomicU64,
    /// Each running server's container and network place.
    pub(super) servers: std::sync::Mutex<HashMap<String, (Server, ServerNet)>>,
    /// Held while the firewall table is computed and replaced, so that of
    /// two changes racing, the later state is the one applied; it guards
    /// the way out (slirp4netns, while a network has `internet: true`).
    pub(super) firewall: tokio::sync::Mutex<Option<Nat>>,
    /// The cloud's zones, served to servers on the link ([`Hosts::serve_dns_on_link`]).
    pub(super) zones: crate::dns::Zones,
    /// That listener while the link is up: its stop and its task.
    pub(super) link_dns: std::sync::Mutex<Option<LinkDns>>,
    /// Held (shared) by every create and delete from its start until it is
    /// recorded, and (exclusive) by [`Hosts::down_if_idle`]: the namespace
    /// never goes down under a network or server being made.
    pub(super) shape: tokio::sync::RwLock<()>,
    /// The cloud's master, which servers' agents reach on the link.
    pub(super) agents: Agents,
    /// The master's listener on the link while it is up.
    pub(super) link_master: std::sync::Mutex<Option<LinkMaster>>,
    /// The block the cloud's public addresses come from, while it holds
    /// one (claimed with the first public address, released with the
    /// last): routed into the cloud namespace whenever that is up.
    pub(super) public_block: std::sync::Mutex<Option<Ipv4Net>>,
    /// Held while the public block is claimed or released, and while a
    /// public address is reserved in it.
    pub(super) public_claim: tokio::sync::Mutex<()>,
}

impl Hosts {
    /// The `runc` parts of the cloud in `dirs`; fails when the machine
    /// cannot run them (see [`preflight`]).
    pub fn new(
        dirs: &LocalDirs,
        images: ImageCache,
        zones: crate::dns::Zones,
        agents: Agents,
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

    pub(super) fn public_block_now(&self) -> Option<Ipv4Net> {
        *self.public_block.lock().expect("public block lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
