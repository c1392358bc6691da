//! `list`: every live resource carrying a deployment's tag, whichever run
//! made it, so `--prune` and orphan searches see what the state does not.

use cairn_engine::provider::*;

use crate::ec2::{by_tag, tag_map};
use crate::error::{classify, gone};
use crate::model::*;
use crate::provider::AwsProvider;

fn listed(
    kind: Kind,
    id: Option<&str>,
    tags: &std::collections::BTreeMap<String, String>,
) -> Option<Listed> {
    Some(Listed {
        kind,
        id: id?.to_string(),
        address: tags.get(RESOURCE_TAG).cloned(),
    })
}

impl AwsProvider {
    pub(crate) async fn list_deployment(&self, deployment: &str) -> ProviderResult<Vec<Listed>> {
        let mut out = Vec::new();
        let ec2 = &self.c.ec2;
        let tag = || by_tag(DEPLOYMENT_TAG, deployment);
        let vpcs = ec2
            .describe_vpcs()
            .filters(tag())
            .send()
            .await
            .map_err(|e| classify("DescribeVpcs", e))?;
        out.extend(
            vpcs.vpcs()
                .iter()
                .filter_map(|v| listed(Kind::Network, v.vpc_id(), &tag_map(v.tags()))),
        );
        let subnets = ec2
            .describe_subnets()
            .filters(tag())
            .send()
            .await
            .map_err(|e| classify("DescribeSubnets", e))?;
        out.extend(
            subnets
                .subnets()
                .iter()
                .filter_map(|v| listed(Kind::Subnet, v.subnet_id(), &tag_map(v.tags()))),
        );
        let groups = ec2
            .describe_security_groups()
            .filters(tag())
            .send()
            .await
            .map_err(|e| classify("DescribeSecurityGroups", e))?;
        out.extend(
            groups
                .security_groups()
                .iter()
                .filter_map(|v| listed(Kind::Firewall, v.group_id(), &tag_map(v.tags()))),
        );
        let instances = ec2
            .describe_instances()
            .filters(tag())
            .send()
            .await
            .map_err(|e| classify("DescribeInstances", e))?;
        out.extend(
            instances
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter(|i| {
                    !matches!(
                        i.state().and_then(|s| s.name()),
                        Some(aws_sdk_ec2::types::InstanceStateName::Terminated)
                    )
                })
                .filter_map(|v| listed(Kind::Server, v.instance_id(), &tag_map(v.tags()))),
        );
        let addrs = ec2
            .describe_addresses()
            .filters(tag())
            .send()
            .await
            .map_err(|e| classify("DescribeAddresses", e))?;
        out.extend(
            addrs
                .addresses()
                .iter()
                .filter_map(|v| listed(Kind::IpAddress, v.allocation_id(), &tag_map(v.tags()))),
        );
        let keys = ec2
            .describe_key_pairs()
            .filters(tag())
            .send()
            .await
            .map_err(|e| classify("DescribeKeyPairs", e))?;
        out.extend(
            keys.key_pairs()
                .iter()
                .filter_map(|v| listed(Kind::KeyPair, v.key_name(), &tag_map(v.tags()))),
        );
        let vols = ec2
            .describe_volumes()
            .filters(tag())
            .send()
            .await
            .map_err(|e| classify("DescribeVolumes", e))?;
        // A server's root volume carries its tags too, but goes with it.
        out.extend(
            vols.volumes()
                .iter()
                .filter(|v| v.attachments().is_empty())
                .filter_map(|v| listed(Kind::Volume, v.volume_id(), &tag_map(v.tags()))),
        );
        let snaps = ec2
            .describe_snapshots()
            .owner_ids("self")
            .filters(tag())
            .send()
            .await
            .map_err(|e| classify("DescribeSnapshots", e))?;
        out.extend(
            snaps
                .snapshots()
                .iter()
                .filter_map(|v| listed(Kind::Snapshot, v.snapshot_id(), &tag_map(v.tags()))),
        );
        let images = ec2
            .describe_images()
            .owners("self")
            .filters(tag())
            .send()
            .await
            .map_err(|e| classify("DescribeImages", e))?;
        out.extend(
            images
                .images()
                .iter()
                .filter_map(|v| listed(Kind::Image, v.image_id(), &tag_map(v.tags()))),
        );
        for (arn, tags) in self.tagged_load_balancers().await? {
            if tags.get(DEPLOYMENT_TAG).map(String::as_str) == Some(deployment) {
                out.extend(listed(Kind::LoadBalancer, Some(&arn), &tags));
            }
        }
        // Listed under its balancer's type, whose delete knows a group.
        for (arn, tags) in self.orphan_target_groups(deployment).await? {
            out.extend(listed(Kind::LoadBalancer, Some(&arn), &tags));
        }
        for (id, ..) in self.zones().await? {
            let Some(tags) = gone(self.zone_tags(&id).await)? else {
                continue;
            };
            if tags.get(DEPLOYMENT_TAG).map(String::as_str) == Some(deployment) {
                out.extend(listed(Kind::DnsZone, Some(&id), &tags));
            }
        }
        for db in self.all_databases().await? {
            let tags = db
                .tag_list()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect();
            if db.db_instance_status() != Some("deleting") && tags_match(&tags, deployment) {
                out.extend(listed(Kind::Database, db.db_instance_identifier(), &tags));
            }
        }
        let buckets = self
            .c
            .s3
            .list_buckets()
            .send()
            .await
            .map_err(|e| classify("ListBuckets", e))?;
        for b in buckets.buckets() {
            let Some(name) = b.name() else { continue };
            let Some(tags) = gone(self.bucket_tags(name).await)? else {
                continue;
            };
            if tags_match(&tags, deployment) {
                out.extend(listed(Kind::Bucket, Some(name), &tags));
            }
        }
        let secrets = self
            .c
            .secrets
            .list_secrets()
            .filters(
                aws_sdk_secretsmanager::types::Filter::builder()
                    .key(aws_sdk_secretsmanager::types::FilterNameStringType::TagValue)
                    .values(deployment)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("ListSecrets", e))?;
        for s in secrets.secret_list() {
            let tags = s
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect();
            if s.deleted_date().is_none() && tags_match(&tags, deployment) {
                out.extend(listed(Kind::Secret, s.arn(), &tags));
            }
        }
        out.extend(self.list_iam(deployment).await?);
        Ok(out)
    }
}

fn tags_match(tags: &std::collections::BTreeMap<String, String>, deployment: &str) -> bool {
    tags.get(DEPLOYMENT_TAG).map(String::as_str) == Some(deployment)
}
