//! The replies of one connection's started commands, in command order.
//!
//! Replies must be written in the order their commands arrived, so only the
//! oldest command's reply can ever be written next. [`Ordered`] therefore
//! polls each command's future once when it starts (which sends its peer
//! messages and registers it for replies) and afterwards only the oldest
//! one; when that finishes, the next becomes the oldest and is polled. A
//! younger command whose replies arrive early simply finds them waiting in
//! its inbox when its turn comes.
//!
//! A command may also be *deferred* ([`Ordered::push_deferred`]): it is
//! not polled at all until it becomes the oldest, so it starts only after
//! every older command has finished (a read-modify-write that must see
//! the connection's earlier writes of its key; see `resp::order`).
//!
//! This replaced `FuturesOrdered`, whose per-future task node, wake-up
//! queue and reordering heap cost about a thousand instructions per
//! unpipelined request. The price is that a younger command notices its own
//! deadlines (a read's speculation delay) only when it becomes the oldest;
//! since it started later than every older one, the older ones' deadlines
//! come first anyway, and the younger one acts at once when polled.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Futures of `T` with data `S` each, finished strictly in push order.
pub struct Ordered<S, T> {
    queue: VecDeque<Slot<S, T>>,
    /// How many slots at the back were pushed since the last
    /// [`Ordered::poll_next`], done ones included: the futures among them
    /// have not been polled once.
    unpolled: usize,
}

struct Slot<S, T> {
    data: S,
    state: State<T>,
}

enum State<T> {
    /// Running once polled; a deferred future (see
    /// [`Ordered::push_deferred`]) is not polled until it is the oldest.
    Running {
        fut: Pin<Box<dyn Future<Output = T> + Send>>,
        deferred: bool,
    },
    Done(T),
}

impl<S, T> Ordered<S, T> {
    /// An empty queue with room for `capacity` commands.
    pub fn with_capacity(capacity: usize) -> Self {
        Ordered {
            queue: VecDeque::with_capacity(capacity),
            unpolled: 0,
        }
    }

    /// Commands started and not yet taken.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no command waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Starts `fut`; it is first polled by the next [`Ordered::poll_next`].
    pub fn push(&mut self, data: S, fut: Pin<Box<dyn Future<Output = T> + Send>>) {
        self.queue.push_back(Slot {
            data,
            state: State::Running {
                fut,
                deferred: false,
            },
        });
        self.unpolled += 1;
    }

    /// Queues `fut` to start only once every older command has finished:
    /// it is first polled when it becomes the oldest.
    pub fn push_deferred(&mut self, data: S, fut: Pin<Box<dyn Future<Output = T> + Send>>) {
        self.queue.push_back(Slot {
            data,
            state: State::Running {
                fut,
                deferred: true,
            },
        });
        self.unpolled += 1;
    }

    /// The data of every command not yet taken, oldest first.
    pub fn data(&self) -> impl Iterator<Item = &S> {
        self.queue.iter().map(|slot| &slot.data)
    }

    /// Queues an answer known at once (a protocol error, say).
    pub fn push_done(&mut self, data: S, value: T) {
        self.queue.push_back(Slot {
            data,
            state: State::Done(value),
        });
        // Counted with the fresh slots: were it not, the next poll would
        // take it for one of the futures pushed before it, leave the oldest
        // of them unpolled, and start that one after the younger ones.
        self.unpolled += 1;
    }

    /// Polls the commands pushed since the last call once each, then the
    /// oldest; ready with the oldest's data and answer once it is done.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<(S, T)>> {
        let len = self.queue.len();
        let fresh = self.unpolled.min(len);
        self.unpolled = 0;
        for slot in self.queue.range_mut(len - fresh..) {
            if !slot.deferred() {
                slot.poll(cx);
            }
        }
        let Some(head) = self.queue.front_mut() else {
            return Poll::Ready(None);
        };
        // A head that was just polled above needs no second poll; a
        // deferred one starts now.
        if fresh < len || head.deferred() {
            head.poll(cx);
        }
        if !matches!(head.state, State::Done(_)) {
            return Poll::Pending;
        }
        let Some(Slot { data, state }) = self.queue.pop_front() else {
            return Poll::Ready(None);
        };
        match state {
            State::Done(value) => Poll::Ready(Some((data, value))),
            State::Running { .. } => Poll::Ready(None),
        }
    }
}

