//! Bounded polls: a test waits for what it needs to see (a file written, a
//! count reached) instead of sleeping a fixed time and hoping, and fails
//! with a message naming what never came instead of hanging.

use std::time::{Duration, Instant};

/// Calls `check` until it gives `Some`, at most for `limit`, pausing a
/// little longer each time (from 5 ms to 100 ms); `None` when time ran out.
pub fn eventually<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// [`eventually`], failing the test with `what` when time runs out.
pub fn wait_for<T>(what: &str, limit: Duration, check: impl FnMut() -> Option<T>) -> T {
    eventually(limit, check).unwrap_or_else(|| panic!("{what}: not seen within {limit:?}"))
}

/// [`wait_for`] a condition.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    wait_for(what, limit, || check().then_some(()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_the_first_value_seen() {
        let mut calls = 0;
        let v = eventually(Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(v, Some(3));
    }

    #[test]
    fn gives_none_once_time_ran_out() {
        let mut calls = 0;
        let v: Option<()> = eventually(Duration::from_millis(30), || {
            calls += 1;
            None
        });
        assert_eq!(v, None);
        assert!(calls >= 2, "checked {calls} times");
    }

    #[test]
    #[should_panic(expected = "the marker: not seen within")]
    fn wait_until_names_what_never_came() {
        wait_until("the marker", Duration::from_millis(20), || false);
    }
}
