//! Calls of one kind that arrive together leave as one call: reads by id
//! ([`Batcher`]) and writes to one place ([`WriteBatcher`]).
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
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use cairn_engine::provider::{ProviderError, ProviderResult};
use futures_util::FutureExt;
use tokio::sync::oneshot;

/// Ids per call: EC2 takes up to 200 values per filter.
const MAX_IDS: usize = 100;

/// The one place every read of a [`Batcher`] queues at: a batcher reads
/// one kind of resource through one client, so its reads all may share a
/// call. The name is never sent anywhere.
const READS: &str = "";

/// Coalesces reads by id into calls of up to [`MAX_IDS`] ids.
pub(crate) struct Batcher<V> {
    calls: Coalescer<String, Option<V>>,
}

impl<V: Clone + Send + 'static> Batcher<V> {
    /// `fetch` reads the resources with these ids: those that exist, by id.
    pub(crate) fn new<F, Fut>(fetch: F) -> Batcher<V>
    where
        F: Fn(Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ProviderResult<HashMap<String, V>>> + Send + 'static,
    {
        let fetch = Arc::new(fetch);
        Batcher {
            // Every read waiting goes in the next call, whatever their
            // number: `in_chunks` splits them by what EC2 takes.
            calls: Coalescer::new("read", usize::MAX, move |_, ids| {
                in_chunks(fetch.clone(), ids)
            }),
        }
    }

    /// The resource with this id, `None` when the call did not return it.
    pub(crate) async fn get(&self, id: &str) -> ProviderResult<Option<V>> {
        self.calls.call(READS, id.to_string()).await
    }
}

/// Each asker's answer from calls of up to [`MAX_IDS`] distinct ids: an id
/// asked twice is asked for once. A failed call fails every asker.
async fn in_chunks<V, F, Fut>(fetch: Arc<F>, ids: Vec<String>) -> Vec<ProviderResult<Option<V>>>
where
    V: Clone,
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = ProviderResult<HashMap<String, V>>>,
{
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    let mut found = HashMap::new();
    for chunk in distinct.chunks(MAX_IDS) {
        match fetch(chunk.to_vec()).await {
            Ok(part) => found.extend(part),
            Err(e) => return ids.iter().map(|_| Err(e.clone())).collect(),
        }
    }
    ids.iter().map(|id| Ok(found.get(id).cloned())).collect()
}

/// Coalesces writes to one place (a hosted zone's record sets, a region's
/// instances to terminate) into calls of up to `max` items, as [`Batcher`]
/// does reads: the first writer waits for no one, the others for at most
/// the call before theirs. Each writer gets its own item's answer: `send`
/// answers every item, in order (when one bad item fails a whole call,
/// `send` tries the items alone to say which).
///
/// Writes made at once are the rule, not the exception: a destroy deletes
/// thirty servers, or every record of a zone, the moment what depends on
/// them is gone, and a region's API limits calls, not items.
pub(crate) struct WriteBatcher<I, O>(Coalescer<I, O>);

