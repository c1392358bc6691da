//! Running a job's per-host work across many hosts.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::record::HostResult;

/// `--max-fail N` or `--max-fail P%`: how many hosts may fail before the
/// job starts no more. Hosts already running finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxFail {
    Count(usize),
    Percent(u8),
}

impl MaxFail {
    /// Failures allowed among `hosts`; the job stops starting hosts when
    /// failures exceed it.
    pub fn allowed(self, hosts: usize) -> usize {
        match self {
            MaxFail::Count(n) => n,
            // Rounded down, as Ansible's max_fail_percentage.
            MaxFail::Percent(p) => hosts * usize::from(p) / 100,
        }
    }
}

impl FromStr for MaxFail {
    type Err = String;

    fn from_str(s: &str) -> Result<MaxFail, String> {
        let bad = || format!("`{s}` is not a count (3) or a percentage (25%)");
        match s.strip_suffix('%') {
            Some(p) => {
                let p: u8 = p.trim().parse().map_err(|_| bad())?;
                if p > 100 {
                    return Err(format!("`{s}`: a percentage is at most 100%"));
                }
                Ok(MaxFail::Percent(p))
            }
            None => s.trim().parse().map(MaxFail::Count).map_err(|_| bad()),
        }
    }
}

/// Runs `work` for every host, at most `concurrency` at once, and returns
/// the results in the hosts' order. Once more than `max_fail` allows have
/// failed, hosts not yet started are reported [`Skipped`], not run.
/// `done` is called as each host finishes (for progress output).
///
/// [`Skipped`]: super::HostStatus::Skipped
pub async fn execute<H, F, Fut>(
    hosts: Vec<H>,
    concurrency: usize,
    max_fail: Option<MaxFail>,
    work: F,
    done: impl Fn(&HostResult),
) -> Vec<HostResult>
where
    H: AsRef<str> + Send + 'static,
    F: Fn(H) -> Fut,
    Fut: Future<Output = HostResult> + Send + 'static,
{
    let total = hosts.len();
    let allowed = max_fail.map(|m| m.allowed(total));
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut names = Vec::with_capacity(total);
    let mut results: Vec<Option<HostResult>> = vec![None; total];
    let mut set = JoinSet::new();
    for (index, host) in hosts.into_iter().enumerate() {
        names.push(host.as_ref().to_string());
        // Wait for a free slot before deciding to start: the failure count
        // is then as fresh as it can be.
        let permit = loop {
            tokio::select! {
                biased;
                Some(joined) = set.join_next(), if !set.is_empty() => {
                    let (i, r): (usize, HostResult) = joined.expect("a host's task panicked");
                    done(&r);
                    results[i] = Some(r);
                }
                permit = permits.clone().acquire_owned() => break permit.expect("never closed"),
            }
        };
        if allowed.is_some_and(|a| failures.load(Ordering::SeqCst) > a) {
            drop(permit);
            continue;
        }
        let fut = work(host);
        let failures = failures.clone();
        set.spawn(async move {
            let r = fut.await;
            if r.status.is_failure() {
                failures.fetch_add(1, Ordering::SeqCst);
            }
            drop(permit);
            (index, r)
        });
    }
    while let Some(joined) = set.join_next().await {
        let (i, r) = joined.expect("a host's task panicked");
        done(&r);
        results[i] = Some(r);
    }
    results
        .into_iter()
        .zip(names)
        .map(|(r, name)| {
            r.unwrap_or_else(|| {
                HostResult::skipped(&name, "not started: the job passed --max-fail")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::job::HostStatus;

    fn result(host: &str, status: HostStatus) -> HostResult {
        HostResult {
            status,
            ..HostResult::skipped(host, "")
        }
    }

    #[test]
    fn max_fail_parses_counts_and_percentages() {
        assert_eq!("3".parse(), Ok(MaxFail::Count(3)));
        assert_eq!("25%".parse(), Ok(MaxFail::Percent(25)));
        assert!("101%".parse::<MaxFail>().is_err());
        assert!("x".parse::<MaxFail>().unwrap_err().contains("percentage"));
        assert_eq!(MaxFail::Percent(25).allowed(10), 2);
    }

    #[tokio::test]
    async fn never_more_than_the_concurrency_at_once_and_results_in_host_order() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let hosts: Vec<String> = (0..40).map(|i| format!("h{i}")).collect();
        let out = execute(
            hosts,
            7,
            None,
            |h| {
                let (running, peak) = (running.clone(), peak.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    result(&h, HostStatus::Ok)
                }
            },
            |_| {},
        )
        .await;
        assert_eq!(peak.load(Ordering::SeqCst), 7);
        let names: Vec<_> = out.iter().map(|r| r.host.as_str()).collect();
        assert_eq!(names, (0..40).map(|i| format!("h{i}")).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn past_max_fail_no_host_starts_and_the_rest_are_reported_skipped() {
        let started = Arc::new(Mutex::new(Vec::new()));
        let hosts: Vec<String> = (0..10).map(|i| format!("h{i}")).collect();
        let out = execute(
            hosts,
            1,
            Some(MaxFail::Count(1)),
            |h| {
                let started = started.clone();
                async move {
                    started.lock().unwrap().push(h.clone());
                    result(&h, HostStatus::Failed)
                }
            },
            |_| {},
        )
        .await;
        // One failure is allowed; the second passes the limit.
        assert_eq!(started.lock().unwrap().len(), 2);
        assert_eq!(Tally::of(&out).failed, 2);
        assert_eq!(Tally::of(&out).skipped, 8);
        assert_eq!(out[9].status, HostStatus::Skipped);
    }

    use crate::job::Tally;
}
