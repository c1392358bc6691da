//! The local target's load balancer: an HTTP/1.1 reverse proxy or a TCP
//! splice in front of a set of backends, with smooth weighted round robin
//! (or round robin, or least connections), active health checks and
//! connection draining. The daemon runs one per `load_balancer` resource, on
//! that resource's own address: loopback in a `process` cloud, the machine's
//! end of the cloud's link in a `runc` one (see `cloud::isolation`).
//!
//! - **Health.** With checks on (a non-zero `health.interval`), one task per
//!   backend probes it every interval (HTTP `GET path` answered 2xx/3xx, or a
//!   TCP connect) within `timeout`. `unhealthy` failures in a row take it out,
//!   `healthy` passes in a row put it back. A backend starts out (also one an
//!   `update` adds) and is put in by its first passing check, so traffic
//!   never reaches something that is not up yet. A refused or timed-out
//!   connection from the proxy counts as a failed check too, so a dead
//!   backend leaves sooner under traffic. With checks off every backend is in.
//! - **Draining.** `update` applies at once: a backend it removes is picked
//!   no more; what is in flight to it (HTTP requests with their response
//!   bodies, TCP connections) runs on for up to `drain_timeout`, then its
//!   connections are cut. A backend that stays keeps its health and
//!   connections, so an update never fails a request in flight.
//! - **Drain on request.** `drain_backend` takes a backend that stays
//!   configured out of rotation (a release restarting its app): picked no
//!   more, its kept connections closed, what is in flight runs on and the
//!   call returns once that reaches 0 or its timeout passes (nothing is cut:
//!   the caller decides). `restore_backend` puts it back through a health
//!   check probed at once. The mark lives in this balancer's memory only:
//!   a balancer rebuilt (the daemon restarted) starts with none drained, so
//!   a release restores every backend it drained. `update` keeps the mark
//!   of a backend it keeps. See `admin`.
//! - **Retries.** A request whose connection attempt fails was never sent,
//!   and goes to another healthy backend. One that fails after it was sent
//!   is retried once on another backend when it had no body or is a small
//!   `GET`/`HEAD`/`OPTIONS` (buffered to replay), and answers 502 otherwise.
//!   No healthy backend at all: 503.
//! - **Access.** `set_access` limits which sources may connect (the
//!   resource's firewalls); a refused client is reset before any backend is
//!   picked. See `access`.
//! - **Threads.** Traffic runs on one worker thread per core, each owning
//!   the connections it accepted and its own connections to backends (see
//!   `worker`); health checks and drains run on the caller's runtime.
//! - **Shutdown.** Cancel the token given to `serve`: it stops accepting,
//!   lets open requests finish (idle keep-alive connections close) up to
//!   `drain_timeout`, cuts the rest and returns. Every task (connections,
//!   health checks, drains, backend connections) lives in a `JoinSet` that
//!   `serve` or a worker owns and empties, and `serve` returns once every
//!   worker's thread is done with its sockets.
//!
//! Never: decides where it listens (the caller binds the listener), or
//! spawns a task it does not join.

mod access;
mod admin;
mod bench;
mod config;
mod health;
mod http1;
mod pick;
mod proxy;
mod tcp;
mod upstream;
mod worker;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use worker::Workers;

pub use access::Access;
pub use admin::UnknownBackend;
pub use bench::{BenchReport, bench_requests};
pub use config::{Algorithm, Backend, ConfigError, HealthCheck, LbConfig, Protocol};

use pick::Slot;
use upstream::{InFlight, Upstream, lock};

/// How long the proxy waits for a backend to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One backend as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub addr: SocketAddr,
    pub weight: u32,
    /// Receiving new traffic (always false while draining or drained).
    pub healthy: bool,
    /// HTTP requests (until their response body is sent) or TCP connections.
    pub in_flight: usize,
    pub consecutive_ok: u32,
    pub consecutive_fail: u32,
    /// Removed by an update, with requests still in flight.
    pub draining: bool,
    /// Drained on request (`drain_backend`) and not restored yet.
    #[serde(default)]
    pub drained: bool,
}

