//! A run's side of the keeper: hosts whose scripts the keeper runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::error::{KeeperError, keeper_io};
use super::protocol::{KeptConnection, Reply, Request, ShellInput};
use super::spec::Spec;
use super::wire::{self, MESSAGE, STDERR, STDIN, STDOUT};
use crate::remote::{Exec, Output, Remote, TransportError};
use crate::transport::shell::{Chunk, Pipe, Shell};

/// A host reached through the keeper listening on `socket`.
pub struct KeptHost {
    socket: PathBuf,
    spec: Arc<Spec>,
    keep_for: Duration,
}

impl std::fmt::Debug for KeptHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptHost")
            .field("socket", &self.socket)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl KeptHost {
    /// `keep_for`: how long the keeper keeps the connection once idle.
    pub fn new(socket: impl Into<PathBuf>, spec: Spec, keep_for: Duration) -> KeptHost {
        KeptHost {
            socket: socket.into(),
            spec: Arc::new(spec),
            keep_for,
        }
    }

    fn lost(&self, e: impl std::fmt::Display) -> TransportError {
        lost(&self.spec.name, &self.socket, e)
    }

    fn keep_for_ms(&self) -> u64 {
        self.keep_for.as_millis().min(u64::MAX as u128) as u64
    }

    async fn ask(
        &self,
        request: &Request,
    ) -> Result<(OwnedReadHalf, OwnedWriteHalf), TransportError> {
        let stream = send(&self.socket, request)
            .await
            .map_err(|e| self.lost(e))?;
        Ok(stream.into_split())
    }
}

#[async_trait]
impl Remote for KeptHost {
    fn name(&self) -> &str {
        &self.spec.name
    }

    async fn exec(&self, exec: Exec) -> Result<Output, TransportError> {
        let request = Request::Exec {
            host: Box::new((*self.spec).clone()),
            keep_for_ms: self.keep_for_ms(),
            script: exec.script,
            become_user: exec.become_user,
            timeout_ms: exec.timeout.map(|t| t.as_millis() as u64),
        };
        let (mut r, mut w) = self.ask(&request).await?;
        let stdin = exec.stdin.unwrap_or_default();
        wire::write(&mut w, STDIN, &stdin)
            .await
            .map_err(|e| self.lost(e))?;
        let mut out = Output::default();
        loop {
            match wire::read(&mut r).await.map_err(|e| self.lost(e))? {
                Some((STDOUT, b)) => out.stdout.extend_from_slice(&b),
                Some((STDERR, b)) => out.stderr.extend_from_slice(&b),
                Some((MESSAGE, b)) => {
                    return match wire::decode::<Reply>(&b).map_err(|e| self.lost(e))? {
                        Reply::Done { status } => {
                            out.status = status;
                            Ok(out)
                        }
                        Reply::Failed { error } => Err(error),
                        other => Err(self.lost(format!("an answer out of turn: {other:?}"))),
                    };
                }
                Some((tag, _)) => return Err(self.lost(format!("a frame of unknown kind {tag}"))),
                None => return Err(self.lost("it ended while the command ran")),
            }
        }
    }

    async fn shell(&self, become_user: Option<String>) -> Result<Option<Shell>, TransportError> {
        let request = Request::Shell {
            host: Box::new((*self.spec).clone()),
            keep_for_ms: self.keep_for_ms(),
            become_user: become_user.clone(),
        };
        let (mut r, w) = self.ask(&request).await?;
        match wire::read(&mut r).await.map_err(|e| self.lost(e))? {
            Some((MESSAGE, b)) => match wire::decode::<Reply>(&b).map_err(|e| self.lost(e))? {
                Reply::Opened => {}
                Reply::Failed { error } => return Err(error),
                other => return Err(self.lost(format!("an answer out of turn: {other:?}"))),
            },
            Some((tag, _)) => return Err(self.lost(format!("a frame of kind {tag} out of turn"))),
            None => return Err(self.lost("it ended before the shell started")),
        }
        let pipe = KeptPipe {
            host: self.spec.name.clone(),
            socket: self.socket.clone(),
            r,
            w,
        };
        Shell::start(
            self.spec.name.clone(),
            Box::new(pipe),
            become_user,
            Duration::from_millis(self.spec.command_timeout_ms),
        )
        .await
    }
}