impl<S, T> Slot<S, T> {
    /// Whether this is a deferred future not yet started.
    fn deferred(&self) -> bool {
        matches!(self.state, State::Running { deferred: true, .. })
    }

    fn poll(&mut self, cx: &mut Context<'_>) {
        if let State::Running { fut, deferred } = &mut self.state {
            // Polled at last: a deferred future has started.
            *deferred = false;
            if let Poll::Ready(value) = fut.as_mut().poll(cx) {
                self.state = State::Done(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::sync::oneshot;

    fn next<S, T>(q: &mut Ordered<S, T>) -> Option<Option<(S, T)>> {
        std::future::poll_fn(|cx| q.poll_next(cx)).now_or_never()
    }

    #[tokio::test]
    async fn answers_come_out_in_push_order_and_every_future_starts_at_once() {
        let started = Arc::new(AtomicUsize::new(0));
        let mut q: Ordered<u32, &str> = Ordered::with_capacity(4);
        let (tx1, rx1) = oneshot::channel::<&str>();
        let (tx2, rx2) = oneshot::channel::<&str>();
        for (i, rx) in [(1, rx1), (2, rx2)] {
            let started = started.clone();
            q.push(
                i,
                Box::pin(async move {
                    started.fetch_add(1, Ordering::Relaxed);
                    rx.await.unwrap_or("dropped")
                }),
            );
        }
        q.push_done(3, "three");
        assert_eq!(next(&mut q), None, "nothing finished yet");
        assert_eq!(
            started.load(Ordering::Relaxed),
            2,
            "both started on the first poll"
        );
        // The younger one finishing first changes nothing: order is kept.
        tx2.send("two").unwrap();
        assert_eq!(next(&mut q), None);
        tx1.send("one").unwrap();
        assert_eq!(next(&mut q), Some(Some((1, "one"))));
        assert_eq!(next(&mut q), Some(Some((2, "two"))));
        assert_eq!(next(&mut q), Some(Some((3, "three"))));
        assert_eq!(next(&mut q), Some(None));
        assert!(q.is_empty());
    }

    /// A write is stamped when its future is first polled, so the futures
    /// of one batch must start in push order, even with a known answer (a
    /// QUEUED, a read answered at once) pushed after them.
    #[tokio::test]
    async fn futures_start_in_push_order_with_done_answers_among_them() {
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut q: Ordered<u32, u32> = Ordered::with_capacity(8);
        let starting = |i: u32| {
            let order = order.clone();
            Box::pin(async move {
                order.lock().unwrap().push(i);
                std::future::pending::<u32>().await
            })
        };
        q.push(1, starting(1));
        q.push(2, starting(2));
        q.push_done(3, 3);
        assert_eq!(next(&mut q), None);
        q.push(4, starting(4));
        q.push_done(5, 5);
        q.push_done(6, 6);
        q.push(7, starting(7));
        assert_eq!(next(&mut q), None);
        assert_eq!(*order.lock().unwrap(), vec![1, 2, 4, 7]);
    }

    #[tokio::test]
    async fn the_oldest_wakes_the_task_when_it_finishes() {
        let mut q: Ordered<(), u8> = Ordered::with_capacity(1);
        let (tx, rx) = oneshot::channel::<u8>();
        q.push((), Box::pin(async move { rx.await.unwrap_or(0) }));
        let waiter = tokio::spawn(async move { std::future::poll_fn(|cx| q.poll_next(cx)).await });
        tokio::task::yield_now().await;
        tx.send(7).unwrap();
        assert_eq!(waiter.await.unwrap(), Some(((), 7)));
    }
}
