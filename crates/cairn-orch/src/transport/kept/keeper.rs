//! The keeper process's side: hosts' connections by [`Spec`], requests
//! served on a Unix socket, connections closed once idle past the time the
//! last run asked for, and the process ended once it keeps nothing.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, mpsc};

use super::dir::{private_dir, socket_path};
use super::error::{KeeperError, keeper_io};
use super::protocol::{KeptConnection, Reply, Request, ShellInput};
use super::spec::Spec;
use super::wire::{self, MESSAGE, STDERR, STDIN, STDOUT};
use crate::remote::{Exec, Remote};
use crate::transport::shell::{Chunk, Pipe};
use crate::transport::ssh::{Dialer, KeyFiles, SshHost};

/// How a kept connection reaches its host: this machine's network for a
/// `via` of `None`, else from inside that network namespace (the caller
/// knows how); the connect timeout is the host's.
pub type Dialers = Arc<dyn Fn(Option<&Path>, Duration) -> Arc<dyn Dialer> + Send + Sync>;

/// How long a keeper that holds no connection and serves no request waits
/// before it ends, unless told otherwise: long enough for a run that just
/// made sure it runs to send its first request.
pub const EMPTY_FOR: Duration = Duration::from_secs(10);

/// How often idle connections are looked for.
const TICK: Duration = Duration::from_millis(250);

/// The keeper's socket, bound, and the lock that makes it the only keeper
/// of its directory.
pub struct Bound {
    listener: UnixListener,
    socket: PathBuf,
    _lock: File,
}

impl Bound {
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// Binds the socket in `dir` (made private if missing); `None` when
/// another keeper holds the directory already. A socket left by a keeper
/// that was killed is replaced.
pub fn bind(dir: &Path) -> Result<Option<Bound>, KeeperError> {
    private_dir(dir)?;
    let socket = socket_path(dir);
    let lock_path = dir.join("keeper.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| keeper_io(&lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(keeper_io(&lock_path, e)),
    }
    // Whose lock it is, for a person (or a test) who must signal it.
    let pid = format!("{}\n", std::process::id());
    std::io::Write::write_all(&mut &lock, pid.as_bytes())
        .and_then(|()| lock.set_len(pid.len() as u64))
        .map_err(|e| keeper_io(&lock_path, e))?;
    // Held: any socket there is a dead keeper's.
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(keeper_io(&socket, e)),
    }
    let listener = UnixListener::bind(&socket).map_err(|e| keeper_io(&socket, e))?;
    Ok(Some(Bound {
        listener,
        socket,
        _lock: lock,
    }))
}

/// Connections kept for runs (see [`super`]).
pub struct Keeper {
    dialers: Dialers,
    key_files: KeyFiles,
    hosts: StdMutex<HashMap<String, Arc<Kept>>>,
    /// Requests being served.
    busy: AtomicUsize,
    last_activity: StdMutex<Instant>,
    stop: Notify,
    empty_for: Duration,
}

struct Kept {
    host: Arc<SshHost>,
    spec: Arc<Spec>,
    keep_for: StdMutex<Duration>,
    last_used: StdMutex<Instant>,
    in_use: AtomicUsize,
    requests: AtomicU64,
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts a request from its start to its end, however it ends.
struct Busy<'a>(&'a Keeper);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
        *lock(&self.0.last_activity) = Instant::now();
    }
}

/// A connection in use by one request: not idle, not to be closed.
struct InUse(Arc<Kept>);

