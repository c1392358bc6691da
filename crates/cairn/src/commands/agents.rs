//! `cairn master`, `cairn agent`, `cairn keys` and `cairn events`: thin
//! over cairn-orch's `agent` module. The daemons run in the foreground and
//! stop cleanly on SIGTERM or Ctrl-C.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_orch::agent::{self, AdminReply, AdminRequest, KeyAction};
use serde_json::{Value as J, json};

use crate::cli::{AgentArgs, EventsArgs, GlobalArgs, KeysAction, MasterArgs, MasterDirArg};
use crate::output::emit;
use crate::report::{CliError, Status};

/// `~/.local/share/cairn/NAME`.
fn data_dir(name: &str) -> Result<PathBuf, CliError> {
    let home = std::env::var_os("HOME")
        .ok_or_else(|| CliError::Usage(format!("HOME is not set: give --dir for the {name}")))?;
    Ok(PathBuf::from(home).join(".local/share/cairn").join(name))
}

pub fn master_dir(arg: &MasterDirArg) -> Result<PathBuf, CliError> {
    Ok(master_for(arg, None)?.dir)
}

/// Which master a command talks to.
pub struct MasterRef {
    pub dir: PathBuf,
    /// The local cloud's: its agents' ids are the servers' resource ids.
    pub local: bool,
}

/// The local cloud's (`--local`, or without `--master-dir` for hosts of a
/// deployment whose `target` is `local`), else `--master-dir`, else
/// ~/.local/share/cairn/master.
pub fn master_for(arg: &MasterDirArg, target: Option<&str>) -> Result<MasterRef, CliError> {
    // `--local` over `--master-dir`, which may come from CAIRN_MASTER_DIR.
    if arg.local || (arg.master_dir.is_none() && target == Some("local")) {
        let dirs = super::local::local_dirs()?;
        return Ok(MasterRef {
            dir: cairn_local::cloud::agents::master_dir(&dirs),
            local: true,
        });
    }
    Ok(MasterRef {
        dir: match &arg.master_dir {
            Some(d) => d.clone(),
            None => data_dir("master")?,
        },
        local: false,
    })
}

/// What to tell when the master does not answer.
pub fn master_error(master: &MasterRef, e: agent::AdminError) -> String {
    match e {
        agent::AdminError::NotRunning(_) if master.local => format!(
            "the local cloud's master is not running (its daemon serves it, in {}): start the \
             cloud with `cairn local start`",
            master.dir.display()
        ),
        e => e.to_string(),
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

pub fn master(args: &MasterArgs, global: &GlobalArgs) -> Result<Status, CliError> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => data_dir("master")?,
    };
    let mut cfg = agent::MasterConfig::new(args.listen.clone(), dir);
    if let Some(url) = &args.bus {
        cfg.bus = Some(url.clone());
        cfg.name = match &args.name {
            Some(n) => n.clone(),
            None => hostname()?,
        };
    }
    cfg.token = token(args.token_file.as_deref())?;
    cfg.silence = Duration::from_secs(args.silence.max(1));
    cfg.event_rate = f64::from(args.event_rate.max(1));
    cfg.event_burst = args.event_rate.max(1).saturating_mul(5);
    if let Some(file) = &args.reactors {
        // A bad file stops the master here, at FILE:LINE:COL.
        let reactors = agent::Reactors::load(file).map_err(|e| CliError::Usage(e.to_string()))?;
        // Reactions are jobs: recorded where `cairn run` records them.
        let location = super::state::state_location(global, Path::new("."))?;
        let store: Arc<dyn cairn_state::Store> = super::state::open_location(&location)?.into();
        cfg.reactors = Some(Arc::new(reactors));
        cfg.jobs = Some(store);
    }
    runtime()?
        .block_on(agent::master::serve(cfg, stop_signal()))
        .map_err(|e| CliError::Failure(anyhow::anyhow!("master: {e}")))?;
    Ok(Status::Success)
}

fn hostname() -> Result<String, CliError> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .map_err(|e| CliError::Usage(format!("no hostname ({e}): give --id or --name")))
}

/// `cairn agent`: the small `cairn-agent` binary beside this one in its
/// place (same pid, a fraction of the memory, see README "Agents"), else
/// the agent in this process.
pub fn agent(args: &AgentArgs, verbose: u8) -> Result<Status, CliError> {
    use std::os::unix::process::CommandExt;
    if let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|exe| agent::binary_beside(&exe))
    {
        let err = std::process::Command::new(&bin)
            .args(args.to_args(verbose))
            .exec();
        tracing::warn!(
            "cannot run {} ({err}): running the agent in this process",
            bin.display()
        );
    }
    run_agent(args)
}