/// A load balancer. Clones are handles to the same balancer.
#[derive(Clone)]
pub struct LoadBalancer {
    shared: Arc<Shared>,
}

/// What the proxy, health and drain tasks share with the handle.
pub(super) struct Shared {
    table: Mutex<Table>,
    /// Signals `serve` that the table changed: start or stop health checks,
    /// start drains.
    changed: tokio::sync::Notify,
    /// Worker threads `serve` runs; 0: one worker on the caller's runtime.
    threads: usize,
    serving: AtomicBool,
    next_id: AtomicU64,
    /// Checked on every accept; apart from the table so that an accept
    /// never waits on a backend update.
    access: Mutex<Access>,
    /// The address connections to backends (proxied and health checks)
    /// come from; `None`: whatever the kernel picks. With servers in their
    /// own namespaces, the balancer's firewalls tell it apart from the
    /// machine by this address.
    source: Mutex<Option<std::net::Ipv4Addr>>,
    /// How long an HTTP client has to send a request head, in ms (see
    /// `proxy::HEAD_TIMEOUT`; tests shorten it).
    head_timeout_ms: AtomicU64,
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

struct Table {
    config: LbConfig,
    /// In `config.backends` order, with `slots` alongside.
    upstreams: Vec<Arc<Upstream>>,
    slots: Vec<Slot>,
    cursor: usize,
    /// Removed backends with work still in flight.
    draining: Vec<Drain>,
    /// Drains `serve` has not started a task for yet.
    unstarted: Vec<Drain>,
}

#[derive(Clone)]
struct Drain {
    up: Arc<Upstream>,
    deadline: Instant,
}

impl LoadBalancer {
    /// A balancer for `config`. Nothing runs until `serve`; with health
    /// checks on, every backend is out until its first passing check.
    pub fn new(config: LbConfig) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_threads(config, cores)
    }

    /// A balancer whose `serve` runs `threads` worker threads (0: one
    /// worker on the caller's runtime, no thread of its own).
    pub fn with_threads(config: LbConfig, threads: usize) -> Self {
        let shared = Arc::new(Shared {
            table: Mutex::new(Table {
                config: LbConfig {
                    backends: Vec::new(),
                    ..config.clone()
                },
                upstreams: Vec::new(),
                slots: Vec::new(),
                cursor: 0,
                draining: Vec::new(),
                unstarted: Vec::new(),
            }),
            changed: tokio::sync::Notify::new(),
            threads,
            serving: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            access: Mutex::new(Access::Open),
            source: Mutex::new(None),
            head_timeout_ms: AtomicU64::new(proxy::HEAD_TIMEOUT.as_millis() as u64),
        });
        let lb = Self { shared };
        lb.update(config);
        lb
    }

    /// Applies `config` at once. Backends are matched by address: one that
    /// stays keeps its health, streaks and connections (its weight may
    /// change); a new one is out until its first passing check (in at once
    /// when checks are off); a removed one drains (see the module docs).
    /// Health check settings apply from each backend's next probe.
    pub fn update(&self, config: LbConfig) {
        let config = config.normalized();
        let checks_on = config.health.enabled();
        let mut guard = lock(&self.shared.table);
        let t = &mut *guard;
        let mut old: HashMap<SocketAddr, (Arc<Upstream>, Slot)> = t
            .upstreams
            .drain(..)
            .zip(t.slots.drain(..))
            .map(|(up, slot)| (up.addr, (up, slot)))
            .collect();
        let (mut added, mut kept) = (0, 0);
        for b in &config.backends {
            let (up, mut slot) = match old.remove(&b.addr) {
                Some(existing) => {
                    kept += 1;
                    existing
                }
                None => {
                    added += 1;
                    let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
                    (
                        Upstream::new(id, b.addr, !checks_on, self.shared.workers()),
                        Slot::new(b.weight),
                    )
                }
            };
            if !checks_on {
                up.assume_healthy();
            }
            slot.weight = b.weight;
            t.upstreams.push(up);
            t.slots.push(slot);
        }
        let removed = old.len();
        let deadline = Instant::now() + config.drain_timeout;
        for (up, _) in old.into_values() {
            up.retire();
            // In-flight counts only grow under this lock, so 0 stays 0.
            if up.in_flight() == 0 {
                up.kill();
            } else {
                tracing::info!(backend = %up.addr, in_flight = up.in_flight(), "draining backend");
                let d = Drain { up, deadline };
                t.draining.push(d.clone());
                t.unstarted.push(d);
            }
        }
        t.config = config;
        drop(guard);
        if added + removed > 0 {
            tracing::info!(added, kept, removed, "load balancer backends updated");
        }
        self.shared.changed.notify_one();
    }

