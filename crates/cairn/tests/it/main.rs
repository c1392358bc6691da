//! The CLI's integration tests: one binary, a module per area.

mod agents;
mod ansible;
#[cfg(feature = "aws")]
#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "aws")]
mod aws_iam;
#[cfg(feature = "aws")]
mod aws_ops;
mod bus;
mod bus_fleet;
mod cli;
mod errors;
mod events;
mod examples;
mod fault_proxy;
mod inventory;
mod lifecycle;
mod local;
mod orch;
mod release;
mod state;
mod state_pg;
mod test_cmd;

pub use cairn_test_support::pg_cluster;

use std::path::Path;
use std::process::Command;

/// Runs the real `cairn` binary in the crate directory with a clean
/// environment: no `CAIRN_*` from the developer's shell, no colour.
pub fn cairn(args: &[&str]) -> Output {
    cairn_env(args, &[])
}

/// Like [`cairn`], with extra environment variables.
pub fn cairn_env(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let out = command(args, vars).output().expect("cairn runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The `cairn` command [`cairn_env`] runs, for tests that spawn and signal it.
/// `CAIRN_TEST_BIN` names another binary than Cargo's: a copy kept aside
/// when other checkouts build into the same target directory (each build
/// replaces `target/debug/cairn` under the tests running).
pub fn command(args: &[&str], vars: &[(&str, &str)]) -> Command {
    let bin =
        std::env::var_os("CAIRN_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_cairn").into());
    let mut cmd = Command::new(bin);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CAIRN_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    // A new local cloud makes its servers hosts (`runc`) where the machine
    // can, and one CIDR can be routed by one cloud only: the suite's many
    // clouds, all deploying the webapp's 10.20.0.0/16 at once, run as
    // processes unless a test asks otherwise (`vars` come after).
    cmd.env("NO_COLOR", "1")
        .env("CAIRN_LOCAL_ISOLATION", "process")
        .envs(vars.iter().copied())
        .args(args);
    cmd
}

/// A small deterministic generator: random trials (and injected faults)
/// that a seed repeats.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Exit code, stdout and stderr, as a snapshot holds them.
    pub fn snapshot(&self) -> String {
        format!(
            "exit: {}\n----- stdout -----\n{}----- stderr -----\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}
