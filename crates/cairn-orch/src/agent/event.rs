//! Events: what happened on the fleet, as Salt's event bus has it, with
//! `/`-separated tags (`cairn/agent/web-1/connected`,
//! `cairn/job/JID/ret/web-1`, `cairn/file/web-1/changed`,
//! `cairn/service/web-1/nginx/stopped`).
//!
//! The master is the only place events are made into [`Event`]s: its own
//! (agents connecting, jobs starting and returning), and those its agents
//! send over their authenticated connection, whose tag it builds from the
//! connection's identity ([`agent_tag`]); an agent cannot speak for another
//! host or forge a master event. It keeps the recent ones in a bounded ring
//! and appends every one to `DIR/events.jsonl`, rotated to
//! `events.jsonl.1` past a size, so the disk they use is bounded too
//! ([`EventLog`]).
//!
//! Tag globs ([`TagGlob`]), one rule: `*` matches within one segment (never
//! a `/`), `**` as a whole segment matches any number of segments (none
//! included), `?` one character, `{a,b}` either. So `cairn/job/**` is every
//! job event, `cairn/service/*/nginx/*` nginx on any host, and
//! `cairn/job/*` matches nothing (a job tag has more segments): unlike
//! Salt's fnmatch, a `*` never reaches into the next segment.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value as J;
use tokio::sync::broadcast;

/// The largest event an agent may send: its tag and data as JSON.
pub const MAX_EVENT: usize = 64 << 10;

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub tag: String,
    /// When the master recorded it, RFC 3339 UTC to the millisecond.
    pub time: String,
    /// `master`, or the id of the authenticated agent that sent it.
    pub source: String,
    /// The host it is about, when it is about one: reactions run there by
    /// default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The id of the reaction job that caused it: reactors never react to
    /// such an event (see [`super::reactor`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<String>,
    #[serde(default)]
    pub data: J,
}

impl Event {
    /// An event of the master's own, about `host`.
    pub fn master(tag: String, host: Option<&str>, data: J) -> Event {
        Event {
            tag,
            time: now_rfc3339(),
            source: "master".into(),
            host: host.map(str::to_string),
            reaction: None,
            data,
        }
    }
}

/// RFC 3339 UTC to the millisecond: `2026-12-05T08:48:15.123Z`.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

/// Why an agent's event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventRefused {
    #[error("event of {0} bytes is over the limit of {MAX_EVENT}")]
    TooLarge(usize),
    #[error("tag `{0}`: {1}")]
    BadTag(String, &'static str),
}

/// The full tag of an event an agent sent as `kind/rest` (`file/changed`,
/// `service/nginx/stopped`): `cairn/KIND/ID/REST`, where ID is the
/// identity the connection authenticated as, never a part the agent wrote.
pub fn agent_tag(id: &str, relative: &str) -> Result<String, EventRefused> {
    let bad = |why| EventRefused::BadTag(relative.chars().take(200).collect(), why);
    if relative.len() > 200 {
        return Err(bad("longer than 200 bytes"));
    }
    let (kind, rest) = relative
        .split_once('/')
        .ok_or_else(|| bad("must be KIND/NAME..."))?;
    if !matches!(kind, "file" | "service") {
        return Err(bad(
            "an agent may send only `file/...` and `service/...` events",
        ));
    }
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.len() > 6 {
        return Err(bad("more than 6 segments"));
    }
    for s in &segments {
        if s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@:+".contains(c))
        {
            return Err(bad(
                "a segment is empty or has a character other than letters, digits and -_.@:+",
            ));
        }
    }
    Ok(format!("cairn/{kind}/{id}/{rest}"))
}

/// The size an agent's event is measured by.
pub fn event_size(tag: &str, data: &J) -> usize {
    tag.len() + serde_json::to_vec(data).map_or(usize::MAX, |v| v.len())
}

/// A tag glob (the rule is in the module documentation).
#[derive(Debug, Clone)]
pub struct TagGlob {
    text: String,
    glob: globset::GlobMatcher,
}

