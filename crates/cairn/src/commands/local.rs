//! `cairn local start|stop|status|logs|exec`: the embedded cloud's daemon.

use std::path::PathBuf;

use cairn_engine::plan::{Action, Plan};
use cairn_local::cloud::{Isolation, LocalDirs, LocalResource};
use cairn_local::daemon::client::LocalClient;
use cairn_local::daemon::{DaemonConfig, launch};

use crate::cli::{GlobalArgs, LocalAction};
use crate::output::emit;
use crate::report::{CliError, Status};

pub const ENV_LOCAL_DIR: &str = "CAIRN_LOCAL_DIR";
pub const ENV_LOCAL_DNS: &str = "CAIRN_LOCAL_DNS";
pub const ENV_LOCAL_POOL: &str = "CAIRN_LOCAL_POOL";
pub const ENV_LOCAL_ISOLATION: &str = "CAIRN_LOCAL_ISOLATION";

/// The isolation a daemon that `up` starts gives a new cloud:
/// `CAIRN_LOCAL_ISOLATION`, else none asked for (the cloud's own; for a new
/// one `runc` where the machine can run it, else `process`).
pub fn isolation_from_env() -> Result<Option<Isolation>, CliError> {
    match std::env::var(ENV_LOCAL_ISOLATION) {
        Ok(text) if !text.is_empty() => text
            .parse()
            .map(Some)
            .map_err(|e| CliError::Usage(format!("{ENV_LOCAL_ISOLATION}: {e}"))),
        _ => Ok(None),
    }
}

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
/// A running daemon must run the isolation asked for, if one was.
pub async fn ensure_started(
    dirs: &LocalDirs,
    dns: std::net::SocketAddr,
    pool: Option<u8>,
    isolation: Option<Isolation>,
) -> Result<LocalClient, CliError> {
    let exe = std::env::current_exe().map_err(CliError::failure)?;
    let mut daemon = std::process::Command::new(exe);
    daemon
        .args(["local", "daemon", "--dns", &dns.to_string()])
        .env(ENV_LOCAL_DIR, &dirs.root)
        .envs(pool.map(|p| (ENV_LOCAL_POOL, p.to_string())))
        .envs(isolation.map(|i| (ENV_LOCAL_ISOLATION, i.to_string())));
    let new_cloud = read_isolation(dirs).is_none();
    let before = published_pid(dirs);
    let client = launch::ensure_started(dirs, isolation, daemon)
        .await
        .map_err(CliError::failure)?;
    if new_cloud && isolation.is_none() && read_isolation(dirs).as_deref() == Some("process") {
        eprintln!("{}", process_notice(dirs, cairn_local::host::preflight()));
    }
    // Said by the command that started it, once, not by every command
    // that finds it running.
    if before != Some(client.published.pid) {
        for problem in &client.published.problems {
            eprintln!("warning: the local cloud started without all it had: {problem}");
        }
    }
    Ok(client)
}

/// The pid a daemon published in `dirs`, running or not.
fn published_pid(dirs: &LocalDirs) -> Option<u32> {
    let text = std::fs::read_to_string(cairn_local::daemon::published_path(dirs)).ok()?;
    serde_json::from_str::<cairn_local::daemon::Published>(&text)
        .ok()
        .map(|p| p.pid)
}

fn read_isolation(dirs: &LocalDirs) -> Option<String> {
    cairn_local::cloud::read_isolation(&dirs.state())
        .ok()
        .flatten()
}

/// What a user is told once, when a new cloud could not make its servers
/// hosts: why, and how to choose either way.
fn process_notice(
    dirs: &LocalDirs,
    runc: Result<(), cairn_local::host::error::HostError>,
) -> String {
    let why = match runc {
        Err(e) => e.to_string(),
        Ok(()) => "the daemon could not check the machine (see its daemon.log)".to_string(),
    };
    format!(
        "note: the new local cloud in {} runs its servers as processes on this machine \
         (`process` isolation), not as hosts of their own: {why}. \
         Set {ENV_LOCAL_ISOLATION}=process to choose this and not be told again.",
        dirs.root.display()
    )
}

