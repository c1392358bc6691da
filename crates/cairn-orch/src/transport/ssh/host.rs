//! A host over SSH: its one connection, the channels scripts and shells
//! run on, and how a lost connection is told and made again.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use russh::client;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{Algorithm, PrivateKey, PrivateKeyWithHashAlg};
use russh::{ChannelMsg, Preferred, Sig};
use russh::{ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use super::checker::{Checker, HandlerError};
use super::dial::Dialer;
use super::target::{KeyFile, SshAuth, SshOptions, SshTarget};
use crate::remote::{Exec, Output, Remote, TransportError};
use crate::transport::known_hosts;
use crate::transport::shell::{Chunk, Pipe, Shell};

type Handle = client::Handle<Checker>;

/// A host over SSH: one connection, opened on first use, shared by every
/// exec.
pub struct SshHost {
    target: SshTarget,
    options: SshOptions,
    dialer: Arc<dyn Dialer>,
    state: Mutex<State>,
    channels: Arc<Semaphore>,
    connections: AtomicUsize,
    /// `State::attempts`, readable without the lock.
    attempts: AtomicU64,
    seen_key: Arc<StdMutex<Option<String>>>,
}

#[derive(Default)]
struct State {
    live: Option<Live>,
    /// Bumped by every connection attempt, so that execs that waited on
    /// a failed attempt share its error instead of each trying again (fifty
    /// execs on a host that does not answer would wait fifty timeouts).
    attempts: u64,
    last_error: Option<TransportError>,
}

struct Live {
    handle: Arc<Handle>,
    attempt: u64,
}

impl fmt::Debug for SshHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshHost")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl SshHost {
    pub fn new(target: SshTarget, options: SshOptions, dialer: Arc<dyn Dialer>) -> SshHost {
        SshHost {
            channels: Arc::new(Semaphore::new(options.max_channels.max(1))),
            target,
            options,
            dialer,
            state: Mutex::new(State::default()),
            connections: AtomicUsize::new(0),
            attempts: AtomicU64::new(0),
            seen_key: Arc::new(StdMutex::new(None)),
        }
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// How many connections were established so far (1 while the first
    /// lasts).
    pub fn connections_opened(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// The key the host presented and we accepted (`TYPE BASE64`), once
    /// connected.
    pub fn host_key(&self) -> Option<String> {
        self.seen_key.lock().map(|k| k.clone()).unwrap_or_default()
    }

    /// Whether a connection is open now (`false` while one is being made).
    pub fn is_connected(&self) -> bool {
        self.state
            .try_lock()
            .is_ok_and(|s| s.live.as_ref().is_some_and(|l| !l.handle.is_closed()))
    }

    /// Connects now rather than on the first exec (a no-op when connected).
    pub async fn connect(&self) -> Result<(), TransportError> {
        self.session().await.map(|_| ())
    }

    /// Ends the connection; a later exec opens a new one.
    pub async fn disconnect(&self) {
        let live = self.state.lock().await.live.take();
        if let Some(live) = live {
            let _ = live
                .handle
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        }
    }

    /// The live connection, or a new one. `fresh`: opened by this call.
    async fn session(&self) -> Result<(Arc<Handle>, u64, bool), TransportError> {
        // The attempt count before waiting: if it moved while we waited and
        // that attempt failed, its error is ours too.
        let before = self.attempts.load(Ordering::Acquire);
        let mut state = self.state.lock().await;
        if let Some(live) = &state.live
            && !live.handle.is_closed()
        {
            return Ok((live.handle.clone(), live.attempt, false));
        }
        if state.attempts != before
            && let Some(e) = &state.last_error
        {
            return Err(e.clone());
        }
        state.live = None;
        state.attempts += 1;
        let attempt = state.attempts;
        self.attempts.store(attempt, Ordering::Release);
        match self.open().await {
            Ok(handle) => {
                tracing::debug!(
                    host = %self.target.name,
                    address = %self.target.address,
                    port = self.target.port,
                    user = %self.target.user,
                    "SSH connection open"
                );
                let handle = Arc::new(handle);
                self.connections.fetch_add(1, Ordering::Relaxed);
                state.live = Some(Live {
                    handle: handle.clone(),
                    attempt,
                });
                state.last_error = None;
                Ok((handle, attempt, true))
            }
            Err(e) => {
                state.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Forgets the connection of `attempt` (lost), unless a newer one
    /// replaced it already.
    async fn forget(&self, attempt: u64) {
        let mut state = self.state.lock().await;
        if state.live.as_ref().is_some_and(|l| l.attempt == attempt) {
            state.live = None;
        }
    }

    fn err_unreachable(&self, reason: String) -> TransportError {
        TransportError::Unreachable {
            host: self.target.name.clone(),
            reason,
        }
    }

    fn err_dropped(&self, reason: String) -> TransportError {
        TransportError::Dropped {
            host: self.target.name.clone(),
            reason,
        }
    }

    fn err_other(&self, reason: String) -> TransportError {
        TransportError::Other {
            host: self.target.name.clone(),
            reason,
        }
    }

    fn config(&self) -> client::Config {
        let t = &self.target;
        // Ask first for the key types we can check, so that a host with an
        // RSA and an ed25519 key shows the one known_hosts or the record has.
        let mut wanted: Vec<Algorithm> = t.known_hosts.algorithms(&t.address, t.port);
        if let Some(k) = t
            .host_key
            .as_deref()
            .and_then(known_hosts::parse_public_key)
        {
            wanted.insert(0, k.algorithm());
        }
        let mut preferred = Preferred::default();
        if !wanted.is_empty() {
            let all = preferred.key.to_vec();
            let (mut first, rest): (Vec<Algorithm>, Vec<Algorithm>) =
                all.into_iter().partition(|a| {
                    wanted
                        .iter()
                        .any(|w| w == a || (w.clone().is_rsa() && a.clone().is_rsa()))
                });
            first.extend(rest);
            preferred.key = first.into();
        }
        client::Config {
            preferred,
            keepalive_interval: self.options.keepalive_interval,
            keepalive_max: self.options.keepalive_max,
            nodelay: true,
            ..client::Config::default()
        }
    }

    async fn open(&self) -> Result<Handle, TransportError> {
        let t = &self.target;
        tracing::trace!(host = %t.name, "connecting");
        let limit = self.options.connect_timeout;
        let stream = match tokio::time::timeout(limit, self.dialer.dial(&t.address, t.port)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(self.err_unreachable(format!("{}:{}: {e}", t.address, t.port)));
            }
            Err(_) => {
                return Err(self.err_unreachable(format!(
                    "{}:{}: no answer to connect within {}s",
                    t.address,
                    t.port,
                    limit.as_secs_f64()
                )));
            }
        };
        let checker = Checker {
            name: t.name.clone(),
            address: t.address.clone(),
            port: t.port,
            known: t.known_hosts.clone(),
            recorded: t.host_key.clone(),
            policy: t.host_key_policy,
            seen: self.seen_key.clone(),
        };
        // Each phase's end, for finding where a run's time goes
        // (CAIRN_LOG=cairn_orch::transport::ssh=trace).
        tracing::trace!(host = %t.name, "TCP connected");
        let handshake = async {
            let mut handle = client::connect_stream(Arc::new(self.config()), stream, checker)
                .await
                .map_err(|e| match e {
                    HandlerError::HostKey(e) => e,
                    HandlerError::Ssh(e) => self.err_unreachable(format!("SSH handshake: {e}")),
                })?;
            tracing::trace!(host = %t.name, "SSH handshake done");
            self.authenticate(&mut handle).await?;
            tracing::trace!(host = %t.name, "authenticated");
            Ok::<_, TransportError>(handle)
        };
        match tokio::time::timeout(limit, handshake).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout {
                host: t.name.clone(),
                after: limit,
            }),
        }
    }

    async fn authenticate(&self, handle: &mut Handle) -> Result<(), TransportError> {
        let t = &self.target;
        let mut tried: Vec<String> = Vec::new();
        let lost = |e: russh::Error| self.err_dropped(format!("during authentication: {e}"));
        for auth in &t.auth {
            match auth {
                SshAuth::Key { pem, label } => match russh::keys::decode_secret_key(pem, None) {
                    Ok(key) => {
                        if self.try_key(handle, Arc::new(key)).await.map_err(lost)? {
                            return Ok(());
                        }
                        tried.push(format!("{label} (refused)"));
                    }
                    Err(e) => tried.push(format!("{label} (unusable: {e})")),
                },
                SshAuth::KeyFile(path) => {
                    let shown = path.display();
                    let passphrase = self.options.key_passphrase.as_ref();
                    match self.options.key_files.load(path, passphrase).await {
                        KeyFile::Key(key) => {
                            if self.try_key(handle, key).await.map_err(lost)? {
                                return Ok(());
                            }
                            tried.push(format!("key file {shown} (refused)"));
                        }
                        KeyFile::Encrypted => tried.push(format!(
                            "key file {shown} (encrypted, and no passphrase was given: set \
                             CAIRN_SSH_KEY_PASSPHRASE, or load it into ssh-agent with `ssh-add {shown}`)"
                        )),
                        KeyFile::NotDecrypted(e) => tried.push(format!(
                            "key file {shown} (not decrypted with the passphrase given: {e})"
                        )),
                        KeyFile::Unusable(e) => {
                            tried.push(format!("key file {shown} (unusable: {e})"))
                        }
                    }
                }
                SshAuth::Agent(socket) => {
                    let shown = socket.display();
                    match self.try_agent(handle, socket).await {
                        Ok(true) => return Ok(()),
                        Ok(false) => tried.push(format!("ssh-agent {shown} (its keys refused)")),
                        Err(reason) => tried.push(format!("ssh-agent {shown} ({reason})")),
                    }
                }
            }
            if handle.is_closed() {
                return Err(self.err_dropped("during authentication".into()));
            }
        }
        Err(TransportError::Auth {
            host: t.name.clone(),
            user: t.user.clone(),
            reason: if tried.is_empty() {
                "no credentials given (a key, a key file or an ssh-agent)".into()
            } else {
                format!("tried {}", tried.join(", "))
            },
        })
    }

    async fn try_key(
        &self,
        handle: &mut Handle,
        key: Arc<PrivateKey>,
    ) -> Result<bool, russh::Error> {
        let hash = if key.algorithm().is_rsa() {
            handle.best_supported_rsa_hash().await?.flatten()
        } else {
            None
        };
        let key = PrivateKeyWithHashAlg::new(key, hash);
        Ok(handle
            .authenticate_publickey(self.target.user.clone(), key)
            .await?
            .success())
    }

    /// `Ok(false)`: the agent's keys were all refused; `Err`: the agent
    /// itself failed (why, for the message).
    async fn try_agent(&self, handle: &mut Handle, socket: &Path) -> Result<bool, String> {
        let mut agent = AgentClient::connect_uds(socket)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let identities = agent
            .request_identities()
            .await
            .map_err(|e| format!("cannot list keys: {e}"))?;
        if identities.is_empty() {
            return Err("holds no keys".into());
        }
        for id in identities {
            // Plain keys only: host certificates are not taken, and user
            // certificates are not offered yet.
            let AgentIdentity::PublicKey { key, .. } = id else {
                continue;
            };
            let hash = if key.algorithm().is_rsa() {
                handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| e.to_string())?
                    .flatten()
            } else {
                None
            };
            match handle
                .authenticate_publickey_with(self.target.user.clone(), key, hash, &mut agent)
                .await
            {
                Ok(r) if r.success() => return Ok(true),
                Ok(_) => {}
                Err(e) => return Err(format!("signing failed: {e}")),
            }
        }
        Ok(false)
    }

    async fn run(
        &self,
        channel: russh::Channel<client::Msg>,
        handle: Arc<Handle>,
        mut exec: Exec,
        after: Duration,
    ) -> Result<Output, TransportError> {
        let (mut rx, tx) = channel.split();
        // Handed over whole, so that russh cuts it into packets as large as
        // the window and the host allow: written through `AsyncWrite` it
        // would go in `tokio::io::copy`'s 8 KiB pieces, four times the
        // packets (and the time) for an artifact of 50 MB.
        let input = exec.stdin.take().unwrap_or_default();
        let mark = crate::remote::run_mark();
        let mut abandoned = ReapOnDrop {
            armed: Some((handle, Exec::reaper(&mark, exec.become_user.clone()))),
        };
        let work = async {
            tx.exec(true, exec.marked_command_line(&mark))
                .await
                .map_err(|e| self.err_dropped(format!("starting the command: {e}")))?;
            // Fed beside the reading: a script that writes much before it
            // reads its stdin would otherwise stall with us.
            let feed = async {
                // A script that exits without reading its stdin: not our
                // error, its output and status tell.
                if !input.is_empty() {
                    let _ = tx.data_bytes(input).await;
                }
                let _ = tx.eof().await;
                std::future::pending::<std::convert::Infallible>().await
            };
            let read = async {
                let mut out = Output::default();
                let mut ended = false;
                while let Some(msg) = rx.wait().await {
                    match msg {
                        ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                        ChannelMsg::ExtendedData { data, ext: 1 } => {
                            out.stderr.extend_from_slice(&data)
                        }
                        ChannelMsg::ExitStatus { exit_status } => {
                            out.status = Some(exit_status as i32);
                            ended = true;
                        }
                        ChannelMsg::ExitSignal { .. } => {
                            out.status = None;
                            ended = true;
                        }
                        ChannelMsg::Failure => {
                            return Err(self.err_other("the host refused to run a command".into()));
                        }
                        ChannelMsg::Close => {
                            return if ended {
                                Ok(out)
                            } else {
                                Err(self.err_other(
                                    "the command's channel closed without an exit status".into(),
                                ))
                            };
                        }
                        _ => {}
                    }
                }
                // The channel went away without a close: the connection did.
                Err(self.err_dropped("the connection ended while the command ran".into()))
            };
            tokio::select! {
                out = read => out,
                never = feed => match never {},
            }
        };
        let ended = tokio::time::timeout(after, work).await;
        // Waited for to its end or its time: not abandoned.
        let reaper = abandoned.armed.take();
        match ended {
            Ok(r) => r,
            Err(_) => {
                // The channel goes, the connection stays for the next exec.
                // The signal ends the script where sshd passes it on (OpenSSH
                // since 7.9, to the session's first process); without it the
                // script ends when it next writes to the closed channel.
                let _ = tx.signal(Sig::KILL).await;
                let _ = tx.close().await;
                // What the script started (a `sleep` under its `sh`, a
                // server it ran in the background) would outlive the
                // signal: found by its mark and killed, on the same
                // connection, before the timeout is reported.
                if let Some((handle, reap)) = reaper
                    && reap_on(&handle, &reap).await.is_none()
                {
                    tracing::warn!(host = %self.target.name, "the timed-out command's processes may still run");
                }
                Err(TransportError::CommandTimeout {
                    host: self.target.name.clone(),
                    after,
                })
            }
        }
    }
}

#[async_trait]
impl Remote for SshHost {
    fn name(&self) -> &str {
        &self.target.name
    }

    async fn exec(&self, exec: Exec) -> Result<Output, TransportError> {
        let after = exec.timeout.unwrap_or(self.options.command_timeout);
        let (channel, _permit, handle) = self.channel().await?;
        tracing::trace!(host = %self.target.name, "channel open");
        let out = self.run(channel, handle, exec, after).await;
        tracing::trace!(host = %self.target.name, "exec done");
        out
    }

    async fn shell(&self, become_user: Option<String>) -> Result<Option<Shell>, TransportError> {
        let pipe = self.pipe(become_user.as_deref()).await?;
        Shell::start(
            self.target.name.clone(),
            pipe,
            become_user,
            self.options.command_timeout,
        )
        .await
    }
}

impl SshHost {
    /// An exec of [`Shell::command_line`], its stdin open: what a
    /// [`Shell`] runs over (here, or in a process that relays it).
    pub async fn pipe(&self, become_user: Option<&str>) -> Result<Box<dyn Pipe>, TransportError> {
        let (channel, permit, _) = self.channel().await?;
        let (rx, tx) = channel.split();
        tx.exec(true, Shell::command_line(become_user))
            .await
            .map_err(|e| self.err_dropped(format!("starting a shell: {e}")))?;
        Ok(Box::new(SshPipe {
            host: self.target.name.clone(),
            rx,
            tx,
            _permit: permit,
        }))
    }

    /// A session channel on the host's connection (made or made again if
    /// lost), and the permit that counts it against `max_channels`.
    async fn channel(&self) -> Result<Opened, TransportError> {
        // Never closed, so acquiring cannot fail; held until the channel's
        // work ends.
        let permit = self
            .channels
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| self.err_other(e.to_string()))?;
        let (handle, attempt, fresh) = self.session().await?;
        let channel = match handle.channel_open_session().await {
            Ok(c) => c,
            Err(e) if !fresh && (handle.is_closed() || is_lost(&e)) => {
                // Lost since its last use (the host rebooted, a NAT
                // forgot us): one new connection, not a retry loop.
                tracing::debug!(host = %self.target.name, error = %e, "connection lost; reconnecting");
                drop(handle);
                self.forget(attempt).await;
                let (handle, _, _) = self.session().await?;
                let channel = handle
                    .channel_open_session()
                    .await
                    .map_err(|e| self.err_dropped(format!("opening a channel: {e}")))?;
                return Ok((channel, permit, handle));
            }
            Err(e) if handle.is_closed() || is_lost(&e) => {
                return Err(self.err_dropped(format!("opening a channel: {e}")));
            }
            Err(e) => return Err(self.err_other(format!("opening a channel: {e}"))),
        };
        Ok((channel, permit, handle))
    }
}

