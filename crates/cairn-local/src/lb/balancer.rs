//! The balancer's handle (`LoadBalancer`): made from a config, changed in
//! place, serving a listener until its token is cancelled. The proxying is
//! the workers' (`worker`); drain and restore on request are `admin`'s.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::access::Access;
use super::config::LbConfig;
use super::health;
use super::pick::Slot;
use super::proxy;
use super::shared::{Drain, Shared, Table, log_panic};
use super::upstream::{Upstream, lock};
use super::worker::Workers;

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
    pub(super) shared: Arc<Shared>,
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
    pub(super) fn set_head_timeout(&self, timeout: std::time::Duration) {
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
