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
mod spec;

#[cfg(test)]
mod tests;

pub use binaries::{BIN_ENV, Binaries, find_binaries, find_binaries_for};
pub use cluster::{Cluster, ClusterStatus, InitOutcome, StartOutcome, StopOutcome};
pub use error::PgError;
pub use os::{Account, POSTGRES_USER, RunAs};
pub use spec::{ClusterSpec, SUPERUSER};
