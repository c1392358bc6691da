//! load_balancer → an ALB (`listen.protocol: http`) or NLB (`tcp`), one
//! target group with the health check, one listener forwarding to it, and
//! the backends registered as instance targets. Backends are addresses in
//! the template (`web[*].address`), so each is resolved to the instance
//! that has it. Without `subnets`, the balancer goes into the backends'
//! subnets.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, LoadBalancer, LoadBalancerSchemeEnum, LoadBalancerStateEnum,
    LoadBalancerTypeEnum, ProtocolEnum, Tag, TargetDescription, TargetGroup, TargetGroupAttribute,
    TargetTypeEnum,
};
use cairn_engine::provider::*;
use cairn_engine::schema::balancer::{
    Algorithm, ListenProtocol, LoadBalancer as LoadBalancerProps,
};
use serde_json::json;

use crate::drain::drained_targets;
use crate::ec2::{filter, filter_any};
use crate::error::{classify, gone};
use crate::model::*;
use crate::provider::AwsProvider;
use crate::shared_reads::{RunningInstance, live_instances};

/// ELB names: at most 32 characters.
const NAME_MAX: usize = 32;

fn elb_tags(map: &BTreeMap<String, String>) -> Vec<Tag> {
    map.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn not_an_instance(address: &str, region: &str) -> ProviderError {
    permanent(format!(
        "backend `{address}` is not the address of a running instance in {region}"
    ))
}

/// The balancer's properties in the engine's typed model, the one the
/// local target reads too (and the evaluator, at file:line:col).
fn model(p: &Json) -> ProviderResult<LoadBalancerProps> {
    LoadBalancerProps::read(p).map_err(|e| permanent(format!("load balancer {e}")))
}

/// The health check as ELB takes it. Its limits are the engine's
/// ([`cairn_engine::schema::limits`], checked when the template is
/// evaluated, at the value); asked again here before any call, for a
/// properties object that did not come through a template (an import).
struct HealthCheck {
    path: String,
    port: Option<String>,
    interval: i32,
    timeout: i32,
    healthy: i32,
    unhealthy: i32,
}

fn health_check(p: &Json, lb: &LoadBalancerProps) -> ProviderResult<HealthCheck> {
    let breaches = cairn_engine::schema::limits::check(
        "aws",
        "load_balancer",
        &json!({ "health_check": p.get("health_check") }),
    );
    if let Some(b) = breaches.into_iter().next() {
        return Err(permanent(b.message));
    }
    let hc = &lb.health_check;
    let whole = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    Ok(HealthCheck {
        path: hc.path.clone(),
        port: hc.port.map(|p| p.to_string()),
        interval: hc.interval.as_secs().try_into().unwrap_or(i32::MAX),
        timeout: hc.timeout.as_secs().try_into().unwrap_or(i32::MAX),
        healthy: whole(hc.healthy),
        unhealthy: whole(hc.unhealthy),
    })
}

fn secs(n: Option<i32>) -> Json {
    n.map_or(Json::Null, |n| json!(format!("{n}s")))
}

impl AwsProvider {
    /// The instance that has this address (private first, then public).
    pub(crate) async fn instance_with(
        &self,
        address: &str,
    ) -> ProviderResult<(String, String, String)> {
        let found = self.instances_with(&[address.to_string()]).await?;
        found
            .into_iter()
            .next()
            .map(|(_, i)| (i.id, i.subnet, i.private_ip))
            .ok_or_else(|| not_an_instance(address, &self.c.region))
    }

    /// The running instances that have these addresses, by address: those
    /// this run saw running at a private address, then one call for all
    /// the other private addresses, one more for those that were not
    /// (public addresses).
    async fn instances_with(
        &self,
        addresses: &[String],
    ) -> ProviderResult<BTreeMap<String, RunningInstance>> {
        let mut found: BTreeMap<String, RunningInstance> = addresses
            .iter()
            .filter_map(|a| Some((a.clone(), self.shared.running.at(a)?)))
            .collect();
        for key in ["private-ip-address", "ip-address"] {
            let missing: Vec<String> = addresses
                .iter()
                .filter(|a| !found.contains_key(*a))
                .cloned()
                .collect();
            if missing.is_empty() {
                break;
            }
            for chunk in missing.chunks(100) {
                let reservations = self
                    .c
                    .ec2
                    .describe_instances()
                    .filters(filter_any(key, chunk))
                    .filters(filter("instance-state-name", "running"))
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .map_err(|e| classify("DescribeInstances", e))?;
                for i in reservations.iter().flat_map(|r| r.instances()) {
                    let backend = RunningInstance::of(i);
                    let address = match key {
                        "ip-address" => i.public_ip_address(),
                        _ => i.private_ip_address(),
                    };
                    if let Some(a) = address.filter(|a| chunk.iter().any(|c| c == a)) {
                        found.entry(a.to_string()).or_insert(backend);
                    }
                }
            }
        }
        Ok(found)
    }

    /// (instance, port, subnet) of every backend, in the template's order,
    /// and the VPC of the first.
    async fn targets(
        &self,
        p: &Json,
    ) -> ProviderResult<(Vec<(String, i32, String)>, Option<String>)> {
        let lb = model(p)?;
        let wanted: Vec<(String, i32)> = lb
            .targets()
            .map(|(address, port)| (address.to_string(), i32::from(port)))
            .collect();
        let addresses: Vec<String> = wanted.iter().map(|(a, _)| a.clone()).collect();
        let found = self.instances_with(&addresses).await?;
        let mut out = Vec::new();
        let mut vpc = None;
        for (addr, port) in wanted {
            let b = found
                .get(&addr)
                .ok_or_else(|| not_an_instance(&addr, &self.c.region))?;
            vpc = vpc.or(b.vpc.clone());
            out.push((b.id.clone(), port, b.subnet.clone()));
        }
        Ok((out, vpc))
    }

    pub(crate) async fn create_load_balancer(&self, req: &CreateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        // Refused before anything is made.
        let model = model(p)?;
        health_check(p, &model)?;
        let http = model.listen.protocol == ListenProtocol::Http;
        let port = i32::from(model.listen.port);
        let (targets, backends_vpc) = self.targets(p).await?;
        let mut subnets = model.subnets.clone();
        if subnets.is_empty() {
            for (_, _, s) in &targets {
                if !subnets.contains(s) {
                    subnets.push(s.clone());
                }
            }
        }
        if subnets.is_empty() {
            return Err(permanent(
                "a load balancer on aws needs `subnets` (or backends to take them from)",
            ));
        }
        // The backends' VPC is the balancer's (a target group takes only
        // instances of its own VPC); without backends, the first subnet's.
        let vpc = match backends_vpc {
            Some(vpc) => vpc,
            None => self
                .subnet(&subnets[0])
                .await?
                .and_then(|s| s.vpc_id().map(str::to_string))
                .ok_or_else(|| ProviderError::NotFound(format!("subnet {}", subnets[0])))?,
        };
        let tags = create_tags(&req.tags, &req.token);
        // Names derived from the token: a retried create asks for the same
        // names, which ELB answers with what exists instead of a second.
        let name = model
            .name
            .clone()
            .unwrap_or_else(|| derived_name(&req.deployment, &req.address, &req.token, NAME_MAX));
        let tg_name = derived_name(
            &req.deployment,
            &format!("{}-tg", req.address),
            &req.token,
            NAME_MAX,
        );
        let tg = self
            .target_group(&tg_name, http, &vpc, p, &tags, req.may_exist)
            .await?;
        let lb_type = if http {
            LoadBalancerTypeEnum::Application
        } else {
            LoadBalancerTypeEnum::Network
        };
        // An earlier attempt whose answer was lost may have made it: ELB
        // names are unique per region, so look before making (moto, unlike
        // ELB, would make a second with the same name).
        let looked = match req.may_exist {
            true => Some(
                self.c
                    .elb
                    .describe_load_balancers()
                    .names(&name)
                    .send()
                    .await,
            ),
            false => None,
        };
        let existing = match looked {
            None => None,
            Some(Ok(out)) => out
                .load_balancers()
                .first()
                .and_then(|l| l.load_balancer_arn())
                .map(str::to_string),
            Some(Err(e)) => match classify("DescribeLoadBalancers", e) {
                ProviderError::NotFound(_) => None,
                other => return Err(other),
            },
        };
        // A balancer just made has no listener yet; one an earlier attempt
        // made may have.
        let (arn, made) = match existing {
            Some(arn) => (arn, None),
            None => {
                let out = self
                    .c
                    .elb
                    .create_load_balancer()
                    .name(&name)
                    .r#type(lb_type)
                    .set_subnets(Some(subnets))
                    .set_security_groups(Some(prop_strs(p, "firewalls")).filter(|f| !f.is_empty()))
                    .scheme(if prop_bool(p, "internal") {
                        LoadBalancerSchemeEnum::Internal
                    } else {
                        LoadBalancerSchemeEnum::InternetFacing
                    })
                    .set_tags(Some(elb_tags(&tags)))
                    .send()
                    .await
                    .map_err(|e| classify("CreateLoadBalancer", e))?;
                let lb = out
                    .load_balancers()
                    .first()
                    .ok_or_else(|| permanent("CreateLoadBalancer returned nothing"))?
                    .clone();
                (
                    lb.load_balancer_arn().unwrap_or_default().to_string(),
                    Some(lb),
                )
            }
        };
        let has_listener = match made {
            Some(_) => false,
            None => !self
                .c
                .elb
                .describe_listeners()
                .load_balancer_arn(&arn)
                .send()
                .await
                .map_err(|e| classify("DescribeListeners", e))?
                .listeners()
                .is_empty(),
        };
        if !has_listener {
            self.c
                .elb
                .create_listener()
                .load_balancer_arn(&arn)
                .protocol(if http {
                    ProtocolEnum::Http
                } else {
                    ProtocolEnum::Tcp
                })
                .port(port)
                .default_actions(
                    Action::builder()
                        .r#type(ActionTypeEnum::Forward)
                        .target_group_arn(&tg)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| classify("CreateListener", e))?;
        }
        self.register(&tg, &targets).await?;
        // The create's answer may say it is active already (it rarely is on
        // AWS, where provisioning takes minutes); otherwise poll.
        let lb = match made
            .filter(|lb| lb.state().and_then(|s| s.code()) == Some(&LoadBalancerStateEnum::Active))
        {
            Some(lb) => lb,
            None => self.wait_active(&arn).await?,
        };
        Ok(lb_attributes(&lb, port))
    }

    /// The target group with this name, made when missing.
    async fn target_group(
        &self,
        name: &str,
        http: bool,
        vpc: &str,
        p: &Json,
        tags: &BTreeMap<String, String>,
        may_exist: bool,
    ) -> ProviderResult<String> {
        let existing = match may_exist {
            true => self
                .c
                .elb
                .describe_target_groups()
                .names(name)
                .send()
                .await
                .map_err(|e| classify("DescribeTargetGroups", e)),
            false => Err(ProviderError::NotFound(name.to_string())),
        };
        if let Some(arn) = gone(existing)?.and_then(|o| {
            o.target_groups()
                .first()
                .and_then(|t| t.target_group_arn().map(str::to_string))
        }) {
            // Made by an earlier attempt that may have died before this step.
            self.set_target_group_attributes(&arn, p).await?;
            return Ok(arn);
        }
        let model = model(p)?;
        let checks = health_check(p, &model)?;
        let protocol = if http {
            ProtocolEnum::Http
        } else {
            ProtocolEnum::Tcp
        };
        let out = self
            .c
            .elb
            .create_target_group()
            .name(name)
            .protocol(protocol.clone())
            .port(i32::from(model.backend_port))
            .vpc_id(vpc)
            .target_type(TargetTypeEnum::Instance)
            .health_check_protocol(protocol)
            .set_health_check_path(http.then_some(checks.path))
            .set_health_check_port(checks.port)
            .health_check_interval_seconds(checks.interval)
            .health_check_timeout_seconds(checks.timeout)
            .healthy_threshold_count(checks.healthy)
            .unhealthy_threshold_count(checks.unhealthy)
            .set_tags(Some(elb_tags(tags)))
            .send()
            .await
            .map_err(|e| classify("CreateTargetGroup", e))?;
        let arn = out
            .target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .ok_or_else(|| permanent("CreateTargetGroup returned nothing"))?
            .to_string();
        self.set_target_group_attributes(&arn, p).await?;
        Ok(arn)
    }

    async fn set_target_group_attributes(&self, arn: &str, p: &Json) -> ProviderResult<()> {
        let model = model(p)?;
        let mut attrs = vec![
            TargetGroupAttribute::builder()
                .key("deregistration_delay.timeout_seconds")
                .value(model.drain_timeout.as_secs().to_string())
                .build(),
        ];
        if model.algorithm == Algorithm::LeastConnections
            && model.listen.protocol != ListenProtocol::Tcp
        {
            attrs.push(
                TargetGroupAttribute::builder()
                    .key("load_balancing.algorithm.type")
                    .value("least_outstanding_requests")
                    .build(),
            );
        }
        if attrs.is_empty() {
            return Ok(());
        }
        self.c
            .elb
            .modify_target_group_attributes()
            .target_group_arn(arn)
            .set_attributes(Some(attrs))
            .send()
            .await
            .map_err(|e| classify("ModifyTargetGroupAttributes", e))?;
        Ok(())
    }

    async fn register(&self, tg: &str, targets: &[(String, i32, String)]) -> ProviderResult<()> {
        if targets.is_empty() {
            return Ok(());
        }
        self.c
            .elb
            .register_targets()
            .target_group_arn(tg)
            .set_targets(Some(
                targets
                    .iter()
                    .map(|(id, port, _)| TargetDescription::builder().id(id).port(*port).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| classify("RegisterTargets", e))?;
        Ok(())
    }

    pub(crate) async fn load_balancer(&self, arn: &str) -> ProviderResult<Option<LoadBalancer>> {
        let out = self
            .c
            .elb
            .describe_load_balancers()
            .load_balancer_arns(arn)
            .send()
            .await
            .map_err(|e| classify("DescribeLoadBalancers", e));
        Ok(gone(out)?.and_then(|o| o.load_balancers().first().cloned()))
    }

    async fn wait_active(&self, arn: &str) -> ProviderResult<LoadBalancer> {
        wait_for("the load balancer", self.waits.load_balancer, || async {
            let Some(lb) = self.load_balancer(arn).await? else {
                return Ok(None);
            };
            match lb.state().and_then(|s| s.code()) {
                Some(LoadBalancerStateEnum::Active) => Ok(Some(lb)),
                Some(LoadBalancerStateEnum::Failed) => Err(permanent(format!(
                    "load balancer {arn} failed: {}",
                    lb.state()
                        .and_then(|s| s.reason())
                        .unwrap_or("no reason given")
                ))),
                _ => Ok(None),
            }
        })
        .await
    }

    pub(crate) async fn target_groups_of(&self, arn: &str) -> ProviderResult<Vec<TargetGroup>> {
        let out = self
            .c
            .elb
            .describe_target_groups()
            .load_balancer_arn(arn)
            .send()
            .await
            .map_err(|e| classify("DescribeTargetGroups", e));
        Ok(gone(out)?
            .map(|o| o.target_groups().to_vec())
            .unwrap_or_default())
    }

    /// The registered targets: (instance id, port, health state).
    pub async fn target_health(&self, tg: &str) -> ProviderResult<Vec<(String, i32, String)>> {
        let out = self
            .c
            .elb
            .describe_target_health()
            .target_group_arn(tg)
            .send()
            .await
            .map_err(|e| classify("DescribeTargetHealth", e))?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .map(|d| {
                (
                    d.target()
                        .and_then(|t| t.id())
                        .unwrap_or_default()
                        .to_string(),
                    d.target().and_then(|t| t.port()).unwrap_or_default(),
                    d.target_health()
                        .and_then(|h| h.state())
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                )
            })
            .collect())
    }

    pub(crate) async fn find_load_balancer(&self, token: &str) -> ProviderResult<Option<String>> {
        for (arn, tags) in self.tagged_load_balancers().await? {
            if has_token(&tags, token) {
                return Ok(Some(arn));
            }
        }
        Ok(None)
    }

    /// Every load balancer in the region, all pages.
    async fn all_load_balancers(&self) -> ProviderResult<Vec<LoadBalancer>> {
        self.c
            .elb
            .describe_load_balancers()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| classify("DescribeLoadBalancers", e))
    }

    /// Every target group in the region, all pages.
    async fn all_target_groups(&self) -> ProviderResult<Vec<TargetGroup>> {
        self.c
            .elb
            .describe_target_groups()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| classify("DescribeTargetGroups", e))
    }

    /// Every load balancer with its tags.
    pub(crate) async fn tagged_load_balancers(
        &self,
    ) -> ProviderResult<Vec<(String, BTreeMap<String, String>)>> {
        let arns: Vec<String> = self
            .all_load_balancers()
            .await?
            .iter()
            .filter_map(|l| l.load_balancer_arn().map(str::to_string))
            .collect();
        self.elb_tags_of(&arns).await
    }

    /// The tags of load balancers or target groups, by ARN.
    pub(crate) async fn elb_tags_of(
        &self,
        arns: &[String],
    ) -> ProviderResult<Vec<(String, BTreeMap<String, String>)>> {
        let mut out = Vec::new();
        // DescribeTags takes at most 20 resources.
        for chunk in arns.chunks(20) {
            let tags = self
                .c
                .elb
                .describe_tags()
                .set_resource_arns(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| classify("DescribeTags", e))?;
            for d in tags.tag_descriptions() {
                let map = d
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                    .collect();
                out.push((d.resource_arn().unwrap_or_default().to_string(), map));
            }
        }
        Ok(out)
    }

    /// Target groups of this deployment that no balancer uses: what a
    /// create interrupted between making its group and its balancer left
    /// behind, with their tags.
    pub(crate) async fn orphan_target_groups(
        &self,
        deployment: &str,
    ) -> ProviderResult<Vec<(String, BTreeMap<String, String>)>> {
        let unused: Vec<String> = self
            .all_target_groups()
            .await?
            .iter()
            .filter(|t| t.load_balancer_arns().is_empty())
            .filter_map(|t| t.target_group_arn().map(str::to_string))
            .collect();
        Ok(self
            .elb_tags_of(&unused)
            .await?
            .into_iter()
            .filter(|(_, tags)| tags.get(DEPLOYMENT_TAG).map(String::as_str) == Some(deployment))
            .collect())
    }

    /// Those of these target groups whose tags say they were made for this
    /// deployment's resource (no call for none).
    async fn made_for(
        &self,
        groups: &[String],
        deployment: &str,
        address: &str,
    ) -> ProviderResult<Vec<String>> {
        Ok(self
            .elb_tags_of(groups)
            .await?
            .into_iter()
            .filter(|(_, tags)| {
                tags.get(DEPLOYMENT_TAG).map(String::as_str) == Some(deployment)
                    && tags.get(RESOURCE_TAG).map(String::as_str) == Some(address)
            })
            .map(|(arn, _)| arn)
            .collect())
    }

    pub(crate) async fn read_load_balancer(&self, arn: &str) -> ProviderResult<Option<Observed>> {
        let Some(lb) = self.load_balancer(arn).await? else {
            return Ok(None);
        };
        let listeners = self
            .c
            .elb
            .describe_listeners()
            .load_balancer_arn(arn)
            .send()
            .await
            .map_err(|e| classify("DescribeListeners", e))?;
        let listener = listeners.listeners().first();
        let port = listener.and_then(|l| l.port()).unwrap_or_default();
        let protocol = match listener.and_then(|l| l.protocol()) {
            Some(ProtocolEnum::Tcp) => "tcp",
            _ => "http",
        };
        let tgs = self.target_groups_of(arn).await?;
        let tg = tgs.first();
        let mut p = blank(Kind::LoadBalancer);
        p.insert("name".into(), json!(lb.load_balancer_name()));
        p.insert("listen".into(), json!({"protocol": protocol, "port": port}));
        p.insert("algorithm".into(), json!("weighted_round_robin"));
        p.insert(
            "internal".into(),
            json!(lb.scheme() == Some(&LoadBalancerSchemeEnum::Internal)),
        );
        p.insert(
            "subnets".into(),
            json!(
                lb.availability_zones()
                    .iter()
                    .filter_map(|z| z.subnet_id())
                    .collect::<Vec<_>>()
            ),
        );
        p.insert("firewalls".into(), json!(lb.security_groups()));
        if let Some(tg) = tg {
            let tg_arn = tg.target_group_arn().unwrap_or_default();
            let backend_port = tg.port().unwrap_or_default();
            p.insert("backend_port".into(), json!(backend_port));
            p.insert(
                "health_check".into(),
                json!({
                    "path": tg.health_check_path(),
                    "port": tg.health_check_port().and_then(|p| p.parse::<i64>().ok()),
                    "interval": secs(tg.health_check_interval_seconds()),
                    "timeout": secs(tg.health_check_timeout_seconds()),
                    "healthy": tg.healthy_threshold_count(),
                    "unhealthy": tg.unhealthy_threshold_count(),
                }),
            );
            let attrs = self
                .c
                .elb
                .describe_target_group_attributes()
                .target_group_arn(tg_arn)
                .send()
                .await
                .map_err(|e| classify("DescribeTargetGroupAttributes", e))?;
            for a in attrs.attributes() {
                match (a.key(), a.value()) {
                    (Some("deregistration_delay.timeout_seconds"), Some(v)) => {
                        p.insert("drain_timeout".into(), json!(format!("{v}s")));
                    }
                    (Some("load_balancing.algorithm.type"), Some("least_outstanding_requests")) => {
                        p.insert("algorithm".into(), json!("least_connections"));
                    }
                    _ => {}
                }
            }
            let mut targets: Vec<(String, i32)> = self
                .target_health(tg_arn)
                .await?
                .into_iter()
                .map(|(id, port, _)| (id, port))
                .collect();
            // A backend a release drained is deregistered for a while but
            // still one of the balancer's: no drift.
            let group_tags = self.elb_tags_of(&[tg_arn.to_string()]).await?;
            for drained in drained_targets(group_tags.iter().flat_map(|(_, tags)| tags)) {
                if !targets.contains(&drained) {
                    targets.push(drained);
                }
            }
            // Every target's address in one call.
            let ids: Vec<String> = targets.iter().map(|(id, _)| id.clone()).collect();
            let live = live_instances(self.c.ec2.clone(), ids).await?;
            let mut list = Vec::new();
            for (id, tport) in targets {
                let ip = live
                    .get(&id)
                    .and_then(|i| i.private_ip_address())
                    .map_or_else(|| id.clone(), str::to_string);
                list.push(if tport == backend_port {
                    json!(ip)
                } else {
                    json!({"address": ip, "weight": 1, "port": tport})
                });
            }
            p.insert("backends".into(), Json::Array(list));
        }
        let tags = self.tagged_load_balancers_one(arn).await?;
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: lb_attributes(&lb, port),
            tags,
        }))
    }

    async fn tagged_load_balancers_one(
        &self,
        arn: &str,
    ) -> ProviderResult<BTreeMap<String, String>> {
        Ok(self
            .elb_tags_of(&[arn.to_string()])
            .await?
            .into_iter()
            .next()
            .map(|(_, tags)| tags)
            .unwrap_or_default())
    }

    pub(crate) async fn update_load_balancer(&self, req: &UpdateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        let lb = self
            .load_balancer(&req.id)
            .await?
            .ok_or_else(|| ProviderError::NotFound(format!("load balancer {}", req.id)))?;
        let tg = self
            .target_groups_of(&req.id)
            .await?
            .into_iter()
            .next()
            .and_then(|t| t.target_group_arn().map(str::to_string))
            .ok_or_else(|| permanent(format!("load balancer {} has no target group", req.id)))?;
        if req
            .changed
            .iter()
            .any(|c| c == "backends" || c == "backend_port")
        {
            let (want, _) = self.targets(p).await?;
            let have = self.target_health(&tg).await?;
            let stale: Vec<TargetDescription> = have
                .iter()
                .filter(|(id, port, _)| !want.iter().any(|(w, wp, _)| w == id && wp == port))
                .map(|(id, port, _)| TargetDescription::builder().id(id).port(*port).build())
                .collect();
            if !stale.is_empty() {
                self.c
                    .elb
                    .deregister_targets()
                    .target_group_arn(&tg)
                    .set_targets(Some(stale))
                    .send()
                    .await
                    .map_err(|e| classify("DeregisterTargets", e))?;
            }
            self.register(&tg, &want).await?;
        }
        let model = model(p)?;
        if req.changed.iter().any(|c| c == "health_check") {
            let checks = health_check(p, &model)?;
            let http = model.listen.protocol == ListenProtocol::Http;
            self.c
                .elb
                .modify_target_group()
                .target_group_arn(&tg)
                .set_health_check_path(http.then_some(checks.path))
                .set_health_check_port(checks.port)
                .health_check_interval_seconds(checks.interval)
                .health_check_timeout_seconds(checks.timeout)
                .healthy_threshold_count(checks.healthy)
                .unhealthy_threshold_count(checks.unhealthy)
                .send()
                .await
                .map_err(|e| classify("ModifyTargetGroup", e))?;
        }
        if req
            .changed
            .iter()
            .any(|c| c == "drain_timeout" || c == "algorithm")
        {
            self.set_target_group_attributes(&tg, p).await?;
        }
        if req.changed.iter().any(|c| c == "firewalls") {
            self.c
                .elb
                .set_security_groups()
                .load_balancer_arn(&req.id)
                .set_security_groups(Some(model.firewalls.clone()))
                .send()
                .await
                .map_err(|e| classify("SetSecurityGroups", e))?;
        }
        let current = self.tagged_load_balancers_one(&req.id).await?;
        let remove = stale_tag_keys(current.keys().map(String::as_str), &req.tags);
        if !remove.is_empty() {
            self.c
                .elb
                .remove_tags()
                .resource_arns(&req.id)
                .set_tag_keys(Some(remove))
                .send()
                .await
                .map_err(|e| classify("RemoveTags", e))?;
        }
        if !req.tags.is_empty() {
            self.c
                .elb
                .add_tags()
                .resource_arns(&req.id)
                .set_tags(Some(elb_tags(&req.tags)))
                .send()
                .await
                .map_err(|e| classify("AddTags", e))?;
        }
        Ok(lb_attributes(&lb, i32::from(model.listen.port)))
    }

    pub(crate) async fn delete_load_balancer(&self, req: &DeleteRequest) -> ProviderResult<()> {
        let arn = req.id.as_str();
        // An orphaned target group, listed under its balancer's type.
        if arn.contains(":targetgroup/") {
            let r = self
                .c
                .elb
                .delete_target_group()
                .target_group_arn(arn)
                .send()
                .await
                .map_err(|e| classify("DeleteTargetGroup", e));
            gone(r)?;
            return Ok(());
        }
        // One listing, taken while the balancer still names its groups,
        // says both which groups it uses and which no balancer uses: those
        // made for this resource are what a retried delete (its balancer
        // gone) or an interrupted create left behind.
        let all = self.all_target_groups().await?;
        let group_arn = |t: &TargetGroup| t.target_group_arn().map(str::to_string);
        let tgs: Vec<String> = all
            .iter()
            .filter(|t| t.load_balancer_arns().iter().any(|a| a == arn))
            .filter_map(group_arn)
            .collect();
        let unattached: Vec<String> = all
            .iter()
            .filter(|t| t.load_balancer_arns().is_empty())
            .filter_map(group_arn)
            .collect();
        let r = self
            .c
            .elb
            .delete_load_balancer()
            .load_balancer_arn(arn)
            .send()
            .await
            .map_err(|e| classify("DeleteLoadBalancer", e));
        gone(r)?;
        wait_for(
            "the load balancer to go",
            self.waits.load_balancer,
            || async { Ok(self.load_balancer(arn).await?.is_none().then_some(())) },
        )
        .await?;
        // Its own groups first: they are known without their tags, so a
        // failure below cannot leave them.
        self.delete_target_groups(&tgs).await?;
        // The tags of groups unattached before the wait: another delete
        // may have taken one since, and a batch naming a group gone fails
        // whole. That is not this balancer being gone (which the engine
        // would take for done): the next attempt lists again.
        let left = match self
            .made_for(&unattached, &req.deployment, &req.address)
            .await
        {
            Ok(left) => left,
            Err(ProviderError::NotFound(m)) => {
                return Err(ProviderError::Transient(format!(
                    "a target group went while its tags were read: {m}"
                )));
            }
            Err(e) => return Err(e),
        };
        self.delete_target_groups(&left).await
    }

    /// Deletes target groups; one already gone counts as deleted.
    async fn delete_target_groups(&self, arns: &[String]) -> ProviderResult<()> {
        // A target group can go only once no balancer uses it.
        for tg_arn in arns {
            let r = self
                .c
                .elb
                .delete_target_group()
                .target_group_arn(tg_arn)
                .send()
                .await
                .map_err(|e| classify("DeleteTargetGroup", e));
            match gone(r) {
                Ok(_) => {}
                Err(ProviderError::Conflict(m)) => return Err(ProviderError::Transient(m)),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// On aws a balancer has no fixed address: its DNS name is what clients
/// (and an alias record) use, so `address` is that name.
fn lb_attributes(lb: &LoadBalancer, port: i32) -> Json {
    json!({
        "id": lb.load_balancer_arn(),
        "address": lb.dns_name(),
        "port": port,
        "dns_name": lb.dns_name(),
    })
}

impl AwsProvider {
    /// (DNS name, canonical hosted zone) of the balancer with this DNS
    /// name, for an alias record.
    pub(crate) async fn load_balancer_zone(&self, dns: &str) -> ProviderResult<(String, String)> {
        let want = dns.trim_end_matches('.').to_ascii_lowercase();
        let lbs = self.all_load_balancers().await?;
        let lb = lbs
            .iter()
            .find(|l| l.dns_name().map(|d| d.to_ascii_lowercase()) == Some(want.clone()))
            .ok_or_else(|| {
                permanent(format!(
                    "`{dns}` is neither an address nor the DNS name of a load balancer in {}",
                    self.c.region
                ))
            })?;
        Ok((
            lb.dns_name().unwrap_or_default().to_string(),
            lb.canonical_hosted_zone_id()
                .unwrap_or_default()
                .to_string(),
        ))
    }
}
