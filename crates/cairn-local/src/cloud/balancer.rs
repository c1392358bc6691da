//! A load balancer as the cloud runs it: its settings read from the
//! resource's properties, and the handle of its proxy task. Below the
//! `Cloud`, which holds one per running balancer; `services` starts,
//! changes and stops them.

use std::net::{Ipv4Addr, SocketAddr};

use cairn_engine::provider::{Json, ProviderResult};
use tokio_util::sync::CancellationToken;

use super::props::permanent;
use crate::lb::{Algorithm, Backend, HealthCheck, LbConfig, LoadBalancer, Protocol};

pub struct RunningLb {
    pub lb: LoadBalancer,
    pub(super) cancel: CancellationToken,
    pub(super) task: tokio::task::JoinHandle<()>,
}

/// The balancer's settings from the resource's properties, read in the
/// engine's typed model (the one the aws target and the evaluator read).
pub fn lb_config(p: &Json) -> ProviderResult<LbConfig> {
    use cairn_engine::schema::balancer::{self as model, LoadBalancer as Props};
    let props = Props::read(p).map_err(|e| permanent(format!("load balancer {e}")))?;
    let mut backends = Vec::new();
    for b in &props.backends {
        let ip: Ipv4Addr = b
            .address
            .parse()
            .map_err(|_| permanent(format!("backend `{}` is not an IPv4 address", b.address)))?;
        let addr = SocketAddr::from((ip, b.port_or(props.backend_port)));
        backends.push(Backend::new(addr, b.weight));
    }
    let hc = &props.health_check;
    let config = LbConfig {
        protocol: match props.listen.protocol {
            model::ListenProtocol::Http => Protocol::Http,
            model::ListenProtocol::Tcp => Protocol::Tcp,
        },
        algorithm: match props.algorithm {
            model::Algorithm::WeightedRoundRobin => Algorithm::WeightedRoundRobin,
            model::Algorithm::RoundRobin => Algorithm::RoundRobin,
            model::Algorithm::LeastConnections => Algorithm::LeastConnections,
        },
        backends,
        health: HealthCheck {
            path: hc.path.clone(),
            interval: hc.interval,
            timeout: hc.timeout,
            healthy: hc.healthy,
            unhealthy: hc.unhealthy,
            port: hc.port,
        },
        drain_timeout: props.drain_timeout,
    };
    if let Err(errors) = config.validate() {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(permanent(format!(
            "load balancer settings: {}",
            text.join("; ")
        )));
    }
    Ok(config)
}

pub(super) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
