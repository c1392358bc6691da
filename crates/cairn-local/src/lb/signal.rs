//! A one-shot signal for the request path: set once, checked and waited on
//! by every request. A `CancellationToken` takes its lock on every check,
//! clone, poll and drop, several times a request; here a check is an atomic
//! load and a wait takes the `Notify`'s lock twice (to register and to
//! leave), whatever happens in between.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use tokio::sync::Notify;

#[derive(Default)]
pub(super) struct Signal {
    set: AtomicBool,
    notify: Notify,
}

impl Signal {
    /// Sets it: every wait under way resolves, and every later one at once.
    pub fn set(&self) {
        // Stored before the wake: a waiter woken, or one that starts after
        // this, reads it.
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Resolves once the signal is set. Its first poll registers the
    /// polling task's waker; later polls only read the flag, where a
    /// `Notified` would take the lock each time. So one task must poll it
    /// throughout (as a `select!` branch in the task that owns it does):
    /// the waker of the first poll is the one woken.
    pub async fn wait(&self) {
        // Made before the flag is first read: a `set` after that read
        // still wakes it (a `Notified` hears `notify_waiters` from when it
        // is made).
        let notified = self.notify.notified();
        tokio::pin!(notified);
        let mut registered = false;
        poll_fn(|cx| {
            if self.is_set() {
                return Poll::Ready(());
            }
            if !registered {
                if notified.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
                registered = true;
            }
            Poll::Pending
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wait_resolves_when_set_and_every_later_one_at_once() {
        let signal = Arc::new(Signal::default());
        assert!(!signal.is_set());
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.wait().await }
        });
        // Let the waiter register and wait.
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "resolved before it was set");
        signal.set();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter was woken")
            .unwrap();
        assert!(signal.is_set());
        tokio::time::timeout(Duration::from_secs(1), signal.wait())
            .await
            .expect("a wait after the set resolves at once");
    }

    /// A waiter polled many times before the set (as a `select!` branch is
    /// on every wake of its task) is still woken by it.
    #[tokio::test]
    async fn a_wait_polled_often_is_still_woken() {
        let signal = Arc::new(Signal::default());
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move {
                let wait = signal.wait();
                tokio::pin!(wait);
                let mut turns = 0u32;
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut wait => return turns,
                        _ = tokio::time::sleep(Duration::from_millis(1)), if turns < 50 => turns += 1,
                    }
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        signal.set();
        let turns = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter was woken")
            .unwrap();
        assert_eq!(turns, 50, "it resolved before the set");
    }
}
