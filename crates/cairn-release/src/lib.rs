//! Releases: applications declared in the template (`apps:`), built once
//! into signed artifacts, rolled out onto their servers in batches behind
//! their load balancer, health-checked, and rolled back automatically.
//!
//! - `app`: what an app declares, typed from the template's evaluated
//!   `apps:` entry.
//! - `artifact`: an app built once into a versioned tar.zst with a
//!   manifest of sha256 sums, the manifest signed with ed25519, kept in an
//!   artifact store (a directory or an S3 bucket) where a version never
//!   changes, and verified again wherever it is installed (here, and on
//!   each host by a generated POSIX sh script).
//! - `rollout`: the rolling release over cairn-orch's transports (any
//!   [`cairn_orch::Remote`]) and the app's load balancer: stage and verify
//!   on every host of a batch, drain, switch `current`, restart,
//!   health-check, restore; past `max_fail` every switched host goes back.
//! - `heal`: self-healing's incidents (a server failing its health check,
//!   restarted, replaced) and the decision of each pass; `cairn heal`
//!   acts on it with `rollout`'s restart and install.
//! - `record`: the audit trail of releases and the signing keys, kept by a
//!   [`ReleaseStore`] (the state store implements it).
//!
//! Never: talks to a cloud API itself (the target's provider does), decides
//! where the signing key lives (the state seals it), prints, or switches a
//! host before its artifact verified there.
//!
//! Files import one way, each only from those below it: no file imports one
//! that imports it back, and a child never takes a name from its parent's
//! `mod.rs` or from this file (what siblings share has a file of its own;
//! `artifact/store/mod.rs` declares, re-exports, and composes its children
//! in `open_store`). `scripts/module-graph crates/cairn-release/src` checks
//! it.
//!
//! ```text
//! rollout    mod → script → app; mod → record
//! heal       → app, record
//!
//! artifact   store   open_store → dir, s3 → put_check → verify;
//!   │          │     verify_stored → verify, pack; url
//!   │          ▼     dir, s3, put_check, verify_stored → contract
//!   │        build → pack; host_script; verify → pack
//!   │          (contract, build, host_script, verify → manifest, sign)
//!   ▼
//!            manifest → name → error; sign → error
//!
//! app, record, error take nothing from this crate
//! ```

pub mod app;
pub mod artifact;
mod error;
pub mod heal;
pub mod record;
pub mod rollout;

pub use app::{AppError, AppSpec, HealPolicy};
pub use error::{ReleaseError, Result, VerifyError};
pub use heal::{HealOutcome, HealRecord, HealStore};
pub use record::{ReleaseEvent, ReleaseRecord, ReleaseStore, StoredKey};
