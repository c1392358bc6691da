//! The init's control socket: one JSON line in (a [`Request`]), one JSON
//! line out (a [`Response`]), then the connection closes. The socket is
//! the only way to ask the init for anything; `cairn service` is its
//! client.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Start { name: String },
    Stop { name: String },
    Restart { name: String },
    Reload { name: String },
    Status { name: String },
    Enable { name: String },
    Disable { name: String },
    List,
}

/// A service as the init sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    /// `active`, `inactive`, `failed`, `activating` (waiting to restart)
    /// or `deactivating` (stopping): systemd's words.
    pub state: String,
    pub enabled: bool,
    pub pid: Option<u32>,
    /// When it entered its state (RFC 3339), if it ever ran.
    pub since: Option<String>,
    /// Restarts after it exited on its own, since the init started.
    pub restarts: u32,
    /// How its last main process ended.
    pub last_exit: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub unit: Option<String>,
    pub description: Option<String>,
}

/// Why a request was not done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum ServiceError {
    /// No unit file for the name.
    #[error("{0}")]
    Unknown(String),
    /// The unit file cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// The action failed (the program did not start, ExecReload failed...).
    #[error("{0}")]
    Failed(String),
    /// Not a request the init takes (bad name, shutting down, bad JSON).
    #[error("{0}")]
    Refused(String),
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    Service { service: ServiceStatus },
    Services { services: Vec<ServiceStatus> },
    Error { error: ServiceError },
}

impl From<Result<ServiceStatus, ServiceError>> for Response {
    fn from(r: Result<ServiceStatus, ServiceError>) -> Response {
        match r {
            Ok(service) => Response::Service { service },
            Err(error) => Response::Error { error },
        }
    }
}

/// Where an answer goes once the request is done (now or later).
pub type Reply = oneshot::Sender<Response>;

/// A request and where its answer goes.
pub type Job = (Request, Reply);

/// A request longer than this is refused (a name and an op fit in 200).
const MAX_LINE: u64 = 64 * 1024;

/// A service name as given (`web` or `web.service`), checked: it becomes
/// a file name, so no `/` and no leading dot or dash.
pub fn service_name(raw: &str) -> Result<String, ServiceError> {
    let name = raw.strip_suffix(".service").unwrap_or(raw);
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:@-".contains(c));
    if ok {
        Ok(name.to_string())
    } else {
        Err(ServiceError::Refused(format!(
            "`{raw}` is not a service name (letters, digits, '_', '.', ':', '@', '-')"
        )))
    }
}

/// Binds the socket at `path` (a stale one from an earlier boot is
/// replaced), readable and writable by root only.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves one connection: reads its request, hands it to the init's loop
/// through `jobs`, writes the answer.
pub async fn serve_connection(stream: UnixStream, jobs: mpsc::Sender<Job>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_LINE));
    let response = match reader.read_line(&mut line).await {
        Err(e) => Response::Error {
            error: ServiceError::Refused(format!("reading the request: {e}")),
        },
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Err(e) => Response::Error {
                error: ServiceError::Refused(format!("not a request: {e}")),
            },
            Ok(request) => {
                let (tx, rx) = oneshot::channel();
                if jobs.send((request, tx)).await.is_err() {
                    return;
                }
                match rx.await {
                    Ok(r) => r,
                    Err(_) => Response::Error {
                        error: ServiceError::Refused("the init is shutting down".into()),
                    },
                }
            }
        },
    };
    let mut out = serde_json::to_string(&response).unwrap_or_default();
    out.push('\n');
    let _ = write.write_all(out.as_bytes()).await;
    let _ = write.shutdown().await;
}

/// Why the client got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no cairn init answers at {path} ({source}); `cairn service` runs inside a local \
         server of a `runc` cloud (e.g. `cairn local exec SERVER -- cairn service ...`)"
    )]
    NoInit {
        path: String,
        source: std::io::Error,
    },
    #[error("talking to the cairn init at {path}: {reason}")]
    Protocol { path: String, reason: String },
}

/// Sends one request to the init at `socket` and waits for its answer.
pub async fn request(socket: &Path, request: &Request) -> Result<Response, ClientError> {
    let path = socket.display().to_string();
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::NoInit {
            path: path.clone(),
            source,
        })?;
    let protocol = |reason: String| ClientError::Protocol {
        path: path.clone(),
        reason,
    };
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request).map_err(|e| protocol(e.to_string()))?;
    line.push('\n');
    write
        .write_all(line.as_bytes())
        .await
        .map_err(|e| protocol(e.to_string()))?;
    let mut answer = String::new();
    BufReader::new(read)
        .read_line(&mut answer)
        .await
        .map_err(|e| protocol(e.to_string()))?;
    if answer.is_empty() {
        return Err(protocol(
            "it closed the connection without an answer".into(),
        ));
    }
    serde_json::from_str(&answer).map_err(|e| protocol(format!("{e}: {}", answer.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_the_suffix_dropped() {
        assert_eq!(service_name("web.service").unwrap(), "web");
        assert_eq!(service_name("getty@tty1").unwrap(), "getty@tty1");
        for bad in ["", "../etc/passwd", "a/b", ".hidden", "-x", "a b"] {
            assert!(service_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_wire_format() {
        let r: Request = serde_json::from_str(r#"{"op":"start","name":"web"}"#).unwrap();
        assert_eq!(r, Request::Start { name: "web".into() });
        assert_eq!(
            serde_json::to_string(&Request::List).unwrap(),
            r#"{"op":"list"}"#
        );
        let e = Response::Error {
            error: ServiceError::Unknown("no unit".into()),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"result":"error","error":{"kind":"unknown","message":"no unit"}}"#
        );
    }

    #[tokio::test]
    async fn no_socket_is_a_clear_error() {
        let err = request(Path::new("/nonexistent/cairn/init.sock"), &Request::List)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("no cairn init answers at /nonexistent/cairn/init.sock ("));
        assert!(text.contains("runs inside a local server"), "{text}");
    }
}
