//! cairn's state store on SQLite ([`SqliteStore`], the default) or
//! PostgreSQL ([`PgStore`], for teams: see [`pg`]).
//!
//! Owns: the state file (deployments and their resources, the serial that
//! moves with them, leases, the journal, the history of runs, generated
//! secrets, outputs), its schema migrations, and the encryption at rest of
//! every secret value. Implements the engine's [`StateStore`] as
//! [`SqliteStore`].
//!
//! Invariants:
//! - every method is one transaction, or a savepoint in one shared with
//!   writes made at the same moment (the apply's journal and resource
//!   writes: one flush for a group, see `group`); writes are
//!   `BEGIN IMMEDIATE`, so a read-then-write (a lease, a run serial) is
//!   atomic across processes;
//! - secrets are sealed (XChaCha20-Poly1305) before SQLite sees them, bound
//!   to their row, so neither the database nor its WAL ever holds one in
//!   clear: a stolen state file reveals none of them.
//!
//! Never: reads environment variables or the clock (the CLI picks the key
//! file and the engine passes `now`), prints.
//!
//! Files import one way, each only from those below it: no file imports one
//! that imports it back, and a child never takes a name from its parent's
//! `mod.rs` or from this file (what siblings share has a file of its own:
//! `pg/connection.rs`, `columns.rs`, `seal.rs`). `scripts/module-graph
//! crates/cairn-state/src` checks it.
//!
//! ```text
//! location   Location, Store → overview, transfer, both stores, key
//!   ▼
//! transfer   → both stores and their table modules (history, jobs,
//! overview     journal, resources, values); overview → both stores
//!   ▼
//! pg         store (PgStore) → history, journal, lease, values →
//!   │          resources → connection → tls, url; group, schema →
//!   │          connection; jobs, releases → store; journal and lease
//!   │          take SQLite's rules
//!   ▼
//! SQLite     store (SqliteStore) → history, journal, lease, values →
//! (top-level   resources → columns → error; group, schema → seal;
//!  files)      jobs, releases → store
//!   ▼
//! seal → key (secrets sealed for both stores)
//! ```
//!
//! [`StateStore`]: cairn_engine::store::StateStore

mod columns;
mod error;
mod group;
mod history;
mod jobs;
mod journal;
mod key;
mod lease;
mod location;
mod overview;
pub mod pg;
mod releases;
mod resources;
mod schema;
mod seal;
mod store;
mod transfer;
mod values;

pub use key::{KEY_LEN, KeySource};
pub use location::{Location, Store};
pub use overview::{DeploymentSummary, LastRun, Overview};
pub use pg::{PG_SCHEMA_VERSION, PgStore, PgUrl};
pub use schema::SCHEMA_VERSION;
pub use store::SqliteStore;
pub use transfer::{DeploymentDump, TableCheck, Transfer, digest, job_tables};
