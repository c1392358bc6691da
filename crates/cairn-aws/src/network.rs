//! network → VPC (with an internet gateway and a public route table when
//! `internet: true`), subnet → subnet, firewall → security group.

use aws_sdk_ec2::types::{ResourceType, Subnet, VpcState};
use cairn_engine::provider::*;
use serde_json::json;

use crate::ec2::{by_tag, filter, retag, spec, tag_map, with_name};
use crate::error::{classify, gone};
use crate::model::*;
use crate::provider::AwsProvider;

/// Marks the route table cairn made for a network's public subnets.
const ROLE_TAG: &str = "cairn:role";

impl AwsProvider {
    pub(crate) async fn create_network(&self, req: &CreateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        let cidr = required(p, "cidr")?;
        let tags = with_name(&create_tags(&req.tags, &req.token), prop_str(p, "name"));
        let vpc = self
            .c
            .ec2
            .create_vpc()
            .cidr_block(cidr)
            .tag_specifications(spec(ResourceType::Vpc, &tags))
            .send()
            .await
            .map_err(|e| classify("CreateVpc", e))?;
        let id = vpc
            .vpc()
            .and_then(|v| v.vpc_id())
            .ok_or_else(|| permanent("CreateVpc returned no id"))?
            .to_string();
        // The answer says whether it is available already; if not, poll.
        if vpc.vpc().and_then(|v| v.state()) != Some(&VpcState::Available) {
            wait_for("the VPC", self.waits.short, || async {
                // Eventual consistency: a new VPC may not be visible yet.
                Ok(self
                    .shared
                    .vpcs
                    .get(&id)
                    .await?
                    .filter(|v| v.state() == Some(&VpcState::Available))
                    .map(|_| ()))
            })
            .await?;
        }
        if prop_bool(p, "internet") {
            self.add_internet(&id, &req.tags, &req.token).await?;
        }
        Ok(json!({"id": id}))
    }

