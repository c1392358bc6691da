//! The rolling release. First the artifact is staged on every host
//! (copied, verified against its signature and checksums on the host,
//! unpacked into `releases/VERSION`), as Capistrano uploads everywhere
//! before any symlink moves: a host whose copy does not verify, or whose
//! disk is full, fails before anything anywhere switched, and the batches
//! then carry no copying. For each batch, on each host: drain it from the
//! load balancer, switch `current`, restart the service, wait for its
//! health check, put it back and wait until the balancer sends it traffic
//! again. A host that fails after its switch goes back to its previous
//! release at once, with the same steps. Past `max_fail` failed hosts the
//! rollout stops and every host already switched goes back, batch by batch
//! (Salt's batch `max-fail` that did not stop, salt#54521, is the failure
//! not to repeat).
//!
//! Staging runs on [`STAGE_AT_ONCE`] hosts at a time: the copies share the
//! releasing machine's uplink and CPU (encryption), and a host's own
//! verification is disk and CPU bound; more at once only interleaves them.
//! A rollout that stops leaves the hosts it did not reach with the new
//! release unpacked beside `current`, not live (pruned by a later release).
//!
//! A rollback on request is the same walk towards an older version that
//! is already installed on the hosts (staging only checks it is there).

pub mod script;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use cairn_orch::Remote;
use cairn_orch::remote::{Exec, Output};
use tokio::sync::Semaphore;

use crate::app::AppSpec;
use crate::record::{HostOutcome, HostRelease, ReleaseEvent, ReleaseOutcome};

/// Hosts staged at once.
pub const STAGE_AT_ONCE: usize = 8;

/// A host the app runs on.
#[derive(Clone)]
pub struct Host {
    pub name: String,
    /// The address the balancer reaches it at, and the service listens on.
    pub address: String,
    pub remote: Arc<dyn Remote>,
}

/// One backend of the app's load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub host: String,
    pub address: String,
    pub port: u16,
}

/// The app's load balancer, as the rollout needs it: the target's
/// provider does the work (the local balancer's drain, an ALB's
/// deregistration).
#[async_trait]
pub trait Balancer: Send + Sync {
    /// Sends `backend` nothing new and returns once what was in flight to
    /// it finished (or the balancer's drain timeout passed).
    async fn drain(&self, backend: &Backend) -> Result<(), String>;
    /// Puts it back and returns once the balancer sends it traffic again
    /// (its own health check passed), or errs after `within`.
    async fn restore(&self, backend: &Backend, within: Duration) -> Result<(), String>;
}

/// What is released: the version, and for a new release how to stage it.
#[derive(Clone)]
pub struct Payload {
    pub version: String,
    /// sha256 of the signed manifest: the artifact's identity.
    pub digest: String,
    /// Stages the artifact: a script reading the archive on its stdin,
    /// verifying it and unpacking it into `releases/VERSION`. `None` for a
    /// rollback to a version the hosts already have.
    pub stage: Option<Stage>,
}

#[derive(Clone)]
pub struct Stage {
    pub script: String,
    pub archive: Bytes,
}

/// How a rollout goes.
pub struct Rollout {
    pub app: AppSpec,
    pub payload: Payload,
    /// Hosts in the order batches take them.
    pub hosts: Vec<Host>,
    pub batch: BatchSize,
    /// Failed hosts tolerated; one more stops the rollout and puts every
    /// switched host back.
    pub max_fail: usize,
    pub balancer: Option<Arc<dyn Balancer>>,
    /// Called with every event as it happens (progress on a terminal).
    pub on_event: Arc<dyn Fn(&ReleaseEvent) + Send + Sync>,
    /// Asked before each batch: a reason to start no more (the release
    /// lost the deployment's lease). Hosts already switched stay as they
    /// are: putting them back would act without the lease too.
    pub fence: Arc<dyn Fn() -> Option<String> + Send + Sync>,
}

/// `--batch 25%` or `--batch 2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Hosts(usize),
    Percent(u8),
}

