//! Test doubles and helpers shared by the modules' tests.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::remote::{Exec, Output, Remote, TransportError};
use crate::transport::local::LocalHost;

use super::args::Args;
use super::contract::{Module, RunContext};
use super::error::ModuleError;
use super::outcome::Outcome;

/// A host that answers from a queue of canned outputs and records every
/// script, for modules that must not change this machine (pkg, service,
/// user, group).
pub struct Fake {
    answers: Mutex<VecDeque<Output>>,
    pub seen: Mutex<Vec<Exec>>,
}

impl Fake {
    pub fn new(answers: &[(i32, &str)]) -> Fake {
        Fake {
            answers: Mutex::new(
                answers
                    .iter()
                    .map(|(rc, out)| Output {
                        status: Some(*rc),
                        stdout: out.as_bytes().to_vec(),
                        stderr: Vec::new(),
                    })
                    .collect(),
            ),
            seen: Mutex::new(Vec::new()),
        }
    }

    pub fn scripts(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.script.clone())
            .collect()
    }
}

#[async_trait]
impl Remote for Fake {
    fn name(&self) -> &str {
        "fake"
    }

    async fn exec(&self, exec: Exec) -> Result<Output, TransportError> {
        self.seen.lock().unwrap().push(exec);
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .ok_or_else(|| TransportError::Other {
                host: "fake".into(),
                reason: "no canned answer left".into(),
            })
    }
}

/// Runs `script` with `sh -c` in `dir` (a git identity set, for scripts
/// that commit), asserts it succeeded, and gives its trimmed stdout.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Asserts `script` parses as POSIX sh (`sh -n`), without running it.
pub fn assert_sh(script: &str) {
    let out = std::process::Command::new("sh")
        .arg("-n")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "not valid sh: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn args(pairs: &[(&str, &str)]) -> Args {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect()
}

pub fn local() -> LocalHost {
    LocalHost::new("local")
}

pub fn check() -> RunContext {
    RunContext {
        check: true,
        ..RunContext::default()
    }
}

pub async fn run(name: &str, a: &[(&str, &str)], ctx: &RunContext) -> Result<Outcome, ModuleError> {
    let m: Box<dyn Module> = super::names::load(name, &args(a)).unwrap();
    m.run(&local(), ctx).await
}

/// A temporary directory removed when dropped.
pub struct Scratch(pub tempfile::TempDir);

impl Scratch {
    pub fn new() -> Scratch {
        Scratch(tempfile::tempdir().unwrap())
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.path().join(rel)
    }

    pub fn root(&self) -> &Path {
        self.0.path()
    }

    pub fn s(&self, rel: &str) -> String {
        self.path(rel).to_string_lossy().into_owned()
    }
}
