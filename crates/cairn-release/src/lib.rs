//! Releases: applications declared in the template (`apps:`), built once
//! into signed artifacts, rolled out onto their servers in batches behind
//! their load balancer, health-checked, and rolled back automatically.
//!
//! - `app`: what an app declares, typed from the template's evaluated
//!   `apps:` entry.
//! - `rollout`: the rolling release over cairn-orch's transports (any
//!   [`cairn_orch::Remote`]) and a target's [`BackendControl`]: stage and
//!   verify on every host of a batch, drain, switch `current`, restart,
//!   health-check, restore; past `max_fail` every switched host goes back.
//! - `record`: the audit trail of releases, kept by a [`ReleaseStore`]
//!   (the state store implements it).
//!
//! Never: talks to a cloud API itself (the target's provider does), or
//! switches a host before its artifact verified there.
//!
//! [`BackendControl`]: cairn_engine::provider::BackendControl

pub mod app;
pub mod record;
pub mod rollout;

pub use app::{AppError, AppSpec};
pub use record::{ReleaseEvent, ReleaseRecord, ReleaseStore, StoredKey};
