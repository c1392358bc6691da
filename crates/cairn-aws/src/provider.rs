//! The `Provider` implementation: one dispatch per type, `find` by the
//! token tag (or what stands for it), `list` by the deployment tag.

use std::time::Duration;

use cairn_engine::provider::*;
use cairn_engine::schema::{ResourceSchema, lookup, portable, target_of};
use serde_json::json;

use crate::config::{AwsSettings, Clients};
use crate::ec2::by_tag;
use crate::error::{AwsError, classify};
use crate::model::*;
use crate::shared_reads::SharedReads;
use crate::shared_writes::SharedWrites;

/// How long each kind of create or delete may take before it counts as
/// failed (the engine then rolls back or reports).
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    pub short: Duration,
    pub instance: Duration,
    pub load_balancer: Duration,
    pub database: Duration,
    pub image: Duration,
}

impl Default for Waits {
    fn default() -> Waits {
        Waits {
            short: Duration::from_secs(120),
            instance: Duration::from_secs(600),
            load_balancer: Duration::from_secs(900),
            database: Duration::from_secs(2400),
            image: Duration::from_secs(1800),
        }
    }
}

pub struct AwsProvider {
    pub(crate) c: Clients,
    pub(crate) waits: Waits,
    pub(crate) shared: SharedReads,
    pub(crate) writes: SharedWrites,
}

impl AwsProvider {
    pub async fn connect(settings: &AwsSettings) -> Result<AwsProvider, AwsError> {
        let c = Clients::load(settings).await?;
        Ok(AwsProvider {
            shared: SharedReads::new(&c),
            writes: SharedWrites::new(&c),
            c,
            waits: Waits::default(),
        })
    }

    pub fn with_waits(mut self, waits: Waits) -> AwsProvider {
        self.waits = waits;
        self
    }

    pub fn clients(&self) -> &Clients {
        &self.c
    }

    /// The id an earlier create with this token left, if any.
    async fn find_id(&self, kind: Kind, token: &str) -> ProviderResult<Option<String>> {
        let tag = by_tag(TOKEN_TAG, token);
        let ec2 = &self.c.ec2;
        Ok(match kind {
            Kind::Network => ec2
                .describe_vpcs()
                .filters(tag)
                .send()
                .await
                .map_err(|e| classify("DescribeVpcs", e))?
                .vpcs()
                .first()
                .and_then(|v| v.vpc_id())
                .map(str::to_string),
            Kind::Subnet => ec2
                .describe_subnets()
                .filters(tag)
                .send()
                .await
                .map_err(|e| classify("DescribeSubnets", e))?
                .subnets()
                .first()
                .and_then(|v| v.subnet_id())
                .map(str::to_string),
            Kind::Firewall => ec2
                .describe_security_groups()
                .filters(tag)
                .send()
                .await
                .map_err(|e| classify("DescribeSecurityGroups", e))?
                .security_groups()
                .first()
                .and_then(|v| v.group_id())
                .map(str::to_string),
            Kind::Server => self
                .instance_by_token(token)
                .await?
                .and_then(|i| i.instance_id().map(str::to_string)),
            Kind::IpAddress => ec2
                .describe_addresses()
                .filters(tag)
                .send()
                .await
                .map_err(|e| classify("DescribeAddresses", e))?
                .addresses()
                .first()
                .and_then(|v| v.allocation_id())
                .map(str::to_string),
            Kind::KeyPair => self.find_key_pair(token).await?,
            Kind::Volume | Kind::Snapshot | Kind::Image => self.find_storage(kind, token).await?,
            Kind::LoadBalancer => self.find_load_balancer(token).await?,
            Kind::DnsZone => self.find_zone(token).await?,
            // UPSERT of the same record set is idempotent: a retried create
            // cannot make a second one, so there is nothing to recover.
            Kind::DnsRecord => None,
            Kind::Database => self.find_database(token).await?,
            Kind::Bucket => self.find_bucket(token).await?,
            Kind::Secret => self.find_secret(token).await?,
            Kind::AwsIamRole | Kind::AwsIamInstanceProfile => {
                self.find_iam(kind, token, None).await?
            }
        })
    }

