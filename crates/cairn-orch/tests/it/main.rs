//! cairn-orch's integration tests: one binary, a module per area.

mod inventory;
mod kept;
mod ssh;
mod test_hosts;

use std::path::PathBuf;

/// A fixture under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A fresh directory for one test, removed first if a run left it.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cairn-orch-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `cat` through `shell` gives back 3 MB of binary input (more than an SSH
/// channel's window) byte for byte.
pub async fn assert_cat_relays_3_mb(shell: &mut cairn_orch::transport::Shell) {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let out = shell
        .run(cairn_orch::Exec::new("cat").stdin(big.clone()))
        .await
        .unwrap();
    assert!(
        out.success() && out.stdout == big,
        "{} bytes",
        out.stdout.len()
    );
}
