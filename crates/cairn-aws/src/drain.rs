//! Drain and restore of one backend of a balancer, for rolling releases:
//! the target is deregistered from the balancer's target group (ELB stops
//! sending it new requests and keeps it `draining` until its in-flight
//! requests end or the deregistration delay, the resource's
//! `drain_timeout`, passes), and registered again on restore (`initial`
//! until ELB's own health check passes).
//!
//! A deregistered target vanishes from the group, so the group carries a
//! tag per drained target (`cairn:drained:<instance>:<port>`), set before
//! the deregistration and removed after the registration. It tells a
//! drained backend from one that never was in the balancer, keeps `read`
//! listing it (no drift while a release runs), and outlives the process:
//! a release that died leaves its drained backends findable.

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{
    Tag, TargetDescription, TargetHealthReasonEnum, TargetHealthStateEnum,
};
use cairn_engine::backend::{BackendControl, BackendRef, BackendState, DrainReport};
use cairn_engine::provider::{ProviderError, ProviderResult};
use tokio::time::Instant;

use crate::error::classify;
use crate::model::permanent;
use crate::provider::AwsProvider;

const DRAINED_TAG: &str = "cairn:drained:";

/// The first and the longest pause between two looks at a draining target:
/// DescribeTargetHealth is rate-limited per account, and a drain waits for
/// seconds (in-flight requests) to minutes (the deregistration delay).
const FIRST_POLL: Duration = Duration::from_millis(250);
const MAX_POLL: Duration = Duration::from_secs(2);

/// One target of a group, as the drain code needs it.
struct Target {
    group: String,
    id: String,
    port: i32,
}

impl Target {
    fn description(&self) -> TargetDescription {
        TargetDescription::builder()
            .id(&self.id)
            .port(self.port)
            .build()
    }

    fn tag_key(&self) -> String {
        format!("{DRAINED_TAG}{}:{}", self.id, self.port)
    }
}

/// What ELB says of one target.
struct Health {
    state: Option<TargetHealthStateEnum>,
    reason: Option<TargetHealthReasonEnum>,
}

impl Health {
    /// Registered (in whatever state), as opposed to unknown to the group.
    fn registered(&self) -> bool {
        !matches!(self.reason, Some(TargetHealthReasonEnum::NotRegistered))
    }

    fn draining(&self) -> bool {
        matches!(self.state, Some(TargetHealthStateEnum::Draining))
    }
}

fn not_a_backend(lb_id: &str, t: &Target, backend: &BackendRef) -> ProviderError {
    // A backend found by address names its instance; one given by id
    // already shows it.
    let instance = match backend.server_id {
        Some(_) => String::new(),
        None => format!(" (instance {})", t.id),
    };
    permanent(format!(
        "{backend}{instance} is not a backend of load balancer {lb_id}"
    ))
}

/// The (instance id, port) of every target a group's tags say is drained.
pub(crate) fn drained_targets<'a>(
    tags: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Vec<(String, i32)> {
    tags.into_iter()
        .filter_map(|(k, _)| {
            let (id, port) = k.strip_prefix(DRAINED_TAG)?.rsplit_once(':')?;
            Some((id.to_string(), port.parse().ok()?))
        })
        .collect()
}

impl AwsProvider {
    /// The balancer's target group and the instance behind `backend`.
    async fn target(&self, lb_id: &str, backend: &BackendRef) -> ProviderResult<Target> {
        if self.load_balancer(lb_id).await?.is_none() {
            return Err(ProviderError::NotFound(format!(
                "load balancer {lb_id} is not in {}",
                self.c.region
            )));
        }
        let group = self
            .target_groups_of(lb_id)
            .await?
            .into_iter()
            .find_map(|t| t.target_group_arn().map(str::to_string))
            .ok_or_else(|| permanent(format!("load balancer {lb_id} has no target group")))?;
        let id = match &backend.server_id {
            Some(id) => id.clone(),
            None => self.instance_with(&backend.address).await?.0,
        };
        Ok(Target {
            group,
            id,
            port: i32::from(backend.port),
        })
    }

    async fn health(&self, t: &Target) -> ProviderResult<Health> {
        let out = self
            .c
            .elb
            .describe_target_health()
            .target_group_arn(&t.group)
            .targets(t.description())
            .send()
            .await
            .map_err(|e| classify("DescribeTargetHealth", e))?;
        let h = out
            .target_health_descriptions()
            .iter()
            .find(|d| d.target().and_then(|x| x.id()) == Some(t.id.as_str()))
            .and_then(|d| d.target_health());
        Ok(Health {
            state: h.and_then(|h| h.state()).cloned(),
            reason: h.and_then(|h| h.reason()).cloned(),
        })
    }