    async fn read_kind(
        &self,
        kind: Kind,
        id: &str,
        req: &ReadRequest,
    ) -> ProviderResult<Option<Observed>> {
        match kind {
            Kind::Network => self.read_network(id).await,
            Kind::Subnet => self.read_subnet(id).await,
            Kind::Firewall => self.read_firewall(id).await,
            Kind::Server => self.read_server(id).await,
            Kind::IpAddress => self.read_ip_address(id).await,
            Kind::KeyPair => self.read_key_pair(id).await,
            Kind::Volume => self.read_volume(id).await,
            Kind::Snapshot => self.read_snapshot(id).await,
            Kind::Image => self.read_image(id).await,
            Kind::LoadBalancer => self.read_load_balancer(id).await,
            Kind::DnsZone => self.read_zone(id).await,
            Kind::DnsRecord => self.read_record(id).await,
            Kind::Database => self.read_database(id).await,
            Kind::Bucket => self.read_bucket(id, req).await,
            Kind::Secret => self.read_secret(id).await,
            Kind::AwsIamRole => self.read_role(id).await,
            Kind::AwsIamInstanceProfile => self.read_instance_profile(id).await,
        }
    }
}

#[async_trait::async_trait]
impl Provider for AwsProvider {
    fn name(&self) -> &str {
        "aws"
    }

