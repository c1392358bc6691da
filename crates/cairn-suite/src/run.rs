//! Runs every test at once, each retried until it passes or its timeout
//! ends, and reports each as passed, failed or skipped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::probe::{self, Outcome};
use crate::spec::{Check, TestSpec};

/// What `command` tests get their hosts from (the CLI's inventory and
/// transports; a fake in tests).
pub trait Hosts: Send + Sync {
    fn select(&self, expression: &str) -> Selection;
}

pub enum Selection {
    Hosts(Vec<Arc<dyn cairn_orch::Remote>>),
    /// Commands cannot run on this deployment at all: the test is skipped,
    /// saying why.
    Unavailable(String),
    /// A bad expression and the like: the test fails, saying why.
    Error(String),
}

pub struct Context {
    /// The deployment's DNS server, for `dns` tests that name none.
    pub dns_server: Option<SocketAddr>,
    pub hosts: Arc<dyn Hosts>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestStatus {
    Passed,
    Failed,
    Skipped,
}

/// One test's result: what `-o json` prints and JUnit is written from.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub name: String,
    pub kind: String,
    /// Where the test is written (`cairn.yaml:88:3`).
    pub location: String,
    pub status: TestStatus,
    pub attempts: u32,
    pub duration_ms: u64,
    /// Why it failed or was skipped (the last attempt's expected vs got).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A test to run: its spec, or why its evaluated value cannot be one.
pub struct Planned {
    pub name: String,
    pub kind: String,
    pub location: String,
    pub spec: Result<TestSpec, String>,
}

/// Runs the tests concurrently; results in the order given.
pub async fn run_all(tests: Vec<Planned>, cx: Arc<Context>) -> Vec<TestResult> {
    let mut set = tokio::task::JoinSet::new();
    let n = tests.len();
    for (i, t) in tests.into_iter().enumerate() {
        let cx = cx.clone();
        set.spawn(async move { (i, run_one(t, &cx).await) });
    }
    let mut results: Vec<Option<TestResult>> = vec![None; n];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, r)) = joined {
            results[i] = Some(r);
        }
    }
    results.into_iter().flatten().collect()
}

async fn run_one(t: Planned, cx: &Context) -> TestResult {
    let started = Instant::now();
    let result = |status, attempts, message| TestResult {
        name: t.name.clone(),
        kind: t.kind.clone(),
        location: t.location.clone(),
        status,
        attempts,
        duration_ms: started.elapsed().as_millis() as u64,
        message,
    };
    let spec = match &t.spec {
        Ok(s) => s,
        Err(e) => return result(TestStatus::Failed, 0, Some(e.clone())),
    };
    let deadline = started + spec.timeout;
    // Bounded by count as well as by time: a timeout of 0 still tries once.
    let max_attempts = (spec.timeout.as_millis() / spec.interval.as_millis().max(1)) as u32 + 1;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        // One attempt may not take the whole budget, so that a slow first
        // try (a backend still starting) leaves time for another.
        let limit = left.clamp(Duration::from_millis(500), Duration::from_secs(10));
        let outcome = attempt(spec, cx, limit).await;
        match outcome {
            Outcome::Pass => return result(TestStatus::Passed, attempts, None),
            Outcome::Skip(why) => return result(TestStatus::Skipped, attempts, Some(why)),
            Outcome::Fail(why) => {
                let now = Instant::now();
                if attempts >= max_attempts || now + spec.interval > deadline {
                    let why = format!(
                        "{why} (after {attempts} attempt{} in {:.1} s)",
                        if attempts == 1 { "" } else { "s" },
                        started.elapsed().as_secs_f64()
                    );
                    return result(TestStatus::Failed, attempts, Some(why));
                }
                tokio::time::sleep(spec.interval).await;
            }
        }
    }
}

async fn attempt(spec: &TestSpec, cx: &Context, limit: Duration) -> Outcome {
    match &spec.check {
        Check::Http(req, exp) => probe::http(req, exp, limit).await,
        Check::Dns(q, exp) => probe::dns(q, exp, cx.dns_server, limit).await,
        Check::Sql(q, exp) => probe::sql(q, exp, limit).await,
        Check::Command(run, exp) => match cx.hosts.select(&run.hosts) {
            Selection::Hosts(remotes) => probe::command(&remotes, run, exp, limit).await,
            Selection::Unavailable(why) => Outcome::Skip(why),
            Selection::Error(why) => Outcome::Fail(why),
        },
    }
}

/// How many passed, failed and were skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

