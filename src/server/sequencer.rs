//! Per-connection ordering of the parts of requests that must happen in request order.
//!
//! Requests on one connection are handled concurrently (a Fetch may long-poll while Produce
//! requests behind it proceed), but two Produce requests from one connection must append in the
//! order they were sent, or a pipelining producer would see its batches reordered. Each request
//! gets a [`Ticket`] in arrival order; a handler that needs ordering calls [`Ticket::enter`],
//! which waits until every earlier ticket is finished. A ticket is finished when its guard or the
//! ticket itself is dropped, so a handler that needs no ordering (or that panics) never blocks
//! the requests behind it.
//!
//! Blocking ordered work (Produce's appends: file writes, rolls): a handler in its turn hands
//! the work to [`TurnGuard::run_ordered`] and leaves its turn at once. The connection's work
//! runs FIFO on one blocking thread at a time, and whatever queued up while that thread ran is
//! done in the same wake-up, so pipelined requests share thread hand-offs (as group commit
//! shares fsyncs) instead of each holding the turn across one. A request whose whole handler is
//! ordered ([`Order::Whole`](crate::handlers::Order)) waits in its turn until the queued work
//! is done ([`TurnGuard::drained`]), so it takes effect after every earlier append.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Notify};

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Work {
    jobs: VecDeque<Job>,
    /// A blocking thread is draining `jobs`.
    running: bool,
}

#[derive(Default)]
struct State {
    /// The lowest ticket not yet finished.
    next: u64,
    /// Finished tickets above `next`.
    finished: BTreeSet<u64>,
}

#[derive(Default)]
pub struct Sequencer {
    state: Mutex<State>,
    notify: Notify,
    issued: std::sync::atomic::AtomicU64,
    work: Mutex<Work>,
    /// Notified when `work` runs empty.
    idle: Notify,
}

impl Sequencer {
    pub fn new() -> Arc<Sequencer> {
        Arc::new(Sequencer::default())
    }

    /// Issues the next ticket. Call in request arrival order.
    pub fn ticket(self: &Arc<Self>) -> Ticket {
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ticket {
            seq: self.clone(),
            n,
            done: false,
        }
    }

    fn finish(&self, n: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.finished.insert(n);
        loop {
            let next = s.next;
            if !s.finished.remove(&next) {
                break;
            }
            s.next += 1;
        }
        drop(s);
        self.notify.notify_waiters();
    }

    fn is_turn(&self, n: u64) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).next == n
    }

    fn work(&self) -> std::sync::MutexGuard<'_, Work> {
        self.work.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn submit<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let mut w = self.work();
        w.jobs.push_back(Box::new(move || {
            let _ = tx.send(f());
        }));
        if !w.running {
            w.running = true;
            let seq = self.clone();
            tokio::task::spawn_blocking(move || seq.drain());
        }
        rx
    }

    /// Runs queued work in order until none is left (on a blocking thread).
    fn drain(&self) {
        loop {
            let jobs = {
                let mut w = self.work();
                if w.jobs.is_empty() {
                    w.running = false;
                    drop(w);
                    self.idle.notify_waiters();
                    return;
                }
                std::mem::take(&mut w.jobs)
            };
            for job in jobs {
                // A panicking job drops its sender (the waiter sees an error); the rest run.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        }
    }

    async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let w = self.work();
                if !w.running && w.jobs.is_empty() {
                    return;
                }
            }
            notified.await;
        }
    }
}

/// A request's place in its connection's order.
pub struct Ticket {
    seq: Arc<Sequencer>,
    n: u64,
    done: bool,
}

impl Ticket {
    /// Waits until every earlier request has finished its ordered part (or needs none).
    /// The returned guard finishes this ticket when dropped.
    pub async fn enter(mut self) -> TurnGuard {
        loop {
            let notified = self.seq.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.seq.is_turn(self.n) {
                break;
            }
            notified.await;
        }
        self.done = true;
        TurnGuard {
            seq: self.seq.clone(),
            n: self.n,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.seq.finish(self.n);
        }
    }
}

/// Held while a request does its ordered part.
pub struct TurnGuard {
    seq: Arc<Sequencer>,
    n: u64,
}

impl TurnGuard {
    /// Queues `f` (blocking work that must happen in this request's order) on the connection's
    /// ordered worker; the turn may be left right after. Resolves to `f`'s result (an error if
    /// it panicked).
    pub fn run_ordered<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        self.seq.submit(f)
    }

    /// Whether no ordered work is queued or running (work done now, inline, stays in order).
    pub fn idle(&self) -> bool {
        let w = self.seq.work();
        !w.running && w.jobs.is_empty()
    }

    /// Waits until the ordered work queued by earlier requests is done.
    pub async fn drained(&self) {
        self.seq.drained().await
    }
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        self.seq.finish(self.n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn later_tickets_wait_for_earlier_ones() {
        let seq = Sequencer::new();
        let t0 = seq.ticket();
        let t1 = seq.ticket();
        let t2 = seq.ticket();
        let order = Arc::new(Mutex::new(Vec::new()));
        let o = order.clone();
        let h2 = tokio::spawn(async move {
            let _g = t2.enter().await;
            o.lock().unwrap().push(2);
        });
        let o = order.clone();
        let h1 = tokio::spawn(async move {
            let _g = t1.enter().await;
            o.lock().unwrap().push(1);
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            order.lock().unwrap().is_empty(),
            "ran before ticket 0 finished"
        );
        drop(t0); // a request that needed no ordering
        h1.await.unwrap();
        h2.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec![1, 2]);
    }
}
