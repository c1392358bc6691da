//! Reads the provider's concurrent calls share: describes of instances,
//! VPCs, subnets, security groups and a zone's record sets batched across
//! callers ([`Batcher`]), and what does not change while cairn runs,
//! looked up once (the AMI an image name stands for, a hosted zone's name);
//! and the instances this run saw running, by address ([`SeenRunning`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_ec2::types::{Instance, InstanceStateName, SecurityGroup, Subnet, Vpc};
use aws_sdk_route53::types::ResourceRecordSet;
use cairn_engine::provider::{ProviderError, ProviderResult};
use tokio::sync::OnceCell;

use crate::batch::Batcher;
use crate::config::Clients;
use crate::ec2::filter_any;
use crate::error::{classify, gone};

pub(crate) struct SharedReads {
    pub(crate) instances: Batcher<Instance>,
    pub(crate) vpcs: Batcher<Vpc>,
    pub(crate) subnets: Batcher<Subnet>,
    pub(crate) security_groups: Batcher<SecurityGroup>,
    /// Every record set of a hosted zone, by zone id.
    pub(crate) record_sets: Batcher<Vec<ResourceRecordSet>>,
    /// AMI ids by image name.
    pub(crate) images: Memo,
    /// Hosted zone names by zone id.
    pub(crate) zone_names: Memo,
    /// Instances seen running, by private address.
    pub(crate) running: SeenRunning,
}

impl SharedReads {
    pub(crate) fn new(c: &Clients) -> SharedReads {
        let ec2 = c.ec2.clone();
        let instances = Batcher::new(move |ids| live_instances(ec2.clone(), ids));
        let ec2 = c.ec2.clone();
        let vpcs = Batcher::new(move |ids: Vec<String>| {
            let ec2 = ec2.clone();
            async move {
                let pages = ec2
                    .describe_vpcs()
                    .filters(filter_any("vpc-id", &ids))
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .map_err(|e| classify("DescribeVpcs", e))?;
                Ok(by_id(pages, |v: &Vpc| v.vpc_id()))
            }
        });
        let ec2 = c.ec2.clone();
        let subnets = Batcher::new(move |ids: Vec<String>| {
            let ec2 = ec2.clone();
            async move {
                let pages = ec2
                    .describe_subnets()
                    .filters(filter_any("subnet-id", &ids))
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .map_err(|e| classify("DescribeSubnets", e))?;
                Ok(by_id(pages, |s: &Subnet| s.subnet_id()))
            }
        });
        let ec2 = c.ec2.clone();
        let security_groups = Batcher::new(move |ids: Vec<String>| {
            let ec2 = ec2.clone();
            async move {
                let pages = ec2
                    .describe_security_groups()
                    .filters(filter_any("group-id", &ids))
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .map_err(|e| classify("DescribeSecurityGroups", e))?;
                Ok(by_id(pages, |g: &SecurityGroup| g.group_id()))
            }
        });
        let route53 = c.route53.clone();
        let record_sets = Batcher::new(move |zones: Vec<String>| {
            let route53 = route53.clone();
            async move {
                let mut out = HashMap::new();
                for zone in zones {
                    // A zone that is gone has no records to give.
                    if let Some(sets) = gone(zone_record_sets(&route53, &zone).await)? {
                        out.insert(zone, sets);
                    }
                }
                Ok(out)
            }
        });
        SharedReads {
            instances,
            vpcs,
            subnets,
            security_groups,
            record_sets,
            images: Memo::default(),
            zone_names: Memo::default(),
            running: SeenRunning::default(),
        }
    }
}

fn by_id<T>(items: Vec<T>, id: impl Fn(&T) -> Option<&str>) -> HashMap<String, T> {
    items
        .into_iter()
        .filter_map(|i| Some((id(&i)?.to_string(), i)))
        .collect()
}

/// Every state but `terminated`.
const LIVE_STATES: [InstanceStateName; 5] = [
    InstanceStateName::Pending,
    InstanceStateName::Running,
    InstanceStateName::ShuttingDown,
    InstanceStateName::Stopping,
    InstanceStateName::Stopped,
];

/// The instances with these ids that are not terminated (a terminated one
/// stays visible for a while, but is gone for cairn). EC2 leaves the
/// terminated out of its answer: a destroy's wait for thirty terminations
/// would otherwise have each poll describe all thirty in full (on moto,
/// which answers one call at a time, 110 ms of its CPU in a 400 ms destroy).
pub(crate) async fn live_instances(
    ec2: aws_sdk_ec2::Client,
    ids: Vec<String>,
) -> ProviderResult<HashMap<String, Instance>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let live: Vec<String> = LIVE_STATES.iter().map(|s| s.as_str().to_string()).collect();
    let pages = ec2
        .describe_instances()
        .filters(filter_any("instance-id", &ids))
        .filters(filter_any("instance-state-name", &live))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| classify("DescribeInstances", e))?;
    Ok(by_id(
        pages
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| {
                !matches!(
                    i.state().and_then(|s| s.name()),
                    Some(InstanceStateName::Terminated)
                )
            })
            .cloned()
            .collect(),
        |i: &Instance| i.instance_id(),
    ))
}

