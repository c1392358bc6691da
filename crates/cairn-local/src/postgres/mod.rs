//! The local target's `database` resource with `engine: postgres`: a real
//! PostgreSQL cluster of its own, listening on its own loopback address.
//!
//! [`Cluster`] manages one cluster described by a [`ClusterSpec`]:
//!
//! - [`Cluster::init`] runs `initdb --auth=scram-sha-256` (superuser
//!   `postgres` with a random password kept in the data directory, mode 0600),
//!   writes `cairn.conf` (listen only on the spec's address, its port, the
//!   unix socket in its socket directory) and a loopback-only, password-only
//!   `pg_hba.conf`, then starts the server on its unix socket only (no TCP),
//!   creates the owner role with its password and the database owned by it,
//!   and stops it again. Idempotent: on a cluster made from the same spec it
//!   changes nothing (a new address, port or socket directory is written to
//!   `cairn.conf` and used from the next start).
//! - [`Cluster::start`] runs the `postgres` server itself as a child process
//!   (not `pg_ctl`, which daemonizes it away from its caller), so the daemon
//!   supervises it like a server's init process: [`Cluster::wait_exit`]
//!   resolves when it dies. The child gets its own process group (a Ctrl-C
//!   at the daemon's terminal does not reach it) and outlives a dropped
//!   `Cluster`: a restarted daemon finds it through `postmaster.pid` and
//!   adopts it (`start` then answers `AlreadyRunning`). `start` returns once
//!   the server reports ready and `psql` logs in as the owner over TCP.
//! - [`Cluster::stop`] asks for a fast shutdown (SIGINT: sessions are ended,
//!   a checkpoint written), escalating to SIGQUIT and SIGKILL after timeouts.
//! - [`Cluster::destroy`] stops it and deletes the data directory.
//!
//! When cairn runs as root, PostgreSQL (which refuses root) runs as the
//! `postgres` system user through `setpriv --reuid --regid --init-groups`.
//! `setpriv` `exec`s, so the supervised child is the server itself; `runuser`
//! and `su` stay as a parent (for PAM) and answer SIGTERM by SIGKILLing
//! their child after a grace period, which a database must not get. The data
//! directory (0700) and socket directory (0755) are created by cairn and
//! given to that user; every directory above them that it cannot enter gets
//! `o+x` added (search only, never read or write), e.g. `/root` when cairn's
//! state lives there, and each such change is logged (see
//! [`RunAs::ensure_traversable`]). `psql` itself runs as cairn's user: it
//! only needs the password. When cairn is not root everything runs as
//! cairn's user.
//!
//! Timings measured on this machine (2 shared cores, PostgreSQL 15.18):
//! `initdb` takes 3.1 s with its own per-file fsyncs and 0.45 s with
//! `--no-sync`; cairn runs it with `--no-sync` and then one `sync -f`
//! (syncfs) of the data directory's file system, 0.55 s together and as
//! durable. `init` in all (initdb, socket-only server, role and database,
//! shutdown) 0.7-0.9 s; `start` to ready (bootstrap check plus the owner's
//! login over TCP) 80-90 ms; start after a crash (WAL recovery) 170 ms;
//! `stop` 20 ms; `destroy` of a running cluster 110-140 ms.
//!
//! Never: listens on anything but the spec's loopback address, or trusts a
//! connection without a password.

mod binaries;
mod cluster;
mod config;
mod error;
mod os;

#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;
use std::path::PathBuf;

pub use binaries::{BIN_ENV, Binaries, find_binaries, find_binaries_for};
pub use cluster::{Cluster, ClusterStatus, InitOutcome, StartOutcome, StopOutcome};
pub use error::PgError;
pub use os::{Account, POSTGRES_USER, RunAs};

/// The PostgreSQL superuser every cluster gets (its password is random and
/// stays in the data directory; the owner is an ordinary role unless the
/// spec names `postgres` as the owner, RDS-style).
pub const SUPERUSER: &str = "postgres";