    async fn tagged_drained(&self, t: &Target) -> ProviderResult<bool> {
        let key = t.tag_key();
        Ok(self
            .elb_tags_of(std::slice::from_ref(&t.group))
            .await?
            .iter()
            .any(|(_, tags)| tags.contains_key(&key)))
    }

    /// Known to the balancer: registered, or drained by cairn.
    async fn known(
        &self,
        lb_id: &str,
        t: &Target,
        h: &Health,
        backend: &BackendRef,
    ) -> ProviderResult<()> {
        if h.registered() || self.tagged_drained(t).await? {
            return Ok(());
        }
        Err(not_a_backend(lb_id, t, backend))
    }
}

#[async_trait::async_trait]
impl BackendControl for AwsProvider {
    async fn drain(
        &self,
        lb_id: &str,
        backend: &BackendRef,
        timeout: Duration,
    ) -> ProviderResult<DrainReport> {
        let started = Instant::now();
        let t = self.target(lb_id, backend).await?;
        let h = self.health(&t).await?;
        self.known(lb_id, &t, &h, backend).await?;
        // Tagged first: a drain interrupted after it leaves a target that
        // `restore` and `read` still know.
        self.c
            .elb
            .add_tags()
            .resource_arns(&t.group)
            .tags(
                Tag::builder()
                    .key(t.tag_key())
                    .value(&backend.address)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("AddTags", e))?;
        if h.registered() && !h.draining() {
            self.c
                .elb
                .deregister_targets()
                .target_group_arn(&t.group)
                .targets(t.description())
                .send()
                .await
                .map_err(|e| classify("DeregisterTargets", e))?;
            tracing::info!(target = %t.id, port = t.port, group = %t.group, "target deregistered");
        }
        let deadline = started + timeout;
        let mut pause = FIRST_POLL;
        loop {
            if !self.health(&t).await?.draining() {
                return Ok(DrainReport {
                    in_flight_at_start: None,
                    in_flight_left: Some(0),
                    waited: started.elapsed(),
                    timed_out: false,
                });
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(target = %t.id, ?timeout, "target still draining at the timeout");
                return Ok(DrainReport {
                    in_flight_at_start: None,
                    in_flight_left: None,
                    waited: started.elapsed(),
                    timed_out: true,
                });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    async fn restore(&self, lb_id: &str, backend: &BackendRef) -> ProviderResult<()> {
        let t = self.target(lb_id, backend).await?;
        let h = self.health(&t).await?;
        let tagged = self.tagged_drained(&t).await?;
        if !h.registered() && !tagged {
            return Err(not_a_backend(lb_id, &t, backend));
        }
        // Registering a registered target changes nothing, and one still
        // draining is taken back.
        if !h.registered() || h.draining() {
            self.c
                .elb
                .register_targets()
                .target_group_arn(&t.group)
                .targets(t.description())
                .send()
                .await
                .map_err(|e| classify("RegisterTargets", e))?;
            tracing::info!(target = %t.id, port = t.port, group = %t.group, "target registered again");
        }
        if tagged {
            self.c
                .elb
                .remove_tags()
                .resource_arns(&t.group)
                .tag_keys(t.tag_key())
                .send()
                .await
                .map_err(|e| classify("RemoveTags", e))?;
        }
        Ok(())
    }

    async fn backend_state(
        &self,
        lb_id: &str,
        backend: &BackendRef,
    ) -> ProviderResult<BackendState> {
        let t = self.target(lb_id, backend).await?;
        let h = self.health(&t).await?;
        if !h.registered() {
            self.known(lb_id, &t, &h, backend).await?;
            return Ok(BackendState::Drained);
        }
        Ok(match &h.state {
            Some(TargetHealthStateEnum::Healthy) => BackendState::Healthy,
            // `initial`: registered, ELB's first checks have not passed yet.
            Some(TargetHealthStateEnum::Unhealthy | TargetHealthStateEnum::Initial) => {
                BackendState::Unhealthy
            }
            Some(TargetHealthStateEnum::Draining) => BackendState::Draining,
            // `unused` for a registered target (a stopped instance, a zone
            // the balancer does not serve), `unavailable`, later states.
            other => BackendState::Unknown(match (other, &h.reason) {
                (Some(s), Some(r)) => format!("{}: {}", s.as_str(), r.as_str()),
                (Some(s), None) => s.as_str().to_string(),
                (None, _) => "no health reported".to_string(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn drained_tags_name_their_targets() {
        let t = Target {
            group: "arn:tg".into(),
            id: "i-0abc".into(),
            port: 8080,
        };
        let tags = BTreeMap::from([
            (t.tag_key(), "10.0.0.4".to_string()),
            ("cairn:deployment".to_string(), "d".to_string()),
            (format!("{DRAINED_TAG}i-1:notaport"), String::new()),
        ]);
        assert_eq!(drained_targets(&tags), vec![("i-0abc".to_string(), 8080)]);
    }
}
