//! `cairn master`: accepts agents over mutual TLS, keeps their keys
//! (salt-key), sends them jobs, and answers the CLI on an admin socket.
//!
//! A connection, in order (nothing is callable before step 3 passes):
//!
//! 1. TLS 1.3 handshake: the agent must show a certificate and sign the
//!    handshake with its key ([`tls`]'s `AnyClientKey`); a client without one
//!    fails here, with a log line.
//! 2. The key's fingerprint is looked up among the accepted keys, before
//!    any frame is read. An accepted key sets the connection's identity.
//! 3. One frame is read, the `Hello`, at most [`MAX_HELLO`] bytes for a key
//!    not accepted. An accepted key's Hello must name its own id; a key not
//!    accepted is recorded pending (or refused, if rejected, revoked, or
//!    another key holds the id), answered `Pending`/`Refused`, and the
//!    connection is closed. Only an accepted key reaches the job loop.
//! 4. The job loop: the master sends `Job`s addressed to this identity and
//!    takes `Heartbeat`s and `Result`s; a result is taken only for a job
//!    sent on this very connection. `cairn keys revoke` closes it at once.
//!
//! The admin socket (`DIR/admin.sock`, 0600 in the 0700 directory, and its
//! peer's uid checked to be the directory owner's) serves `cairn keys`,
//! the jobs of `cairn run --via agent` and `cairn events`.
//!
//! Events ([`super::event`]): the master publishes agents connecting and
//! disconnecting and every job's start and return per host; an accepted
//! agent's `Event` frames, in its job loop only, are checked for size
//! ([`MAX_EVENT`]) and rate (a token bucket per connection), tagged with
//! the connection's identity, and published. Reactors ([`super::reactor`])
//! see every published event and run their jobs through the same dispatch
//! as the CLI's (see [`react`]).
//!
//! [`MAX_HELLO`]: super::protocol::MAX_HELLO
//! [`MAX_EVENT`]: super::event::MAX_EVENT

mod admin;
mod admin_conn;
mod bus;
mod client;
mod config;
mod direct;
mod dispatch;
mod hub;
mod react;

pub use admin::{AdminReply, AdminRequest, admin_socket, keys_offline};
pub use client::{AdminError, Batch, admin_sockets, ask, ask_all, follow};
pub use config::MasterConfig;

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::{Arc, Mutex};

use tokio::net::UnixListener;
use tokio::sync::mpsc;

use super::event::EventLog;
use super::keys::KeyStore;
use super::tls::{self, Identity};

use admin_conn::admin_connection;
use direct::listen;
use hub::{Hub, Registry, Shared};

/// Serves until `shutdown` resolves.
pub async fn serve(cfg: MasterConfig, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    let identity = Identity::load_or_create(&cfg.dir, "master", tls::MASTER_NAME)?;
    std::fs::write(
        cfg.dir.join("master.fingerprint"),
        format!("{}\n", identity.fingerprint),
    )
    .map_err(|e| e.to_string())?;
    if cfg.bus.is_some() {
        super::bus::check_token("the master's name", &cfg.name)?;
    }
    let own = cfg.own_dir();
    tls::private_dir(&own)?;
    let (react_tx, react_rx) = mpsc::channel(1024);
    let registry: Shared = Arc::new(Hub {
        registry: Mutex::new(Registry {
            keys: KeyStore::open(&cfg.dir)?,
            conns: HashMap::new(),
            serial: 0,
        }),
        events: Mutex::new(EventLog::open(&own, cfg.events_keep, cfg.events_max_bytes)?),
        react: cfg.reactors.is_some().then_some(react_tx),
    });
    let sock = admin_socket(&own);
    let _ = std::fs::remove_file(&sock);
    let admin = UnixListener::bind(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    let owner = std::fs::metadata(&cfg.dir)
        .map_err(|e| e.to_string())?
        .uid();
    let cfg = Arc::new(cfg);
    let agents = async {
        match &cfg.bus {
            Some(url) => bus::serve(url, &identity, registry.clone(), cfg.clone(), &sock).await,
            None => listen(&identity, registry.clone(), cfg.clone(), &sock).await,
        }
    };
    let admins = {
        let registry = registry.clone();
        async move {
            loop {
                let Ok((stream, _)) = admin.accept().await else {
                    continue;
                };
                let registry = registry.clone();
                tokio::spawn(async move {
                    if let Err(e) = admin_connection(stream, owner, &registry).await {
                        tracing::warn!("admin connection: {e}");
                    }
                });
            }
        }
    };
    let reactors = async {
        match cfg.reactors.clone() {
            Some(r) => react::run(registry.clone(), r, cfg.jobs.clone(), react_rx).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = agents => r,
        () = admins => Ok(()),
        () = reactors => Ok(()),
        () = shutdown => {
            tracing::warn!("master stopping");
            Ok(())
        }
    };
    let _ = std::fs::remove_file(&sock);
    result
}

#[cfg(test)]
mod tests;