    /// Which sources may connect from now on (connections already open
    /// stay, as with a cloud's stateful firewall).
    pub fn set_access(&self, access: Access) {
        *lock(&self.shared.access) = access;
    }

    /// Connections to backends come from `source` from now on (see
    /// `Shared::source`).
    pub fn set_source(&self, source: Option<std::net::Ipv4Addr>) {
        *lock(&self.shared.source) = source;
    }

    /// How long an HTTP client has to send a request head, for connections
    /// accepted from now on.
    #[cfg(test)]
    fn set_head_timeout(&self, timeout: Duration) {
        self.shared
            .head_timeout_ms
            .store(timeout.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn access(&self) -> Access {
        lock(&self.shared.access).clone()
    }

    /// The current configuration (normalized).
    pub fn config(&self) -> LbConfig {
        lock(&self.shared.table).config.clone()
    }

    /// Every configured backend in configuration order, then those draining.
    pub fn status(&self) -> Vec<BackendStatus> {
        let t = lock(&self.shared.table);
        let current = t.upstreams.iter().zip(&t.slots).map(|(up, slot)| {
            let (ok, fail) = up.streaks();
            BackendStatus {
                addr: up.addr,
                weight: slot.weight,
                healthy: up.is_healthy() && !up.is_drained(),
                in_flight: up.in_flight(),
                consecutive_ok: ok,
                consecutive_fail: fail,
                draining: false,
                drained: up.is_drained(),
            }
        });
        let draining = t.draining.iter().map(|d| {
            let (ok, fail) = d.up.streaks();
            BackendStatus {
                addr: d.up.addr,
                weight: 0,
                healthy: false,
                in_flight: d.up.in_flight(),
                consecutive_ok: ok,
                consecutive_fail: fail,
                draining: true,
                drained: false,
            }
        });
        current.chain(draining).collect()
    }

    /// Serves `listener` until `shutdown` is cancelled, then drains (see the
    /// module docs) and returns. One `serve` at a time per balancer: a second
    /// concurrent call logs an error and returns at once.
    pub async fn serve(&self, listener: TcpListener, shutdown: CancellationToken) {
        if self.shared.serving.swap(true, Ordering::AcqRel) {
            tracing::error!("load balancer is already serving; not serving a second listener");
            return;
        }
        let cut = CancellationToken::new();
        let _serving = Serving(&self.shared, cut.clone());
        let local = listener
            .local_addr()
            .map_or_else(|e| format!("(unknown address: {e})"), |a| a.to_string());
        let protocol = lock(&self.shared.table).config.protocol;
        let listener = match listener.into_std() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(address = %local, "load balancer cannot take its listener over: {e}");
                return;
            }
        };
        let stop = CancellationToken::new();
        let mut traffic = Workers::start(&self.shared, listener, self.shared.threads, &stop, &cut);
        tracing::info!(address = %local, ?protocol, "load balancer serving on {local}");

        let mut workers = JoinSet::new();
        let mut checks = HashMap::new();
        self.reconcile(&mut workers, &mut checks);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.shared.changed.notified() => self.reconcile(&mut workers, &mut checks),
                Some(done) = workers.join_next() => log_panic(done),
            }
        }

        tracing::info!(address = %local, "load balancer stopping");
        stop.cancel();
        traffic.wait().await;
        workers.shutdown().await;
        // The drain tasks went with the workers, and every connection is
        // gone: finish the drains here.
        let drains = {
            let mut t = lock(&self.shared.table);
            t.unstarted.clear();
            std::mem::take(&mut t.draining)
        };
        for d in drains {
            d.up.kill();
        }
        tracing::info!(address = %local, "load balancer stopped");
    }

    /// Brings the worker tasks in line with the table: one health check task
    /// per backend while checks are on, one drain task per removed backend.
    fn reconcile(&self, workers: &mut JoinSet<()>, checks: &mut HashMap<u64, AbortHandle>) {
        let (wanted, drains) = {
            let mut t = lock(&self.shared.table);
            let wanted: HashMap<u64, Arc<Upstream>> = if t.config.health.enabled() {
                t.upstreams.iter().map(|u| (u.id, u.clone())).collect()
            } else {
                HashMap::new()
            };
            (wanted, std::mem::take(&mut t.unstarted))
        };
        // A check task also ends by itself when it finds checks turned off;
        // drop those too, so turning checks back on starts fresh ones.
        checks.retain(|id, task| {
            let keep = wanted.contains_key(id) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (id, up) in wanted {
            if let MapEntry::Vacant(slot) = checks.entry(id) {
                slot.insert(workers.spawn(health::run(self.shared.clone(), up)));
            }
        }
        for d in drains {
            workers.spawn(drain(self.shared.clone(), d));
        }
    }
}

impl std::fmt::Debug for LoadBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancer")
            .field("config", &self.config())
            .finish_non_exhaustive()
    }
}

