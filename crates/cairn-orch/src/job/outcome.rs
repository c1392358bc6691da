//! A module's or a state file's answer as a host's [`HostResult`], the same
//! whichever transport ran it (the CLI over SSH, the agent on its host).

use std::path::Path;

use serde_json::{Map, Value as J};

use super::record::{HostResult, HostStatus};
use crate::module::{self, Args, ModuleError, Outcome, RunContext};
use crate::remote::Remote;
use crate::state::{HostReport, Loader, RenderContext, StateFile, StateResult};

/// A module's answer.
pub fn module_result(host: &str, result: Result<Outcome, ModuleError>) -> HostResult {
    let mut r = HostResult::skipped(host, "");
    r.error = None;
    match result {
        Ok(o) => {
            r.status = if o.changed {
                HostStatus::Changed
            } else {
                HostStatus::Ok
            };
            r.rc = o.rc;
            r.stdout = o.stdout.clone();
            r.stderr = o.stderr.clone();
            r.detail = serde_json::to_value(&o).unwrap_or(J::Null);
        }
        Err(ModuleError::Transport(e)) => {
            r.status = if e.is_unreachable() {
                HostStatus::Unreachable
            } else {
                HostStatus::Failed
            };
            r.error = Some(e.to_string());
        }
        Err(ModuleError::Failed {
            message,
            stdout,
            stderr,
            rc,
            ..
        }) => {
            r.status = HostStatus::Failed;
            r.error = Some(message);
            r.stdout = stdout;
            r.stderr = stderr;
            r.rc = rc;
        }
        Err(other) => {
            r.status = HostStatus::Failed;
            r.error = Some(other.to_string());
        }
    }
    r
}

/// A failure with its reason.
pub fn failed(host: &str, message: String) -> HostResult {
    HostResult {
        status: HostStatus::Failed,
        error: Some(message),
        ..HostResult::skipped(host, "")
    }
}

/// Never reached, with the reason.
pub fn unreachable(host: &str, message: String) -> HostResult {
    HostResult {
        status: HostStatus::Unreachable,
        error: Some(message),
        ..HostResult::skipped(host, "")
    }
}

/// A state file's report: failed if a state failed, changed if a state
/// changed.
pub fn state_result(host: &str, report: HostReport) -> HostResult {
    let failed = report.count(StateResult::Failed);
    let status = if failed > 0 {
        HostStatus::Failed
    } else if report.count(StateResult::Changed) > 0 {
        HostStatus::Changed
    } else {
        HostStatus::Ok
    };
    let error = (failed > 0).then(|| {
        let first = report
            .states
            .iter()
            .find(|s| s.result == StateResult::Failed)
            .and_then(|s| s.error.clone().map(|e| format!("{}: {e}", s.id)))
            .unwrap_or_default();
        format!("{failed} state(s) failed; first: {first}")
    });
    HostResult {
        status,
        error,
        detail: serde_json::to_value(&report).unwrap_or(J::Null),
        ..HostResult::skipped(host, "")
    }
}

/// Applies a state file to one host as a job does, over any transport: the
/// file is rendered with the host's variables, and with its facts only when
/// its Jinja may look at them (they cost the host a round trip; a file that
/// does not use them renders the same without them), then its states run.
pub async fn apply_state_file(
    host: &dyn Remote,
    path: &Path,
    source: &str,
    vars: Map<String, J>,
    ctx: &RunContext,
) -> HostResult {
    apply_state_file_with(host, path, source, vars, ctx, &module::load).await
}

/// [`apply_state_file`] with the states' modules built by `loader` (the
/// agent's notes which files its states manage).
pub async fn apply_state_file_with(
    host: &dyn Remote,
    path: &Path,
    source: &str,
    vars: Map<String, J>,
    ctx: &RunContext,
    loader: &dyn Loader,
) -> HostResult {
    let name = host.name().to_string();
    let rctx = RenderContext::new(&name).vars(vars);
    let file = match StateFile::parse(path, source, &rctx) {
        Ok(f) if !f.uses_facts() => f,
        _ => {
            let facts = match read_facts(host, ctx).await {
                Ok(f) => f,
                Err(e) => return module_result(&name, Err(e)),
            };
            match StateFile::parse(path, source, &rctx.facts(facts)) {
                Ok(f) => f,
                Err(e) => return failed(&name, e.to_string()),
            }
        }
    };
    match crate::state::apply(&file, host, loader, ctx).await {
        Ok(report) => state_result(&name, report),
        Err(e) => failed(&name, e.to_string()),
    }
}

/// The host's facts; read even in a dry run, since they change nothing.
async fn read_facts(host: &dyn Remote, ctx: &RunContext) -> Result<J, ModuleError> {
    let facts = module::load("facts", &Args::new())?;
    let read = RunContext {
        check: false,
        ..ctx.clone()
    };
    Ok(facts.run(host, &read).await?.data)
}
