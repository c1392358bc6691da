//! A module's or a state file's answer as a host's [`HostResult`], the same
//! whichever transport ran it (the CLI over SSH, the agent on its host).

use serde_json::Value as J;

use super::record::{HostResult, HostStatus};
use crate::module::{ModuleError, Outcome};
use crate::state::{HostReport, StateResult};

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
