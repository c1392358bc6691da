//! A moto server for one test: started by `moto-up.sh` on a free loopback
//! port, stopped by `moto-down.sh` when the guard drops (even on panic).
//! Each suite that talks to moto (cairn-aws, cairn-release, the CLI's)
//! wraps it with the clients it needs.

use std::path::PathBuf;
use std::process::Command;

use crate::checkout::repo_root;
use crate::port::free_port;

pub struct Moto {
    pub port: u16,
    pub url: String,
}

/// Where the peers' scripts are: `MOTO_PEERS`, else `shared/peers` beside
/// the checkout (as the design says), else the project's copy.
pub fn peers() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_PEERS") {
        return PathBuf::from(p);
    }
    let root = repo_root();
    let shared = root.join("../shared/peers");
    if shared.join("moto-up.sh").is_file() {
        shared
    } else {
        root.join("scripts/peers")
    }
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let out = Command::new(peers().join("moto-up.sh"))
            .arg(port.to_string())
            .output()
            .expect("run moto-up.sh");
        assert!(
            out.status.success(),
            "moto-up.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "moto at {url}");
        Moto { port, url }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new(peers().join("moto-down.sh"))
            .arg(self.port.to_string())
            .output();
    }
}