impl BatchSize {
    pub fn parse(s: &str) -> Result<BatchSize, String> {
        let bad =
            || format!("`{s}` is not a batch size: give a number of hosts (2) or a share (25%)");
        if let Some(p) = s.strip_suffix('%') {
            let p: u8 = p.trim().parse().map_err(|_| bad())?;
            if p == 0 || p > 100 {
                return Err(bad());
            }
            return Ok(BatchSize::Percent(p));
        }
        match s.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(BatchSize::Hosts(n)),
            _ => Err(bad()),
        }
    }

    /// Hosts per batch out of `total`, at least one.
    pub fn of(self, total: usize) -> usize {
        match self {
            BatchSize::Hosts(n) => n.min(total.max(1)),
            BatchSize::Percent(p) => (total * p as usize).div_ceil(100).max(1),
        }
    }
}

/// How a rollout ended.
pub struct Finished {
    pub outcome: ReleaseOutcome,
    pub hosts: Vec<HostRelease>,
    pub events: Vec<ReleaseEvent>,
    pub batches: usize,
}

/// The events, shared by the host tasks of a batch.
#[derive(Clone)]
struct Trail {
    events: Arc<Mutex<Vec<ReleaseEvent>>>,
    on_event: Arc<dyn Fn(&ReleaseEvent) + Send + Sync>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Trail {
    fn note(&self, host: Option<&str>, step: &str, ok: bool, message: impl Into<String>) {
        self.note_at(now_ms(), host, step, ok, message)
    }

    fn note_at(
        &self,
        at_ms: i64,
        host: Option<&str>,
        step: &str,
        ok: bool,
        message: impl Into<String>,
    ) {
        let e = ReleaseEvent {
            at_ms,
            host: host.map(str::to_string),
            step: step.to_string(),
            ok,
            message: message.into(),
        };
        (self.on_event)(&e);
        if let Ok(mut events) = self.events.lock() {
            events.push(e);
        }
    }
}

/// A host's state as the walk goes.
struct Walked {
    host: Host,
    from: Option<String>,
    outcome: HostOutcome,
    message: Option<String>,
}

/// Runs the rollout to its end: every host on the new version, or every
/// switched host back where it was.
pub async fn run(r: Rollout) -> Finished {
    let trail = Trail {
        events: Arc::new(Mutex::new(Vec::new())),
        on_event: r.on_event.clone(),
    };
    let app = Arc::new(r.app);
    let version = r.payload.version.clone();
    // Where each host stands now: what a failure goes back to. All hosts
    // at once: one by one, the SSH handshakes alone took seconds for 20.
    let inspected = futures_join(r.hosts.iter().map(|host| {
        let (remote, script) = (host.remote.clone(), script::current_version(&app));
        async move { run_script(&*remote, script, None).await }
    }))
    .await;
    let mut walked: Vec<Walked> = Vec::new();
    for (host, result) in r.hosts.iter().zip(inspected) {
        let from = match result {
            Ok(out) => Some(out.trim().to_string()).filter(|v| !v.is_empty()),
            Err(e) => {
                trail.note(Some(&host.name), "inspect", false, e.clone());
                walked.push(Walked {
                    host: host.clone(),
                    from: None,
                    outcome: HostOutcome::Failed,
                    message: Some(e),
                });
                continue;
            }
        };
        walked.push(Walked {
            host: host.clone(),
            from,
            outcome: HostOutcome::Skipped,
            message: None,
        });
    }
    let size = r.batch.of(r.hosts.len());
    let batches: Vec<Vec<usize>> = (0..walked.len())
        .collect::<Vec<_>>()
        .chunks(size)
        .map(<[usize]>::to_vec)
        .collect();
    // Staged everywhere first (see the module's notes), unless too many
    // hosts could not even be inspected.
    let inspected_ok: Vec<usize> = (0..walked.len())
        .filter(|i| walked[*i].outcome == HostOutcome::Skipped)
        .collect();
    if walked.len() - inspected_ok.len() <= r.max_fail {
        let staged = stage(
            app.clone(),
            r.payload.clone(),
            hosts_of(&walked, &inspected_ok),
            trail.clone(),
        )
        .await;
        for (i, result) in inspected_ok.iter().zip(staged) {
            if let Err(e) = result {
                walked[*i].outcome = HostOutcome::Failed;
                walked[*i].message = Some(e);
            }
        }
    }
    let mut failed = count(&walked, HostOutcome::Failed);
    let mut stopped = failed > r.max_fail;
    if stopped {
        trail.note(
            None,
            "stop",
            false,
            format!(
                "{failed} host(s) could not be inspected or staged, more than --max-fail {}: nothing was switched",
                r.max_fail
            ),
        );
    }
    let mut pre_hook_done = app.hooks.pre.is_none();
    let mut fenced = None;
    for (n, batch) in batches.iter().enumerate() {
        if stopped {
            break;
        }
        if let Some(reason) = (r.fence)() {
            trail.note(None, "stop", false, reason.clone());
            fenced = Some(reason);
            break;
        }
        let ready: Vec<usize> = batch
            .iter()
            .copied()
            .filter(|i| walked[*i].outcome == HostOutcome::Skipped)
            .collect();
        trail.note(
            None,
            "batch",
            true,
            format!(
                "batch {}/{}: {}",
                n + 1,
                batches.len(),
                ready
                    .iter()
                    .map(|i| walked[*i].host.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        let to_switch = ready;
        if !pre_hook_done && let Some(&first) = to_switch.first() {
            let h = &walked[first].host;
            let cmd = app.hooks.pre.clone().unwrap_or_default();
            let dir = format!("releases/{version}");
            match run_script(
                &*h.remote,
                script::hook(&app, &dir, &cmd, &version, &h.address),
                None,
            )
            .await
            {
                Ok(_) => {
                    trail.note(Some(&h.name), "hook", true, format!("pre hook ran: {cmd}"));
                    pre_hook_done = true;
                }
                Err(e) => {
                    trail.note(
                        Some(&h.name),
                        "hook",
                        false,
                        format!("pre hook failed: {e}"),
                    );
                    walked[first].outcome = HostOutcome::Failed;
                    walked[first].message = Some(format!("pre hook failed: {e}"));
                    stopped = true;
                    break;
                }
            }
        }
        let results = futures_join(to_switch.iter().map(|&i| {
            let (app, trail, balancer) = (app.clone(), trail.clone(), r.balancer.clone());
            let host = walked[i].host.clone();
            let from = walked[i].from.clone();
            let version = version.clone();
            async move {
                let result =
                    move_host(&app, &host, Some(&version), balancer.as_deref(), &trail).await;
                match result {
                    Ok(()) => (HostOutcome::Switched, None),
                    Err(e) => {
                        // Back at once, the same way, so the batch leaves no
                        // host between two releases.
                        trail.note(
                            Some(&host.name),
                            "rollback",
                            true,
                            format!("going back to {}", from.as_deref().unwrap_or("no release")),
                        );
                        match move_host(&app, &host, from.as_deref(), balancer.as_deref(), &trail)
                            .await
                        {
                            Ok(()) => (HostOutcome::Failed, Some(e)),
                            Err(back) => (
                                HostOutcome::Broken,
                                Some(format!("{e}; going back failed too: {back}")),
                            ),
                        }
                    }
                }
            }
        }))
        .await;
        for (i, (outcome, message)) in to_switch.iter().zip(results) {
            walked[*i].outcome = outcome;
            walked[*i].message = message;
        }
        failed = walked
            .iter()
            .filter(|w| matches!(w.outcome, HostOutcome::Failed | HostOutcome::Broken))
            .count();
        if failed > r.max_fail {
            trail.note(
                None,
                "stop",
                false,
                format!(
                    "{failed} host(s) failed, more than --max-fail {}: stopping and putting every switched host back",
                    r.max_fail
                ),
            );
            stopped = true;
        }
    }

    if stopped {
        // Every switched host goes back, in batches of the same size.
        let switched: Vec<usize> = (0..walked.len())
            .filter(|i| walked[*i].outcome == HostOutcome::Switched)
            .collect();
        for chunk in switched.chunks(size) {
            let results = futures_join(chunk.iter().map(|&i| {
                let (app, trail, balancer) = (app.clone(), trail.clone(), r.balancer.clone());
                let host = walked[i].host.clone();
                let from = walked[i].from.clone();
                async move {
                    trail.note(
                        Some(&host.name),
                        "rollback",
                        true,
                        format!("going back to {}", from.as_deref().unwrap_or("no release")),
                    );
                    move_host(&app, &host, from.as_deref(), balancer.as_deref(), &trail).await
                }
            }))
            .await;
            for (i, result) in chunk.iter().zip(results) {
                match result {
                    Ok(()) => walked[*i].outcome = HostOutcome::RolledBack,
                    Err(e) => {
                        walked[*i].outcome = HostOutcome::Broken;
                        walked[*i].message = Some(format!("going back failed: {e}"));
                    }
                }
            }
        }
    } else if fenced.is_none()
        && let Some(post) = &app.hooks.post
        && let Some(w) = walked.iter().find(|w| w.outcome == HostOutcome::Switched)
    {
        let h = &w.host;
        match run_script(
            &*h.remote,
            script::hook(&app, "current", post, &version, &h.address),
            None,
        )
        .await
        {
            Ok(_) => trail.note(
                Some(&h.name),
                "hook",
                true,
                format!("post hook ran: {post}"),
            ),
            Err(e) => trail.note(
                Some(&h.name),
                "hook",
                false,
                format!("post hook failed: {e}"),
            ),
        }
    }
    if !stopped && fenced.is_none() {
        let switched: Vec<&Walked> = walked
            .iter()
            .filter(|w| w.outcome == HostOutcome::Switched)
            .collect();
        // At once on every host, as the inspection; noted in host order.
        let pruned = futures_join(switched.iter().map(|w| {
            let mut protect = vec![version.as_str()];
            protect.extend(w.from.as_deref());
            let (remote, script) = (w.host.remote.clone(), script::prune(&app, &protect));
            async move { run_script(&*remote, script, None).await }
        }))
        .await;
        for (w, result) in switched.into_iter().zip(pruned) {
            match result {
                Ok(out) if !out.trim().is_empty() => trail.note(
                    Some(&w.host.name),
                    "prune",
                    true,
                    format!(
                        "removed old releases: {}",
                        out.split_whitespace().collect::<Vec<_>>().join(", ")
                    ),
                ),
                Ok(_) => {}
                Err(e) => trail.note(Some(&w.host.name), "prune", false, e),
            }
        }
    }
    let broken = walked.iter().any(|w| w.outcome == HostOutcome::Broken);
    let outcome = if broken || fenced.is_some() {
        ReleaseOutcome::Failed
    } else if stopped {
        ReleaseOutcome::RolledBack
    } else {
        // Failed hosts within --max-fail stay on their previous version
        // and say so; the release stands.
        ReleaseOutcome::Succeeded
    };
    trail.note(
        None,
        "done",
        outcome == ReleaseOutcome::Succeeded,
        format!(
            "{}: {} switched, {} failed, {} rolled back, {} not started",
            outcome.as_str(),
            count(&walked, HostOutcome::Switched),
            count(&walked, HostOutcome::Failed) + count(&walked, HostOutcome::Broken),
            count(&walked, HostOutcome::RolledBack),
            count(&walked, HostOutcome::Skipped),
        ),
    );
    let events = trail.events.lock().map(|e| e.clone()).unwrap_or_default();
    Finished {
        outcome,
        hosts: walked
            .into_iter()
            .map(|w| HostRelease {
                host: w.host.name,
                address: w.host.address,
                from_version: w.from,
                outcome: w.outcome,
                message: w.message,
            })
            .collect(),
        events,
        batches: batches.len(),
    }
}

fn count(walked: &[Walked], outcome: HostOutcome) -> usize {
    walked.iter().filter(|w| w.outcome == outcome).count()
}

fn hosts_of(walked: &[Walked], indices: &[usize]) -> Vec<Host> {
    indices.iter().map(|&i| walked[i].host.clone()).collect()
}

/// Stages the payload on `hosts`, [`STAGE_AT_ONCE`] at a time; each
/// host's result, in order.
async fn stage(
    app: Arc<AppSpec>,
    payload: Payload,
    hosts: Vec<Host>,
    trail: Trail,
) -> Vec<Result<(), String>> {
    let slots = Arc::new(Semaphore::new(STAGE_AT_ONCE));
    futures_join(hosts.into_iter().map(|host| {
        let (trail, app, payload) = (trail.clone(), app.clone(), payload.clone());
        let slots = slots.clone();
        async move {
            // Never closed, so acquiring only waits.
            let _slot = slots.acquire_owned().await;
            let result = match &payload.stage {
                Some(stage) => run_script(
                    &*host.remote,
                    stage.script.clone(),
                    Some(stage.archive.clone()),
                )
                .await
                .map(|_| format!("{} verified and unpacked", payload.version)),
                // A rollback: the version must already be there.
                None => run_script(
                    &*host.remote,
                    format!(
                        "[ -d {}/releases/{} ] || {{ echo \"release {} is not installed on this host\" >&2; exit {}; }}",
                        cairn_orch::remote::quote(&app.install),
                        cairn_orch::remote::quote(&payload.version),
                        payload.version,
                        script::EXIT_NOT_INSTALLED
                    ),
                    None,
                )
                .await
                .map(|_| format!("{} is installed", payload.version)),
            };
            match result {
                Ok(m) => {
                    trail.note(Some(&host.name), "stage", true, m);
                    Ok(())
                }
                Err(e) => {
                    trail.note(Some(&host.name), "stage", false, e.clone());
                    Err(e)
                }
            }
        }
    }))
    .await
}

/// Moves one host to `version` (`None`: no release at all): drain, switch,
/// restart, health, restore. The host is restored to the balancer only
/// when healthy; an unhealthy one stays drained.
async fn move_host(
    app: &AppSpec,
    host: &Host,
    version: Option<&str>,
    balancer: Option<&dyn Balancer>,
    trail: &Trail,
) -> Result<(), String> {
    walk_host(app, host, Switch::To(version), balancer, trail).await
}

/// What a host's walk does to `current` before the restart.
#[derive(Clone, Copy)]
enum Switch<'a> {
    /// Points it at this version (`None`: removes it).
    To(Option<&'a str>),
    /// Leaves it: a restart of what is live (`cairn heal`).
    Keep,
}

/// Restarts the service on one host the way a rollout does, without
/// switching: drain, restart, health, restore (`cairn heal`). The events
/// go to `on_event` as they happen, and are returned.
pub async fn restart_host(
    app: &AppSpec,
    host: &Host,
    balancer: Option<&dyn Balancer>,
    on_event: Arc<dyn Fn(&ReleaseEvent) + Send + Sync>,
) -> (Result<(), String>, Vec<ReleaseEvent>) {
    let trail = Trail {
        events: Arc::new(Mutex::new(Vec::new())),
        on_event,
    };
    let result = walk_host(app, host, Switch::Keep, balancer, &trail).await;
    let events = trail.events.lock().map(|e| e.clone()).unwrap_or_default();
    (result, events)
}

/// One try of the health check the rollout waits for after a restart (the
/// same script, with a timeout of one interval): `Ok` when the host's
/// service answers 2xx now, else why not (it exited, it answers badly, or
/// the host cannot be reached).
pub async fn probe(app: &AppSpec, host: &Host) -> Result<(), String> {
    let mut once = app.clone();
    once.health.timeout = once.health.interval;
    run_script(
        &*host.remote,
        script::health(&once, &host.address),
        Some(Bytes::new()),
    )
    .await
    .map(|_| ())
}

async fn walk_host(
    app: &AppSpec,
    host: &Host,
    switch: Switch<'_>,
    balancer: Option<&dyn Balancer>,
    trail: &Trail,
) -> Result<(), String> {
    let name = Some(host.name.as_str());
    let backend = Backend {
        host: host.name.clone(),
        address: host.address.clone(),
        port: app.port,
    };
    let step = |step: &str, r: Result<String, String>| match r {
        Ok(m) => {
            trail.note(name, step, true, m);
            Ok(())
        }
        Err(e) => {
            trail.note(name, step, false, e.clone());
            Err(format!("{step}: {e}"))
        }
    };
    if let Some(b) = balancer {
        step(
            "drain",
            b.drain(&backend)
                .await
                .map(|()| format!("{}:{} drained", backend.address, backend.port)),
        )?;
    }
    let mut steps = Vec::new();
    if let Switch::To(version) = switch {
        let to = version.unwrap_or("no release");
        steps.push(("switch", format!("current -> {to}")));
    }
    steps.push(("restart", "service restarted".to_string()));
    // Removed (back past the first release): nothing runs to check.
    let runs = !matches!(switch, Switch::To(None));
    if runs {
        steps.push((
            "health",
            format!(
                "http://{}:{}{} answers",
                host.address, app.health.port, app.health.path
            ),
        ));
    }
    let script = match switch {
        Switch::To(version) => script::move_to(app, version, &host.address),
        Switch::Keep => script::restart_in_place(app, &host.address),
    };
    let out = exec(&*host.remote, script, None).await;
    let ended = now_ms();
    let (marks, failure) = match out {
        Ok(out) if out.success() => (step_marks(&out.stdout_str()), None),
        Ok(out) => (step_marks(&out.stdout_str()), Some(failure_of(&out))),
        Err(e) => (Vec::new(), Some(e)),
    };
    // Each part's end on this machine's clock: the host's offsets from the
    // script's last mark, back from when the answer came.
    let last = marks.last().map_or(0, |(_, ms)| *ms);
    for (i, (name, message)) in steps.iter().enumerate() {
        match marks.get(i) {
            Some((marked, ms)) if marked == name => {
                trail.note_at(
                    ended - (last - ms),
                    Some(&host.name),
                    name,
                    true,
                    message.clone(),
                );
            }
            _ => match &failure {
                Some(e) => {
                    trail.note(Some(&host.name), name, false, e.clone());
                    return Err(format!("{name}: {e}"));
                }
                // A host whose shell printed no marks but succeeded (a
                // test double): every part is done.
                None => trail.note(Some(&host.name), name, true, message.clone()),
            },
        }
    }
    if !runs {
        // Nothing runs there any more; it stays out of the balancer.
        return Ok(());
    }
    if let Some(b) = balancer {
        step(
            "restore",
            b.restore(&backend, app.health.timeout)
                .await
                .map(|()| "back in the load balancer".to_string()),
        )?;
    }
    Ok(())
}

/// Runs a script, its stdout on success, else a one-line reason (the
/// script's stderr, or the transport's error).
async fn run_script(
    remote: &dyn Remote,
    script: String,
    stdin: Option<Bytes>,
) -> Result<String, String> {
    match exec(remote, script, stdin).await? {
        out if out.success() => Ok(out.stdout_str()),
        out => Err(failure_of(&out)),
    }
}

/// Runs a script: its output whatever its exit, or the transport's error.
async fn exec(remote: &dyn Remote, script: String, stdin: Option<Bytes>) -> Result<Output, String> {
    let mut exec = Exec::new(script);
    exec.stdin = stdin;
    remote.exec(exec).await.map_err(|e| e.to_string())
}

/// A failed script's one-line reason: its stderr, else its exit.
fn failure_of(out: &Output) -> String {
    let err = out.stderr_str();
    let err = err.trim();
    if err.is_empty() {
        format!(
            "exited with {}",
            out.status.map_or("a signal".into(), |s| s.to_string())
        )
    } else {
        err.lines().collect::<Vec<_>>().join("; ")
    }
}

/// The `cairn-step NAME MS` lines of [`script::move_to`], in order.
fn step_marks(stdout: &str) -> Vec<(String, i64)> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix(script::STEP_MARK)?.split_whitespace();
            let (name, ms) = (w.next()?, w.next()?.parse().ok()?);
            Some((name.to_string(), ms))
        })
        .collect()
}

/// Runs futures at once and returns their results in order.
async fn futures_join<F: Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}
