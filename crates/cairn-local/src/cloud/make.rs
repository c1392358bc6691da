//! What each kind of resource is made of in the local cloud, and what
//! deleting it takes away: the part of a provider call between its
//! reservations and its record (see `provider`).

use std::net::Ipv4Addr;
use std::time::Duration;

use cairn_engine::provider::{CreateRequest, Json, ProviderError, ProviderResult};
use cairn_engine::schema::Kind;
use cairn_engine::schema::database::Database;
use cairn_engine::schema::server::Server;
use serde_json::json;

use super::addresses;
use super::base::Cloud;
use super::dirs::{copy_tree, remove_dir};
use super::firewall;
use super::isolation::Hosts;
use super::model::LocalResource;
use super::props::{parse_cidr, permanent, prop, prop_str};
use super::services;
use crate::supervisor::ServerSpec;

impl Cloud {
    /// Validates and computes the attributes of a new resource; the record
    /// is written by the caller.
    pub(super) async fn make(
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
                    let (net, _, address) = Hosts::reserve_address(&mut self.lock(), id, p)?;
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

    pub(super) async fn unmake(&self, r: &LocalResource) -> ProviderResult<()> {
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
pub(super) fn unsupported(kind: Kind) -> ProviderError {
    permanent(format!(
        "the local target does not make `{kind}` resources: it is a type of the {} target",
        kind.target().unwrap_or("aws")
    ))
}
