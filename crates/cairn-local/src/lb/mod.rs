//! The local target's load balancer: an HTTP/1.1 reverse proxy or a TCP
//! splice in front of a set of backends, with smooth weighted round robin
//! (or round robin, or least connections), active health checks and
//! connection draining. The daemon runs one per `load_balancer` resource, on
//! that resource's own address: loopback in a `process` cloud, the machine's
//! end of the cloud's link in a `runc` one (see `cloud::isolation`).
//!
//! - **Health.** With checks on (a non-zero `health.interval`), one task per
//!   backend probes it every interval (HTTP `GET path` answered 2xx/3xx, or a
//!   TCP connect) within `timeout`. `unhealthy` failures in a row take it out,
//!   `healthy` passes in a row put it back. A backend starts out (also one an
//!   `update` adds) and is put in by its first passing check, so traffic
//!   never reaches something that is not up yet. A refused or timed-out
//!   connection from the proxy counts as a failed check too, so a dead
//!   backend leaves sooner under traffic. With checks off every backend is in.
//! - **Draining.** `update` applies at once: a backend it removes is picked
//!   no more; what is in flight to it (HTTP requests with their response
//!   bodies, TCP connections) runs on for up to `drain_timeout`, then its
//!   connections are cut. A backend that stays keeps its health and
//!   connections, so an update never fails a request in flight.
//! - **Drain on request.** `drain_backend` takes a backend that stays
//!   configured out of rotation (a release restarting its app): picked no
//!   more, its kept connections closed, what is in flight runs on and the
//!   call returns once that reaches 0 or its timeout passes (nothing is cut:
//!   the caller decides). `restore_backend` puts it back through a health
//!   check probed at once. The mark lives in this balancer's memory only:
//!   a balancer rebuilt (the daemon restarted) starts with none drained, so
//!   a release restores every backend it drained. `update` keeps the mark
//!   of a backend it keeps. See `admin`.
//! - **Retries.** A request whose connection attempt fails was never sent,
//!   and goes to another healthy backend. One that fails after it was sent
//!   is retried once on another backend when it had no body or is a small
//!   `GET`/`HEAD`/`OPTIONS` (buffered to replay), and answers 502 otherwise.
//!   No healthy backend at all: 503.
//! - **Access.** `set_access` limits which sources may connect (the
//!   resource's firewalls); a refused client is reset before any backend is
//!   picked. See `access`.
//! - **Threads.** Traffic runs on one worker thread per core, each owning
//!   the connections it serves and its own connections to backends (see
//!   `worker`); a kept-alive connection moves between requests to a
//!   worker holding fewer (see `spread`). Health checks and drains run on
//!   the caller's runtime.
//! - **Shutdown.** Cancel the token given to `serve`: it stops accepting,
//!   lets open requests finish (idle keep-alive connections close) up to
//!   `drain_timeout`, cuts the rest and returns. Every task (connections,
//!   health checks, drains, backend connections) lives in a `JoinSet` that
//!   `serve` or a worker owns and empties, and `serve` returns once every
//!   worker's thread is done with its sockets.
//!
//! Never: decides where it listens (the caller binds the listener), or
//! spawns a task it does not join.
//!
//! Files, lowest first: each uses only those before it. `config`,
//! `access`, `pick`, `http1` (the wire) · `upstream` (a backend and its
//! kept connections) · `shared` (what the tasks share with the handle),
//! `spread` (each worker's open connections) ·
//! `health`, `tcp`, `proxy` · `worker` · `balancer` (the handle,
//! `LoadBalancer`) · `admin` (drain and restore on request), `bench`.

mod access;
mod admin;
mod balancer;
mod bench;
mod config;
mod health;
mod http1;
mod pick;
mod proxy;
mod shared;
mod spread;
mod tcp;
mod upstream;
mod worker;

#[cfg(test)]
mod tests;

pub use access::Access;
pub use admin::UnknownBackend;
pub use balancer::{BackendStatus, LoadBalancer};
pub use bench::{BenchReport, bench_requests};
pub use config::{Algorithm, Backend, ConfigError, HealthCheck, LbConfig, Protocol};
