//! What a module reports: an [`Outcome`], its [`Diff`]s.

use serde::Serialize;
use serde_json::Value as J;

/// What one module did (or, in a dry run, would do) on one host.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outcome {
    pub changed: bool,
    /// One line for people: `wrote /etc/motd (12 bytes)`, `already running`.
    pub summary: String,
    pub diff: Vec<Diff>,
    /// What the command a module ran printed (`cmd`, raw commands).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rc: Option<i32>,
    /// Structured results (`facts`' grains, `http`'s status).
    #[serde(skip_serializing_if = "J::is_null")]
    pub data: J,
}

/// One changed thing: a file's content, a mode, a package's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Diff {
    /// What changed: `/etc/motd`, `/etc/motd:mode`, `pkg:nginx`.
    pub what: String,
    pub before: Option<String>,
    pub after: Option<String>,
}
