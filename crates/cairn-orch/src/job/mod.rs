//! Jobs: one `cairn run` or `cairn state apply` over many hosts, with a
//! result per host, kept in the state store ([`JobStore`]) so that
//! `cairn jobs show ID` answers after the fact, as Salt's job cache does.
//!
//! [`execute`] runs a job's per-host work with bounded concurrency and
//! stops starting hosts once `--max-fail` is passed ([`MaxFail`]); the
//! hosts it never started are reported, not dropped.

mod execute;
mod outcome;
mod record;
mod store;

pub use execute::{MaxFail, execute};
pub use outcome::{
    apply_state_file, apply_state_file_with, failed, module_result, state_result, unreachable,
};
pub use record::{HostResult, HostStatus, JobId, JobRecord, JobSummary, Tally, new_id};
pub use store::{JobStore, JobStoreError};
