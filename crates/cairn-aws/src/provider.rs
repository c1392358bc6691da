//! The `Provider` implementation: one dispatch per type, `find` by the
//! token tag (or what stands for it), `list` by the deployment tag.

use std::time::Duration;

use cairn_engine::provider::*;
use cairn_engine::schema::{ResourceSchema, lookup, portable, target_of};
use serde_json::json;

use crate::config::{AwsSettings, Clients};
use crate::ec2::by_tag;
use crate::error::{AwsError, classify};
use crate::iam::{PROFILE, ROLE};
use crate::model::*;
use crate::shared_reads::SharedReads;

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
}

const KINDS: &[&str] = &[
    "network",
    "subnet",
    "firewall",
    "server",
    "ip_address",
    "load_balancer",
    "dns_zone",
    "dns_record",
    "database",
    "bucket",
    "secret",
    "key_pair",
    "volume",
    "snapshot",
    "image",
    ROLE,
    PROFILE,
];

impl AwsProvider {
    pub async fn connect(settings: &AwsSettings) -> Result<AwsProvider, AwsError> {
        let c = Clients::load(settings).await?;
        Ok(AwsProvider {
            shared: SharedReads::new(&c),
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

    fn unsupported(kind: &str) -> ProviderError {
        permanent(format!("the aws target does not make `{kind}` resources"))
    }

    /// The id an earlier create with this token left, if any.
    async fn find_id(&self, kind: &str, token: &str) -> ProviderResult<Option<String>> {
        let tag = by_tag(TOKEN_TAG, token);
        let ec2 = &self.c.ec2;
        Ok(match kind {
            "network" => ec2
                .describe_vpcs()
                .filters(tag)
                .send()
                .await
                .map_err(|e| classify("DescribeVpcs", e))?
                .vpcs()
                .first()
                .and_then(|v| v.vpc_id())
                .map(str::to_string),
            "subnet" => ec2
                .describe_subnets()
                .filters(tag)
                .send()
                .await
                .map_err(|e| classify("DescribeSubnets", e))?
                .subnets()
                .first()
                .and_then(|v| v.subnet_id())
                .map(str::to_string),
            "firewall" => ec2
                .describe_security_groups()
                .filters(tag)
                .send()
                .await
                .map_err(|e| classify("DescribeSecurityGroups", e))?
                .security_groups()
                .first()
                .and_then(|v| v.group_id())
                .map(str::to_string),
            "server" => self
                .instance_by_token(token)
                .await?
                .and_then(|i| i.instance_id().map(str::to_string)),
            "ip_address" => ec2
                .describe_addresses()
                .filters(tag)
                .send()
                .await
                .map_err(|e| classify("DescribeAddresses", e))?
                .addresses()
                .first()
                .and_then(|v| v.allocation_id())
                .map(str::to_string),
            "key_pair" => self.find_key_pair(token).await?,
            "volume" | "snapshot" | "image" => self.find_storage(kind, token).await?,
            "load_balancer" => self.find_load_balancer(token).await?,
            "dns_zone" => self.find_zone(token).await?,
            // UPSERT of the same record set is idempotent: a retried create
            // cannot make a second one, so there is nothing to recover.
            "dns_record" => None,
            "database" => self.find_database(token).await?,
            "bucket" => self.find_bucket(token).await?,
            "secret" => self.find_secret(token).await?,
            ROLE | PROFILE => self.find_iam(kind, token, None).await?,
            other => return Err(Self::unsupported(other)),
        })
    }

    async fn read_kind(
        &self,
        kind: &str,
        id: &str,
        req: &ReadRequest,
    ) -> ProviderResult<Option<Observed>> {
        match kind {
            "network" => self.read_network(id).await,
            "subnet" => self.read_subnet(id).await,
            "firewall" => self.read_firewall(id).await,
            "server" => self.read_server(id).await,
            "ip_address" => self.read_ip_address(id).await,
            "key_pair" => self.read_key_pair(id).await,
            "volume" => self.read_volume(id).await,
            "snapshot" => self.read_snapshot(id).await,
            "image" => self.read_image(id).await,
            "load_balancer" => self.read_load_balancer(id).await,
            "dns_zone" => self.read_zone(id).await,
            "dns_record" => self.read_record(id).await,
            "database" => self.read_database(id).await,
            "bucket" => self.read_bucket(id, req).await,
            "secret" => self.read_secret(id).await,
            ROLE => self.read_role(id).await,
            PROFILE => self.read_instance_profile(id).await,
            other => Err(Self::unsupported(other)),
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
        if req.may_exist
            && req.kind != "server"
            && req.kind != "load_balancer"
            && req.kind != "database"
            && req.kind != ROLE
            && req.kind != PROFILE
            && let Some(id) = self.find_id(&req.kind, &req.token).await?
        {
            tracing::info!(address = %req.address, %id, "adopting what an earlier attempt made");
            self.finish_steps(&req, &id).await?;
            return self
                .finish_found(&req.kind, &req.deployment, &req.address, id)
                .await;
        }
        let attributes = match req.kind.as_str() {
            "network" => self.create_network(&req).await?,
            "subnet" => self.create_subnet(&req).await?,
            "firewall" => self.create_firewall(&req).await?,
            "server" => self.create_server(&req).await?,
            "ip_address" => self.create_ip_address(&req).await?,
            "key_pair" => self.create_key_pair(&req).await?,
            "volume" => self.create_volume(&req).await?,
            "snapshot" => self.create_snapshot(&req).await?,
            "image" => self.create_image(&req).await?,
            "load_balancer" => self.create_load_balancer(&req).await?,
            "dns_zone" => self.create_zone(&req).await?,
            "dns_record" => self.create_record(&req).await?,
            "database" => self.create_database(&req).await?,
            "bucket" => self.create_bucket(&req).await?,
            "secret" => self.create_secret(&req).await?,
            ROLE => self.create_role(&req).await?,
            PROFILE => self.create_instance_profile(&req).await?,
            other => return Err(Self::unsupported(other)),
        };
        let id = attributes["id"]
            .as_str()
            .ok_or_else(|| permanent(format!("{}: the create returned no id", req.address)))?
            .to_string();
        Ok(Created { id, attributes })
    }

    async fn read(&self, req: ReadRequest) -> ProviderResult<Option<Observed>> {
        self.read_kind(&req.kind, &req.id, &req).await
    }

    async fn update(&self, req: UpdateRequest) -> ProviderResult<Json> {
        match req.kind.as_str() {
            "network" => self.update_network(&req).await,
            "subnet" => self.update_subnet(&req).await,
            "firewall" => self.update_firewall(&req).await,
            "server" => self.update_server(&req).await,
            "ip_address" => self.update_ip_address(&req).await,
            "key_pair" => self.update_key_pair(&req).await,
            "volume" | "snapshot" | "image" => self.update_storage(&req).await,
            "load_balancer" => self.update_load_balancer(&req).await,
            "dns_zone" => self.update_zone(&req).await,
            "dns_record" => self.create_record_upsert(&req.properties).await,
            "database" => self.update_database(&req).await,
            "bucket" => self.update_bucket(&req).await,
            "secret" => self.update_secret(&req).await,
            ROLE => self.update_role(&req).await,
            PROFILE => self.update_instance_profile(&req).await,
            other => Err(Self::unsupported(other)),
        }
    }

    async fn delete(&self, req: DeleteRequest) -> ProviderResult<()> {
        tracing::debug!(address = %req.address, kind = %req.kind, id = %req.id, "delete");
        match req.kind.as_str() {
            "network" => self.delete_network(&req.id).await,
            "subnet" => self.delete_subnet(&req.id).await,
            "firewall" => self.delete_firewall(&req.id).await,
            "server" => self.delete_server(&req.id).await,
            "ip_address" => self.delete_ip_address(&req.id).await,
            "key_pair" => self.delete_key_pair(&req.id).await,
            "volume" => self.delete_volume(&req.id).await,
            "snapshot" => self.delete_snapshot(&req.id).await,
            "image" => self.delete_image(&req.id).await,
            "load_balancer" => self.delete_load_balancer(&req).await,
            "dns_zone" => self.delete_zone(&req.id).await,
            "dns_record" => self.delete_record(&req).await,
            "database" => self.delete_database(&req.id).await,
            "bucket" => self.delete_bucket(&req.id).await,
            "secret" => self.delete_secret(&req.id).await,
            ROLE => self.delete_role(&req.id).await,
            PROFILE => self.delete_instance_profile(&req.id).await,
            other => Err(Self::unsupported(other)),
        }
    }

    async fn find(&self, req: FindRequest) -> ProviderResult<Option<Created>> {
        let found = match req.kind.as_str() {
            // The name derived from the token first: one call, no listing.
            ROLE | PROFILE => {
                self.find_iam(&req.kind, &req.token, Some((&req.deployment, &req.address)))
                    .await?
            }
            _ => self.find_id(&req.kind, &req.token).await?,
        };
        match found {
            Some(id) => self
                .finish_found(&req.kind, &req.deployment, &req.address, id)
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
            kind: req.kind.clone(),
            id: id.to_string(),
        };
        let Some(live) = self.read_kind(&req.kind, id, &read).await? else {
            return Ok(());
        };
        let schema = lookup(&req.kind);
        let changed: Vec<String> = req
            .properties
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, want)| {
                let in_place = schema
                    .and_then(|s| s.property(k))
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
            kind: req.kind.clone(),
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
        kind: &str,
        deployment: &str,
        address: &str,
        id: String,
    ) -> ProviderResult<Created> {
        let req = ReadRequest {
            deployment: deployment.into(),
            address: address.into(),
            kind: kind.into(),
            id: id.clone(),
        };
        let attributes = match self.read_kind(kind, &id, &req).await? {
            Some(o) => o.attributes,
            None => json!({"id": id}),
        };
        Ok(Created { id, attributes })
    }

    pub fn kinds() -> &'static [&'static str] {
        KINDS
    }
}
