//! Taking one backend of a load balancer out of rotation and putting it
//! back, for rolling releases: the release executor drains a host, restarts
//! its app, health-checks it and restores it, batch by batch.
//!
//! This is an operation on a live balancer, not a change of the recorded
//! resource: a drained backend stays in the template's `backends` and in
//! the state, so `plan` shows nothing while a release runs. A target keeps
//! the drained mark only as long as its balancer runs (the local target
//! forgets it when the balancer is rebuilt; on aws the target is simply
//! deregistered), so the executor restores every backend it drained, also
//! when the release fails.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use serde_json::Value as Json;

use crate::provider::error::ProviderResult;

/// One backend of a balancer, as the template lists it: an address and the
/// port traffic goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BackendRef {
    pub address: String,
    pub port: u16,
    /// The server behind the address, where the target registers servers by
    /// id (aws: the instance id). Saves the target finding it by address;
    /// targets that register addresses ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
}

impl BackendRef {
    pub fn new(address: impl Into<String>, port: u16) -> BackendRef {
        BackendRef {
            address: address.into(),
            port,
            server_id: None,
        }
    }

    pub fn with_server(mut self, id: impl Into<String>) -> BackendRef {
        self.server_id = Some(id.into());
        self
    }
}

impl std::fmt::Display for BackendRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.address, self.port)?;
        if let Some(id) = &self.server_id {
            write!(f, " ({id})")?;
        }
        Ok(())
    }
}

/// Every backend of a `load_balancer` resource's properties, in order: the
/// `backends` list (an address, or `{address, port}`), with `backend_port`
/// where a backend names no port. This is how both targets read the list,
/// so the executor finds the `BackendRef` of a host by its address here.
pub fn backends_of(properties: &Json) -> Vec<BackendRef> {
    let default_port = properties
        .get("backend_port")
        .and_then(Json::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(80);
    properties
        .get("backends")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| match b {
            Json::String(a) => Some(BackendRef::new(a.clone(), default_port)),
            Json::Object(o) => {
                let address = o.get("address")?.as_str()?;
                let port = o
                    .get("port")
                    .and_then(Json::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(default_port);
                Some(BackendRef::new(address, port))
            }
            _ => None,
        })
        .collect()
}

/// What a drain saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    /// Requests (HTTP, until their response body is sent) or connections
    /// (TCP) in flight to the backend when it stopped getting new ones;
    /// `None` where the target does not count them (aws).
    pub in_flight_at_start: Option<u64>,
    /// What was still in flight when the drain returned: 0 unless it timed
    /// out; `None` where the target does not count them.
    pub in_flight_left: Option<u64>,
    /// How long the drain took, the wait for in-flight work included.
    pub waited: Duration,
    /// The timeout passed with work still in flight. The backend stays
    /// drained and what is in flight runs on; the caller decides whether to
    /// go ahead (restarting the app cuts it) or to restore and stop.
    pub timed_out: bool,
}

/// Whether the balancer sends a backend traffic, as the balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendState {
    /// Taking new traffic.
    Healthy,
    /// In rotation but failing (or not yet passing) the balancer's health
    /// check, so taking no new traffic.
    Unhealthy,
    /// Drained, with work still in flight to it.
    Draining,
    /// Drained, nothing in flight: safe to restart.
    Drained,
    /// A state the target reports that none of the above describes (with
    /// the target's word for it).
    Unknown(String),
}

impl BackendState {
    /// The balancer sends it new requests.
    pub fn takes_traffic(&self) -> bool {
        matches!(self, BackendState::Healthy)
    }
}

/// Drain and restore of one backend of a running load balancer. Errors:
/// `NotFound` for an unknown balancer, `Permanent` for a backend that is
/// not one of the balancer's; the usual kinds for the target's faults.
#[async_trait::async_trait]
pub trait BackendControl: Send + Sync {
    /// Stops sending new requests/connections to `backend` of the load
    /// balancer whose provider id is `lb_id`, then waits up to `timeout`
    /// for what is in flight to it to finish. Idempotent: draining a
    /// drained backend waits again for whatever is still in flight.
    async fn drain(
        &self,
        lb_id: &str,
        backend: &BackendRef,
        timeout: Duration,
    ) -> ProviderResult<DrainReport>;

    /// Puts it back: it takes traffic again once the balancer's own health
    /// check passes. Idempotent.
    async fn restore(&self, lb_id: &str, backend: &BackendRef) -> ProviderResult<()>;

    /// Whether the balancer currently sends traffic to it (healthy and not
    /// drained), to wait on after `restore`.
    async fn backend_state(
        &self,
        lb_id: &str,
        backend: &BackendRef,
    ) -> ProviderResult<BackendState>;
}

/// The longest wait between two looks of [`restore_and_wait`].
pub const MAX_POLL: Duration = Duration::from_secs(1);

