//! Real OpenSSH servers for a test, through `scripts/test-hosts`: started
//! on the test's own loopback range in its own directory, stopped when the
//! fixture is dropped (a failing test included). The script writes what
//! a client needs into the fixture's directory: `inventory.ini` (Ansible
//! INI, hosts `h1`..`hN`), `known_hosts` and the client key `id_ed25519`.

use std::path::PathBuf;
use std::process::Command;

use crate::checkout::repo_root;

pub struct TestHosts {
    pub dir: PathBuf,
    base: String,
    port: u16,
    /// Held while the servers run: another run of the same test on this
    /// machine (a second suite beside CI) waits for it instead of tearing
    /// down servers that are in use. The kernel drops it when the process
    /// dies, so a killed run holds nothing.
    _lock: std::fs::File,
}

fn script() -> PathBuf {
    repo_root().join("scripts/test-hosts")
}

fn run(args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .output()
        .expect("scripts/test-hosts runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "scripts/test-hosts {args:?} failed:\n{text}"
    );
    text
}

impl TestHosts {
    /// `n` servers from `base` (a range no other test uses), in a scratch
    /// directory named `name`.
    pub fn up(name: &str, n: usize, base: &str) -> TestHosts {
        TestHosts::up_on_port(name, n, base, 22)
    }

    pub fn up_on_port(name: &str, n: usize, base: &str, port: u16) -> TestHosts {
        // Named by the test, not the run: servers a killed earlier run left
        // on this range are stopped by their pid files first.
        let dir = std::env::temp_dir().join(format!("cairn-orch-test-hosts-{name}"));
        let lock = lock_range(&dir);
        let d = dir.to_str().unwrap();
        if dir.exists() {
            run(&["down", "--dir", d]);
            std::fs::remove_dir_all(&dir).unwrap();
        }
        // Made before the servers start, so that they stop if a step below
        // panics.
        let hosts = TestHosts {
            dir: dir.clone(),
            base: base.to_string(),
            port,
            _lock: lock,
        };
        let port = port.to_string();
        run(&[
            "up",
            &n.to_string(),
            "--dir",
            d,
            "--base",
            base,
            "--port",
            &port,
        ]);
        hosts
    }

    /// The hosts in Ansible's INI format, with their connection variables.
    pub fn inventory_file(&self) -> PathBuf {
        self.dir.join("inventory.ini")
    }

    /// Every server's host key at its address.
    pub fn known_hosts_file(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    /// `hI`'s host public key line (`TYPE BASE64 COMMENT`).
    pub fn host_key(&self, name: &str) -> String {
        std::fs::read_to_string(
            self.dir
                .join("hosts")
                .join(name)
                .join("ssh_host_ed25519_key.pub"),
        )
        .unwrap()
        .trim()
        .to_string()
    }

    /// The host dies at once, with its sessions (SIGKILL).
    pub fn kill(&self, name: &str) {
        run(&["kill", name, "--dir", self.dir.to_str().unwrap()]);
    }

    /// Starts again what is not running.
    pub fn restart(&self, n: usize) {
        run(&[
            "up",
            &n.to_string(),
            "--dir",
            self.dir.to_str().unwrap(),
            "--base",
            &self.base,
            "--port",
            &self.port.to_string(),
        ]);
    }

    pub fn sshd_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("hosts").join(name).join("sshd.log"))
            .unwrap_or_default()
    }

    /// A key pair no server accepts.
    pub fn stranger_key(&self) -> PathBuf {
        let path = self.dir.join("stranger");
        if !path.exists() {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&path)
                .status()
                .unwrap();
            assert!(st.success());
        }
        path
    }
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["down", "--dir"])
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits for, then takes, the lock beside `dir` (not inside it: the
/// directory is removed and made again under the lock).
fn lock_range(dir: &std::path::Path) -> std::fs::File {
    let path = dir.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
    file
}

/// Established TCP connections from here to `address:22`.
/// Whether a process whose command line matches `pattern` runs on this
/// machine (where the test hosts run theirs): `pgrep -f`.
pub fn running(pattern: &str) -> bool {
    Command::new("pgrep")
        .args(["-f", pattern])
        .status()
        .expect("pgrep runs")
        .success()
}

pub fn connections_to(address: &str) -> usize {
    let out = Command::new("ss")
        .args(["-tnH", "state", "established", "dst"])
        .arg(format!("{address}:22"))
        .output()
        .expect("ss runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_of_a_test_waits_for_the_first_to_let_its_hosts_go() {
        let dir =
            std::env::temp_dir().join(format!("cairn-test-hosts-lock-{}", std::process::id()));
        let held = lock_range(&dir);
        let other = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.with_extension("lock"))
            .unwrap();
        assert!(
            matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            "a second holder got the lock while the first held it"
        );
        drop(held);
        other
            .try_lock()
            .expect("the lock is free once the first lets go");
        std::fs::remove_file(dir.with_extension("lock")).unwrap();
    }
}