pub fn run(action: &LocalAction, global: &GlobalArgs) -> Result<Status, CliError> {
    let dirs = local_dirs()?;
    let rt = runtime()?;
    match action {
        LocalAction::Daemon {
            dns,
            pool,
            isolation,
        } => {
            let config = DaemonConfig {
                dirs,
                dns: *dns,
                pool: *pool,
                isolation: *isolation,
                agents: true,
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
        LocalAction::Start {
            dns,
            pool,
            isolation,
        } => {
            let before = published_pid(&dirs);
            let c = rt.block_on(ensure_started(&dirs, *dns, *pool, *isolation))?;
            // What a start that happened here could not bring back; a
            // daemon found running was reported by the command that
            // started it.
            let problems = if before == Some(c.published.pid) {
                &[][..]
            } else {
                &c.published.problems[..]
            };
            emit(
                serde_json::json!({
                    "running": true,
                    "pid": c.published.pid,
                    "api": c.published.api,
                    "dns": c.published.dns,
                    "isolation": read_isolation(&dirs),
                    "problems": problems,
                }),
                global,
            )?;
            // Running, but not with all it had: a script must notice.
            Ok(if problems.is_empty() {
                Status::Success
            } else {
                Status::Failure
            })
        }
        LocalAction::Stop => {
            let out = match launch::stop(&dirs) {
                Some(pid) => serde_json::json!({"running": false, "stopped": pid}),
                None => serde_json::json!({"running": false}),
            };
            emit(out, global)?;
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
            let r = find_server(&dirs, server)?;
            let sandbox = dirs.of("server", &r.id);
            let log = cairn_local::supervisor::log_path(&sandbox);
            let text = std::fs::read_to_string(&log)
                .map_err(|e| CliError::failure(format!("{}: {e}", log.display())))?;
            print!("{text}");
            // A runc server's user_data writes its own log inside the server.
            let user_data = sandbox.join("layer/upper/var/log/cairn-user-data.log");
            if let Ok(text) = std::fs::read_to_string(user_data) {
                print!("{text}");
            }
            Ok(Status::Success)
        }
        LocalAction::Exec { server, command } => exec(&dirs, server, command),
        LocalAction::Image { name } => image(name, global),
    }
}

/// Builds (or finds) a server image in the foreground, so that the first
/// `up` that needs it does not wait on the build inside the daemon, where
/// its progress goes only to the daemon's log.
fn image(name: &str, global: &GlobalArgs) -> Result<Status, CliError> {
    use cairn_local::host::error::HostError;
    use cairn_local::host::image::ImageCache;
    let root = ImageCache::default_root()
        .ok_or_else(|| CliError::failure("no cache directory: set XDG_CACHE_HOME or HOME"))?;
    let cache = ImageCache::new(root);
    let started = std::time::Instant::now();
    let image = runtime()?
        .block_on(build_image(&cache, name))
        .map_err(|e| match e {
            HostError::UnknownImage { .. } => CliError::Usage(e.to_string()),
            other => CliError::failure(other),
        })?;
    emit(
        serde_json::json!({
            "name": image.name,
            "root": image.root,
            "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        }),
        global,
    )?;
    Ok(Status::Success)
}

/// `name` from `cache`, built first if needed, each line of the build on
/// stderr.
async fn build_image(
    cache: &cairn_local::host::image::ImageCache,
    name: &str,
) -> Result<cairn_local::host::image::Image, cairn_local::host::error::HostError> {
    cache
        .resolve(name, &mut |line: &str| eprintln!("{name}: {line}"))
        .await
}

/// The images that the servers `plan` creates or replaces ask for by name
/// (`debian-12`), each once; an image given as an expression not yet known
/// (`{{ snap.id }}`) is the cloud's own and never built.
pub fn images_of(plan: &Plan) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for change in &plan.changes {
        if change.kind != "server" || !matches!(change.action, Action::Create | Action::Replace) {
            continue;
        }
        for d in change.diff.iter().filter(|d| d.path == "image") {
            if let Some(serde_json::Value::String(name)) = &d.after
                && name != cairn_template::value::UNKNOWN_TEXT
            {
                names.insert(name.clone());
            }
        }
    }
    names.into_iter().collect()
}

/// Builds, in the foreground with its progress on stderr, each image the
/// plan's new servers need that this machine's cache lacks, before the
/// apply: the daemon would build it too, but with its progress only in its
/// log, and a first `up` would wait a minute saying nothing. A `process`
/// cloud uses no image. A failed build is said here and left to the
/// server's create, which tries again and fails with the same reason.
pub async fn prepare_images(plan: &Plan) {
    use cairn_local::host::image::ImageCache;
    let Ok(dirs) = local_dirs() else { return };
    if read_isolation(&dirs).as_deref() != Some("runc") {
        return;
    }
    let Some(root) = ImageCache::default_root() else {
        return;
    };
    let cache = ImageCache::new(root);
    for name in images_of(plan) {
        if !matches!(cache.lookup(&name), Ok(None)) {
            continue; // `host`, built already, or unknown (the create says so)
        }
        eprintln!(
            "Building image {name} (once per machine; `cairn local image {name}` does it ahead)"
        );
        let started = std::time::Instant::now();
        match build_image(&cache, &name).await {
            Ok(_) => eprintln!(
                "Built image {name} in {:.1} s",
                started.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("image {name}: {e}"),
        }
    }
}

/// A server of the cloud's record by id or by its address in a deployment.
fn find_server(dirs: &LocalDirs, server: &str) -> Result<LocalResource, CliError> {
    let resources = cairn_local::cloud::read_resources(&dirs.state()).map_err(CliError::failure)?;
    resources
        .into_iter()
        .filter(|r| r.kind == "server")
        .find(|r| r.id == server || r.address == server)
        .ok_or_else(|| CliError::Usage(format!("no server {server} in the local cloud")))
}

/// `cairn local exec SERVER -- CMD...`: `runc exec` in the server's
/// container, its stdio this terminal's, its exit code ours.
fn exec(dirs: &LocalDirs, server: &str, command: &[String]) -> Result<Status, CliError> {
    let isolation = cairn_local::cloud::read_isolation(&dirs.state())
        .map_err(CliError::failure)?
        .map(|i| i.parse::<Isolation>())
        .transpose()
        .map_err(CliError::failure)?
        .ok_or_else(|| {
            CliError::Usage(format!(
                "no local cloud in {}: nothing has been deployed there (or {ENV_LOCAL_DIR} names \
                 another directory)",
                dirs.root.display()
            ))
        })?;
    if isolation != Isolation::Runc {
        return Err(CliError::Usage(format!(
            "`cairn local exec` needs `runc` isolation: the local cloud in {} runs its servers \
             as `{isolation}` (processes on the machine, nothing to exec into); make a cloud \
             with `cairn local start --isolation runc` (or {ENV_LOCAL_ISOLATION}=runc) in \
             another directory ({ENV_LOCAL_DIR})",
            dirs.root.display()
        )));
    }
    let r = find_server(dirs, server)?;
    let id = cairn_local::cloud::container_id(dirs, &r.id);
    let status = std::process::Command::new("runc")
        .args(["exec", &id])
        .args(command)
        .status()
        .map_err(|e| CliError::failure(format!("could not run `runc exec {id}`: {e}")))?;
    match status.code() {
        Some(code) => Ok(Status::Exited(u8::try_from(code).unwrap_or(1))),
        None => {
            use std::os::unix::process::ExitStatusExt;
            let signal = status.signal().unwrap_or(0);
            Ok(Status::Exited(128u8.saturating_add(signal as u8)))
        }
    }
}

#[cfg(test)]
mod tests {
    use cairn_engine::plan::{PropertyDiff, ResourceChange, Summary};
    use serde_json::json;

    use super::*;

    fn change(kind: &str, action: Action, image: serde_json::Value) -> ResourceChange {
        ResourceChange {
            address: format!("{kind}[0]"),
            resource: kind.to_string(),
            kind: kind.to_string(),
            action,
            id: None,
            diff: vec![PropertyDiff {
                path: "image".into(),
                before: None,
                after: Some(image),
                force_new: true,
            }],
            replace_because: vec![],
            replace_requested: false,
            depends_on: vec![],
            data_holding: false,
            create_before_destroy: false,
        }
    }

    #[test]
    fn the_images_to_build_are_those_new_servers_ask_for_by_name_once() {
        let plan = Plan {
            deployment: "d".into(),
            state_serial: 0,
            changes: vec![
                change("server", Action::Create, json!("debian-12")),
                change("server", Action::Replace, json!("debian-12")),
                change("server", Action::Create, json!("host")),
                // Unknown until the image resource is made: the cloud's own.
                change("server", Action::Create, json!("(known after apply)")),
                change("server", Action::Create, serde_json::Value::Null),
                // Not a new server, or not a server.
                change("server", Action::Update, json!("ubuntu-24")),
                change("server", Action::Delete, json!("ubuntu-24")),
                change("image", Action::Create, json!("ubuntu-24")),
            ],
            summary: Summary::default(),
        };
        assert_eq!(images_of(&plan), ["debian-12", "host"]);
    }
}