impl<I: Send + 'static, O: Send + 'static> WriteBatcher<I, O> {
    /// `send` makes one call for these items at this place.
    pub(crate) fn new<F, Fut>(max: usize, send: F) -> WriteBatcher<I, O>
    where
        F: Fn(String, Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<ProviderResult<O>>> + Send + 'static,
    {
        WriteBatcher(Coalescer::new("write", max, send))
    }

    /// Writes `item` at `place`, with whatever else is written there now.
    pub(crate) async fn write(&self, place: &str, item: I) -> ProviderResult<O> {
        self.0.call(place, item).await
    }
}

type Sent<O> = Pin<Box<dyn Future<Output = Vec<ProviderResult<O>>> + Send>>;
type SendFn<I, O> = Arc<dyn Fn(String, Vec<I>) -> Sent<O> + Send + Sync>;
type Pending<I, O> = (I, oneshot::Sender<ProviderResult<O>>);
/// What waits, by place; a place is present while a task sends its calls.
type Places<I, O> = Arc<Mutex<HashMap<String, Vec<Pending<I, O>>>>>;

/// What both batchers are: items queued by place while a call for that
/// place is in flight go in its next call, up to `max` at a time, each
/// item with its own answer.
struct Coalescer<I, O> {
    places: Places<I, O>,
    send: SendFn<I, O>,
    max: usize,
    /// "read" or "write", for the errors its callers see.
    what: &'static str,
}

impl<I: Send + 'static, O: Send + 'static> Coalescer<I, O> {
    fn new<F, Fut>(what: &'static str, max: usize, send: F) -> Coalescer<I, O>
    where
        F: Fn(String, Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<ProviderResult<O>>> + Send + 'static,
    {
        Coalescer {
            places: Arc::new(Mutex::new(HashMap::new())),
            send: Arc::new(move |place, items| Box::pin(send(place, items))),
            max: max.max(1),
            what,
        }
    }

    /// `item`'s answer from the next call at `place`.
    async fn call(&self, place: &str, item: I) -> ProviderResult<O> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut places = self.places.lock().unwrap_or_else(|e| e.into_inner());
            match places.get_mut(place) {
                Some(waiting) => {
                    waiting.push((item, tx));
                    false
                }
                None => {
                    places.insert(place.to_string(), vec![(item, tx)]);
                    true
                }
            }
        };
        if start {
            let sending = Sending {
                places: self.places.clone(),
                place: place.to_string(),
                ended: false,
            };
            tokio::spawn(sending.run(self.send.clone(), self.max, self.what));
        }
        rx.await.unwrap_or_else(|_| {
            Err(ProviderError::Transient(format!(
                "a batched {} was dropped before it answered",
                self.what
            )))
        })
    }
}

/// The task sending one place's calls until no one waits there.
struct Sending<I, O> {
    places: Places<I, O>,
    place: String,
    /// It left the map itself; otherwise (the runtime dropped it) its drop
    /// does, so that the next caller starts a new task instead of waiting
    /// on no one.
    ended: bool,
}

impl<I, O> Sending<I, O> {
    async fn run(mut self, send: SendFn<I, O>, max: usize, what: &str) {
        loop {
            // Callers made ready by the same event join this call.
            tokio::task::yield_now().await;
            let batch: Vec<Pending<I, O>> = {
                let mut places = self.places.lock().unwrap_or_else(|e| e.into_inner());
                let waiting = places
                    .get_mut(&self.place)
                    .expect("a place stays while its task runs");
                if waiting.is_empty() {
                    places.remove(&self.place);
                    self.ended = true;
                    return;
                }
                let n = waiting.len().min(max);
                waiting.drain(..n).collect()
            };
            let (items, callers): (Vec<I>, Vec<_>) = batch.into_iter().unzip();
            // A panic in one call (a bug) fails that call's items, not the
            // place: the items queued behind it still get their call. No
            // state of ours is held across it, so nothing is left half-made.
            let sent = AssertUnwindSafe(send(self.place.clone(), items))
                .catch_unwind()
                .await;
            let mut answers = match sent {
                Ok(answers) => answers.into_iter(),
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    let e = ProviderError::Permanent(format!(
                        "the call for a batched {what} panicked (a bug in cairn): {why}"
                    ));
                    callers
                        .iter()
                        .map(|_| Err(e.clone()))
                        .collect::<Vec<_>>()
                        .into_iter()
                }
            };
            for caller in callers {
                let answer = answers.next().unwrap_or_else(|| {
                    Err(ProviderError::Permanent(format!(
                        "a batched {what} got no answer of its own"
                    )))
                });
                // A caller that gave up (its future dropped) needs no answer.
                let _ = caller.send(answer);
            }
        }
    }
}