/// A session channel, the permit that counts it, and the connection it
/// is on.
type Opened = (
    russh::Channel<client::Msg>,
    OwnedSemaphorePermit,
    Arc<Handle>,
);

/// A command whose caller stopped waiting before it ended (a run that went
/// away while the keeper ran its command) is killed with all it started,
/// as one past its timeout is: russh drops the channel without a word, and
/// the command would run on.
struct ReapOnDrop {
    armed: Option<(Arc<Handle>, Exec)>,
}

impl Drop for ReapOnDrop {
    fn drop(&mut self) {
        let Some((handle, reap)) = self.armed.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move { reap_on(&handle, &reap).await });
    }
}

/// How long killing a command's processes may take.
const REAP_LIMIT: Duration = Duration::from_secs(30);

/// Runs `reap` ([`Exec::reaper`]) on the connection to its end; `None`
/// when it could not (the connection lost, or past [`REAP_LIMIT`]).
async fn reap_on(handle: &Handle, reap: &Exec) -> Option<()> {
    let work = async {
        let mut channel = handle.channel_open_session().await.ok()?;
        channel.exec(true, reap.command_line()).await.ok()?;
        while let Some(msg) = channel.wait().await {
            if matches!(msg, ChannelMsg::Close) {
                return Some(());
            }
        }
        None
    };
    tokio::time::timeout(REAP_LIMIT, work).await.ok().flatten()
}

