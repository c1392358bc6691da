//! `cairn master`, `cairn agent` and `cairn keys`: thin over cairn-orch's
//! `agent` module. The daemons run in the foreground and stop cleanly on
//! SIGTERM or Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_orch::agent::{self, AdminReply, AdminRequest, KeyAction};
use serde_json::json;

use crate::cli::{AgentArgs, GlobalArgs, KeysAction, MasterArgs, MasterDirArg};
use crate::output::emit;
use crate::report::{CliError, Status};

/// `~/.local/share/cairn/NAME`.
fn data_dir(name: &str) -> Result<PathBuf, CliError> {
    let home = std::env::var_os("HOME")
        .ok_or_else(|| CliError::Usage(format!("HOME is not set: give --dir for the {name}")))?;
    Ok(PathBuf::from(home).join(".local/share/cairn").join(name))
}

pub fn master_dir(arg: &MasterDirArg) -> Result<PathBuf, CliError> {
    match &arg.master_dir {
        Some(d) => Ok(d.clone()),
        None => data_dir("master"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::failure)
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn token(file: Option<&Path>) -> Result<Option<String>, CliError> {
    file.map(|f| {
        std::fs::read_to_string(f)
            .map(|t| t.trim().to_string())
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", f.display())))
    })
    .transpose()
}

pub fn master(args: &MasterArgs) -> Result<Status, CliError> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => data_dir("master")?,
    };
    let cfg = agent::MasterConfig {
        listen: args.listen.clone(),
        dir,
        token: token(args.token_file.as_deref())?,
        silence: Duration::from_secs(args.silence.max(1)),
    };
    runtime()?
        .block_on(agent::master::serve(cfg, stop_signal()))
        .map_err(|e| CliError::Failure(anyhow::anyhow!("master: {e}")))?;
    Ok(Status::Success)
}

pub fn agent(args: &AgentArgs) -> Result<Status, CliError> {
    let id = match &args.id {
        Some(id) => id.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .map_err(|e| CliError::Usage(format!("no --id, and no hostname: {e}")))?,
    };
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => data_dir("agent")?,
    };
    let cfg = agent::AgentConfig {
        master: args.master.clone(),
        id,
        dir,
        master_fingerprint: args.master_fingerprint.clone(),
        token: token(args.token_file.as_deref())?,
        heartbeat: Duration::from_secs(args.heartbeat.max(1)),
    };
    // The agent is small: two worker threads are plenty (and keep its
    // memory down on a many-core host).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CliError::failure)?;
    rt.block_on(agent::agent::run(cfg, stop_signal()))
        .map_err(|e| CliError::Failure(anyhow::anyhow!("agent: {e}")))?;
    Ok(Status::Success)
}

/// `cairn keys`: through the running master (so a revoke closes the
/// agent's connection at once), else on its directory.
pub fn keys(
    action: Option<&KeysAction>,
    master: &MasterDirArg,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let dir = master_dir(master)?;
    let (req, offline) = match action {
        None | Some(KeysAction::List) => (AdminRequest::Keys, None),
        Some(a) => {
            let (action, id) = match a {
                KeysAction::Accept { id } => (KeyAction::Accept, id),
                KeysAction::Reject { id } => (KeyAction::Reject, id),
                KeysAction::Revoke { id } => (KeyAction::Revoke, id),
                KeysAction::Delete { id } => (KeyAction::Delete, id),
                KeysAction::List => unreachable!("handled above"),
            };
            (
                AdminRequest::Key {
                    action,
                    id: id.clone(),
                },
                Some((action, id.as_str())),
            )
        }
    };
    let reply = match runtime()?.block_on(agent::ask(&dir, &req)) {
        Ok(r) => r,
        Err(agent::AdminError::NotRunning(_)) => {
            agent::master::keys_offline(&dir, offline).map_err(CliError::Usage)?
        }
        Err(e) => return Err(CliError::Failure(e.into())),
    };
    let value = match reply {
        AdminReply::Keys { keys } => serde_json::to_value(keys).map_err(CliError::failure)?,
        AdminReply::Key { entry } => match entry {
            Some(e) => serde_json::to_value(e).map_err(CliError::failure)?,
            None => json!({"deleted": true}),
        },
        AdminReply::Error { message } => return Err(CliError::Usage(message)),
        other => {
            return Err(CliError::Failure(anyhow::anyhow!(
                "unexpected answer from the master: {other:?}"
            )));
        }
    };
    emit(value, global)?;
    Ok(Status::Success)
}
