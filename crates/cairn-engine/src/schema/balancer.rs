//! A `load_balancer`'s properties as one typed model, read once for every
//! target ([`typed::read`](super::typed::read)): the listener, the backends
//! (an address, or a map with `weight` and `port`), the health check and
//! the drain timeout. Defaults are the schema's ([`super::portable`]), so a
//! properties object that did not come through a template (an import)
//! means the same on both targets. What one target alone refuses (ELB's
//! health check limits) is in [`super::limits`].

use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::typed::{self, PropError, count, duration, port, some_port, weight};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenProtocol {
    #[default]
    Http,
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    #[serde(default)]
    pub protocol: ListenProtocol,
    #[serde(deserialize_with = "port")]
    pub port: u16,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    #[default]
    WeightedRoundRobin,
    RoundRobin,
    LeastConnections,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheck {
    /// The HTTP path probed (http listeners).
    pub path: String,
    /// Where probes go; the backend's port when unset.
    #[serde(deserialize_with = "some_port")]
    pub port: Option<u16>,
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Consecutive passes before a backend is put in.
    #[serde(deserialize_with = "count")]
    pub healthy: u32,
    /// Consecutive failures before a backend is taken out.
    #[serde(deserialize_with = "count")]
    pub unhealthy: u32,
}

impl Default for HealthCheck {
    fn default() -> HealthCheck {
        HealthCheck {
            path: "/".into(),
            port: None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            healthy: 2,
            unhealthy: 2,
        }
    }
}

/// One backend, written as its address or as a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub address: String,
    pub weight: u32,
    /// Its own port; the balancer's `backend_port` when unset.
    pub port: Option<u16>,
}

impl Backend {
    /// The port traffic goes to.
    pub fn port_or(&self, backend_port: u16) -> u16 {
        self.port.unwrap_or(backend_port)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendMap {
    address: String,
    #[serde(default = "one", deserialize_with = "weight")]
    weight: u32,
    #[serde(default, deserialize_with = "some_port")]
    port: Option<u16>,
}

fn one() -> u32 {
    1
}

impl<'de> Deserialize<'de> for Backend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Backend, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = Backend;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an address, or a map with `address` (and `weight`, `port`)")
            }
            fn visit_str<E: de::Error>(self, address: &str) -> Result<Backend, E> {
                Ok(Backend {
                    address: address.to_string(),
                    weight: 1,
                    port: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Backend, A::Error> {
                let m = BackendMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Backend {
                    address: m.address,
                    weight: m.weight,
                    port: m.port,
                })
            }
        }
        d.deserialize_any(Either)
    }
}

/// A `load_balancer`'s properties.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoadBalancer {
    #[serde(default)]
    pub name: Option<String>,
    pub listen: Listen,
    #[serde(default)]
    pub algorithm: Algorithm,
    #[serde(default)]
    pub health_check: HealthCheck,
    #[serde(default)]
    pub backends: Vec<Backend>,
    #[serde(deserialize_with = "port")]
    pub backend_port: u16,
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub firewalls: Vec<String>,
    #[serde(default = "ten_seconds", deserialize_with = "duration")]
    pub drain_timeout: Duration,
    #[serde(default)]
    pub internal: bool,
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

impl LoadBalancer {
    /// Reads a `load_balancer`'s properties (as a request carries them).
    pub fn read(props: &serde_json::Value) -> Result<LoadBalancer, PropError> {
        typed::read(props)
    }

    /// (address, port) of each backend.
    pub fn targets(&self) -> impl Iterator<Item = (&str, u16)> + '_ {
        self.backends
            .iter()
            .map(|b| (b.address.as_str(), b.port_or(self.backend_port)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lb(extra: serde_json::Value) -> serde_json::Value {
        let mut p = json!({"listen": {"port": 80}, "backend_port": 8080});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        p
    }

    #[test]
    fn backends_are_addresses_or_maps_with_the_schema_defaults() {
        let b = LoadBalancer::read(&lb(json!({
            "backends": ["10.0.0.1", {"address": "10.0.0.2", "weight": 3, "port": 9000}, {"address": "10.0.0.3", "weight": null, "port": null}],
            "name": null, "health_check": {"interval": "10s", "port": null},
        })))
        .unwrap();
        assert_eq!(
            b.listen,
            Listen {
                protocol: ListenProtocol::Http,
                port: 80
            }
        );
        assert_eq!(b.algorithm, Algorithm::WeightedRoundRobin);
        assert_eq!(
            b.targets().collect::<Vec<_>>(),
            [("10.0.0.1", 8080), ("10.0.0.2", 9000), ("10.0.0.3", 8080)]
        );
        assert_eq!(
            b.backends.iter().map(|b| b.weight).collect::<Vec<_>>(),
            [1, 3, 1]
        );
        assert_eq!(b.health_check.interval, Duration::from_secs(10));
        assert_eq!(b.health_check.timeout, Duration::from_secs(2));
        assert_eq!(
            (b.health_check.healthy, b.health_check.path.as_str()),
            (2, "/")
        );
        assert_eq!(b.drain_timeout, Duration::from_secs(10));
        assert!(!b.internal && b.name.is_none());
    }

    #[test]
    fn a_bad_value_is_named_by_its_path() {
        let bad = |p| LoadBalancer::read(&lb(p)).unwrap_err().to_string();
        assert_eq!(
            bad(json!({"backends": ["10.0.0.1", {"address": "10.0.0.2", "port": 0}]})),
            "backends[1].port: 0 is not a port number (1 to 65535)"
        );
        assert_eq!(
            bad(json!({"backends": [{"weight": 2}]})),
            "backends[0]: missing field `address`"
        );
        assert!(
            bad(json!({"backends": [7]})).starts_with(
                "backends[0]: invalid type: integer `7`, expected an address, or a map"
            )
        );
        assert_eq!(
            bad(json!({"backends": [{"address": "a", "wieght": 2}]})),
            "backends[0].wieght: unknown field `wieght`, expected one of `address`, `weight`, `port`"
        );
        assert_eq!(
            bad(json!({"health_check": {"timeout": "2x"}})),
            "health_check.timeout: `2x` is not a duration such as `30s`, `2m` or `500ms`"
        );
        assert_eq!(
            bad(json!({"health_check": {"healthy": -1}})),
            "health_check.healthy: -1 is not a count: 1 or more"
        );
        assert_eq!(
            bad(json!({"backends": [{"address": "a", "weight": -2}]})),
            "backends[0].weight: -2 is not a weight: 0 (no traffic) or more"
        );
        assert!(
            bad(json!({"listen": {"protocol": "udp", "port": 53}}))
                .starts_with("listen.protocol: unknown variant `udp`, expected `http` or `tcp`")
        );
        assert_eq!(
            LoadBalancer::read(&json!({"listen": {"port": 80}}))
                .unwrap_err()
                .to_string(),
            "properties: missing field `backend_port`"
        );
    }
}
