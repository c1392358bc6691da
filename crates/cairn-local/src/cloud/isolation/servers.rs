//! A `runc` cloud's servers: each a container with its own namespaces on
//! its network's bridge, its root an overlay on its image, made, brought
//! back after a restart and removed here.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use cairn_engine::provider::{Json, ProviderError, ProviderResult};
use ipnet::Ipv4Net;
use serde_json::json;

use super::hosts::{Hosts, host_err, v4};
use super::images::ImageRoot;
use super::names::{machine_nameservers, resolv_conf};
use crate::cloud::dirs::remove_dir;
use crate::cloud::model::{CloudState, LocalResource};
use crate::cloud::props::{parse_cidr, permanent, prop_str};
use crate::host::network::{CloudNet, Network, ServerNet};
use crate::host::runtime::{Server, ServerSpec, USER_DATA_PATH};
use crate::host::ssh;

/// What `cairn local status` shows of a runc server.
pub const NOT_RUNNING: &str = "not running";

impl Hosts {
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
    pub(super) async fn restore_server(
        &self,
        state: &CloudState,
        r: &LocalResource,
    ) -> ProviderResult<()> {
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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cloud::model::put;

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
}
