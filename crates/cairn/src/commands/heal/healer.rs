//! The heal controller's own state: the servers a pass found, the
//! healer that acts on them, and how an incident's trail is written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_engine::apply::RunContext;
use cairn_engine::run::{LeaseTerms, hold_lease};
use cairn_engine::store::StoreError;
use cairn_orch::inventory::deployment::from_records;
use cairn_release::heal::{Next, next};
use cairn_release::rollout::{self, Backend, Host};
use cairn_release::{HealOutcome, HealPolicy, HealRecord, ReleaseEvent};
use serde_json::{Value as J, json};

use crate::cli::{GlobalArgs, ReleaseOptions, TemplateArgs};
use crate::commands::connect::Connector;
use crate::commands::deploy::{Target, owner};
use crate::commands::release::{AppContext, balancer, current_release, release_id, select_hosts};
use crate::output::emit;
use crate::report::{CliError, Status};

pub(super) fn row(h: &HealRecord) -> J {
    json!({
        "id": h.id,
        "host": h.host,
        "resource": h.resource,
        "address": h.address,
        "outcome": h.outcome,
        // The first failed check: when the incident started.
        "started_at": h.failing_since_ms / 1000,
        "finished_at": h.finished_at_ms.map(|ms| ms / 1000),
        "version": h.version,
        "server_id": h.server_id,
        "replaced_by": h.replaced_by,
        "new_address": h.new_address,
        "reason": h.reason,
        "events": h.events,
    })
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Notes an event on the incident and on stderr (the controller's log).
pub(super) fn note(r: &mut HealRecord, step: &str, ok: bool, message: impl Into<String>) {
    let e = ReleaseEvent {
        at_ms: now_ms(),
        host: Some(r.host.clone()),
        step: step.to_string(),
        ok,
        message: message.into(),
    };
    print_event(&e);
    r.events.push(e);
}

pub(super) fn print_event(e: &ReleaseEvent) {
    let mark = if e.ok { " " } else { "!" };
    eprintln!(
        " {mark} {:<9} {:<12} {}",
        e.step,
        e.host.as_deref().unwrap_or(""),
        e.message
    );
}

/// A server of the app as this pass found it.
pub(super) struct Server {
    pub(super) host: Host,
    /// Its address in the deployment (`web[1]`), what `--replace` names.
    pub(super) resource: Option<String>,
    pub(super) id: Option<String>,
}

pub(super) struct Healer {
    pub(super) policy: HealPolicy,
    pub(super) cx: AppContext,
    pub(super) tg: Target,
    pub(super) t: TemplateArgs,
    pub(super) o: ReleaseOptions,
    pub(super) connector: Connector,
}

impl Healer {
    pub(super) fn app(&self) -> &str {
        &self.cx.app.name
    }

    pub(super) fn deployment(&self) -> &str {
        &self.cx.deployment.name
    }

    /// Passes every interval until SIGTERM or Ctrl-C; a pass under way
    /// (a restart, a replacement) ends first, so no server is left half
    /// done. Prints the incidents it touched when it stops.
    pub(super) async fn watch(&self, global: &GlobalArgs) -> Result<Status, CliError> {
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(tokio::sync::Notify::new());
        {
            let (stop, wake) = (stop.clone(), wake.clone());
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .map_err(CliError::failure)?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                stop.store(true, Ordering::SeqCst);
                wake.notify_one();
            });
        }
        let started = now_ms();
        eprintln!(
            "healing {} in {} every {} ms (grace {} ms); SIGTERM or Ctrl-C stops",
            self.app(),
            self.deployment(),
            self.policy.interval.as_millis(),
            self.policy.grace.as_millis()
        );
        while !stop.load(Ordering::SeqCst) {
            if let Err(e) = self.pass().await {
                // A state or template that cannot be read now may be
                // readable next time: a controller keeps going.
                eprintln!(" ! this pass failed: {}", e.into_message());
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.policy.interval) => {}
                _ = wake.notified() => {}
            }
        }
        let touched: Vec<J> = self
            .cx
            .store
            .heals(Some(self.app()), Some(self.deployment()), false)
            .map_err(CliError::failure)?
            .iter()
            .filter(|h| {
                h.finished_at_ms.is_none_or(|f| f >= started) || h.failing_since_ms >= started
            })
            .map(row)
            .collect();
        eprintln!("stopped healing {}", self.app());
        emit(J::Array(touched), global)?;
        Ok(Status::Success)
    }

    /// The app's servers from the deployment's records as they are now.
    pub(super) fn servers(&self) -> Result<Vec<Server>, CliError> {
        let records = self
            .cx
            .store
            .resources(self.deployment())
            .map_err(CliError::failure)?;
        let inv = from_records(self.deployment(), &self.cx.deployment.env, &records);
        let var =
            |h: &cairn_orch::Host, k: &str| h.vars.get(k).and_then(J::as_str).map(str::to_string);
        Ok(select_hosts(&inv, &self.cx.app)?
            .into_iter()
            .map(|h| {
                let c = inv.connection(h);
                Server {
                    resource: var(h, "cairn_resource"),
                    id: var(h, "cairn_id"),
                    host: Host {
                        name: c.name.clone(),
                        address: c.address.clone().unwrap_or_else(|| c.name.clone()),
                        remote: self.connector.remote(&c),
                    },
                }
            })
            .collect())
    }

    /// Who holds the deployment's lease, when someone (alive) does.
    pub(super) fn busy(&self) -> Result<Option<String>, CliError> {
        let lease = self
            .cx
            .store
            .lease(self.deployment())
            .map_err(CliError::failure)?;
        Ok(lease
            .filter(|l| {
                l.expires_at > crate::commands::deploy::now()
                    && !cairn_engine::holder::holder_is_gone(&l.owner)
            })
            .map(|l| format!("`{}` by {}", l.operation, l.owner)))
    }

    /// One pass: check every server, open, wait on, close or act on its
    /// incident. A row per server says where it stands.
    pub(super) async fn pass(&self) -> Result<Vec<J>, CliError> {
        if let Some(holder) = self.busy()? {
            // A release restarts servers on purpose: what it does is not
            // what a heal judges.
            eprintln!(
                "   {} is busy ({holder}): this pass checks nothing",
                self.deployment()
            );
            return Ok(vec![
                json!({"state": "busy", "message": format!("the deployment's lease is held: {holder}")}),
            ]);
        }
        let servers = self.servers()?;
        // Every server at once: one SSH round trip each.
        let probes: Vec<_> = servers
            .iter()
            .map(|s| {
                let (app, host) = (self.cx.app.clone(), s.host.clone());
                tokio::spawn(async move { rollout::probe(&app, &host).await })
            })
            .collect();
        let mut checks = Vec::with_capacity(probes.len());
        for p in probes {
            checks.push(
                p.await
                    .unwrap_or_else(|e| Err(format!("the check failed: {e}"))),
            );
        }
        let now = now_ms();
        let open = self
            .cx
            .store
            .heals(Some(self.app()), Some(self.deployment()), true)
            .map_err(CliError::failure)?;
        let version = self.current_version()?;
        let mut rows = Vec::new();
        let mut to_act = Vec::new();
        for (server, check) in servers.iter().zip(checks) {
            let incident = open.iter().find(|h| h.host == server.host.name).cloned();
            let healthy = check.is_ok();
            let reason = check.err().unwrap_or_default();
            let state = match next(&self.policy, incident.as_ref(), healthy, now) {
                Next::Nothing => match &incident {
                    Some(r) => r.outcome.as_str().to_string(),
                    None => "healthy".into(),
                },
                Next::Open => {
                    let mut r = HealRecord {
                        id: release_id(),
                        app: self.app().to_string(),
                        deployment: self.deployment().to_string(),
                        environment: self.cx.deployment.env.clone(),
                        host: server.host.name.clone(),
                        resource: server.resource.clone(),
                        server_id: server.id.clone(),
                        address: server.host.address.clone(),
                        version: version.clone(),
                        failing_since_ms: now,
                        reason: reason.clone(),
                        outcome: HealOutcome::Failing,
                        finished_at_ms: None,
                        replaced_by: None,
                        new_address: None,
                        events: Vec::new(),
                    };
                    note(
                        &mut r,
                        "failing",
                        false,
                        format!(
                            "its health check fails ({reason}); acting after {} ms of grace",
                            self.policy.grace.as_millis()
                        ),
                    );
                    self.save(&r)?;
                    "failing".into()
                }
                Next::Wait { .. } => {
                    // The latest reason, written only when it changed: a
                    // pass every interval must not rewrite the trail.
                    if let Some(mut r) = incident.clone().filter(|r| r.reason != reason) {
                        r.reason = reason.clone();
                        self.save(&r)?;
                    }
                    "failing".into()
                }
                Next::Close => {
                    let mut r = incident.clone().expect("an open incident to close");
                    r.outcome = HealOutcome::Recovered;
                    r.finished_at_ms = Some(now);
                    note(
                        &mut r,
                        "recovered",
                        true,
                        "it answers its health check again",
                    );
                    // A restart that failed left it drained: mended by
                    // someone since, it goes back into the balancer.
                    if r.events.iter().any(|e| e.step == "drain") {
                        self.restore(&mut r, &server.host).await?;
                    }
                    self.save(&r)?;
                    "recovered".into()
                }
                Next::Act => {
                    let mut r = incident.clone().expect("an open incident to act on");
                    r.reason = reason.clone();
                    to_act.push(r);
                    continue;
                }
            };
            rows.push(json!({
                "host": server.host.name,
                "address": server.host.address,
                "state": state,
                "message": if healthy { String::new() } else { reason },
            }));
        }
        if !to_act.is_empty() {
            rows.extend(self.act(to_act, &servers).await?);
        }
        Ok(rows)
    }

    /// Puts a server back into the app's balancer, noting how it went.
    pub(super) async fn restore(&self, r: &mut HealRecord, host: &Host) -> Result<(), CliError> {
        let records = self
            .cx
            .store
            .resources(self.deployment())
            .map_err(CliError::failure)?;
        let Some(b) = balancer(&self.tg, &self.cx.app, self.drain_timeout(), &records)? else {
            return Ok(());
        };
        let backend = Backend {
            host: host.name.clone(),
            address: host.address.clone(),
            port: self.cx.app.port,
        };
        match b.restore(&backend, self.cx.app.health.timeout).await {
            Ok(()) => note(r, "restore", true, "back in the load balancer"),
            Err(e) => note(r, "restore", false, e),
        }
        Ok(())
    }

    pub(super) fn save(&self, r: &HealRecord) -> Result<(), CliError> {
        self.cx.store.put_heal(r).map_err(CliError::failure)
    }

    /// The environment's current release, from the release records.
    pub(super) fn current_version(&self) -> Result<Option<String>, CliError> {
        let trail = self
            .cx
            .store
            .releases(Some(self.app()))
            .map_err(CliError::failure)?;
        Ok(current_release(&trail, &self.cx.deployment.env).map(|r| r.version.clone()))
    }

    /// Restarts, then replaces, the servers past their grace: one at a
    /// time, inside the deployment's lease.
    pub(super) async fn act(
        &self,
        incidents: Vec<HealRecord>,
        servers: &[Server],
    ) -> Result<Vec<J>, CliError> {
        let run_cx = crate::commands::deploy::context(&self.tg, None)?;
        let me = owner();
        let leased = hold_lease(
            &run_cx,
            &LeaseTerms {
                command: "heal",
                owner: &me,
                ttl: Duration::from_secs(30),
                holder_gone: cairn_engine::holder::holder_is_gone,
            },
        );
        let (leased, _hold) = match leased {
            Ok(held) => held,
            Err(e @ StoreError::Locked { .. }) => {
                // Someone took it between the check and now: next pass.
                let mut rows = Vec::new();
                for mut r in incidents {
                    note(&mut r, "wait", false, format!("cannot act yet: {e}"));
                    self.save(&r)?;
                    rows.push(json!({"host": r.host, "address": r.address, "state": "failing", "message": r.reason}));
                }
                return Ok(rows);
            }
            Err(e) => return Err(CliError::failure(anyhow::anyhow!("{e}"))),
        };
        let mut rows = Vec::new();
        for mut r in incidents {
            let Some(server) = servers.iter().find(|s| s.host.name == r.host) else {
                continue;
            };
            self.heal_one(&mut r, server, &leased).await?;
            rows.push(json!({
                "host": r.host,
                "address": r.new_address.as_deref().unwrap_or(&r.address),
                "state": r.outcome.as_str(),
                "message": r.events.last().map(|e| e.message.clone()).unwrap_or_default(),
            }));
        }
        Ok(rows)
    }

    pub(super) async fn heal_one(
        &self,
        r: &mut HealRecord,
        server: &Server,
        leased: &RunContext,
    ) -> Result<(), CliError> {
        let failing = Duration::from_millis((now_ms() - r.failing_since_ms).max(0) as u64);
        if self.policy.restart {
            note(
                r,
                "restart",
                true,
                format!(
                    "failing for {} ms ({}): restarting the service",
                    failing.as_millis(),
                    r.reason
                ),
            );
            self.save(r)?;
            let records = self
                .cx
                .store
                .resources(self.deployment())
                .map_err(CliError::failure)?;
            let balancer = balancer(&self.tg, &self.cx.app, self.drain_timeout(), &records)?;
            let (result, events) = rollout::restart_host(
                &self.cx.app,
                &server.host,
                balancer.as_deref(),
                Arc::new(print_event),
            )
            .await;
            r.events.extend(events);
            match result {
                Ok(()) => {
                    r.outcome = HealOutcome::Restarted;
                    r.finished_at_ms = Some(now_ms());
                    note(r, "restarted", true, "it answers again after a restart");
                    return self.save(r);
                }
                Err(e) => {
                    r.reason = e.clone();
                    note(
                        r,
                        "restart",
                        false,
                        format!("the restart did not help: {e}"),
                    );
                    self.save(r)?;
                }
            }
        }
        if !self.policy.replace {
            return self.give_up(
                r,
                if self.policy.restart {
                    "the restart did not help and `heal.replace` is off: a person must look"
                } else {
                    "`heal.restart` and `heal.replace` are both off: a person must look"
                },
            );
        }
        match self.replace(r, server, leased).await {
            Ok(()) => {
                r.outcome = HealOutcome::Replaced;
                r.finished_at_ms = Some(now_ms());
                let message = format!(
                    "{} is a new server ({}) running {} behind the balancer",
                    r.resource.as_deref().unwrap_or(&r.host),
                    r.replaced_by.as_deref().unwrap_or("?"),
                    r.version.as_deref().unwrap_or("?"),
                );
                note(r, "replaced", true, message);
                self.save(r)
            }
            Err(why) => self.give_up(r, &format!("the replacement failed: {why}")),
        }
    }

    pub(super) fn give_up(&self, r: &mut HealRecord, why: &str) -> Result<(), CliError> {
        r.outcome = HealOutcome::GaveUp;
        note(r, "gave_up", false, why);
        self.save(r)
    }

    pub(super) fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.o.drain_timeout.max(1))
    }
}