/// A shell's channel.
struct SshPipe {
    host: String,
    rx: ChannelReadHalf,
    tx: ChannelWriteHalf<client::Msg>,
    _permit: OwnedSemaphorePermit,
}

#[async_trait]
impl Pipe for SshPipe {
    async fn write(&mut self, bytes: Bytes) -> Result<(), TransportError> {
        self.tx
            .data_bytes(bytes)
            .await
            .map_err(|e| TransportError::Dropped {
                host: self.host.clone(),
                reason: format!("writing to the shell: {e}"),
            })
    }

    async fn read(&mut self) -> Result<Chunk, TransportError> {
        loop {
            match self.rx.wait().await {
                Some(ChannelMsg::Data { data }) => return Ok(Chunk::Stdout(data)),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    return Ok(Chunk::Stderr(data));
                }
                Some(ChannelMsg::Failure) => {
                    return Err(TransportError::Other {
                        host: self.host.clone(),
                        reason: "the host refused to start a shell".into(),
                    });
                }
                Some(ChannelMsg::Close) | None => return Ok(Chunk::Closed),
                Some(_) => {}
            }
        }
    }

    async fn close(&mut self, kill: bool) {
        if kill {
            let _ = self.tx.signal(Sig::KILL).await;
        } else {
            let _ = self.tx.eof().await;
        }
        let _ = self.tx.close().await;
    }
}

fn is_lost(e: &russh::Error) -> bool {
    matches!(
        e,
        russh::Error::SendError
            | russh::Error::Disconnect
            | russh::Error::HUP
            | russh::Error::IO(_)
            | russh::Error::KeepaliveTimeout
            | russh::Error::InactivityTimeout
    )
}
