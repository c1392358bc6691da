//! How plans, applies and drift read on a terminal: the plan as a diff,
//! progress lines, the run's summary and its resources' errors on stderr;
//! the structured result for `-o` formats and `--query`.

use cairn_engine::apply::{ApplyEvent, Observer};
use cairn_engine::plan::{Action, Plan};
use cairn_engine::recover::Reconciled;
use cairn_engine::run::{Drift, DriftStatus, RunOutcome};

use crate::output::cell::duration;
use crate::report::Status;

/// Progress lines on stderr, only on a terminal.
pub(super) struct Progress;

impl Observer for Progress {
    fn on_event(&self, e: &ApplyEvent) {
        let line = match e {
            ApplyEvent::Started { address, action } => format!("  {} {address} ...", sign(*action)),
            ApplyEvent::Finished {
                address,
                action,
                elapsed_ms,
            } => {
                format!(
                    "  {} {address} done in {}",
                    sign(*action),
                    duration(*elapsed_ms)
                )
            }
            ApplyEvent::Retrying {
                address,
                attempt,
                delay_ms,
                error,
            } => {
                format!("  ~ {address}: retry {attempt} in {delay_ms} ms ({error})")
            }
            ApplyEvent::Failed { address, error, .. } => format!("  ! {address} failed: {error}"),
            ApplyEvent::RollingBack { address } => format!("  < {address} rolling back"),
        };
        eprintln!("{line}");
    }
}

fn sign(a: Action) -> &'static str {
    match a {
        Action::Create => "+",
        Action::Update => "~",
        Action::Replace => "-/+",
        Action::Delete => "-",
        Action::NoOp => " ",
    }
}

/// The plan as people read it: each change with its property diff
/// (secrets as `(secret)`, unknowns as `(known after apply)`), then a count.
pub(super) fn describe(plan: &Plan) -> String {
    let show = |v: &Option<serde_json::Value>| match v {
        None => "null".to_string(),
        // The markers read as words, not as string values.
        Some(serde_json::Value::String(t))
            if t == cairn_template::value::UNKNOWN_TEXT
                || t == cairn_template::value::SECRET_TEXT =>
        {
            t.clone()
        }
        Some(v) => without_nulls(v).to_string(),
    };
    let mut s = String::new();
    for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        s.push_str(&format!("  {} {} ({})", sign(c.action), c.address, c.kind));
        if c.replace_requested {
            s.push_str("  replaced on request (--replace)");
        } else if !c.replace_because.is_empty() {
            s.push_str(&format!(
                "  replaced because {} changed",
                c.replace_because.join(", ")
            ));
        }
        s.push('\n');
        for d in &c.diff {
            let line = match c.action {
                Action::Create => format!("{}: {}", d.path, show(&d.after)),
                _ => format!("{}: {} -> {}", d.path, show(&d.before), show(&d.after)),
            };
            let forces = if d.force_new {
                "  (forces replacement)"
            } else {
                ""
            };
            s.push_str(&format!("      {line}{forces}\n"));
        }
    }
    let m = &plan.summary;
    s.push_str(&format!(
        "Plan: {} to create, {} to update, {} to replace, {} to delete.\n",
        m.create, m.update, m.replace, m.delete
    ));
    s
}

/// A value with its objects' unset members left out: a firewall rule reads
/// `{"protocol":"tcp","port":80,"from":"0.0.0.0/0"}`, not every default.
fn without_nulls(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Resources a killed run left behind, found again and recorded.
pub(super) fn reconciled(found: &[Reconciled]) {
    for r in found {
        eprintln!("recovered {} ({:?}): {}", r.address, r.op, r.finding);
    }
}

/// The run's summary on stderr (`-o none`, in scripts and CI, shows no
/// table, so failures are said there too); its status and structured result.
pub(super) fn outcome(outcome: &RunOutcome) -> (Status, serde_json::Value) {
    match outcome {
        RunOutcome::NoChanges { .. } => {
            eprintln!("No changes: the deployment matches the template.");
            (Status::Success, serde_json::json!({"result": "no_changes"}))
        }
        RunOutcome::Declined { .. } => (Status::Failure, serde_json::json!({"result": "declined"})),
        RunOutcome::Applied {
            serial,
            report,
            outputs,
            ..
        } => {
            let c = &report.counts;
            eprintln!(
                "{}: {} created, {} updated, {} replaced, {} deleted, {} failed in {}{}",
                if report.ok { "Done" } else { "Failed" },
                c.created,
                c.updated,
                c.replaced,
                c.deleted,
                c.failed,
                duration(report.elapsed_ms),
                if report.rolled_back {
                    "; rolled back to the previous deployment"
                } else {
                    ""
                }
            );
            // Why, on stderr too: `-o none` (scripts, CI) shows no table.
            for r in &report.resources {
                if let Some(e) = &r.error {
                    eprintln!("  {} ({}): {e}", r.address, r.kind);
                }
            }
            (
                if report.ok {
                    Status::Success
                } else {
                    Status::Failure
                },
                serde_json::json!({
                    "result": if report.ok { "applied" } else if report.rolled_back { "rolled_back" } else { "failed" },
                    "run": serial,
                    "counts": report.counts,
                    "resources": report.resources,
                    "outputs": outputs,
                }),
            )
        }
    }
}

/// Each drifted resource and property on stderr.
pub(super) fn drift(found: &[Drift]) {
    if found.is_empty() {
        eprintln!("No drift: every resource is as cairn last applied it.");
    } else {
        for d in found {
            match d.status {
                DriftStatus::Deleted => eprintln!("  - {} ({}) was deleted", d.address, d.id),
                DriftStatus::Changed => {
                    for p in &d.properties {
                        eprintln!(
                            "  ~ {}.{}: {} -> {}",
                            d.address, p.path, p.recorded, p.actual
                        );
                    }
                }
            }
        }
        eprintln!(
            "{} resource(s) drifted; `cairn up` puts them back as the template says.",
            found.len()
        );
    }
}