impl TagGlob {
    pub fn new(text: &str) -> Result<TagGlob, String> {
        if text.is_empty() {
            return Err("an empty tag glob".into());
        }
        let glob = globset::GlobBuilder::new(text)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("tag glob `{text}`: {}", e.kind()))?;
        Ok(TagGlob {
            text: text.to_string(),
            glob: glob.compile_matcher(),
        })
    }

    pub fn matches(&self, tag: &str) -> bool {
        self.glob.is_match(tag)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A token bucket: `burst` events at once, then `rate` a second, so a
/// noisy agent costs the master a bounded amount of work and disk.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
    /// Events dropped since the last log line about them.
    pub dropped: u64,
    logged: Option<Instant>,
}

impl RateLimit {
    pub fn new(rate: f64, burst: u32, now: Instant) -> RateLimit {
        RateLimit {
            rate,
            burst: burst as f64,
            tokens: burst as f64,
            at: now,
            dropped: 0,
            logged: None,
        }
    }

    /// Whether one more event may pass at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// Whether to log the drops now: at most once a second.
    pub fn should_log(&mut self, now: Instant) -> bool {
        if self
            .logged
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return false;
        }
        self.logged = Some(now);
        true
    }
}

/// The master's events: a ring of the recent ones, the log file, and the
/// live subscribers (`cairn events --follow`, the reactor).
pub struct EventLog {
    ring: VecDeque<Event>,
    capacity: usize,
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
    tx: broadcast::Sender<Event>,
}

impl EventLog {
    /// Opens `DIR/events.jsonl`, taking its last `capacity` events into the
    /// ring so `cairn events` still shows them after a restart.
    pub fn open(dir: &Path, capacity: usize, max_bytes: u64) -> Result<EventLog, String> {
        let path = dir.join("events.jsonl");
        let mut ring = VecDeque::with_capacity(capacity.min(4096));
        if let Ok(f) = File::open(&path) {
            for line in std::io::BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                if let Ok(e) = serde_json::from_str::<Event>(&line) {
                    if ring.len() == capacity {
                        ring.pop_front();
                    }
                    ring.push_back(e);
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (tx, _) = broadcast::channel(1024);
        Ok(EventLog {
            ring,
            capacity: capacity.max(1),
            path,
            file: Some(file),
            size,
            max_bytes: max_bytes.max(1024),
            tx,
        })
    }

    /// Records an event: ring, file, subscribers. A file that cannot be
    /// written is logged, and the event still reaches the others.
    pub fn publish(&mut self, event: Event) {
        let mut line = serde_json::to_vec(&event).expect("events serialize");
        line.push(b'\n');
        if self.size + line.len() as u64 > self.max_bytes {
            self.rotate();
        }
        if let Some(f) = &mut self.file {
            match f.write_all(&line) {
                Ok(()) => self.size += line.len() as u64,
                Err(e) => tracing::error!("{}: {e}", self.path.display()),
            }
        }
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(event.clone());
        // No subscriber is not an error.
        let _ = self.tx.send(event);
    }

    /// `events.jsonl` becomes `events.jsonl.1` (the older one goes).
    fn rotate(&mut self) {
        self.file = None;
        let old = self.path.with_extension("jsonl.1");
        if let Err(e) = std::fs::rename(&self.path, &old) {
            tracing::error!("rotating {}: {e}", self.path.display());
        }
        match OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            Ok(f) => {
                self.file = Some(f);
                self.size = 0;
            }
            Err(e) => tracing::error!("{}: {e}", self.path.display()),
        }
    }

    /// The recent events a glob matches, oldest first.
    pub fn recent(&self, glob: Option<&TagGlob>) -> Vec<Event> {
        self.ring
            .iter()
            .filter(|e| glob.is_none_or(|g| g.matches(&e.tag)))
            .cloned()
            .collect()
    }

    /// Every event published from now on. Taken under the same lock as
    /// [`EventLog::recent`], the two neither miss nor repeat one.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(glob: &str, tag: &str) -> bool {
        TagGlob::new(glob).unwrap().matches(tag)
    }