/// What a cluster should be.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// The data directory (`PGDATA`). Created when missing; must be empty or
    /// hold a cluster.
    pub data_dir: PathBuf,
    /// Where the unix socket `.s.PGSQL.<port>` goes; dedicated to the cluster
    /// (or at least writable by the user PostgreSQL runs as).
    pub socket_dir: PathBuf,
    /// The loopback address (127.x.y.z) it listens on, and only on it.
    pub address: Ipv4Addr,
    /// Its TCP port.
    pub port: u16,
    /// The role that owns the database and logs in with `password`.
    pub owner: String,
    /// The owner's password.
    pub password: String,
    /// The database created for the owner.
    pub database: String,
}

impl std::fmt::Debug for ClusterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSpec")
            .field("data_dir", &self.data_dir)
            .field("socket_dir", &self.socket_dir)
            .field("address", &self.address)
            .field("port", &self.port)
            .field("owner", &self.owner)
            .field("password", &"(secret)")
            .field("database", &self.database)
            .finish()
    }
}

/// The longest unix socket path Linux accepts (`sun_path` is 108 bytes with
/// its NUL).
const MAX_SOCKET_PATH: usize = 107;

impl ClusterSpec {
    /// The endpoint clients use, `address:port`.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }

    /// The unix socket's path.
    pub fn socket_path(&self) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// Checks the spec and makes its directories absolute.
    pub fn validated(&self) -> Result<ClusterSpec, PgError> {
        let bad = |m: String| Err(PgError::InvalidSpec(m));
        if !self.address.is_loopback() {
            return bad(format!(
                "address {} is not a loopback address (127.x.y.z): the local target never \
                 listens elsewhere",
                self.address
            ));
        }
        if self.port == 0 {
            return bad("port 0: a database needs a fixed port".into());
        }
        check_name("owner", &self.owner)?;
        check_name("database", &self.database)?;
        if self.owner.starts_with("pg_") {
            return bad(format!(
                "owner {:?}: role names starting with pg_ are reserved by PostgreSQL",
                self.owner
            ));
        }
        if self.password.is_empty() {
            return bad("the owner's password is empty".into());
        }
        if self.password.contains('\0') {
            return bad("the owner's password contains a NUL character".into());
        }
        let absolute = |p: &PathBuf, what: &str| {
            if p.as_os_str().is_empty() {
                return Err(PgError::InvalidSpec(format!("{what} is empty")));
            }
            std::path::absolute(p)
                .map_err(|e| PgError::io(format!("make {what} {} absolute", p.display()), e))
        };
        let data_dir = absolute(&self.data_dir, "data_dir")?;
        let socket_dir = absolute(&self.socket_dir, "socket_dir")?;
        if socket_dir.starts_with(&data_dir) {
            return bad(format!(
                "socket_dir {} is inside data_dir {}: initdb needs an empty data directory",
                socket_dir.display(),
                data_dir.display()
            ));
        }
        let spec = ClusterSpec {
            data_dir,
            socket_dir,
            ..self.clone()
        };
        let socket = spec.socket_path();
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return bad(format!(
                "the unix socket path {} is {} bytes, longer than the {MAX_SOCKET_PATH} Linux \
                 allows: choose a shorter socket_dir",
                socket.display(),
                socket.as_os_str().len()
            ));
        }
        Ok(spec)
    }
}

fn check_name(what: &str, name: &str) -> Result<(), PgError> {
    if name.is_empty() {
        return Err(PgError::InvalidSpec(format!("{what} is empty")));
    }
    if name.len() > 63 {
        return Err(PgError::InvalidSpec(format!(
            "{what} {name:?} is longer than PostgreSQL's 63 bytes"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(PgError::InvalidSpec(format!(
            "{what} {name:?} contains a control character"
        )));
    }
    Ok(())
}
