//! The engine's `Provider` trait on the local cloud: each call reserves,
//! makes (`make`), records, then brings the balancers' access and, with
//! `runc` isolation, the firewall table in line.

use cairn_engine::provider::*;
use cairn_engine::schema::{Kind, ResourceSchema, portable};
use serde_json::json;

use super::base::Cloud;
use super::firewall;
use super::make::unsupported;
use super::model::LocalResource;
use super::props::permanent;
use super::public;

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
