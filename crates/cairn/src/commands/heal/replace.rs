//! A heal's replacement of a server: the engine's forced replacement,
//! limited to that server and what uses it, inside the heal's lease; then
//! the environment's current release onto the new server through the
//! rollout, a batch of one.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::apply::RunContext;
use cairn_engine::plan::{Action, Plan, PlanOptions, resource_name};
use cairn_engine::run::{RunOptions, RunOutcome, up_leased};
use cairn_orch::remote::Exec;
use cairn_release::HealRecord;
use cairn_release::app::Hooks;
use cairn_release::record::ReleaseOutcome;
use cairn_release::rollout::{self, BatchSize, Host, Rollout};

use super::healer::{Healer, Server, note, print_event};
use crate::commands::deploy::owner;
use crate::commands::release::{balancer, staged_payload};
use crate::report::CliError;

/// How long a new server may take to accept a connection after the engine
/// made it (sshd starting in a fresh container or VM).
const NEW_SERVER_REACHABLE_WITHIN: Duration = Duration::from_secs(90);

impl Healer {
    /// The engine replaces the server (and updates what uses it), then the
    /// current release goes onto the new one through the rollout.
    pub(super) async fn replace(
        &self,
        r: &mut HealRecord,
        server: &Server,
        leased: &RunContext,
    ) -> Result<(), String> {
        let address = server.resource.clone().ok_or_else(|| {
            format!(
                "{} is not a server of the deployment (from an inventory): cairn cannot replace it",
                r.host
            )
        })?;
        // The version to install is the one live now, not the one when the
        // incident opened: a release may have run in between.
        let version = self
            .current_version()
            .map_err(CliError::into_message)?
            .ok_or_else(|| {
                format!(
                    "{} has no release in `{}`",
                    self.app(),
                    self.cx.deployment.env
                )
            })?;
        r.version = Some(version.clone());
        // Checked before the old server goes: an artifact that cannot be
        // installed would leave the app one server short.
        let payload = staged_payload(&self.cx, &version)
            .await
            .map_err(CliError::into_message)?;
        note(
            r,
            "replace",
            true,
            format!("replacing {address} (`cairn up --replace {address}`)"),
        );
        self.save(r).map_err(CliError::into_message)?;

        let opts = RunOptions {
            command: "heal".into(),
            plan: PlanOptions {
                replace: vec![address.clone()],
                ..PlanOptions::default()
            },
            // The recorded server is what goes, whatever state it is in.
            refresh: false,
            owner: owner(),
            lease_ttl: Duration::from_secs(30),
            expect_serial: None,
            expect_changes: None,
            prune: false,
            holder_gone: cairn_engine::holder::holder_is_gone,
        };
        let mut refused = None;
        let mut confirm = |plan: &Plan| match only_the_replacement(plan, &address) {
            Ok(()) => true,
            Err(why) => {
                refused = Some(why);
                false
            }
        };
        let load = crate::commands::template_options::load_options(&self.t);
        let (outcome, _) = up_leased(leased, &load, &opts, &mut confirm)
            .await
            .map_err(|e| format!("the engine could not replace {address}: {e}"))?;
        match outcome {
            RunOutcome::Applied { report, .. } if report.ok => {}
            RunOutcome::Applied { report, .. } => {
                let failed: Vec<String> = report
                    .resources
                    .iter()
                    .filter_map(|x| x.error.as_ref().map(|e| format!("{}: {e}", x.address)))
                    .collect();
                return Err(format!(
                    "the engine could not replace {address}: {}",
                    failed.join("; ")
                ));
            }
            RunOutcome::Declined { .. } => {
                return Err(refused.unwrap_or_else(|| "the plan was declined".into()));
            }
            RunOutcome::NoChanges { .. } => {
                return Err(format!("the engine found nothing to do for {address}"));
            }
        }

        // The new server, as the state records it now.
        let fresh = self.servers().map_err(CliError::into_message)?;
        let new = fresh
            .into_iter()
            .find(|s| s.resource.as_deref() == Some(address.as_str()))
            .ok_or_else(|| {
                format!("{address} is not among the app's servers after its replacement")
            })?;
        r.replaced_by = new.id.clone();
        r.new_address = Some(new.host.address.clone());
        note(
            r,
            "replace",
            true,
            format!(
                "{address} is {} at {} now (was {})",
                new.id.as_deref().unwrap_or("?"),
                new.host.address,
                r.server_id.as_deref().unwrap_or("?")
            ),
        );
        self.save(r).map_err(CliError::into_message)?;
        reachable(&new.host).await?;
        note(r, "reachable", true, format!("{} answers", new.host.name));

        // The current release onto it: the rollout, a batch of one. Hooks
        // ran once for the release already (migrations are not re-run).
        let mut app = self.cx.app.clone();
        app.hooks = Hooks::default();
        let records = self
            .cx
            .store
            .resources(self.deployment())
            .map_err(|e| e.to_string())?;
        let balancer = balancer(&self.tg, &app, self.drain_timeout(), &records)
            .map_err(CliError::into_message)?;
        let fence_cx = leased.clone();
        let finished = rollout::run(Rollout {
            app,
            payload,
            hosts: vec![new.host.clone()],
            batch: BatchSize::Hosts(1),
            max_fail: 0,
            balancer,
            on_event: Arc::new(print_event),
            fence: Arc::new(move || {
                fence_cx
                    .fence
                    .check(&*fence_cx.store, &fence_cx.deployment, &fence_cx.run_id)
                    .err()
            }),
        })
        .await;
        r.events.extend(finished.events);
        if finished.outcome != ReleaseOutcome::Succeeded {
            let why = finished
                .hosts
                .first()
                .and_then(|h| h.message.clone())
                .unwrap_or_else(|| finished.outcome.as_str().to_string());
            return Err(format!(
                "installing {version} on the new server failed: {why}"
            ));
        }
        Ok(())
    }
}

