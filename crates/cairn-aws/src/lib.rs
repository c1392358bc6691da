//! cairn's aws target: the portable resource types on the official AWS SDK.
//!
//! Owns the mapping from each portable type to AWS resources, the tags that
//! make every resource findable (`cairn:deployment`, `cairn:resource`,
//! `cairn:token`), and the translation of SDK failures into the engine's
//! error kinds. It must never retry on its own beyond one SDK attempt (the
//! engine's policy runs), never print or store credentials, and never
//! create twice for one idempotency token.
//!
//! Files import one way, each only from those below it: no file imports one
//! that imports it back, and none takes a name from this `lib.rs`, which
//! only declares and re-exports. `scripts/module-graph crates/cairn-aws/src`
//! checks it. Each resource file adds `impl AwsProvider` blocks; the
//! provider reaches them by method calls, which the script does not see.
//!
//! ```text
//! resources  compute, network, storage, firewall (→ network), lb (→ drain),
//!   │          dns, database, iam, inventory, drain
//!   ▼
//! provider   AwsProvider, Waits (→ shared_reads, shared_writes)
//!   ▼
//! shared     shared_reads, shared_writes (→ batch) · ec2 (tags, filters)
//!   ▼
//! config     AwsSettings, Clients (→ read_retry) · model · error
//! ```

mod batch;
mod compute;
mod config;
mod database;
mod dns;
mod drain;
mod ec2;
mod error;
mod firewall;
mod iam;
mod inventory;
mod lb;
mod model;
mod network;
mod provider;
mod read_retry;
mod shared_reads;
mod shared_writes;
mod storage;

pub use config::{AwsSettings, Clients};
pub use error::AwsError;
pub use provider::{AwsProvider, Waits};
