//! The agent's own binary, shipped beside `cairn`.

use std::path::{Path, PathBuf};

/// The agent's own binary: a small program that holds only the agent, so
/// an idle agent maps a fraction of the pages of the whole `cairn`
/// (see README, "Agents").
pub const BINARY: &str = "cairn-agent";

/// The agent binary shipped beside `exe` (the `cairn` binary), if there is
/// one: `cairn agent` runs it, and the local cloud starts it. An empty
/// file (a mount point left in a server's root) is none.
pub fn binary_beside(exe: &Path) -> Option<PathBuf> {
    if exe.file_name()? == BINARY {
        return None;
    }
    let p = exe.with_file_name(BINARY);
    std::fs::metadata(&p)
        .is_ok_and(|m| m.is_file() && m.len() > 0)
        .then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_binary_is_found_beside_cairn_only() {
        let dir = tempfile::tempdir().unwrap();
        let cairn = dir.path().join("cairn");
        let agent = dir.path().join(BINARY);
        assert_eq!(binary_beside(&cairn), None);
        // A mount point left empty in a server's root is no binary.
        std::fs::write(&agent, "").unwrap();
        assert_eq!(binary_beside(&cairn), None);
        std::fs::write(&agent, "\x7fELF").unwrap();
        assert_eq!(binary_beside(&cairn), Some(agent.clone()));
        // The agent does not look for itself.
        assert_eq!(binary_beside(&agent), None);
    }
}
