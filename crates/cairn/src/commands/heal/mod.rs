//! `cairn heal APP`: self-healing of a released app. Each `heal.interval`
//! every server of the app gets the rollout's own health check, one try
//! (`rollout::probe`); a server failing past `heal.grace` is restarted with
//! the rollout's restart step (drain, restart, health, restore), and if it
//! still fails, replaced by the engine (`up --replace ADDRESS`, limited to
//! that server and what uses it) and given the environment's current
//! release through the rollout, a batch of one, back behind the balancer.
//!
//! The heal observes without the deployment's lease and takes it only to
//! act, so a heal and a release (or an `up`) never overlap; while someone
//! else holds it, a pass only waits. Each incident is a record in the
//! state (`heals`), which is also how a pass from cron (`--once`) knows
//! since when a server has been failing.
//!
//! A top-level command rather than `cairn release heal`: it is a
//! controller that runs until stopped (like `master` and `agent`), not one
//! more way to move versions.

use cairn_release::HealOutcome;
use serde_json::Value as J;

mod healer;
mod replace;

use healer::{Healer, row};

use super::connect::Connector;
use super::release::{current_release, host_args, load_app, runtime, template_args};
use crate::cli::{GlobalArgs, HealArgs, ReleaseOptions, TemplateArgs};
use crate::output::emit;
use crate::report::{CliError, Status};

pub fn heal(args: &HealArgs, global: &GlobalArgs) -> Result<Status, CliError> {
    let o = release_options(args);
    let t = template_args(&o);
    if args.history {
        return history(&t, &args.app, global);
    }
    let cx = load_app(&t, &args.app, global)?;
    let policy = cx.app.heal.clone().ok_or_else(|| {
        CliError::Usage(format!(
            "app `{}` has no `heal` policy: add `heal: {{grace: 30s}}` to it in the template \
             (restart and replace are on by default)",
            args.app
        ))
    })?;
    let trail = cx
        .store
        .releases(Some(&args.app))
        .map_err(CliError::failure)?;
    if current_release(&trail, &cx.deployment.env).is_none() {
        return Err(CliError::Usage(format!(
            "{} has no release in `{}` yet: nothing to heal to (`cairn release {} VERSION -e {}`)",
            args.app, cx.deployment.env, args.app, cx.deployment.env
        )));
    }
    let loaded = super::hosts::load(&o.servers.dir, o.servers.env.as_deref(), &[], global)?;
    let connector = Connector::new(&host_args(&o, &cx.app), loaded.deployment.as_ref())?;
    let rt = runtime()?;
    rt.block_on(async {
        let tg = super::deploy::target(&t, global).await?;
        let healer = Healer {
            policy,
            cx,
            tg,
            t,
            o,
            connector,
        };
        if args.once {
            let rows = healer.pass().await?;
            let given_up = rows
                .iter()
                .any(|r| r["state"] == HealOutcome::GaveUp.as_str());
            emit(J::Array(rows), global)?;
            return Ok(if given_up {
                Status::Failure
            } else {
                Status::Success
            });
        }
        healer.watch(global).await
    })
}

fn release_options(a: &HealArgs) -> ReleaseOptions {
    ReleaseOptions {
        batch: "1".into(),
        max_fail: 0,
        drain_timeout: a.drain_timeout,
        servers: a.servers.clone(),
        // Not offered by `cairn heal`, a process that runs for as long as it
        // heals.
        keep_connections: None,
    }
}

/// `cairn heal APP --history`: the incidents, newest first.
fn history(t: &TemplateArgs, app: &str, global: &GlobalArgs) -> Result<Status, CliError> {
    let (template_dir, deployment) =
        cairn_template::loader::locate_deployment(&t.dir, t.env.as_deref())?;
    let location = super::state::state_location(global, &template_dir)?;
    let store = super::state::open_location(&location)?;
    let heals = store
        .heals(Some(app), Some(&deployment.name), false)
        .map_err(CliError::failure)?;
    let rows: Vec<J> = heals.iter().map(row).collect();
    emit(J::Array(rows), global)?;
    Ok(Status::Success)
}