impl InUse {
    fn new(kept: Arc<Kept>) -> InUse {
        kept.in_use.fetch_add(1, Ordering::AcqRel);
        kept.requests.fetch_add(1, Ordering::Relaxed);
        InUse(kept)
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        *lock(&self.0.last_used) = Instant::now();
        self.0.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Keeper {
    pub fn new(dialers: Dialers) -> Keeper {
        Keeper {
            dialers,
            key_files: KeyFiles::default(),
            hosts: StdMutex::new(HashMap::new()),
            busy: AtomicUsize::new(0),
            last_activity: StdMutex::new(Instant::now()),
            stop: Notify::new(),
            empty_for: EMPTY_FOR,
        }
    }

    /// Ends once it has kept nothing and served nothing this long.
    pub fn ending_after(mut self, empty_for: Duration) -> Keeper {
        self.empty_for = empty_for;
        self
    }

    /// Serves until asked to stop or until it has kept nothing for a
    /// while; then closes every connection and removes the socket.
    pub async fn serve(self: Arc<Keeper>, bound: Bound) {
        let me = nix::unistd::geteuid().as_raw();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                accepted = bound.listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    // The directory is private already; a peer of
                    // another user is refused all the same.
                    if stream.peer_cred().map(|c| c.uid()).ok() != Some(me) {
                        tracing::warn!("a connection from another user refused");
                        continue;
                    }
                    let keeper = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = keeper.handle(stream).await {
                            tracing::debug!(error = %e, "a request ended early");
                        }
                    });
                }
                _ = tick.tick() => {
                    self.close_idle().await;
                    if self.done() {
                        break;
                    }
                }
                _ = self.stop.notified() => break,
            }
        }
        // Gone from the directory first, so that no new run comes while
        // the connections close.
        let _ = std::fs::remove_file(&bound.socket);
        let all: Vec<Arc<Kept>> = lock(&self.hosts).drain().map(|(_, k)| k).collect();
        for k in all {
            k.host.disconnect().await;
        }
    }

    /// Connections idle past their time, closed.
    async fn close_idle(&self) {
        let idle: Vec<Arc<Kept>> = {
            let mut hosts = lock(&self.hosts);
            let gone: Vec<String> = hosts
                .iter()
                .filter(|(_, k)| {
                    k.in_use.load(Ordering::Acquire) == 0
                        && lock(&k.last_used).elapsed() > *lock(&k.keep_for)
                })
                .map(|(key, _)| key.clone())
                .collect();
            gone.iter().filter_map(|key| hosts.remove(key)).collect()
        };
        for k in idle {
            tracing::debug!(host = %k.spec.name, "idle past its time; closing");
            k.host.disconnect().await;
        }
    }

    fn done(&self) -> bool {
        lock(&self.hosts).is_empty()
            && self.busy.load(Ordering::Acquire) == 0
            && lock(&self.last_activity).elapsed() > self.empty_for
    }

    fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::AcqRel);
        *lock(&self.last_activity) = Instant::now();
        Busy(self)
    }

    /// The connection `spec` describes: the one kept, or a new one (which
    /// connects on its first use).
    fn kept(&self, spec: Spec, keep_for_ms: u64) -> InUse {
        let key = spec.key();
        let kept = lock(&self.hosts)
            .entry(key)
            .or_insert_with(|| {
                let host = SshHost::new(
                    spec.target(),
                    spec.options(&self.key_files),
                    (self.dialers)(
                        spec.via.as_deref(),
                        Duration::from_millis(spec.connect_timeout_ms),
                    ),
                );
                Arc::new(Kept {
                    host: Arc::new(host),
                    spec: Arc::new(spec),
                    keep_for: StdMutex::new(Duration::ZERO),
                    last_used: StdMutex::new(Instant::now()),
                    in_use: AtomicUsize::new(0),
                    requests: AtomicU64::new(0),
                })
            })
            .clone();
        // The latest run's wish stands.
        *lock(&kept.keep_for) = Duration::from_millis(keep_for_ms);
        InUse::new(kept)
    }

    fn list(&self) -> Vec<KeptConnection> {
        let mut out: Vec<KeptConnection> = lock(&self.hosts)
            .values()
            .map(|k| KeptConnection {
                name: k.spec.name.clone(),
                address: k.spec.address.clone(),
                port: k.spec.port,
                user: k.spec.user.clone(),
                opened: k.host.connections_opened(),
                connected: k.host.is_connected(),
                requests: k.requests.load(Ordering::Relaxed),
                in_use: k.in_use.load(Ordering::Acquire),
                idle_ms: lock(&k.last_used).elapsed().as_millis() as u64,
                keep_for_ms: lock(&k.keep_for).as_millis() as u64,
            })
            .collect();
        out.sort_by(|a, b| (&a.name, &a.address, a.port).cmp(&(&b.name, &b.address, b.port)));
        out
    }

    async fn handle(self: Arc<Keeper>, stream: UnixStream) -> std::io::Result<()> {
        let _busy = self.busy();
        let (mut r, mut w) = stream.into_split();
        let request = match wire::read(&mut r).await? {
            Some((MESSAGE, body)) => wire::decode::<Request>(&body)?,
            Some(_) => return Err(invalid("a request must come first")),
            None => return Ok(()),
        };
        match request {
            Request::Exec {
                host,
                keep_for_ms,
                script,
                become_user,
                timeout_ms,
            } => {
                let stdin = match wire::read(&mut r).await? {
                    Some((STDIN, b)) => b,
                    _ => return Err(invalid("a command's input must follow it")),
                };
                let kept = self.kept(*host, keep_for_ms);
                let exec = Exec {
                    script,
                    stdin: Some(stdin),
                    become_user,
                    timeout: timeout_ms.map(Duration::from_millis),
                };
                // A run that goes away (killed, interrupted) is not
                // waited for: its command is killed with all it started
                // (the exec, dropped, reaps them) and the connection is
                // free for the next one.
                let mut probe = [0u8; 1];
                let out = tokio::select! {
                    out = kept.0.host.exec(exec) => out,
                    _ = tokio::io::AsyncReadExt::read(&mut r, &mut probe) => return Ok(()),
                };
                match out {
                    Ok(out) => {
                        if !out.stdout.is_empty() {
                            wire::write(&mut w, STDOUT, &out.stdout).await?;
                        }
                        if !out.stderr.is_empty() {
                            wire::write(&mut w, STDERR, &out.stderr).await?;
                        }
                        wire::write_message(&mut w, &Reply::Done { status: out.status }).await
                    }
                    Err(error) => wire::write_message(&mut w, &Reply::Failed { error }).await,
                }
            }
            Request::Shell {
                host,
                keep_for_ms,
                become_user,
            } => {
                let kept = self.kept(*host, keep_for_ms);
                match kept.0.host.pipe(become_user.as_deref()).await {
                    Ok(pipe) => {
                        wire::write_message(&mut w, &Reply::Opened).await?;
                        relay(pipe, r, w).await
                    }
                    Err(error) => wire::write_message(&mut w, &Reply::Failed { error }).await,
                }
            }
            Request::List => {
                let connections = self.list();
                wire::write_message(&mut w, &Reply::Kept { connections }).await
            }
            Request::Stop => {
                wire::write_message(&mut w, &Reply::Stopping).await?;
                self.stop.notify_one();
                Ok(())
            }
        }
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Relays a shell between a run and its host until either ends.
async fn relay(
    mut pipe: Box<dyn Pipe>,
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
) -> std::io::Result<()> {
    // The run's frames are read apart, so that waiting for them never
    // cuts a frame in half when the host speaks first.
    let (tx, mut rx) = mpsc::channel::<Option<(u8, Bytes)>>(4);
    let reader = tokio::spawn(async move {
        loop {
            let frame = wire::read(&mut r).await.ok().flatten();
            let end = frame.is_none();
            if tx.send(frame).await.is_err() || end {
                break;
            }
        }
    });
    let result = loop {
        tokio::select! {
            input = rx.recv() => match input.flatten() {
                Some((STDIN, bytes)) => {
                    if let Err(error) = pipe.write(bytes).await {
                        break wire::write_message(&mut w, &Reply::Failed { error }).await;
                    }
                }
                Some((MESSAGE, body)) => {
                    let kill = match wire::decode::<ShellInput>(&body) {
                        Ok(ShellInput::Close { kill }) => kill,
                        Err(_) => true,
                    };
                    pipe.close(kill).await;
                    break Ok(());
                }
                // Garbled, or the run went away: its shell goes with it.
                _ => {
                    pipe.close(true).await;
                    break Ok(());
                }
            },
            chunk = pipe.read() => {
                let sent = match chunk {
                    Ok(Chunk::Stdout(b)) => wire::write(&mut w, STDOUT, &b).await,
                    Ok(Chunk::Stderr(b)) => wire::write(&mut w, STDERR, &b).await,
                    Ok(Chunk::Closed) => {
                        break wire::write_message(&mut w, &Reply::Closed).await;
                    }
                    Err(error) => {
                        break wire::write_message(&mut w, &Reply::Failed { error }).await;
                    }
                };
                if let Err(e) = sent {
                    pipe.close(true).await;
                    break Err(e);
                }
            }
        }
    };
    reader.abort();
    result
}
