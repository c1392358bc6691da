//! Resource type schemas: property names and types, required, defaults,
//! force-new, computed attributes, and whether a type holds data. Portable
//! types (every target implements them) live in [`portable`]; types of one
//! target (`aws.iam_role`) in a module named after it ([`aws`]). A template
//! that uses a target-specific type deploys only to that target.

mod aws;
pub mod balancer;
mod catalog;
pub mod credentials;
pub mod database;
mod definition;
pub mod dns;
pub mod firewall;
mod kind;
pub mod limits;
pub mod network;
mod parse;
mod portable;
pub mod server;
pub mod storage;
pub mod typed;

pub use aws::AWS;
pub use catalog::{lookup, portable, portable_kinds, target_kinds, target_of};
pub use definition::{Attr, Prop, PropType, ResourceSchema};
pub use kind::{Kind, UnknownKind};
pub use parse::{parse_document, parse_duration_ms};
pub use portable::PORTABLE;