/// The agent in this process (`cairn-agent`, or `cairn agent` without it).
pub fn run_agent(args: &AgentArgs) -> Result<Status, CliError> {
    let id = match &args.id {
        Some(id) => id.clone(),
        None => hostname()?,
    };
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => data_dir("agent")?,
    };
    let cfg = agent::AgentConfig {
        master: args.master.clone().unwrap_or_default(),
        id,
        dir,
        master_fingerprint: args.master_fingerprint.clone(),
        token: token(args.token_file.as_deref())?,
        heartbeat: Duration::from_secs(args.heartbeat.max(1)),
        service_events: Some(args.service_events.clone()),
        debounce: Duration::from_millis(args.debounce_ms.max(10)),
        bus: args.bus.clone(),
    };
    if let Some(n) = args.bench {
        return bench_agents(cfg, n);
    }
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

/// `cairn agent --bench N`: N agents in one process (one bus connection,
/// or N TLS connections), for benchmarks and tests of many agents on one
/// machine; no service events (they would share the init's file).
fn bench_agents(cfg: agent::AgentConfig, n: u32) -> Result<Status, CliError> {
    let cfgs: Vec<agent::AgentConfig> = (1..=n.max(1))
        .map(|i| {
            let id = format!("{}-{i:04}", cfg.id);
            agent::AgentConfig {
                dir: cfg.dir.join(&id),
                id,
                service_events: None,
                ..cfg.clone()
            }
        })
        .collect();
    let rt = runtime()?;
    let result = match &cfg.bus {
        Some(url) => rt.block_on(agent::bus::agent::run(url, cfgs, stop_signal())),
        None => rt.block_on(async {
            let mut all = tokio::task::JoinSet::new();
            for c in cfgs {
                all.spawn(agent::agent::run(c, std::future::pending::<()>()));
            }
            tokio::select! {
                Some(r) = all.join_next() => r.map_err(|e| e.to_string()).and_then(|r| r),
                () = stop_signal() => Ok(()),
            }
        }),
    };
    result.map_err(|e| CliError::Failure(anyhow::anyhow!("agent: {e}")))?;
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

/// `cairn events [--follow] [--tag GLOB]`: the recent events in the shared
/// output formats; following, each new one as a JSON line (flushed) until
/// interrupted or the master stops.
pub fn events(args: &EventsArgs, global: &GlobalArgs) -> Result<Status, CliError> {
    if let Some(t) = &args.tag {
        agent::TagGlob::new(t).map_err(CliError::Usage)?;
    }
    let master = master_for(&args.master, None)?;
    let dir = master.dir.clone();
    let req = AdminRequest::Events {
        tag: args.tag.clone(),
        follow: args.follow,
    };
    let rt = runtime()?;
    if !args.follow {
        // A fleet's masters each keep their own: all of them, merged.
        return match rt.block_on(agent::ask_all(&dir, &req)) {
            Ok(AdminReply::Events { events }) => {
                emit(
                    serde_json::to_value(events).map_err(CliError::failure)?,
                    global,
                )?;
                Ok(Status::Success)
            }
            Ok(AdminReply::Error { message }) => Err(CliError::Usage(message)),
            Ok(other) => Err(CliError::Failure(anyhow::anyhow!(
                "unexpected answer from the master: {other:?}"
            ))),
            Err(e) => Err(CliError::Usage(master_error(&master, e))),
        };
    }
    let mut out = std::io::stdout().lock();
    let result = rt.block_on(agent::master::follow(&dir, &req, |reply| {
        let lines: Vec<J> = match reply {
            AdminReply::Events { events } => events
                .iter()
                .map(|e| serde_json::to_value(e).unwrap_or(J::Null))
                .collect(),
            AdminReply::Event { event } => vec![serde_json::to_value(event).unwrap_or(J::Null)],
            AdminReply::Lagged { missed } => {
                eprintln!("cairn events: fell behind, {missed} event(s) not shown (they are in the master's events.jsonl)");
                vec![]
            }
            AdminReply::Error { message } => return Err(message),
            other => return Err(format!("unexpected answer from the master: {other:?}")),
        };
        for l in lines {
            let written = serde_json::to_writer(&mut out, &l)
                .map_err(std::io::Error::from)
                .and_then(|_| out.write_all(b"\n"))
                .and_then(|_| out.flush());
            if let Err(e) = written {
                // `cairn events -f | head` closing its end is the way out.
                return if e.kind() == std::io::ErrorKind::BrokenPipe {
                    Ok(false)
                } else {
                    Err(e.to_string())
                };
            }
        }
        Ok(true)
    }));
    match result {
        Ok(()) => Ok(Status::Success),
        Err(e @ agent::AdminError::NotRunning(_)) => Err(CliError::Usage(e.to_string())),
        Err(e) => Err(CliError::Failure(e.into())),
    }
}