/// A shell the keeper relays.
struct KeptPipe {
    host: String,
    socket: PathBuf,
    r: OwnedReadHalf,
    w: OwnedWriteHalf,
}

impl KeptPipe {
    fn lost(&self, e: impl std::fmt::Display) -> TransportError {
        lost(&self.host, &self.socket, e)
    }
}

/// The keeper failed `host`'s request (gone, or answering out of turn):
/// the host's connection is as good as lost to this run.
fn lost(host: &str, socket: &Path, e: impl std::fmt::Display) -> TransportError {
    TransportError::Dropped {
        host: host.to_string(),
        reason: format!("the connection keeper ({}): {e}", socket.display()),
    }
}

#[async_trait]
impl Pipe for KeptPipe {
    async fn write(&mut self, bytes: Bytes) -> Result<(), TransportError> {
        wire::write(&mut self.w, STDIN, &bytes)
            .await
            .map_err(|e| self.lost(e))
    }

    async fn read(&mut self) -> Result<Chunk, TransportError> {
        match wire::read(&mut self.r).await.map_err(|e| self.lost(e))? {
            Some((STDOUT, b)) => Ok(Chunk::Stdout(b)),
            Some((STDERR, b)) => Ok(Chunk::Stderr(b)),
            Some((MESSAGE, b)) => match wire::decode::<Reply>(&b).map_err(|e| self.lost(e))? {
                Reply::Closed => Ok(Chunk::Closed),
                Reply::Failed { error } => Err(error),
                other => Err(self.lost(format!("an answer out of turn: {other:?}"))),
            },
            Some((tag, _)) => Err(self.lost(format!("a frame of unknown kind {tag}"))),
            None => Err(self.lost("it ended while the shell ran")),
        }
    }

    async fn close(&mut self, kill: bool) {
        let _ = wire::write_message(&mut self.w, &ShellInput::Close { kill }).await;
    }
}

/// A connection to the keeper on `socket`, `request` sent on it.
async fn send(socket: &Path, request: &Request) -> std::io::Result<UnixStream> {
    let mut stream = UnixStream::connect(socket).await?;
    wire::write_message(&mut stream, request).await?;
    Ok(stream)
}

/// One request that needs no host; `None` when no keeper listens.
async fn ask_keeper(socket: &Path, request: &Request) -> Result<Option<Reply>, KeeperError> {
    let mut stream = match send(socket, request).await {
        Ok(s) => s,
        // No socket, or no one behind it: from the connect (a write
        // fails otherwise).
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(keeper_io(socket, e)),
    };
    match wire::read(&mut stream)
        .await
        .map_err(|e| keeper_io(socket, e))?
    {
        Some((MESSAGE, b)) => Ok(Some(wire::decode(&b).map_err(|e| keeper_io(socket, e))?)),
        _ => Err(keeper_io(
            socket,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "no answer"),
        )),
    }
}

/// The connections the keeper on `socket` holds; `None` when none runs.
pub async fn kept_connections(socket: &Path) -> Result<Option<Vec<KeptConnection>>, KeeperError> {
    match ask_keeper(socket, &Request::List).await? {
        None => Ok(None),
        Some(Reply::Kept { connections }) => Ok(Some(connections)),
        Some(other) => Err(keeper_io(
            socket,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("an answer out of turn: {other:?}"),
            ),
        )),
    }
}

/// Asks the keeper on `socket` to close its connections and end; `false`
/// when none runs.
pub async fn stop_keeper(socket: &Path) -> Result<bool, KeeperError> {
    Ok(ask_keeper(socket, &Request::Stop).await?.is_some())
}
