//! What a job was and what each host answered.

use serde::{Deserialize, Serialize};
use serde_json::Value as J;

/// A job id: the time it started, to the microsecond (Salt's JID form,
/// `20261205031522123456`), so ids sort by time and read as one.
pub type JobId = String;

/// How one host ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// Ran, and changed something.
    Changed,
    /// Ran, and found nothing to change.
    Ok,
    /// Ran, and failed (a non-zero exit, a module or state that failed).
    Failed,
    /// Never ran: cannot connect, key refused, host key mismatch, timed
    /// out, connection lost.
    Unreachable,
    /// Not started: the job stopped at `--max-fail` first.
    Skipped,
}

impl HostStatus {
    pub const ALL: [HostStatus; 5] = [
        HostStatus::Changed,
        HostStatus::Ok,
        HostStatus::Failed,
        HostStatus::Unreachable,
        HostStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Changed => "changed",
            HostStatus::Ok => "ok",
            HostStatus::Failed => "failed",
            HostStatus::Unreachable => "unreachable",
            HostStatus::Skipped => "skipped",
        }
    }

    /// What `--max-fail` counts.
    pub fn is_failure(self) -> bool {
        matches!(self, HostStatus::Failed | HostStatus::Unreachable)
    }
}

/// One host's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostResult {
    pub host: String,
    pub status: HostStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rc: Option<i32>,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    /// Why it failed or was unreachable, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The module's outcome or the state report (diffs, per-state results).
    #[serde(default, skip_serializing_if = "J::is_null")]
    pub detail: J,
}

impl HostResult {
    pub fn skipped(host: &str, why: &str) -> HostResult {
        HostResult {
            host: host.to_string(),
            status: HostStatus::Skipped,
            rc: None,
            stdout: String::new(),
            stderr: String::new(),
            error: Some(why.to_string()),
            duration_ms: 0,
            detail: J::Null,
        }
    }
}

/// Hosts by how they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub changed: usize,
    pub ok: usize,
    pub failed: usize,
    pub unreachable: usize,
    pub skipped: usize,
}

impl Tally {
    pub fn of(hosts: &[HostResult]) -> Tally {
        let mut t = Tally::default();
        for h in hosts {
            *t.count(h.status) += 1;
        }
        t
    }

    /// Adds `n` hosts that ended as the status named `name` (by
    /// [`HostStatus::as_str`]: the stores keep the name beside each result,
    /// to count without parsing them); a name it does not know counts as
    /// skipped.
    pub fn add_named(&mut self, name: &str, n: usize) {
        let status = HostStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .unwrap_or(HostStatus::Skipped);
        *self.count(status) += n;
    }

    fn count(&mut self, status: HostStatus) -> &mut usize {
        match status {
            HostStatus::Changed => &mut self.changed,
            HostStatus::Ok => &mut self.ok,
            HostStatus::Failed => &mut self.failed,
            HostStatus::Unreachable => &mut self.unreachable,
            HostStatus::Skipped => &mut self.skipped,
        }
    }

    /// Whether the job as a whole failed: any host failed, was unreachable
    /// or was not started.
    pub fn any_failed(&self) -> bool {
        self.failed + self.unreachable + self.skipped > 0
    }
}

/// A whole job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    /// `run`, `state apply`.
    pub kind: String,
    /// The target expression as given.
    pub target: String,
    /// What ran: the command, the module and its arguments, the state file.
    pub function: String,
    #[serde(default)]
    pub args: J,
    pub check: bool,
    pub user: String,
    /// Epoch seconds.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub hosts: Vec<HostResult>,
}

impl JobRecord {
    pub fn tally(&self) -> Tally {
        Tally::of(&self.hosts)
    }

    pub fn summary(&self) -> JobSummary {
        JobSummary {
            id: self.id.clone(),
            kind: self.kind.clone(),
            target: self.target.clone(),
            function: self.function.clone(),
            user: self.user.clone(),
            started_at: self.started_at,
            finished_at: self.finished_at,
            hosts: self.hosts.len(),
            tally: self.tally(),
        }
    }
}

/// A line of `cairn jobs list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub id: JobId,
    pub kind: String,
    pub target: String,
    pub function: String,
    pub user: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub hosts: usize,
    #[serde(flatten)]
    pub tally: Tally,
}

/// A new job id in Salt's form (the time to the microsecond, UTC); within
/// one process each is later than the last, so two jobs started in the same
/// microsecond (reactions to one event) still have their own.
pub fn new_id() -> JobId {
    use std::sync::Mutex;
    static LAST: Mutex<i128> = Mutex::new(0);
    let now = time::OffsetDateTime::now_utc();
    let mut micros = now.unix_timestamp_nanos() / 1000;
    {
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        if micros <= *last {
            micros = *last + 1;
        }
        *last = micros;
    }
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(micros * 1000).unwrap_or(now);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}{:06}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_in_one_process_are_all_different_and_keep_increasing() {
        // Threads making ids at once meet in the same microsecond, where
        // the time alone would give two of them one id.
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..2000).map(|_| new_id()).collect::<Vec<_>>()))
            .collect();
        let mut all = std::collections::BTreeSet::new();
        for t in threads {
            let ids = t.join().unwrap();
            for pair in ids.windows(2) {
                assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
            }
            assert!(
                ids.iter()
                    .all(|id| id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit()))
            );
            all.extend(ids);
        }
        assert_eq!(all.len(), 8000);
    }

    #[test]
    fn a_tally_counts_by_the_names_the_stores_keep() {
        let mut t = Tally::default();
        for (i, s) in HostStatus::ALL.into_iter().enumerate() {
            t.add_named(s.as_str(), i + 1);
        }
        t.add_named("no such status", 10);
        let want = Tally {
            changed: 1,
            ok: 2,
            failed: 3,
            unreachable: 4,
            skipped: 5 + 10,
        };
        assert_eq!(t, want);
    }
}
