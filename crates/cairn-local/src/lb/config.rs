//! What a load balancer is told: protocol, algorithm, backends, health checks
//! and the drain timeout. Durations serialize as `"5s"` / `"250ms"`, the same
//! spelling templates use, and the defaults are the `load_balancer` schema's.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the balancer speaks to clients and backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// An HTTP/1.1 reverse proxy: each request picks a backend.
    #[default]
    Http,
    /// A TCP splice: each connection picks a backend.
    Tcp,
}

/// How a backend is picked among the healthy ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Smooth weighted round robin (nginx's): 3:1 gives 3:1 over any window of 4.
    #[default]
    WeightedRoundRobin,
    /// Each healthy backend in turn; weights only exclude (weight 0).
    RoundRobin,
    /// The fewest in-flight requests (or connections) per unit of weight.
    LeastConnections,
}

/// One backend. A backend is identified by its address: an update that keeps
/// the address keeps its health and connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub addr: SocketAddr,
    /// Relative share of the traffic; 0 keeps the backend but sends it nothing.
    #[serde(default = "one")]
    pub weight: u32,
}

impl Backend {
    pub fn new(addr: SocketAddr, weight: u32) -> Self {
        Self { addr, weight }
    }
}

/// Active health checks. A zero `interval` turns them off: every backend is
/// then healthy and no probe is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthCheck {
    /// The path of the `GET` probe (HTTP protocol); a 2xx or 3xx passes.
    pub path: String,
    #[serde(with = "duration")]
    pub interval: Duration,
    /// How long one probe may take; at most `interval`.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Consecutive passes before a backend that went down is put back.
    pub healthy: u32,
    /// Consecutive failures before a backend is taken out.
    pub unhealthy: u32,
    /// The port probes go to; the backend's own port when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            path: "/".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            healthy: 2,
            unhealthy: 2,
            port: None,
        }
    }
}

impl HealthCheck {
    /// No active checks: every backend is healthy.
    pub fn off() -> Self {
        Self {
            interval: Duration::ZERO,
            ..Self::default()
        }
    }

    pub fn enabled(&self) -> bool {
        !self.interval.is_zero()
    }
}

/// The whole configuration of one load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LbConfig {
    pub protocol: Protocol,
    pub algorithm: Algorithm,
    pub backends: Vec<Backend>,
    pub health: HealthCheck,
    /// How long requests in flight to a removed backend may run, and how long
    /// `serve` waits for open connections when it shuts down.
    #[serde(with = "duration")]
    pub drain_timeout: Duration,
}

impl Default for LbConfig {
    fn default() -> Self {
        Self {
            protocol: Protocol::Http,
            algorithm: Algorithm::WeightedRoundRobin,
            backends: Vec::new(),
            health: HealthCheck::default(),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a configuration cannot be used as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("backend {0} is listed twice")]
    DuplicateBackend(SocketAddr),
    #[error("the health check path {0:?} does not start with `/`")]
    HealthPath(String),
    #[error(
        "health check thresholds must be at least 1 (healthy {healthy}, unhealthy {unhealthy})"
    )]
    Threshold { healthy: u32, unhealthy: u32 },
    #[error(
        "the health check timeout ({timeout:?}) must be above zero and at most the interval ({interval:?})"
    )]
    Timeout {
        timeout: Duration,
        interval: Duration,
    },
}

impl LbConfig {
    /// Every problem `LoadBalancer::new`/`update` would silently repair; a
    /// provider calls this to refuse such a configuration at plan time.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut seen = HashSet::new();
        for b in &self.backends {
            if !seen.insert(b.addr) {
                errors.push(ConfigError::DuplicateBackend(b.addr));
            }
        }
        let h = &self.health;
        if self.protocol == Protocol::Http && !h.path.starts_with('/') {
            errors.push(ConfigError::HealthPath(h.path.clone()));
        }
        if h.healthy == 0 || h.unhealthy == 0 {
            errors.push(ConfigError::Threshold {
                healthy: h.healthy,
                unhealthy: h.unhealthy,
            });
        }
        if h.enabled() && (h.timeout.is_zero() || h.timeout > h.interval) {
            errors.push(ConfigError::Timeout {
                timeout: h.timeout,
                interval: h.interval,
            });
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The configuration the balancer runs: the first of duplicate backends
    /// wins, thresholds are at least 1, the path starts with `/`, and with
    /// checks on the timeout is in (0, interval].
    pub(super) fn normalized(mut self) -> Self {
        let mut seen = HashSet::new();
        self.backends.retain(|b| {
            let first = seen.insert(b.addr);
            if !first {
                tracing::warn!(backend = %b.addr, "backend listed twice; the first entry wins");
            }
            first
        });
        let h = &mut self.health;
        if !h.path.starts_with('/') {
            h.path.insert(0, '/');
        }
        h.healthy = h.healthy.max(1);
        h.unhealthy = h.unhealthy.max(1);
        if h.enabled() && (h.timeout.is_zero() || h.timeout > h.interval) {
            h.timeout = h.interval;
        }
        self
    }
}

fn one() -> u32 {
    1
}

/// `"5s"`, `"250ms"`, `"2m"` (or a bare number of seconds), as templates
/// write durations.
mod duration {
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let ms = d.as_millis();
        if ms.is_multiple_of(1000) {
            s.serialize_str(&format!("{}s", ms / 1000))
        } else {
            s.serialize_str(&format!("{ms}ms"))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as \"5s\" or \"250ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                cairn_engine::schema::parse_duration_ms(v)
                    .map(Duration::from_millis)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_object_takes_the_schema_defaults() {
        let c: LbConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, LbConfig::default());
        assert_eq!(c.health.interval, Duration::from_secs(5));
        assert_eq!(c.drain_timeout, Duration::from_secs(10));
    }

    #[test]
    fn durations_round_trip_as_template_strings() {
        let c = LbConfig {
            protocol: Protocol::Tcp,
            algorithm: Algorithm::LeastConnections,
            backends: vec![Backend::new("127.0.0.1:80".parse().unwrap(), 3)],
            health: HealthCheck {
                interval: Duration::from_millis(250),
                timeout: Duration::from_millis(100),
                port: Some(81),
                ..HealthCheck::default()
            },
            drain_timeout: Duration::from_secs(30),
        };
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["health"]["interval"], "250ms");
        assert_eq!(json["drain_timeout"], "30s");
        assert_eq!(json["algorithm"], "least_connections");
        assert_eq!(serde_json::from_value::<LbConfig>(json).unwrap(), c);
        let c: LbConfig = serde_json::from_str(
            r#"{"backends":[{"addr":"127.0.0.2:8080"}],"drain_timeout":"1.5s"}"#,
        )
        .unwrap();
        assert_eq!(c.backends[0].weight, 1);
        assert_eq!(c.drain_timeout, Duration::from_millis(1500));
        assert!(serde_json::from_str::<LbConfig>(r#"{"drain_timeout":"soon"}"#).is_err());
    }

    #[test]
    fn validate_names_what_normalize_repairs() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut c = LbConfig {
            backends: vec![Backend::new(a, 1), Backend::new(a, 2)],
            ..LbConfig::default()
        };
        c.health.path = "healthz".into();
        c.health.unhealthy = 0;
        c.health.timeout = Duration::from_secs(9);
        let errors = c.clone().validate().unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        let n = c.normalized();
        assert_eq!(n.backends, vec![Backend::new(a, 1)]);
        assert_eq!(n.health.path, "/healthz");
        assert_eq!(n.health.unhealthy, 1);
        assert_eq!(n.health.timeout, n.health.interval);
        assert_eq!(n.validate(), Ok(()));
    }
}
