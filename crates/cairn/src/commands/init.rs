//! `cairn init`, a local server's PID 1, and `cairn service`, its client
//! inside the server (the library: `cairn_local::init`).

use cairn_local::init::control::{self, Request, Response, ServiceError};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::{GlobalArgs, ServiceAction, ServiceArgs};
use crate::report::{CliError, Status};

/// `status` of a service that is not active, as `systemctl is-active`.
const NOT_ACTIVE: u8 = 3;
/// No such service, as `systemctl status`.
const NO_SUCH_SERVICE: u8 = 4;

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failure(e.into()))
}

/// Runs the init until TERM or INT, then stops everything and exits 0.
pub fn init() -> Result<Status, CliError> {
    let config = cairn_local::init::Config::server();
    if !config.pid1 {
        return Err(CliError::Usage(
            "`cairn init` is the PID 1 of a local server (runc starts it); inside a server, \
             `cairn service` talks to it"
                .into(),
        ));
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    runtime()?.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let shutdown = CancellationToken::new();
        let mut term = signal(SignalKind::terminate()).map_err(anyhow::Error::from)?;
        let mut int = signal(SignalKind::interrupt()).map_err(anyhow::Error::from)?;
        let token = shutdown.clone();
        let watcher = tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            println!("cairn init: stopping");
            token.cancel();
        });
        println!("cairn init: {} up", hostname.trim());
        let result = cairn_local::init::run(config, shutdown).await;
        watcher.abort();
        result.map_err(|e| CliError::Failure(anyhow::anyhow!("cairn init: {e}")))?;
        println!("cairn init: stopped");
        Ok(Status::Success)
    })
}

/// One request to the init of the server this runs in.
pub fn service(args: &ServiceArgs, global: &GlobalArgs) -> Result<Status, CliError> {
    let name = args.name.clone();
    let request = match args.action {
        None if name == "list" => Request::List,
        None => {
            return Err(CliError::Usage(format!(
                "give an action: `cairn service {name} \
                 start|stop|restart|reload|status|enable|disable|is-enabled`"
            )));
        }
        Some(ServiceAction::Start) => Request::Start { name },
        Some(ServiceAction::Stop) => Request::Stop { name },
        Some(ServiceAction::Restart) => Request::Restart { name },
        Some(ServiceAction::Reload) => Request::Reload { name },
        Some(ServiceAction::Status | ServiceAction::IsEnabled) => Request::Status { name },
        Some(ServiceAction::Enable) => Request::Enable { name },
        Some(ServiceAction::Disable) => Request::Disable { name },
    };
    let response = runtime()?
        .block_on(control::request(&args.socket, &request))
        .map_err(CliError::failure)?;
    match response {
        Response::Services { services } => {
            crate::output::emit(json!(services), global)?;
            Ok(Status::Success)
        }
        Response::Service { service } => match args.action {
            Some(ServiceAction::IsEnabled) => {
                let word = if service.enabled {
                    "enabled"
                } else {
                    "disabled"
                };
                crate::output::emit(json!(word), global)?;
                Ok(if service.enabled {
                    Status::Success
                } else {
                    Status::Failure
                })
            }
            Some(ServiceAction::Status) => {
                let active = service.state == "active";
                crate::output::emit(json!(service), global)?;
                Ok(if active {
                    Status::Success
                } else {
                    Status::Exited(NOT_ACTIVE)
                })
            }
            _ => {
                crate::output::emit(json!(service), global)?;
                Ok(Status::Success)
            }
        },
        Response::Error {
            error: ServiceError::Unknown(message),
        } if matches!(
            args.action,
            Some(ServiceAction::Status | ServiceAction::IsEnabled)
        ) =>
        {
            eprintln!("error: {message}");
            Ok(Status::Exited(NO_SUCH_SERVICE))
        }
        Response::Error { error } => Err(CliError::failure(error)),
    }
}
