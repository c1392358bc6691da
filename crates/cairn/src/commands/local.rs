//! `cairn local start|stop|status|logs`: the embedded cloud's daemon.

use std::path::PathBuf;
use std::time::Duration;

use cairn_local::cloud::LocalDirs;
use cairn_local::daemon::client::LocalClient;
use cairn_local::daemon::{DaemonConfig, Published, published_path};

use crate::cli::{GlobalArgs, LocalAction};
use crate::output::emit;
use crate::report::{CliError, Status};

pub const ENV_LOCAL_DIR: &str = "CAIRN_LOCAL_DIR";
pub const ENV_LOCAL_DNS: &str = "CAIRN_LOCAL_DNS";
pub const ENV_LOCAL_POOL: &str = "CAIRN_LOCAL_POOL";

/// Where a daemon that `up` starts serves DNS: `CAIRN_LOCAL_DNS`, else 127.0.0.1:8053.
pub fn dns_address() -> Result<std::net::SocketAddr, CliError> {
    let text = std::env::var(ENV_LOCAL_DNS)
        .unwrap_or_else(|_| cairn_local::daemon::DEFAULT_DNS.to_string());
    text.parse()
        .map_err(|_| CliError::Usage(format!("{ENV_LOCAL_DNS}={text} is not an address:port")))
}

/// `CAIRN_LOCAL_DIR`, else `~/.local/share/cairn/local`.
pub fn local_dirs() -> Result<LocalDirs, CliError> {
    if let Some(d) = std::env::var_os(ENV_LOCAL_DIR) {
        return Ok(LocalDirs::new(PathBuf::from(d)));
    }
    let home = std::env::var_os("HOME").ok_or_else(|| {
        CliError::Usage(format!(
            "set HOME or {ENV_LOCAL_DIR} to say where the local cloud lives"
        ))
    })?;
    Ok(LocalDirs::new(
        PathBuf::from(home).join(".local/share/cairn/local"),
    ))
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::failure)
}

/// Connects to the running daemon, starting it first when needed.
pub async fn ensure_started(
    dirs: &LocalDirs,
    dns: std::net::SocketAddr,
    pool: Option<u8>,
) -> Result<LocalClient, CliError> {
    if let Ok(c) = LocalClient::connect(dirs).await {
        return Ok(c);
    }
    std::fs::create_dir_all(&dirs.root).map_err(CliError::failure)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dirs.root.join("daemon.log"))
        .map_err(CliError::failure)?;
    let exe = std::env::current_exe().map_err(CliError::failure)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["local", "daemon", "--dns", &dns.to_string()])
        .env(ENV_LOCAL_DIR, &dirs.root)
        .envs(pool.map(|p| (ENV_LOCAL_POOL, p.to_string())))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(CliError::failure)?)
        .stderr(log);
    // Its own process group: a Ctrl-C at this terminal does not reach it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(CliError::failure)?;
    for _ in 0..300 {
        if let Ok(c) = LocalClient::connect(dirs).await {
            return Ok(c);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dirs.root.join("daemon.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            return Err(CliError::failure(format!(
                "the local cloud exited at start ({status}); its log says:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(CliError::failure(
        "the local cloud did not start within 15 s (see daemon.log in its directory)",
    ))
}

pub fn run(action: &LocalAction, global: &GlobalArgs) -> Result<Status, CliError> {
    let dirs = local_dirs()?;
    let rt = runtime()?;
    match action {
        LocalAction::Daemon { dns, pool } => {
            let config = DaemonConfig {
                dirs,
                dns: *dns,
                pool: *pool,
                path: std::env::current_exe()
                    .ok()
                    .and_then(|e| e.parent().map(PathBuf::from))
                    .into_iter()
                    .collect(),
            };
            rt.block_on(async {
                let shutdown = tokio_util::sync::CancellationToken::new();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    use tokio::signal::unix::{SignalKind, signal};
                    if let (Ok(mut term), Ok(mut int)) = (
                        signal(SignalKind::terminate()),
                        signal(SignalKind::interrupt()),
                    ) {
                        tokio::select! {
                            _ = term.recv() => {}
                            _ = int.recv() => {}
                        }
                    }
                    stop.cancel();
                });
                cairn_local::daemon::run(config, shutdown).await
            })
            .map_err(CliError::failure)?;
            Ok(Status::Success)
        }
        LocalAction::Start { dns, pool } => {
            let c = rt.block_on(ensure_started(&dirs, *dns, *pool))?;
            emit(
                serde_json::json!({"running": true, "pid": c.published.pid, "api": c.published.api, "dns": c.published.dns}),
                global,
            )?;
            Ok(Status::Success)
        }
        LocalAction::Stop => {
            let published: Option<Published> = std::fs::read_to_string(published_path(&dirs))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            let Some(p) = published else {
                emit(serde_json::json!({"running": false}), global)?;
                return Ok(Status::Success);
            };
            let pid = nix::unistd::Pid::from_raw(p.pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..600 {
                if !published_path(&dirs).exists() || nix::sys::signal::kill(pid, None).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            emit(
                serde_json::json!({"running": false, "stopped": p.pid}),
                global,
            )?;
            Ok(Status::Success)
        }
        LocalAction::Status => {
            let status = rt.block_on(async {
                match LocalClient::connect(&dirs).await {
                    Ok(c) => c.status().await.map_err(CliError::failure),
                    Err(e) => Err(CliError::failure(e)),
                }
            })?;
            emit(status["resources"].clone(), global)?;
            Ok(Status::Success)
        }
        LocalAction::Logs { server } => {
            let resources =
                cairn_local::cloud::read_resources(&dirs.state()).map_err(CliError::failure)?;
            let r = resources
                .iter()
                .filter(|r| r.kind == "server")
                .find(|r| r.id == *server || r.address == *server)
                .ok_or_else(|| CliError::Usage(format!("no server {server} in the local cloud")))?;
            let log = cairn_local::supervisor::log_path(&dirs.of("server", &r.id));
            let text = std::fs::read_to_string(&log)
                .map_err(|e| CliError::failure(format!("{}: {e}", log.display())))?;
            print!("{text}");
            Ok(Status::Success)
        }
    }
}
