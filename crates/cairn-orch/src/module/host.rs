//! Running a module's scripts: as the context's user, with failures of the
//! probe itself turned into [`ModuleError::Failed`].

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;

use crate::remote::{Exec, Output, Remote};

use super::contract::RunContext;
use super::error::ModuleError;

pub(crate) async fn run(
    host: &dyn Remote,
    ctx: &RunContext,
    script: String,
    stdin: Option<Bytes>,
    timeout: Option<Duration>,
) -> Result<Output, ModuleError> {
    let exec = Exec {
        script,
        stdin,
        become_user: ctx.become_user.clone(),
        timeout,
    };
    Ok(host.exec(exec).await?)
}

/// Runs a script that must succeed (a probe, an apply step).
pub(crate) async fn must(
    module: &str,
    what: &str,
    host: &dyn Remote,
    ctx: &RunContext,
    script: String,
    stdin: Option<Bytes>,
) -> Result<Output, ModuleError> {
    let out = run(host, ctx, script, stdin, None).await?;
    if out.success() {
        Ok(out)
    } else {
        Err(failed(module, what, &out))
    }
}

pub(crate) fn failed(module: &str, what: &str, out: &Output) -> ModuleError {
    let err = out.stderr_str();
    let last = err.trim().lines().last().unwrap_or("").to_string();
    let rc = match out.status {
        Some(c) => format!("exit {c}"),
        None => "killed by a signal".into(),
    };
    ModuleError::Failed {
        module: module.to_string(),
        message: if last.is_empty() {
            format!("{what} failed ({rc})")
        } else {
            format!("{what} failed ({rc}): {last}")
        },
        stdout: out.stdout_str(),
        stderr: err,
        rc: out.status,
    }
}

/// A probe's `key=value` lines; later lines win.
pub(crate) fn kv(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
