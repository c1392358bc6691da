//! cairn's state on PostgreSQL: [`PgStore`], the same [`StateStore`] (and
//! cairn-orch's `JobStore`) as [`crate::SqliteStore`], for a team, its CI
//! runners and several machines sharing one state.
//!
//! Layout mirrors the SQLite store, one module per table (`resources`,
//! `lease`, `journal`, `history`, `values`, `jobs`), the schema and its
//! migrations in `schema`, URLs and `~/.pgpass` in `url`. Secrets are sealed
//! by [`crate::seal`] exactly as in SQLite, before PostgreSQL sees them: a
//! database administrator reading every table sees no secret.
//!
//! **Sync store, async engine.** The engine calls the store's sync methods
//! from inside a Tokio runtime, and the sync `postgres` client drives its
//! own small runtime with `block_on`, which panics on a runtime thread (and
//! so would dropping the client there). So the client lives on a thread of
//! its own: each store method sends it a closure over a channel and waits
//! for the answer. The engine's calls block the calling thread just as
//! SQLite's do; the hop costs microseconds against a round trip to the
//! server. The thread owns the connection and closes it when the store is
//! dropped. A connection that broke (the server restarted) is opened again,
//! waiting up to `RECONNECT_DEADLINE` for the server to come back; a call
//! whose BEGIN found it broken is begun again, since none of it ran, but a
//! call that broke after BEGIN fails (a write may have committed): the
//! engine's journal reconciles what it did.
//!
//! **Transactions.** Every method is one transaction, READ COMMITTED. What
//! must not interleave per deployment (a lease's read-then-write, a run's
//! serial) first locks the deployment's row (`SELECT ... FOR UPDATE`): two
//! clients serialize there, and the second then reads what the first
//! committed, so two can never both win a lease.
//!
//! All tables live in the PostgreSQL schema `cairn`, so the state can share
//! a database with other things; many deployments share one database.
//!
//! [`StateStore`]: cairn_engine::store::StateStore

pub(crate) mod connection;
mod group;
pub(crate) mod history;
pub(crate) mod jobs;
pub(crate) mod journal;
mod lease;
mod releases;
pub(crate) mod resources;
mod schema;
mod store;
mod tls;
pub mod url;
pub(crate) mod values;

pub use schema::SCHEMA_VERSION as PG_SCHEMA_VERSION;
pub use store::PgStore;
pub use url::{PgUrl, SslMode, pgpass_lookup};