    /// An internet gateway and a route table that sends 0.0.0.0/0 to it;
    /// public subnets are associated with that table.
    async fn add_internet(
        &self,
        vpc: &str,
        tags: &std::collections::BTreeMap<String, String>,
        token: &str,
    ) -> ProviderResult<()> {
        let tags = create_tags(tags, token);
        let igw = self
            .c
            .ec2
            .create_internet_gateway()
            .tag_specifications(spec(ResourceType::InternetGateway, &tags))
            .send()
            .await
            .map_err(|e| classify("CreateInternetGateway", e))?;
        let igw = igw
            .internet_gateway()
            .and_then(|g| g.internet_gateway_id())
            .ok_or_else(|| permanent("CreateInternetGateway returned no id"))?
            .to_string();
        self.c
            .ec2
            .attach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(vpc)
            .send()
            .await
            .map_err(|e| classify("AttachInternetGateway", e))?;
        let mut rt_tags = tags.clone();
        rt_tags.insert(ROLE_TAG.into(), "public".into());
        let rt = self
            .c
            .ec2
            .create_route_table()
            .vpc_id(vpc)
            .tag_specifications(spec(ResourceType::RouteTable, &rt_tags))
            .send()
            .await
            .map_err(|e| classify("CreateRouteTable", e))?;
        let rt = rt
            .route_table()
            .and_then(|r| r.route_table_id())
            .ok_or_else(|| permanent("CreateRouteTable returned no id"))?
            .to_string();
        self.c
            .ec2
            .create_route()
            .route_table_id(&rt)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&igw)
            .send()
            .await
            .map_err(|e| classify("CreateRoute", e))?;
        Ok(())
    }

    async fn internet_gateways(&self, vpc: &str) -> ProviderResult<Vec<String>> {
        let out = self
            .c
            .ec2
            .describe_internet_gateways()
            .filters(filter("attachment.vpc-id", vpc))
            .send()
            .await
            .map_err(|e| classify("DescribeInternetGateways", e))?;
        Ok(out
            .internet_gateways()
            .iter()
            .filter_map(|g| g.internet_gateway_id().map(str::to_string))
            .collect())
    }

    async fn public_route_tables(&self, vpc: &str) -> ProviderResult<Vec<String>> {
        let out = self
            .c
            .ec2
            .describe_route_tables()
            .filters(filter("vpc-id", vpc))
            .filters(by_tag(ROLE_TAG, "public"))
            .send()
            .await
            .map_err(|e| classify("DescribeRouteTables", e))?;
        Ok(out
            .route_tables()
            .iter()
            .filter_map(|r| r.route_table_id().map(str::to_string))
            .collect())
    }

    async fn remove_internet(&self, vpc: &str) -> ProviderResult<()> {
        for rt in self.public_route_tables(vpc).await? {
            let r = self
                .c
                .ec2
                .delete_route_table()
                .route_table_id(&rt)
                .send()
                .await
                .map_err(|e| classify("DeleteRouteTable", e));
            gone(r).map_err(dependency_is_transient)?;
        }
        for igw in self.internet_gateways(vpc).await? {
            let r = self
                .c
                .ec2
                .detach_internet_gateway()
                .internet_gateway_id(&igw)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(|e| classify("DetachInternetGateway", e));
            gone(r).map_err(dependency_is_transient)?;
            let r = self
                .c
                .ec2
                .delete_internet_gateway()
                .internet_gateway_id(&igw)
                .send()
                .await
                .map_err(|e| classify("DeleteInternetGateway", e));
            gone(r)?;
        }
        Ok(())
    }

    pub(crate) async fn read_network(&self, id: &str) -> ProviderResult<Option<Observed>> {
        let Some(vpc) = self.shared.vpcs.get(id).await? else {
            return Ok(None);
        };
        let tags = tag_map(vpc.tags());
        let mut p = blank(Kind::Network);
        p.insert("name".into(), json!(tags.get("Name")));
        p.insert("cidr".into(), json!(vpc.cidr_block()));
        p.insert(
            "internet".into(),
            json!(!self.internet_gateways(id).await?.is_empty()),
        );
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: json!({"id": id}),
            tags,
        }))
    }

    pub(crate) async fn update_network(&self, req: &UpdateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        let want = prop_bool(p, "internet");
        let has = !self.internet_gateways(&req.id).await?.is_empty();
        if want && !has {
            self.add_internet(&req.id, &req.tags, &req.token).await?;
        } else if !want && has {
            self.remove_internet(&req.id).await?;
        }
        retag(&self.c, &req.id, &with_name(&req.tags, prop_str(p, "name"))).await?;
        Ok(json!({"id": req.id}))
    }

    pub(crate) async fn delete_network(&self, id: &str) -> ProviderResult<()> {
        self.remove_internet(id).await?;
        let r = self
            .c
            .ec2
            .delete_vpc()
            .vpc_id(id)
            .send()
            .await
            .map_err(|e| classify("DeleteVpc", e));
        gone(r).map_err(dependency_is_transient)?;
        Ok(())
    }

    pub(crate) async fn create_subnet(&self, req: &CreateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        let vpc = required(p, "network")?;
        let tags = with_name(&create_tags(&req.tags, &req.token), prop_str(p, "name"));
        let out = self
            .c
            .ec2
            .create_subnet()
            .vpc_id(vpc)
            .cidr_block(required(p, "cidr")?)
            .set_availability_zone(prop_str(p, "zone").map(str::to_string))
            .tag_specifications(spec(ResourceType::Subnet, &tags))
            .send()
            .await
            .map_err(|e| classify("CreateSubnet", e))?;
        let made = out
            .subnet()
            .ok_or_else(|| permanent("CreateSubnet returned no subnet"))?;
        let id = made
            .subnet_id()
            .ok_or_else(|| permanent("CreateSubnet returned no id"))?
            .to_string();
        let public = prop_bool(p, "public");
        // A new subnet is on the VPC's main route table, with no table of
        // its own; the answer says whether it gives public addresses (not
        // by default): nothing to do for a private one.
        if public || made.map_public_ip_on_launch() == Some(true) {
            self.set_public(&id, vpc, public, true).await?;
        }
        Ok(json!({"id": id}))
    }

    pub(crate) async fn subnet(&self, id: &str) -> ProviderResult<Option<Subnet>> {
        self.shared.subnets.get(id).await
    }

    /// A public subnet gives its servers public addresses and routes
    /// through the network's internet gateway; a private one does neither.
    /// A `fresh` subnet (just made) is associated with no table yet.
    async fn set_public(
        &self,
        subnet: &str,
        vpc: &str,
        public: bool,
        fresh: bool,
    ) -> ProviderResult<()> {
        self.c
            .ec2
            .modify_subnet_attribute()
            .subnet_id(subnet)
            .map_public_ip_on_launch(
                aws_sdk_ec2::types::AttributeBooleanValue::builder()
                    .value(public)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("ModifySubnetAttribute", e))?;
        let tables = self.public_route_tables(vpc).await?;
        let assoc = match fresh {
            true => Vec::new(),
            false => self
                .c
                .ec2
                .describe_route_tables()
                .filters(filter("association.subnet-id", subnet))
                .send()
                .await
                .map_err(|e| classify("DescribeRouteTables", e))?
                .route_tables()
                .to_vec(),
        };
        let current: Vec<(String, String)> = assoc
            .iter()
            .flat_map(|t| t.associations())
            .filter(|a| a.subnet_id() == Some(subnet))
            .filter_map(|a| {
                Some((
                    a.route_table_id()?.to_string(),
                    a.route_table_association_id()?.to_string(),
                ))
            })
            .collect();
        let on_public = current.iter().any(|(t, _)| tables.contains(t));
        if public && !on_public {
            match tables.first() {
                Some(rt) => {
                    self.c
                        .ec2
                        .associate_route_table()
                        .route_table_id(rt)
                        .subnet_id(subnet)
                        .send()
                        .await
                        .map_err(|e| classify("AssociateRouteTable", e))?;
                }
                None => tracing::warn!(
                    subnet,
                    "a public subnet in a network without `internet: true` has no route out"
                ),
            }
        } else if !public && on_public {
            for (_, a) in current.iter().filter(|(t, _)| tables.contains(t)) {
                self.c
                    .ec2
                    .disassociate_route_table()
                    .association_id(a)
                    .send()
                    .await
                    .map_err(|e| classify("DisassociateRouteTable", e))?;
            }
        }
        Ok(())
    }

    pub(crate) async fn read_subnet(&self, id: &str) -> ProviderResult<Option<Observed>> {
        let Some(s) = self.subnet(id).await? else {
            return Ok(None);
        };
        let tags = tag_map(s.tags());
        let mut p = blank(Kind::Subnet);
        p.insert("name".into(), json!(tags.get("Name")));
        p.insert("network".into(), json!(s.vpc_id()));
        p.insert("cidr".into(), json!(s.cidr_block()));
        p.insert("zone".into(), json!(s.availability_zone()));
        p.insert(
            "public".into(),
            json!(s.map_public_ip_on_launch().unwrap_or(false)),
        );
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: json!({"id": id}),
            tags,
        }))
    }

    pub(crate) async fn update_subnet(&self, req: &UpdateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        self.set_public(
            &req.id,
            required(p, "network")?,
            prop_bool(p, "public"),
            false,
        )
        .await?;
        retag(&self.c, &req.id, &with_name(&req.tags, prop_str(p, "name"))).await?;
        Ok(json!({"id": req.id}))
    }

    pub(crate) async fn delete_subnet(&self, id: &str) -> ProviderResult<()> {
        let r = self
            .c
            .ec2
            .delete_subnet()
            .subnet_id(id)
            .send()
            .await
            .map_err(|e| classify("DeleteSubnet", e));
        gone(r).map_err(dependency_is_transient)?;
        Ok(())
    }
}

/// Something still uses it: on AWS that is most often a network interface
/// of a terminated instance or a deleted load balancer that lingers for a
/// few minutes, so it is worth retrying rather than a hard conflict.
pub fn dependency_is_transient(e: ProviderError) -> ProviderError {
    match e {
        ProviderError::Conflict(m) if m.contains("DependencyViolation") => {
            ProviderError::Transient(m)
        }
        other => other,
    }
}