    fn schema(&self, kind: &str) -> Option<&'static ResourceSchema> {
        // The portable types and aws's own, not another target's.
        portable(kind).or_else(|| lookup(kind).filter(|_| target_of(kind) == Some("aws")))
    }

    async fn create(&self, req: CreateRequest) -> ProviderResult<Created> {
        tracing::debug!(address = %req.address, kind = %req.kind, token = %req.token, "create");
        // Every kind first looks for what an earlier attempt with this
        // token made, so a retried create adopts it instead of making two.
        // A server, a load balancer and a database do it themselves, and finish what
        // the earlier attempt left half done (waiting, listener, targets).
        // IAM names what it makes, so a retried role or profile meets its
        // name taken, and adopts it when the token tag is ours.
        let finishes_itself = matches!(
            req.kind,
            Kind::Server
                | Kind::LoadBalancer
                | Kind::Database
                | Kind::AwsIamRole
                | Kind::AwsIamInstanceProfile
        );
        if req.may_exist
            && !finishes_itself
            && let Some(id) = self.find_id(req.kind, &req.token).await?
        {
            tracing::info!(address = %req.address, %id, "adopting what an earlier attempt made");
            self.finish_steps(&req, &id).await?;
            return self
                .finish_found(req.kind, &req.deployment, &req.address, id)
                .await;
        }
        let attributes = match req.kind {
            Kind::Network => self.create_network(&req).await?,
            Kind::Subnet => self.create_subnet(&req).await?,
            Kind::Firewall => self.create_firewall(&req).await?,
            Kind::Server => self.create_server(&req).await?,
            Kind::IpAddress => self.create_ip_address(&req).await?,
            Kind::KeyPair => self.create_key_pair(&req).await?,
            Kind::Volume => self.create_volume(&req).await?,
            Kind::Snapshot => self.create_snapshot(&req).await?,
            Kind::Image => self.create_image(&req).await?,
            Kind::LoadBalancer => self.create_load_balancer(&req).await?,
            Kind::DnsZone => self.create_zone(&req).await?,
            Kind::DnsRecord => self.create_record(&req).await?,
            Kind::Database => self.create_database(&req).await?,
            Kind::Bucket => self.create_bucket(&req).await?,
            Kind::Secret => self.create_secret(&req).await?,
            Kind::AwsIamRole => self.create_role(&req).await?,
            Kind::AwsIamInstanceProfile => self.create_instance_profile(&req).await?,
        };
        let id = attributes["id"]
            .as_str()
            .ok_or_else(|| permanent(format!("{}: the create returned no id", req.address)))?
            .to_string();
        Ok(Created { id, attributes })
    }

    async fn read(&self, req: ReadRequest) -> ProviderResult<Option<Observed>> {
        self.read_kind(req.kind, &req.id, &req).await
    }

    async fn update(&self, req: UpdateRequest) -> ProviderResult<Json> {
        match req.kind {
            Kind::Network => self.update_network(&req).await,
            Kind::Subnet => self.update_subnet(&req).await,
            Kind::Firewall => self.update_firewall(&req).await,
            Kind::Server => self.update_server(&req).await,
            Kind::IpAddress => self.update_ip_address(&req).await,
            Kind::KeyPair => self.update_key_pair(&req).await,
            Kind::Volume | Kind::Snapshot | Kind::Image => self.update_storage(&req).await,
            Kind::LoadBalancer => self.update_load_balancer(&req).await,
            Kind::DnsZone => self.update_zone(&req).await,
            Kind::DnsRecord => self.create_record_upsert(&req.properties).await,
            Kind::Database => self.update_database(&req).await,
            Kind::Bucket => self.update_bucket(&req).await,
            Kind::Secret => self.update_secret(&req).await,
            Kind::AwsIamRole => self.update_role(&req).await,
            Kind::AwsIamInstanceProfile => self.update_instance_profile(&req).await,
        }
    }

    async fn delete(&self, req: DeleteRequest) -> ProviderResult<()> {
        tracing::debug!(address = %req.address, kind = %req.kind, id = %req.id, "delete");
        match req.kind {
            Kind::Network => self.delete_network(&req.id).await,
            Kind::Subnet => self.delete_subnet(&req.id).await,
            Kind::Firewall => self.delete_firewall(&req.id).await,
            Kind::Server => self.delete_server(&req.id).await,
            Kind::IpAddress => self.delete_ip_address(&req.id).await,
            Kind::KeyPair => self.delete_key_pair(&req.id).await,
            Kind::Volume => self.delete_volume(&req.id).await,
            Kind::Snapshot => self.delete_snapshot(&req.id).await,
            Kind::Image => self.delete_image(&req.id).await,
            Kind::LoadBalancer => self.delete_load_balancer(&req).await,
            Kind::DnsZone => self.delete_zone(&req.id).await,
            Kind::DnsRecord => self.delete_record(&req).await,
            Kind::Database => self.delete_database(&req.id).await,
            Kind::Bucket => self.delete_bucket(&req.id).await,
            Kind::Secret => self.delete_secret(&req.id).await,
            Kind::AwsIamRole => self.delete_role(&req.id).await,
            Kind::AwsIamInstanceProfile => self.delete_instance_profile(&req.id).await,
        }
    }

    async fn find(&self, req: FindRequest) -> ProviderResult<Option<Created>> {
        let found = match req.kind {
            // The name derived from the token first: one call, no listing.
            Kind::AwsIamRole | Kind::AwsIamInstanceProfile => {
                self.find_iam(req.kind, &req.token, Some((&req.deployment, &req.address)))
                    .await?
            }
            _ => self.find_id(req.kind, &req.token).await?,
        };
        match found {
            Some(id) => self
                .finish_found(req.kind, &req.deployment, &req.address, id)
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    async fn list(&self, deployment: &str) -> ProviderResult<Vec<Listed>> {
        self.list_deployment(deployment).await
    }

    fn backend_control(&self) -> Option<&dyn cairn_engine::backend::BackendControl> {
        Some(self)
    }
}

impl AwsProvider {
    /// What `find` returns for a found id: its attributes as `read` sees
    /// them (for a server, after it is running).
    /// An earlier attempt may have died between its steps (a security
    /// group made but its rules not yet set, a VPC without its gateway):
    /// what differs from the request and can change in place is updated.
    async fn finish_steps(&self, req: &CreateRequest, id: &str) -> ProviderResult<()> {
        let read = ReadRequest {
            deployment: req.deployment.clone(),
            address: req.address.clone(),
            kind: req.kind,
            id: id.to_string(),
        };
        let Some(live) = self.read_kind(req.kind, id, &read).await? else {
            return Ok(());
        };
        let schema = req.kind.schema();
        let changed: Vec<String> = req
            .properties
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, want)| {
                let in_place = schema
                    .property(k)
                    .is_some_and(|p| !p.force_new && !p.sensitive);
                in_place && !want.is_null() && live.properties.get(k.as_str()) != Some(want)
            })
            .map(|(k, _)| k.clone())
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        tracing::info!(address = %req.address, ?changed, "finishing what an earlier attempt began");
        self.update(UpdateRequest {
            deployment: req.deployment.clone(),
            address: req.address.clone(),
            kind: req.kind,
            id: id.to_string(),
            prior: live.properties,
            properties: req.properties.clone(),
            tags: req.tags.clone(),
            changed,
            token: req.token.clone(),
            sensitive: Vec::new(),
        })
        .await
        .map(|_| ())
    }

    async fn finish_found(
        &self,
        kind: Kind,
        deployment: &str,
        address: &str,
        id: String,
    ) -> ProviderResult<Created> {
        let req = ReadRequest {
            deployment: deployment.into(),
            address: address.into(),
            kind,
            id: id.clone(),
        };
        let attributes = match self.read_kind(kind, &id, &req).await? {
            Some(o) => o.attributes,
            None => json!({"id": id}),
        };
        Ok(Created { id, attributes })
    }

    /// Every kind: the aws target makes the portable ones and its own.
    pub fn kinds() -> &'static [Kind] {
        &Kind::ALL
    }
}