/// Waits until a new server takes a command (bounded).
async fn reachable(host: &Host) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let error = match host.remote.exec(Exec::new("true")).await {
            Ok(out) if out.success() => return Ok(()),
            Ok(out) => out.stderr_str(),
            Err(e) => e.to_string(),
        };
        if started.elapsed() > NEW_SERVER_REACHABLE_WITHIN {
            return Err(format!(
                "the new server {} did not answer within {} s: {error}",
                host.name,
                NEW_SERVER_REACHABLE_WITHIN.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A heal applies no other change than its replacement: the server at
/// `address`, and updates of what uses it (a balancer's backends, a DNS
/// record). Anything else waiting in the template is a person's `up`.
fn only_the_replacement(plan: &Plan, address: &str) -> Result<(), String> {
    let resource = resource_name(address);
    let mut users: BTreeSet<&str> = BTreeSet::from([resource]);
    loop {
        let more: Vec<&str> = plan
            .changes
            .iter()
            .filter(|c| !users.contains(c.resource.as_str()))
            .filter(|c| c.depends_on.iter().any(|d| users.contains(d.as_str())))
            .map(|c| c.resource.as_str())
            .collect();
        if more.is_empty() {
            break;
        }
        users.extend(more);
    }
    let other: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .filter(|c| {
            let replaced = c.address == address && c.action == Action::Replace;
            let follows = c.action == Action::Update
                && c.resource != resource
                && users.contains(c.resource.as_str());
            !(replaced || follows)
        })
        .map(|c| format!("{} ({:?})", c.address, c.action).to_lowercase())
        .collect();
    if other.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the deployment has other changes waiting ({}): run `cairn up` first; a heal replaces only",
            other.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use cairn_engine::plan::{Action, Plan, ResourceChange, Summary};

    use super::only_the_replacement;

    fn change(address: &str, action: Action, deps: &[&str]) -> ResourceChange {
        ResourceChange {
            address: address.into(),
            resource: address.split('[').next().unwrap().into(),
            kind: "server".into(),
            action,
            id: Some("x".into()),
            diff: vec![],
            replace_because: vec![],
            replace_requested: action == Action::Replace,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            data_holding: false,
            create_before_destroy: false,
        }
    }

    fn plan(changes: Vec<ResourceChange>) -> Plan {
        Plan {
            deployment: "d".into(),
            state_serial: 1,
            changes,
            summary: Summary::default(),
        }
    }

    #[test]
    fn a_heal_applies_its_replacement_and_what_follows_it_only() {
        let mut changes = vec![
            change("net", Action::NoOp, &[]),
            change("web[0]", Action::NoOp, &["net"]),
            change("web[1]", Action::Replace, &["net"]),
            change("lb", Action::Update, &["web"]),
            change("www", Action::Update, &["lb"]),
        ];
        assert_eq!(
            only_the_replacement(&plan(changes.clone()), "web[1]"),
            Ok(())
        );
        // Another server changing, or anything the template changed
        // elsewhere, is a person's `up`.
        changes[1].action = Action::Update;
        changes.push(change("db", Action::Create, &[]));
        assert_eq!(
            only_the_replacement(&plan(changes), "web[1]"),
            Err(
                "the deployment has other changes waiting (web[0] (update), db (create)): \
                 run `cairn up` first; a heal replaces only"
                    .into()
            )
        );
    }
}
