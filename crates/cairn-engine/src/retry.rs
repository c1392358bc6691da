//! Retrying provider calls: exponential backoff with jitter, honouring a
//! target's Retry-After, within a deadline.

use std::future::Future;
use std::hash::BuildHasher;
use std::time::Duration;

use tokio::time::Instant;

use crate::provider::{ProviderError, ProviderResult};

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_delay: Duration,
    /// No retry starts after this much time since the first attempt.
    pub deadline: Duration,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            deadline: Duration::from_secs(600),
            max_attempts: 12,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`: full jitter over an
    /// exponentially growing cap, never below what the target asked for.
    pub fn delay(&self, attempt: u32, err: &ProviderError) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        // A random fraction in [0.5, 1.0): RandomState is seeded per process.
        let r = std::collections::hash_map::RandomState::new().hash_one(attempt) as f64
            / u64::MAX as f64;
        let jittered = cap.mul_f64(0.5 + r / 2.0);
        match err {
            ProviderError::Throttled {
                retry_after: Some(after),
                ..
            } => jittered.max(*after),
            _ => jittered,
        }
    }
}

/// Runs `call` until it succeeds, fails for good, or the policy gives up.
/// `on_retry` hears of every retry (attempt number, delay, error).
pub async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    mut call: F,
    mut on_retry: impl FnMut(u32, Duration, &ProviderError),
) -> ProviderResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ProviderResult<T>>,
{
    let start = Instant::now();
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && attempt + 1 < policy.max_attempts => {
                let delay = policy.delay(attempt, &e);
                if start.elapsed() + delay > policy.deadline {
                    return Err(e);
                }
                on_retry(attempt + 1, delay, &e);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy::default();
        let e = ProviderError::Throttled {
            retry_after: Some(Duration::from_secs(7)),
            message: "slow down".into(),
        };
        assert!(p.delay(0, &e) >= Duration::from_secs(7));
        let t = ProviderError::Transient("reset".into());
        for attempt in 0..20 {
            let d = p.delay(attempt, &t);
            assert!(d <= p.max_delay, "{d:?}");
            assert!(d >= p.base.mul_f64(0.5).min(p.max_delay.mul_f64(0.5)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_and_permanent_ones_are_not() {
        let p = RetryPolicy::default();
        let calls = AtomicU32::new(0);
        let r: ProviderResult<u32> = with_retries(
            &p,
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    Err(ProviderError::Transient("503".into()))
                } else {
                    Ok(n)
                }
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!(r, Ok(3));
        let calls = AtomicU32::new(0);
        let r: ProviderResult<u32> = with_retries(
            &p,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ProviderError::Permanent("bad image".into()))
            },
            |_, _, _| {},
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_stops_retrying() {
        let p = RetryPolicy {
            deadline: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        let calls = AtomicU32::new(0);
        let r: ProviderResult<()> = with_retries(
            &p,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ProviderError::Throttled {
                    retry_after: Some(Duration::from_secs(3)),
                    message: "429".into(),
                })
            },
            |_, _, _| {},
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
