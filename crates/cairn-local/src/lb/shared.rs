//! What a balancer's proxy, health and drain tasks share with its handle
//! (`Shared`): the table of backends and the settings, and the few ways
//! they are used (picking a backend, recording a check, connecting). Below
//! `balancer` (the handle) and the tasks (`worker`, `proxy`, `tcp`,
//! `health`), which all take it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::access::Access;
use super::config::{HealthCheck, LbConfig, Protocol};
use super::pick::{self, Slot};
use super::upstream::{InFlight, Upstream, lock};

/// How long the proxy waits for a backend to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the proxy, health and drain tasks share with the handle.
pub(super) struct Shared {
    pub(super) table: Mutex<Table>,
    /// Signals `serve` that the table changed: start or stop health checks,
    /// start drains.
    pub(super) changed: tokio::sync::Notify,
    /// Worker threads `serve` runs; 0: one worker on the caller's runtime.
    pub(super) threads: usize,
    pub(super) serving: AtomicBool,
    pub(super) next_id: AtomicU64,
    /// Checked on every accept; apart from the table so that an accept
    /// never waits on a backend update.
    pub(super) access: Mutex<Access>,
    /// The address connections to backends (proxied and health checks)
    /// come from; `None`: whatever the kernel picks. With servers in their
    /// own namespaces, the balancer's firewalls tell it apart from the
    /// machine by this address.
    pub(super) source: Mutex<Option<std::net::Ipv4Addr>>,
    /// How long an HTTP client has to send a request head, in ms (see
    /// `proxy::HEAD_TIMEOUT`; tests shorten it).
    pub(super) head_timeout_ms: AtomicU64,
}

impl Shared {
    /// A connection to `addr` from the balancer's source address, if it has one.
    pub(super) async fn connect_to(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let source = *lock(&self.source);
        let stream = match (source, addr) {
            (Some(ip), SocketAddr::V4(_)) => {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(SocketAddr::from((ip, 0)))?;
                socket.connect(addr).await?
            }
            _ => TcpStream::connect(addr).await?,
        };
        // Requests and responses are small writes that must not wait for
        // Nagle's algorithm to gather more.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

pub(super) struct Table {
    pub(super) config: LbConfig,
    /// In `config.backends` order, with `slots` alongside.
    pub(super) upstreams: Vec<Arc<Upstream>>,
    pub(super) slots: Vec<Slot>,
    pub(super) cursor: usize,
    /// Removed backends with work still in flight.
    pub(super) draining: Vec<Drain>,
    /// Drains `serve` has not started a task for yet.
    pub(super) unstarted: Vec<Drain>,
}

#[derive(Clone)]
pub(super) struct Drain {
    pub(super) up: Arc<Upstream>,
    pub(super) deadline: Instant,
}

impl Shared {
    /// Picks a healthy backend not in `exclude` and counts the new request
    /// or connection on it, under the table lock (see `InFlight`).
    pub(super) fn pick(&self, exclude: &[u64]) -> Option<InFlight> {
        let mut t = lock(&self.table);
        let Table {
            config,
            upstreams,
            slots,
            cursor,
            ..
        } = &mut *t;
        let i = pick::pick(
            config.algorithm,
            slots,
            cursor,
            |i| {
                let up = &upstreams[i];
                up.is_healthy() && !up.is_drained() && !exclude.contains(&up.id)
            },
            |i| upstreams[i].in_flight(),
        )?;
        Some(InFlight::new(upstreams[i].clone()))
    }

    /// The health check settings and protocol, or None when checks are off.
    pub(super) fn health(&self) -> Option<(HealthCheck, Protocol)> {
        let t = lock(&self.table);
        t.config
            .health
            .enabled()
            .then(|| (t.config.health.clone(), t.config.protocol))
    }

    /// Records a probe result against the current thresholds.
    pub(super) fn record(&self, up: &Upstream, passed: bool, detail: &str) {
        let (healthy, unhealthy) = {
            let t = lock(&self.table);
            (t.config.health.healthy, t.config.health.unhealthy)
        };
        up.record(passed, healthy, unhealthy, detail);
    }

    /// Connects to a backend for traffic. A refusal or timeout counts as a
    /// failed health check when checks are on.
    pub(super) async fn connect(&self, up: &Upstream) -> io::Result<TcpStream> {
        let result = match tokio::time::timeout(CONNECT_TIMEOUT, self.connect_to(up.addr)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {CONNECT_TIMEOUT:?}"),
            )),
        };
        // `connect_to` set the new connection's TCP_NODELAY.
        if let Err(e) = &result
            && self.health().is_some()
        {
            self.record(up, false, &format!("connecting for traffic: {e}"));
        }
        result
    }

    /// Closes worker `worker`'s kept backend connections, of backends
    /// configured and draining alike.
    pub(super) fn close_idle(&self, worker: usize) {
        let t = lock(&self.table);
        for up in t.upstreams.iter().chain(t.draining.iter().map(|d| &d.up)) {
            up.close_idle(worker);
        }
    }

    /// How many idle pools each backend keeps: one per worker.
    pub(super) fn workers(&self) -> usize {
        self.threads.max(1)
    }
}

pub(super) fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!("load balancer task panicked: {e}");
    }
}
