//! A link's queue: the messages waiting for its next socket write.
//!
//! Every message a node sends to a peer passes through one of these, so a
//! send is kept to a lock, a push and, only when the queue was empty, a
//! wake of the link task. The link task takes everything waiting at once,
//! by trading its emptied vector for the queue's (both keep their
//! capacity). A tokio `mpsc` channel, which this replaces, took and gave
//! back a semaphore permit for every message (the giving back under the
//! semaphore's own lock) and pushed and popped a block list: about 300
//! instructions a message between the two sides, on every node.
//!
//! The queue is bounded, as the channel was: a message that finds `cap`
//! messages waiting is dropped at once (see [`super::Transport::send`]).
//! With what the link task took and is still writing, a link holds at most
//! twice `cap` messages.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// A bounded multi-producer queue drained whole by one consumer.
pub(super) struct Queue<T> {
    state: Mutex<State<T>>,
    /// Rung by the push that makes the queue non-empty. A ring with no
    /// waiter is kept for the next wait, so none is lost.
    ready: Notify,
    cap: usize,
}

struct State<T> {
    items: Vec<T>,
    /// Set when the consumer is gone for good: pushes fail from then on.
    closed: bool,
}

impl<T> Queue<T> {
    /// An empty queue holding at most `cap` items.
    pub(super) fn new(cap: usize) -> Self {
        Queue {
            state: Mutex::new(State {
                items: Vec::new(),
                closed: false,
            }),
            ready: Notify::new(),
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing under the lock can be left half done by a panic (a push
        // or a swap of vectors), so the state is taken as it is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item`, or hands it back when the queue is full or closed.
    pub(super) fn push(&self, item: T) -> Result<(), T> {
        let mut state = self.lock();
        if state.closed || state.items.len() >= self.cap {
            return Err(item);
        }
        state.items.push(item);
        let first = state.items.len() == 1;
        drop(state);
        if first {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// [`Self::push`] of each of `items` in turn, under one lock; how many
    /// found the queue full or closed (those are dropped).
    pub(super) fn push_all(&self, items: impl IntoIterator<Item = T>) -> usize {
        let mut refused = Vec::new();
        let first = {
            let mut state = self.lock();
            let was_empty = state.items.is_empty();
            for item in items {
                if state.closed || state.items.len() >= self.cap {
                    refused.push(item);
                } else {
                    state.items.push(item);
                }
            }
            was_empty && !state.items.is_empty()
        };
        if first {
            self.ready.notify_one();
        }
        // Dropped after the lock is released.
        refused.len()
    }

    /// Moves everything waiting into `into`, which must be empty (its
    /// capacity goes to the queue); how many items that was.
    pub(super) fn take_into(&self, into: &mut Vec<T>) -> usize {
        debug_assert!(into.is_empty());
        let mut state = self.lock();
        std::mem::swap(&mut state.items, into);
        into.len()
    }

    /// Returns once something may be waiting: after a push into an empty
    /// queue, possibly one already taken by [`Self::take_into`].
    pub(super) async fn ready(&self) {
        self.ready.notified().await
    }

    /// Drops everything waiting; how many items that was.
    pub(super) fn clear(&self) -> usize {
        let dropped = std::mem::take(&mut self.lock().items);
        dropped.len()
    }

    /// Refuses every later push, and drops what is waiting.
    pub(super) fn close(&self) {
        let dropped = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.items)
        };
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn takes_everything_waiting_in_order() {
        let q = Queue::new(8);
        for i in 0..5 {
            assert!(q.push(i).is_ok());
        }
        let mut got = Vec::new();
        assert_eq!(q.take_into(&mut got), 5);
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        got.clear();
        assert_eq!(q.take_into(&mut got), 0);
    }

    #[test]
    fn a_full_queue_hands_the_item_back() {
        let q = Queue::new(2);
        assert!(q.push(1).is_ok());
        assert!(q.push(2).is_ok());
        assert_eq!(q.push(3), Err(3));
        let mut got = Vec::new();
        q.take_into(&mut got);
        // Room again once taken.
        assert!(q.push(4).is_ok());
        assert_eq!(got, vec![1, 2]);
    }

    #[test]
    fn push_all_queues_in_order_what_fits_and_counts_the_rest() {
        let q = Queue::new(4);
        q.push(0).unwrap();
        assert_eq!(q.push_all(1..=5), 2, "room for three of five");
        let mut got = Vec::new();
        q.take_into(&mut got);
        assert_eq!(got, vec![0, 1, 2, 3]);
        q.close();
        assert_eq!(q.push_all(6..=7), 2, "a closed queue takes none");
    }

    #[tokio::test]
    async fn push_all_into_an_empty_queue_wakes_the_consumer() {
        let q = Queue::new(8);
        assert_eq!(q.push_all([1, 2]), 0);
        tokio::time::timeout(Duration::from_secs(5), q.ready())
            .await
            .expect("a batch pushed into an empty queue rings");
    }

    #[test]
    fn clear_and_close_drop_what_waits_and_close_refuses_more() {
        let q = Queue::new(4);
        q.push(1).unwrap();
        q.push(2).unwrap();
        assert_eq!(q.clear(), 2);
        q.push(3).unwrap();
        q.close();
        assert_eq!(q.push(4), Err(4));
        let mut got = Vec::new();
        assert_eq!(q.take_into(&mut got), 0);
    }

    #[tokio::test]
    async fn a_push_wakes_a_waiting_consumer_and_no_wake_is_lost() {
        let q = Arc::new(Queue::new(64));
        // A push before anyone waits is not lost: the wait returns at once.
        q.push(0).unwrap();
        tokio::time::timeout(Duration::from_secs(5), q.ready())
            .await
            .expect("the earlier push's wake was kept");
        let mut got = Vec::new();
        q.take_into(&mut got);
        assert_eq!(got, vec![0]);

        let consumer = {
            let q = q.clone();
            tokio::spawn(async move {
                let (mut all, mut batch) = (Vec::new(), Vec::new());
                while all.len() < 100 {
                    if q.take_into(&mut batch) == 0 {
                        q.ready().await;
                        continue;
                    }
                    all.append(&mut batch);
                }
                all
            })
        };
        for i in 1..=100 {
            while q.push(i).is_err() {
                tokio::task::yield_now().await;
            }
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let all = tokio::time::timeout(Duration::from_secs(5), consumer)
            .await
            .expect("the consumer saw every push")
            .unwrap();
        assert_eq!(all, (1..=100).collect::<Vec<_>>());
    }
}