/// Marks the balancer free to serve again, and cuts what the workers still
/// run, however `serve` ends (also when its future is dropped).
struct Serving<'a>(&'a Shared, CancellationToken);

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.1.cancel();
        self.0.serving.store(false, Ordering::Release);
    }
}

/// Waits for a removed backend's in-flight work to end or its deadline to
/// pass, then cuts what is left.
async fn drain(shared: Arc<Shared>, d: Drain) {
    let started = Instant::now();
    if d.up.wait_idle(d.deadline).await {
        tracing::info!(backend = %d.up.addr, after = ?started.elapsed(), "backend drained");
    } else {
        tracing::warn!(
            backend = %d.up.addr,
            cut = d.up.in_flight(),
            "drain timeout passed; cutting requests still in flight"
        );
    }
    d.up.kill();
    lock(&shared.table)
        .draining
        .retain(|x| !Arc::ptr_eq(&x.up, &d.up));
}

fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!("load balancer task panicked: {e}");
    }
}

impl Shared {
    /// Picks a healthy backend not in `exclude` and counts the new request
    /// or connection on it, under the table lock (see `InFlight`).
    fn pick(&self, exclude: &[u64]) -> Option<InFlight> {
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
    fn health(&self) -> Option<(HealthCheck, Protocol)> {
        let t = lock(&self.table);
        t.config
            .health
            .enabled()
            .then(|| (t.config.health.clone(), t.config.protocol))
    }

    /// Records a probe result against the current thresholds.
    fn record(&self, up: &Upstream, passed: bool, detail: &str) {
        let (healthy, unhealthy) = {
            let t = lock(&self.table);
            (t.config.health.healthy, t.config.health.unhealthy)
        };
        up.record(passed, healthy, unhealthy, detail);
    }

    /// Connects to a backend for traffic. A refusal or timeout counts as a
    /// failed health check when checks are on.
    async fn connect(&self, up: &Upstream) -> io::Result<TcpStream> {
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
    fn close_idle(&self, worker: usize) {
        let t = lock(&self.table);
        for up in t.upstreams.iter().chain(t.draining.iter().map(|d| &d.up)) {
            up.close_idle(worker);
        }
    }

    /// How many idle pools each backend keeps: one per worker.
    fn workers(&self) -> usize {
        self.threads.max(1)
    }
}
