//! Per-connection ordering of the parts of requests that must happen in request order.
//!
//! Requests on one connection are handled concurrently (a Fetch may long-poll while Produce
//! requests behind it proceed), but two Produce requests from one connection must append in the
//! order they were sent, or a pipelining producer would see its batches reordered. Each request
//! gets a [`Ticket`] in arrival order; a handler that needs ordering calls [`Ticket::enter`],
//! which waits until every earlier ticket is finished. A ticket is finished when its guard or the
//! ticket itself is dropped, so a handler that needs no ordering (or that panics) never blocks
//! the requests behind it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

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