/// Restores `backend` and waits until the balancer sends it traffic again
/// (its own health check passed: `restore` alone does not wait), looking
/// first after `poll`, then twice as long each time up to [`MAX_POLL`]: a
/// local balancer probes a restored backend at once and answers within
/// milliseconds, an ALB's check takes seconds and each look is an API
/// call. Returns how long that took; past `within` it fails with the last
/// state seen, and the backend stays restored.
pub async fn restore_and_wait(
    control: &dyn BackendControl,
    lb_id: &str,
    backend: &BackendRef,
    within: Duration,
    mut poll: Duration,
) -> ProviderResult<Duration> {
    let started = tokio::time::Instant::now();
    control.restore(lb_id, backend).await?;
    loop {
        let state = control.backend_state(lb_id, backend).await?;
        if state.takes_traffic() {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= within {
            return Err(crate::provider::error::ProviderError::Permanent(format!(
                "{backend} takes no traffic {within:?} after it was put back into load balancer {lb_id} (it is {state:?})"
            )));
        }
        tokio::time::sleep(poll.min(within.saturating_sub(started.elapsed()))).await;
        poll = (poll * 2).min(MAX_POLL.max(poll));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backends_are_read_as_the_targets_read_them() {
        let p = json!({
            "backend_port": 8080,
            "backends": ["10.0.0.4", {"address": "10.0.0.5", "port": 9000}, {"address": "10.0.0.6"}, 7],
        });
        assert_eq!(
            backends_of(&p),
            vec![
                BackendRef::new("10.0.0.4", 8080),
                BackendRef::new("10.0.0.5", 9000),
                BackendRef::new("10.0.0.6", 8080),
            ]
        );
        assert_eq!(
            backends_of(&json!({"backends": ["10.0.0.4"]})),
            vec![BackendRef::new("10.0.0.4", 80)]
        );
        assert!(backends_of(&json!({})).is_empty());
    }

    #[tokio::test]
    async fn the_fake_drains_restores_and_refuses_like_a_target() {
        use crate::provider::{CreateRequest, Provider, ProviderError};
        use crate::testing::FakeProvider;
        let fake = FakeProvider::new();
        let lb = fake
            .create(CreateRequest {
                deployment: "d".into(),
                address: "lb".into(),
                kind: crate::schema::Kind::LoadBalancer,
                properties: json!({"backends": ["10.0.0.4", "10.0.0.5"], "backend_port": 8080}),
                tags: Default::default(),
                target: None,
                token: "t-lb".into(),
                sensitive: Vec::new(),
                may_exist: false,
            })
            .await
            .unwrap();
        let control = fake.backend_control().unwrap();
        let a = BackendRef::new("10.0.0.4", 8080);
        fake.unhealthy.lock().unwrap().insert("10.0.0.5".into());
        let r = control
            .drain(&lb.id, &a, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(!r.timed_out);
        assert_eq!(
            control.backend_state(&lb.id, &a).await,
            Ok(BackendState::Drained)
        );
        control.restore(&lb.id, &a).await.unwrap();
        assert_eq!(
            control.backend_state(&lb.id, &a).await,
            Ok(BackendState::Healthy)
        );
        let b = BackendRef::new("10.0.0.5", 8080);
        assert_eq!(
            control.backend_state(&lb.id, &b).await,
            Ok(BackendState::Unhealthy)
        );
        assert_eq!(
            *fake.backend_calls.lock().unwrap(),
            [
                format!("drain {} 10.0.0.4:8080", lb.id),
                format!("restore {} 10.0.0.4:8080", lb.id)
            ]
        );
        let wrong_port = BackendRef::new("10.0.0.4", 80);
        assert!(matches!(
            control.restore(&lb.id, &wrong_port).await,
            Err(ProviderError::Permanent(_))
        ));
        assert!(matches!(
            control.restore("lb-nope", &a).await,
            Err(ProviderError::NotFound(_))
        ));
        fake.fail_drain.lock().unwrap().insert("10.0.0.4".into());
        assert!(
            control
                .drain(&lb.id, &a, Duration::from_secs(1))
                .await
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn restore_and_wait_waits_for_the_health_check_and_gives_up_in_time() {
        use crate::provider::{CreateRequest, Provider, ProviderError};
        use crate::testing::FakeProvider;
        use std::sync::Arc;
        let fake = Arc::new(FakeProvider::new());
        let lb = fake
            .create(CreateRequest {
                deployment: "d".into(),
                address: "lb".into(),
                kind: crate::schema::Kind::LoadBalancer,
                properties: json!({"backends": ["10.0.0.4"], "backend_port": 80}),
                tags: Default::default(),
                target: None,
                token: "t-lb".into(),
                sensitive: Vec::new(),
                may_exist: false,
            })
            .await
            .unwrap();
        let a = BackendRef::new("10.0.0.4", 80);
        let poll = Duration::from_millis(100);
        fake.unhealthy.lock().unwrap().insert("10.0.0.4".into());
        let healed = {
            let fake = fake.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(350)).await;
                fake.unhealthy.lock().unwrap().clear();
            })
        };
        let control = fake.backend_control().unwrap();
        let took = restore_and_wait(control, &lb.id, &a, Duration::from_secs(5), poll)
            .await
            .unwrap();
        // Looks at 0, 100, 300 (then 200 later) and 700 ms (400 later).
        assert_eq!(took, Duration::from_millis(700));
        healed.await.unwrap();

        fake.unhealthy.lock().unwrap().insert("10.0.0.4".into());
        let e = restore_and_wait(control, &lb.id, &a, Duration::from_secs(1), poll)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ProviderError::Permanent(m) if m.contains("takes no traffic 1s after") && m.contains("Unhealthy")),
            "{e:?}"
        );
    }

    #[test]
    fn states_and_reports_cross_the_wire() {
        for s in [
            BackendState::Healthy,
            BackendState::Drained,
            BackendState::Unknown("unused".into()),
        ] {
            let text = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<BackendState>(&text).unwrap(), s);
        }
        assert_eq!(
            serde_json::to_string(&BackendState::Draining).unwrap(),
            "\"draining\""
        );
        let r = DrainReport {
            in_flight_at_start: Some(3),
            in_flight_left: Some(0),
            waited: Duration::from_millis(250),
            timed_out: false,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<DrainReport>(&text).unwrap(), r);
        let b = BackendRef::new("10.0.0.4", 80).with_server("i-1");
        assert_eq!(b.to_string(), "10.0.0.4:80 (i-1)");
        let text = serde_json::to_string(&BackendRef::new("10.0.0.4", 80)).unwrap();
        assert!(!text.contains("server_id"), "{text}");
    }
}
