//! cairn's aws target: the portable resource types on the official AWS SDK.
//!
//! Owns the mapping from each portable type to AWS resources, the tags that
//! make every resource findable (`cairn:deployment`, `cairn:resource`,
//! `cairn:token`), and the translation of SDK failures into the engine's
//! error kinds. It must never retry on its own beyond one SDK attempt (the
//! engine's policy runs), never print or store credentials, and never
//! create twice for one idempotency token.

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
