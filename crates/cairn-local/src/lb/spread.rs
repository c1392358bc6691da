//! Keeping the workers' connections even. The kernel spreads new
//! connections over the workers' SO_REUSEPORT sockets by a hash of the
//! client's address and port, which is fair only on average: wrk's
//! keep-alive connections came out 35/30 or 36/29, and a keep-alive
//! connection stays where it landed, so the fuller worker's clients waited
//! longer for every request. So between two requests, a kept-alive
//! connection on a worker that holds at least `SLACK` more than the
//! emptiest moves to that one, whose runtime serves it from then on
//! (HAProxy's threads even their load the same way, at accept). Measured:
//! about 5% more requests/s at 4-8% less CPU each; the p99 did not move
//! (README, "Keeping the workers even").
//!
//! Only a connection known to stay moves: one that asked to close never
//! does, so `Connection: close` traffic, whose counts swing with every
//! request and which the hash spreads well over time, pays nothing
//! (handing over at accept moved 41% of those connections in a test run,
//! each with a wake of the other thread).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::mpsc;

/// A difference in open connections that the kernel's hash often leaves
/// among a few dozen clients, and that one hand-over mends.
const SLACK: usize = 2;

/// A connection one worker hands over to another, counted as that one's
/// from the hand-over on (so that two workers handing over at
/// once do not both pick the same one); a hand-over never received (the
/// worker stopped) uncounts itself as it drops.
pub(super) struct Handed {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub held: Held,
}

/// One worker's count of open connections, alone on its cache line(s):
/// each worker changes its own on every connection it opens and closes
/// (tens of thousands a second with `Connection: close`), and two counts
/// side by side would bounce one line between the cores.
#[repr(align(128))]
#[derive(Default)]
struct Count(AtomicUsize);

/// Each worker's open connections, and a way to hand it one.
pub(super) struct Spread {
    open: Vec<Count>,
    inboxes: Vec<mpsc::UnboundedSender<Handed>>,
    /// Connections handed over so far.
    moved: AtomicU64,
}

impl Spread {
    /// A spread over `n` workers, with each worker's inbox (in order).
    pub fn new(n: usize) -> (Arc<Self>, Vec<mpsc::UnboundedReceiver<Handed>>) {
        let (inboxes, receivers) = (0..n).map(|_| mpsc::unbounded_channel()).unzip();
        let open = (0..n).map(|_| Count::default()).collect();
        (
            Arc::new(Self {
                open,
                inboxes,
                moved: AtomicU64::new(0),
            }),
            receivers,
        )
    }

    /// The worker that should serve a kept-alive connection of `worker`'s
    /// from its next request on: the emptiest when `worker` holds at least
    /// `SLACK` more.
    pub fn pick(&self, worker: usize) -> usize {
        let mine = self.open[worker].0.load(Ordering::Relaxed);
        let (emptiest, theirs) = self
            .open
            .iter()
            .map(|n| n.0.load(Ordering::Relaxed))
            .enumerate()
            .min_by_key(|&(_, n)| n)
            .expect("at least one worker");
        if mine >= theirs + SLACK {
            emptiest
        } else {
            worker
        }
    }

    /// Counts a connection as `worker`'s until the guard drops (with the
    /// connection's task, however that ends).
    pub fn hold(self: &Arc<Self>, worker: usize) -> Held {
        self.open[worker].0.fetch_add(1, Ordering::Relaxed);
        Held {
            spread: self.clone(),
            worker,
        }
    }

    /// Gives `worker` a connection to serve; back when that worker takes
    /// no more (it has stopped).
    pub fn hand(
        self: &Arc<Self>,
        worker: usize,
        stream: std::net::TcpStream,
        peer: SocketAddr,
    ) -> Result<(), std::net::TcpStream> {
        let held = self.hold(worker);
        self.inboxes[worker]
            .send(Handed { stream, peer, held })
            .map_err(|mpsc::error::SendError(h)| h.stream)?;
        self.moved.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Connections handed over so far.
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// Open connections per worker.
    #[cfg(test)]
    pub fn counts(&self) -> Vec<usize> {
        self.open
            .iter()
            .map(|n| n.0.load(Ordering::Relaxed))
            .collect()
    }
}

/// One open connection of a worker, in its count while this lives.
pub(super) struct Held {
    spread: Arc<Spread>,
    worker: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.spread.open[self.worker]
            .0
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_stream() -> (std::net::TcpStream, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let peer = client.local_addr().unwrap();
        (client, peer)
    }

    #[test]
    fn a_worker_keeps_what_it_accepts_until_it_holds_slack_more() {
        let (spread, _inboxes) = Spread::new(3);
        assert_eq!(spread.pick(0), 0);
        let one = spread.hold(0);
        // One more than the others: the hash's usual unevenness, kept.
        assert_eq!(spread.pick(0), 0);
        let two = spread.hold(0);
        let elsewhere = spread.hold(1);
        assert_eq!(spread.counts(), vec![2, 1, 0]);
        // Two more than worker 2: to it; worker 1 is one more, keeps.
        assert_eq!(spread.pick(0), 2);
        assert_eq!(spread.pick(1), 1);
        assert_eq!(spread.pick(2), 2);
        drop((one, two, elsewhere));
        assert_eq!(spread.counts(), vec![0, 0, 0]);
    }

    #[test]
    fn a_connection_handed_over_counts_for_its_new_worker_until_it_drops() {
        let (spread, mut inboxes) = Spread::new(2);
        let (stream, peer) = a_stream();
        spread.hand(1, stream, peer).unwrap();
        // Counted before it is received, so another hand-over sees it.
        assert_eq!(spread.counts(), vec![0, 1]);
        let handed = inboxes[1].try_recv().unwrap();
        assert_eq!(handed.peer, peer);
        assert_eq!(spread.counts(), vec![0, 1]);
        drop(handed);
        assert_eq!(spread.counts(), vec![0, 0]);

        // Never received: the inbox dropped with it uncounts it.
        let (stream, peer) = a_stream();
        spread.hand(0, stream, peer).unwrap();
        assert_eq!(spread.counts(), vec![1, 0]);
        drop(inboxes.remove(0));
        assert_eq!(spread.counts(), vec![0, 0]);
    }

    #[test]
    fn a_worker_that_stopped_gives_the_connection_back() {
        let (spread, mut inboxes) = Spread::new(2);
        drop(inboxes.pop());
        let (stream, peer) = a_stream();
        let back = spread.hand(1, stream, peer).unwrap_err();
        assert_eq!(back.local_addr().unwrap(), peer);
        assert_eq!(spread.counts(), vec![0, 0]);
    }
}
