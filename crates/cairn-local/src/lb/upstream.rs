//! One backend as the balancer sees it while running: health, in-flight
//! count, idle HTTP connections, the two signals of removal (`retire`: no
//! new work; `kill`: cut what is left), and the administrative `drained`
//! mark of a backend that stays configured (see `admin`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Idle keep-alive connections kept per backend and worker; more are closed.
const MAX_IDLE: usize = 32;

pub(super) struct Upstream {
    /// Unique per balancer: a backend removed and added again is a new one.
    pub id: u64,
    pub addr: SocketAddr,
    healthy: AtomicBool,
    counters: Mutex<Counters>,
    in_flight: AtomicUsize,
    /// Woken when `in_flight` drops to 0.
    idle: Notify,
    /// Removed by an update: picked no more, connections not kept.
    retired: AtomicBool,
    /// Drained on request (a release restarting it): picked no more,
    /// connections not kept, until restored. Set and cleared under the
    /// table lock, like picks.
    drained: AtomicBool,
    /// Asks the health check task for a probe now rather than at the next
    /// interval (a restored backend should not wait a whole interval).
    probe_now: Notify,
    /// Cancelled when the drain ends: whatever still runs is cut.
    kill: CancellationToken,
    /// `kill`'s children, one per worker: every request waits on one, and
    /// a token per worker keeps those waits off a lock all workers share.
    kills: Box<[CancellationToken]>,
    /// `Host` for requests that came without one.
    pub host: String,
    /// Idle connections, one pool per worker: a connection is registered
    /// with the runtime of the worker that opened it, and only that worker
    /// reuses it.
    pools: Box<[Mutex<Pool>]>,
}

#[derive(Default)]
struct Counters {
    ok: u32,
    fail: u32,
    /// Whether any check ever passed: the first pass puts a new backend in
    /// at once, later returns need `healthy` passes in a row.
    passed_once: bool,
}

#[derive(Default)]
struct Pool {
    /// With when each went idle; the last is the most recent, so ages grow
    /// towards the front.
    idle: Vec<(TcpStream, Instant)>,
    closed: bool,
}

impl Upstream {
    /// `healthy` is false when health checks are on: a backend takes no
    /// traffic before its first passing check.
    pub fn new(id: u64, addr: SocketAddr, healthy: bool, workers: usize) -> Arc<Self> {
        let kill = CancellationToken::new();
        let workers = workers.max(1);
        Arc::new(Self {
            kills: (0..workers).map(|_| kill.child_token()).collect(),
            host: addr.to_string(),
            id,
            addr,
            healthy: AtomicBool::new(healthy),
            counters: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            retired: AtomicBool::new(false),
            drained: AtomicBool::new(false),
            probe_now: Notify::new(),
            kill,
            pools: (0..workers).map(|_| Mutex::default()).collect(),
        })
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// (consecutive passes, consecutive failures).
    pub fn streaks(&self) -> (u32, u32) {
        let c = lock(&self.counters);
        (c.ok, c.fail)
    }

    /// Records a probe (or a failed connection attempt) and moves the
    /// backend in or out when a threshold is crossed.
    pub fn record(&self, passed: bool, healthy_after: u32, unhealthy_after: u32, detail: &str) {
        let mut c = lock(&self.counters);
        if passed {
            c.ok = c.ok.saturating_add(1);
            c.fail = 0;
            let first = !std::mem::replace(&mut c.passed_once, true);
            if !self.is_healthy() && (first || c.ok >= healthy_after) {
                self.healthy.store(true, Ordering::Release);
                tracing::info!(backend = %self.addr, passes = c.ok, "backend is up");
            }
        } else {
            c.fail = c.fail.saturating_add(1);
            c.ok = 0;
            if self.is_healthy() && c.fail >= unhealthy_after {
                self.healthy.store(false, Ordering::Release);
                tracing::warn!(backend = %self.addr, failures = c.fail, "backend is down: {detail}");
            }
        }
    }

    /// Health checks were turned off: every backend is healthy.
    pub fn assume_healthy(&self) {
        self.healthy.store(true, Ordering::Release);
    }

    /// Removed from the configuration: no new work, no kept connections.
    /// The caller holds the table lock, so no pick can race with this.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        for pool in &self.pools {
            let mut pool = lock(pool);
            pool.closed = true;
            pool.idle.clear();
        }
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Marks it drained (true) or not; returns the mark it had. A drained
    /// backend's kept connections are closed, so the app behind it sees
    /// no idle keep-alive connection while it restarts. The caller holds
    /// the table lock, so no pick races with this.
    pub fn set_drained(&self, drained: bool) -> bool {
        let was = self.drained.swap(drained, Ordering::AcqRel);
        if drained {
            // After the mark: a `put_idle` that takes the pool lock later
            // sees the mark, one that took it earlier is cleared here.
            for pool in &self.pools {
                lock(pool).idle.clear();
            }
        }
        was
    }

    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }

    /// Out until its next passing check, which comes at once: a restored
    /// backend (its app just restarted) takes traffic only once the
    /// balancer has seen it answer, as an ELB target re-registered.
    pub fn recheck(&self) {
        self.healthy.store(false, Ordering::Release);
        *lock(&self.counters) = Counters::default();
        self.probe_now.notify_one();
    }

    /// Resolves when `recheck` asks for a probe now.
    pub async fn probe_requested(&self) {
        self.probe_now.notified().await;
    }

    /// Cuts everything still running to this backend.
    pub fn kill(&self) {
        self.kill.cancel();
    }

    /// Resolves once `kill` is called; `worker` is the caller's.
    pub fn killed(&self, worker: usize) -> WaitForCancellationFutureOwned {
        self.kills[worker].clone().cancelled_owned()
    }

    /// Waits until nothing is in flight or `deadline` passes; true when idle.
    pub async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Register before checking, so a drop to 0 in between is seen.
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return true;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return self.in_flight() == 0,
            }
        }
    }

    /// A kept connection of `worker`'s, if any, the most recently used
    /// first; with `max_idle`, only one idle for at most that long (older
    /// ones stay for requests that can be sent again). The caller checks it
    /// is still open: see `proxy::take_kept`.
    pub fn take_idle(&self, worker: usize, max_idle: Option<Duration>) -> Option<TcpStream> {
        let mut pool = lock(&self.pools[worker]);
        let &(_, since) = pool.idle.last()?;
        if max_idle.is_some_and(|max| since.elapsed() > max) {
            return None;
        }
        pool.idle.pop().map(|(stream, _)| stream)
    }

    /// Keeps a connection of `worker`'s whose last exchange completed.
    pub fn put_idle(&self, worker: usize, stream: TcpStream) {
        let mut pool = lock(&self.pools[worker]);
        if !pool.closed && !self.is_drained() && pool.idle.len() < MAX_IDLE {
            pool.idle.push((stream, Instant::now()));
        }
    }

    /// Closes `worker`'s kept connections: its runtime is ending, and
    /// nobody else may use them.
    pub fn close_idle(&self, worker: usize) {
        lock(&self.pools[worker]).idle.clear();
    }
}

/// One request (HTTP) or connection (TCP) to a backend; counted while alive.
/// Created only under the table lock, by a pick, so a backend that an update
/// removed gains none.
pub(super) struct InFlight(Arc<Upstream>);

impl InFlight {
    pub fn new(up: Arc<Upstream>) -> Self {
        up.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(up)
    }

    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A poisoned lock only means another task panicked mid-update of plain
/// counters; the data is still usable.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