pub fn tally(results: &[TestResult]) -> Tally {
    let mut t = Tally::default();
    for r in results {
        match r.status {
            TestStatus::Passed => t.passed += 1,
            TestStatus::Failed => t.failed += 1,
            TestStatus::Skipped => t.skipped += 1,
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct NoHosts(Selection);
    impl Hosts for NoHosts {
        fn select(&self, _: &str) -> Selection {
            match &self.0 {
                Selection::Unavailable(w) => Selection::Unavailable(w.clone()),
                Selection::Error(w) => Selection::Error(w.clone()),
                Selection::Hosts(h) => Selection::Hosts(h.clone()),
            }
        }
    }

    fn cx(sel: Selection) -> Arc<Context> {
        Arc::new(Context {
            dns_server: None,
            hosts: Arc::new(NoHosts(sel)),
        })
    }

    fn planned(name: &str, body: serde_json::Value) -> Planned {
        let spec = parse(name, &body).map_err(|e| e.0);
        Planned {
            name: name.into(),
            kind: spec.as_ref().map_or("?", |s| s.kind()).into(),
            location: format!("cairn.yaml:{name}"),
            spec,
        }
    }

    /// An HTTP server on loopback that answers 503 to its first `fail`
    /// requests, then 200 with `body`; stopped when the token is dropped.
    async fn server(fail: usize, body: &'static str) -> (String, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            // Bounded: the test makes a handful of requests.
            for n in 0..50 {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let (status, text) = if n < fail {
                    ("503 Unavailable", "starting")
                } else {
                    ("200 OK", body)
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}", text.len()).as_bytes())
                    .await;
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn retries_until_the_service_answers() {
        let (addr, task) = server(2, "hello from 0").await;
        let t = planned(
            "web",
            json!({"http": {"url": format!("http://{addr}/")}, "expect": {"body_contains": "hello from"}, "interval": "50ms", "timeout": "5s"}),
        );
        let r = run_all(vec![t], cx(Selection::Error("none".into()))).await;
        task.abort();
        assert_eq!(r[0].status, TestStatus::Passed, "{:?}", r[0]);
        assert_eq!(r[0].attempts, 3);
    }

    #[tokio::test]
    async fn a_failing_expectation_says_expected_and_got() {
        let (addr, task) = server(0, "hello from 1").await;
        let t = planned(
            "web",
            json!({"http": {"url": format!("http://{addr}/")}, "expect": {"body_equals": "goodbye"}, "interval": "100ms", "timeout": "300ms"}),
        );
        let r = run_all(vec![t], cx(Selection::Error("none".into()))).await;
        task.abort();
        assert_eq!(r[0].status, TestStatus::Failed);
        let m = r[0].message.as_deref().unwrap();
        assert!(
            m.contains("expected the body \"goodbye\", got \"hello from 1\""),
            "{m}"
        );
        assert!(r[0].attempts >= 2 && r[0].attempts <= 4, "{:?}", r[0]);
    }

    #[tokio::test]
    async fn commands_without_orchestration_are_skipped_not_passed() {
        let t = planned(
            "cmd",
            json!({"command": {"hosts": "web", "run": "true"}, "expect": {"exit_code": 0}}),
        );
        let r = run_all(
            vec![t],
            cx(Selection::Unavailable("process isolation".into())),
        )
        .await;
        assert_eq!(r[0].status, TestStatus::Skipped);
        assert_eq!(r[0].message.as_deref(), Some("process isolation"));
        assert_eq!(
            tally(&r),
            Tally {
                passed: 0,
                failed: 0,
                skipped: 1
            }
        );
    }

    #[tokio::test]
    async fn a_bad_value_fails_at_once() {
        let t = planned("bad", json!({"http": {"lb": 3}, "expect": {}}));
        let r = run_all(vec![t], cx(Selection::Error("none".into()))).await;
        assert_eq!((r[0].status, r[0].attempts), (TestStatus::Failed, 0));
    }

    #[tokio::test]
    async fn nothing_listening_fails_within_the_timeout() {
        // A port that was just free: connections are refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let t = planned(
            "down",
            json!({"http": {"url": format!("http://127.0.0.1:{port}/")}, "expect": {}, "interval": "100ms", "timeout": "1s"}),
        );
        let started = Instant::now();
        let r = run_all(vec![t], cx(Selection::Error("none".into()))).await;
        assert_eq!(r[0].status, TestStatus::Failed);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert!(
            r[0].message.as_deref().unwrap().contains("no answer from"),
            "{:?}",
            r[0]
        );
    }
}