    #[test]
    fn a_star_stays_in_its_segment_and_a_double_star_crosses() {
        assert!(m("cairn/agent/*/connected", "cairn/agent/web-1/connected"));
        assert!(!m("cairn/agent/*/connected", "cairn/agent/a/b/connected"));
        assert!(m("cairn/job/**", "cairn/job/2026/ret/web-1"));
        assert!(m("cairn/job/**", "cairn/job/2026/started"));
        assert!(!m("cairn/job/*", "cairn/job/2026/started"));
        assert!(m("cairn/job/*", "cairn/job/2026"));
        assert!(m("**/stopped", "cairn/service/web-1/nginx/stopped"));
        assert!(m("cairn/**/stopped", "cairn/service/web-1/nginx/stopped"));
        assert!(!m("cairn/**/stopped", "cairn/service/web-1/nginx/started"));
        assert!(m(
            "cairn/service/*/ngin?/*",
            "cairn/service/w/nginx/started"
        ));
        assert!(m(
            "cairn/service/*/*/{stopped,failed}",
            "cairn/service/w/db/failed"
        ));
        assert!(m("cairn/file/web-*/changed", "cairn/file/web-12/changed"));
        assert!(!m("cairn/file/web-*/changed", "cairn/file/db-1/changed"));
        // Exact, and anchored at both ends.
        assert!(m("cairn/agent/a/connected", "cairn/agent/a/connected"));
        assert!(!m("agent/a/connected", "cairn/agent/a/connected"));
        assert!(!m("cairn/agent/a", "cairn/agent/a/connected"));
        assert!(TagGlob::new("cairn/{a").is_err());
        assert!(TagGlob::new("").is_err());
    }

    #[test]
    fn an_agent_tag_names_its_own_identity_and_only_agent_kinds() {
        assert_eq!(
            agent_tag("web-1", "service/nginx/stopped").unwrap(),
            "cairn/service/web-1/nginx/stopped"
        );
        assert_eq!(
            agent_tag("web-1", "file/changed").unwrap(),
            "cairn/file/web-1/changed"
        );
        for bad in [
            "agent/web-2/connected",
            "job/1/ret/web-1",
            "file",
            "file//x",
            "service/a b/stopped",
            "service/*/stopped",
            "file/a/b/c/d/e/f/g",
        ] {
            let e = agent_tag("web-1", bad);
            assert!(e.is_err(), "{bad}: {e:?}");
        }
        assert!(agent_tag("w", &format!("file/{}", "x".repeat(300))).is_err());
    }

    #[test]
    fn the_rate_limit_lets_a_burst_through_then_its_rate() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(10.0, 5, t0);
        let passed = (0..100).filter(|_| r.take(t0)).count();
        assert_eq!(passed, 5);
        assert_eq!(r.dropped, 95);
        // A second later, ten more (the bucket holds at most five).
        let t1 = t0 + Duration::from_secs(1);
        let passed = (0..100).filter(|_| r.take(t1)).count();
        assert_eq!(passed, 5);
        let t2 = t1 + Duration::from_millis(300);
        assert_eq!((0..100).filter(|_| r.take(t2)).count(), 3);
        assert!(r.should_log(t2));
        assert!(!r.should_log(t2 + Duration::from_millis(10)));
        assert!(r.should_log(t2 + Duration::from_secs(2)));
    }

    #[test]
    fn the_log_keeps_a_bounded_ring_rotates_its_file_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(dir.path(), 3, 2048).unwrap();
        let mut rx = log.subscribe();
        for i in 0..40 {
            log.publish(Event::master(
                format!("cairn/test/{i}"),
                None,
                serde_json::json!({"i": i}),
            ));
        }
        let tags: Vec<_> = log.recent(None).into_iter().map(|e| e.tag).collect();
        assert_eq!(tags, ["cairn/test/37", "cairn/test/38", "cairn/test/39"]);
        let g = TagGlob::new("cairn/test/38").unwrap();
        assert_eq!(log.recent(Some(&g)).len(), 1);
        assert_eq!(rx.try_recv().unwrap().tag, "cairn/test/0");
        // Both files stay under the bound; the newest is in the current one.
        let cur = std::fs::metadata(dir.path().join("events.jsonl")).unwrap();
        let old = std::fs::metadata(dir.path().join("events.jsonl.1")).unwrap();
        assert!(cur.len() <= 2048 && old.len() <= 2048, "{cur:?} {old:?}");
        drop(log);
        let again = EventLog::open(dir.path(), 3, 2048).unwrap();
        let tags: Vec<_> = again.recent(None).into_iter().map(|e| e.tag).collect();
        assert_eq!(tags, ["cairn/test/37", "cairn/test/38", "cairn/test/39"]);
    }
}
