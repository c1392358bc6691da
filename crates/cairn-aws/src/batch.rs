//! Reads of one kind that arrive together leave as one call.
//!
//! A refresh reads every resource at once and the creates of thirty servers
//! each poll their instance until it runs: one `DescribeInstances` per
//! instance per poll is most of an apply's calls, while EC2 describes a
//! hundred instances in one call as cheaply as one. A [`Batcher`] queues
//! the ids asked for while a call is in flight and asks for all of them in
//! the next: the first asker waits for no one (no timer), the others for at
//! most the call before theirs.
//!
//! The calls are by filter (`instance-id`, `subnet-id`, ...), not by id
//! list: an id list fails whole when one id does not exist, a filter
//! simply leaves it out, which the asker reads as "gone" (or "not visible
//! yet", for one just made), as a single describe would say.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use cairn_engine::provider::{ProviderError, ProviderResult};
use tokio::sync::oneshot;

/// Ids per call: EC2 takes up to 200 values per filter.
const MAX_IDS: usize = 100;

type Fetched<V> = Pin<Box<dyn Future<Output = ProviderResult<HashMap<String, V>>> + Send>>;
type Fetch<V> = Arc<dyn Fn(Vec<String>) -> Fetched<V> + Send + Sync>;
type Waiter<V> = (String, oneshot::Sender<ProviderResult<Option<V>>>);

struct Queue<V> {
    waiting: Vec<Waiter<V>>,
    /// A task is sending calls for the queue.
    running: bool,
}

/// Coalesces reads by id into calls of up to [`MAX_IDS`] ids.
pub(crate) struct Batcher<V> {
    queue: Arc<Mutex<Queue<V>>>,
    fetch: Fetch<V>,
}

impl<V: Clone + Send + 'static> Batcher<V> {
    /// `fetch` reads the resources with these ids: those that exist, by id.
    pub(crate) fn new<F, Fut>(fetch: F) -> Batcher<V>
    where
        F: Fn(Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ProviderResult<HashMap<String, V>>> + Send + 'static,
    {
        Batcher {
            queue: Arc::new(Mutex::new(Queue {
                waiting: Vec::new(),
                running: false,
            })),
            fetch: Arc::new(move |ids| Box::pin(fetch(ids))),
        }
    }

    /// The resource with this id, `None` when the call did not return it.
    pub(crate) async fn get(&self, id: &str) -> ProviderResult<Option<V>> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.waiting.push((id.to_string(), tx));
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            tokio::spawn(drain(self.queue.clone(), self.fetch.clone()));
        }
        rx.await.unwrap_or_else(|_| {
            Err(ProviderError::Transient(
                "a batched read was dropped before it answered".into(),
            ))
        })
    }
}

/// Sends calls until no one waits.
async fn drain<V: Clone + Send + 'static>(queue: Arc<Mutex<Queue<V>>>, fetch: Fetch<V>) {
    loop {
        // Askers woken by the same event (a poll's timer, a refresh's
        // spawn) are ready together: let them join this call.
        tokio::task::yield_now().await;
        let batch = {
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.waiting.is_empty() {
                q.running = false;
                return;
            }
            std::mem::take(&mut q.waiting)
        };
        let mut ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        let mut found = HashMap::new();
        let mut failed = None;
        for chunk in ids.chunks(MAX_IDS) {
            match fetch(chunk.to_vec()).await {
                Ok(part) => found.extend(part),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        for (id, tx) in batch {
            let answer = match &failed {
                Some(e) => Err(e.clone()),
                None => Ok(found.get(&id).cloned()),
            };
            // An asker that gave up (its future dropped) needs no answer.
            let _ = tx.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Polls `done` every millisecond, up to ten seconds.
    async fn until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if done() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        panic!("{what} did not happen within ten seconds");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_queued_during_a_call_go_out_together_and_each_gets_its_own() {
        let calls = Arc::new(AtomicUsize::new(0));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (counted, sized, held) = (calls.clone(), sizes.clone(), gate.clone());
        let b = Arc::new(Batcher::new(move |ids: Vec<String>| {
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            sized.lock().unwrap().push(ids.len());
            let held = held.clone();
            async move {
                if first {
                    // The first call stays in flight until the test says.
                    held.acquire().await.unwrap().forget();
                }
                // Odd ids do not exist.
                Ok(ids
                    .into_iter()
                    .filter(|id| id.parse::<u32>().unwrap() % 2 == 0)
                    .map(|id| (id.clone(), format!("value of {id}")))
                    .collect())
            }
        }));
        let mut tasks = tokio::task::JoinSet::new();
        let ask = |tasks: &mut tokio::task::JoinSet<_>, i: u32| {
            let b = b.clone();
            tasks.spawn(async move { (i, b.get(&i.to_string()).await) });
        };
        ask(&mut tasks, 0);
        until("the first call", || calls.load(Ordering::SeqCst) == 1).await;
        for i in 1..250 {
            ask(&mut tasks, i);
        }
        // Every read asked while the first call is in flight (and one id
        // asked twice) waits for the next call.
        ask(&mut tasks, 2);
        until("250 queued reads", || {
            b.queue.lock().unwrap().waiting.len() == 250
        })
        .await;
        gate.add_permits(1);
        let mut answered = 0;
        while let Some(done) = tasks.join_next().await {
            let (i, got) = done.unwrap();
            let want = (i % 2 == 0).then(|| format!("value of {i}"));
            assert_eq!(got.unwrap(), want);
            answered += 1;
        }
        assert_eq!(answered, 251);
        // One call for the first read, then 249 distinct ids in calls of
        // at most 100.
        assert_eq!(*sizes.lock().unwrap(), vec![1, 100, 100, 49]);
        until("the batcher idle", || !b.queue.lock().unwrap().running).await;
    }

    #[tokio::test]
    async fn a_failed_call_fails_every_asker_and_the_next_call_goes_out() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let b = Batcher::new(move |_ids: Vec<String>| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Err(ProviderError::Transient("reset".into())),
                    _ => Ok(HashMap::from([("a".to_string(), 1)])),
                }
            }
        });
        assert_eq!(
            b.get("a").await,
            Err(ProviderError::Transient("reset".into()))
        );
        assert_eq!(b.get("a").await, Ok(Some(1)));
        assert_eq!(b.get("b").await, Ok(None));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