impl<I, O> Drop for Sending<I, O> {
    fn drop(&mut self) {
        if !self.ended {
            // Its callers' senders go with the entry: they get an error.
            self.places
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.place);
        }
    }
}

/// One call for all `items`, else, when it fails for a reason one item may
/// be alone to blame, one call per item. A retryable failure (throttled, a
/// network fault) is every item's: trying them alone would only add calls.
pub(crate) async fn all_or_each<I, F, Fut>(items: &[I], call: F) -> Vec<ProviderResult<()>>
where
    F: Fn(&[I]) -> Fut,
    Fut: Future<Output = ProviderResult<()>>,
{
    match call(items).await {
        Ok(()) => items.iter().map(|_| Ok(())).collect(),
        Err(e) if items.len() == 1 || e.is_retryable() => {
            items.iter().map(|_| Err(e.clone())).collect()
        }
        Err(_) => {
            let mut each = Vec::with_capacity(items.len());
            for item in items {
                each.push(call(std::slice::from_ref(item)).await);
            }
            each
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
            b.calls.places.lock().unwrap().get(READS).map(Vec::len) == Some(250)
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
        until("the batcher idle", || {
            b.calls.places.lock().unwrap().is_empty()
        })
        .await;
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_made_during_a_call_go_out_together_per_place_and_each_gets_its_own() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (logged, held) = (calls.clone(), gate.clone());
        let w = Arc::new(WriteBatcher::new(
            100,
            move |place: String, items: Vec<u32>| {
                let first = {
                    let mut calls = logged.lock().unwrap();
                    calls.push((place.clone(), items.len()));
                    calls.len() == 1
                };
                let held = held.clone();
                async move {
                    if first {
                        held.acquire().await.unwrap().forget();
                    }
                    // Odd items are refused: each writer must get its own.
                    items
                        .into_iter()
                        .map(|i| {
                            if i % 2 == 0 {
                                Ok(format!("{place} {i}"))
                            } else {
                                Err(ProviderError::Permanent(format!("{i} refused")))
                            }
                        })
                        .collect()
                }
            },
        ));
        let mut tasks = tokio::task::JoinSet::new();
        let write = |tasks: &mut tokio::task::JoinSet<_>, place: &'static str, i: u32| {
            let w = w.clone();
            tasks.spawn(async move { (place, i, w.write(place, i).await) });
        };
        write(&mut tasks, "a", 0);
        until("the first call", || calls.lock().unwrap().len() == 1).await;
        for i in 1..250 {
            write(&mut tasks, "a", i);
        }
        // Another place does not wait for the first's call.
        write(&mut tasks, "b", 7);
        until("250 writes waiting at a", || {
            w.0.places.lock().unwrap().get("a").map(Vec::len) == Some(249)
        })
        .await;
        until("b's call", || calls.lock().unwrap().len() == 2).await;
        gate.add_permits(1);
        let mut answered = 0;
        while let Some(done) = tasks.join_next().await {
            let (place, i, got) = done.unwrap();
            if i % 2 == 0 {
                assert_eq!(got.unwrap(), format!("{place} {i}"));
            } else {
                assert_eq!(got, Err(ProviderError::Permanent(format!("{i} refused"))));
            }
            answered += 1;
        }
        assert_eq!(answered, 251);
        let calls = calls.lock().unwrap().clone();
        let at = |p: &str| -> Vec<usize> {
            calls
                .iter()
                .filter(|(c, _)| c == p)
                .map(|(_, n)| *n)
                .collect()
        };
        assert_eq!(at("a"), vec![1, 100, 100, 49]);
        assert_eq!(at("b"), vec![1]);
        until("every place idle", || w.0.places.lock().unwrap().is_empty()).await;
    }

    #[tokio::test]
    async fn a_call_that_panics_fails_its_writers_and_the_next_write_starts_again() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let w = WriteBatcher::new(10, move |_place, items: Vec<u32>| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(n > 0, "the first call panics");
                items.into_iter().map(Ok).collect()
            }
        });
        assert_eq!(
            w.write("p", 1).await,
            Err(ProviderError::Permanent(
                "the call for a batched write panicked (a bug in cairn): the first call panics"
                    .into()
            ))
        );
        assert_eq!(w.write("p", 2).await, Ok(2));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_that_panics_fails_its_askers_and_the_reads_behind_it_get_their_call() {
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (counted, held) = (calls.clone(), gate.clone());
        let b = Arc::new(Batcher::new(move |ids: Vec<String>| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let held = held.clone();
            async move {
                if n == 0 {
                    held.acquire().await.unwrap().forget();
                    panic!("describe of {ids:?} panics");
                }
                Ok(ids.into_iter().map(|id| (id, 1)).collect())
            }
        }));
        let bounded = |b: Arc<Batcher<i32>>, id: &'static str| async move {
            tokio::time::timeout(std::time::Duration::from_secs(10), b.get(id))
                .await
                .unwrap_or_else(|_| panic!("the read of {id} hung"))
        };
        let first = tokio::spawn(bounded(b.clone(), "a"));
        until("the first call", || calls.load(Ordering::SeqCst) == 1).await;
        // Asked while the call that will panic is in flight.
        let behind = tokio::spawn(bounded(b.clone(), "b"));
        until("a read queued behind it", || {
            b.calls.places.lock().unwrap().get(READS).map(Vec::len) == Some(1)
        })
        .await;
        gate.add_permits(1);
        assert_eq!(
            first.await.unwrap(),
            Err(ProviderError::Permanent(
                "the call for a batched read panicked (a bug in cairn): \
                 describe of [\"a\"] panics"
                    .into()
            ))
        );
        assert_eq!(behind.await.unwrap(), Ok(Some(1)));
        // Once idle, a read starts a call anew.
        until("the batcher idle", || {
            b.calls.places.lock().unwrap().is_empty()
        })
        .await;
        assert_eq!(bounded(b.clone(), "c").await, Ok(Some(1)));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    /// A call of `all_or_each` that refuses any slice holding a 0, and
    /// records the sizes it was called with.
    async fn refusing_zero(
        items: &[u32],
        error: ProviderError,
    ) -> (Vec<ProviderResult<()>>, Vec<usize>) {
        let sizes = Mutex::new(Vec::new());
        let out = all_or_each(items, |slice| {
            sizes.lock().unwrap().push(slice.len());
            let refused = slice.contains(&0);
            let error = error.clone();
            async move { if refused { Err(error) } else { Ok(()) } }
        })
        .await;
        (out, sizes.into_inner().unwrap())
    }

    #[tokio::test]
    async fn one_refused_item_is_found_by_trying_each_alone_a_retryable_failure_is_everyones() {
        let gone = ProviderError::NotFound("i-0 is gone".into());
        let (out, sizes) = refusing_zero(&[3, 0, 5], gone.clone()).await;
        assert_eq!(out, vec![Ok(()), Err(gone.clone()), Ok(())]);
        assert_eq!(sizes, vec![3, 1, 1, 1]);

        let (out, sizes) = refusing_zero(&[3, 5], gone.clone()).await;
        assert_eq!(out, vec![Ok(()), Ok(())]);
        assert_eq!(sizes, vec![2]);

        let throttled = ProviderError::Throttled {
            retry_after: None,
            message: "slow down".into(),
        };
        let (out, sizes) = refusing_zero(&[3, 0, 5], throttled.clone()).await;
        assert_eq!(out, vec![Err(throttled.clone()); 3]);
        assert_eq!(sizes, vec![3], "no call per item for a retryable failure");

        let (out, sizes) = refusing_zero(&[0], gone.clone()).await;
        assert_eq!(out, vec![Err(gone)]);
        assert_eq!(sizes, vec![1]);
    }
}