/// A running instance, as a balancer's target needs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunningInstance {
    pub(crate) id: String,
    pub(crate) subnet: String,
    pub(crate) vpc: Option<String>,
    pub(crate) private_ip: String,
}

impl RunningInstance {
    pub(crate) fn of(i: &Instance) -> RunningInstance {
        RunningInstance {
            id: i.instance_id().unwrap_or_default().to_string(),
            subnet: i.subnet_id().unwrap_or_default().to_string(),
            vpc: i.vpc_id().map(str::to_string),
            private_ip: i.private_ip_address().unwrap_or_default().to_string(),
        }
    }
}

/// The instances this run saw running (a create's wait, a read), by
/// private address: a balancer made in the same run resolves its backends
/// (the servers' addresses) from them instead of describing every backend
/// again, which for thirty servers is a describe of thirty instances in
/// full. An instance cairn terminates is forgotten first. One ended by
/// someone else in between is registered as it would have been had it
/// ended just after a describe: ELB refuses it and the create fails.
#[derive(Default)]
pub(crate) struct SeenRunning {
    by_address: Mutex<HashMap<String, RunningInstance>>,
}

impl SeenRunning {
    /// Remembers `i` if it runs, forgets it otherwise.
    pub(crate) fn saw(&self, i: &Instance) {
        let running = matches!(
            i.state().and_then(|s| s.name()),
            Some(InstanceStateName::Running)
        );
        let seen = RunningInstance::of(i);
        let mut by_address = self.lock();
        by_address.retain(|_, r| r.id != seen.id);
        if running && !seen.id.is_empty() && !seen.private_ip.is_empty() {
            by_address.insert(seen.private_ip.clone(), seen);
        }
    }

    pub(crate) fn forget(&self, id: &str) {
        self.lock().retain(|_, r| r.id != id);
    }

    pub(crate) fn at(&self, address: &str) -> Option<RunningInstance> {
        self.lock().get(address).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunningInstance>> {
        self.by_address.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// All record sets of a zone, every page.
pub(crate) async fn zone_record_sets(
    route53: &aws_sdk_route53::Client,
    zone: &str,
) -> ProviderResult<Vec<ResourceRecordSet>> {
    let mut out = Vec::new();
    let mut next: Option<(String, aws_sdk_route53::types::RrType)> = None;
    loop {
        let page = route53
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .set_start_record_name(next.as_ref().map(|(n, _)| n.clone()))
            .set_start_record_type(next.as_ref().map(|(_, t)| t.clone()))
            .send()
            .await
            .map_err(|e| classify("ListResourceRecordSets", e))?;
        out.extend(page.resource_record_sets().iter().cloned());
        match (
            page.is_truncated(),
            page.next_record_name(),
            page.next_record_type(),
        ) {
            (true, Some(n), Some(t)) => next = Some((n.to_string(), t.clone())),
            _ => return Ok(out),
        }
    }
}

/// Values looked up once per key, however many callers ask at once; a
/// failed look-up is tried again by the next caller.
#[derive(Default)]
pub(crate) struct Memo {
    cells: Mutex<HashMap<String, Arc<OnceCell<String>>>>,
}

impl Memo {
    pub(crate) async fn get_or_try<F, Fut>(&self, key: &str, look_up: F) -> ProviderResult<String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<String, ProviderError>>,
    {
        self.cell(key).get_or_try_init(look_up).await.cloned()
    }

    /// Records what a look-up would say, learnt from another answer (a
    /// create's); a value already there stays.
    pub(crate) fn know(&self, key: &str, value: String) {
        let _ = self.cell(key).set(value);
    }

    fn cell(&self, key: &str) -> Arc<OnceCell<String>> {
        self.cells
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_memo_looks_up_once_and_again_after_a_failure() {
        let memo = Arc::new(Memo::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let failing = memo
            .get_or_try("k", || async {
                Err(ProviderError::Transient("reset".into()))
            })
            .await;
        assert!(failing.is_err());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (memo, calls) = (memo.clone(), calls.clone());
            tasks.spawn(async move {
                memo.get_or_try("k", || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok("ami-1".to_string())
                })
                .await
            });
        }
        while let Some(r) = tasks.join_next().await {
            assert_eq!(r.unwrap().unwrap(), "ami-1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
