//! Where the checkout is, for the scripts and examples a suite runs.

use std::path::PathBuf;

/// The checkout this crate is built from (scripts, examples, peers).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}
