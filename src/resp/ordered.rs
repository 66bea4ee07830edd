//! The replies of one connection's started commands, in command order.
//!
//! Replies must be written in the order their commands arrived, so only the
//! oldest command's reply can ever be written next. [`Ordered`] polls each
//! command's future once when it starts (which sends its peer messages and
//! registers it for replies), and afterwards only when one of them has been
//! woken: then every started one is polled once (a sweep), so that a
//! younger command whose answers came takes its next step at once. A read
//! that must confirm a miss, or a read-modify-write that writes after its
//! read, sends its second round then, not only once every older command is
//! done: a pipeline of them costs one round trip more, not one each.
//!
//! The futures are polled with a waker of the queue's own, which notes
//! that one of them was woken and then wakes the task; the queue sweeps
//! only after such a wake, not when the task was woken by its socket.
//!
//! A command may also be *deferred* ([`Ordered::push_deferred`]): it is
//! not polled at all until it becomes the oldest, so it starts only after
//! every older command has finished (a read-modify-write that must see
//! the connection's earlier writes of its key; see `resp::order`).
//!
//! This replaced `FuturesOrdered`, whose per-future task node, wake-up
//! queue and reordering heap cost about a thousand instructions per
//! unpipelined request. The price of one waker for all is that a wake
//! polls every started command still running, not only the one woken.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// Futures of `T` with data `S` each, finished strictly in push order.
pub struct Ordered<S, T> {
    queue: VecDeque<Slot<S, T>>,
    /// How many slots at the back were pushed since the last
    /// [`Ordered::poll_next`], done ones included: the futures among them
    /// have not been polled once.
    unpolled: usize,
    /// Notes that a future was woken, and wakes the task that polls.
    woken: Arc<Woken>,
    /// `woken` as the waker every future is polled with.
    waker: Waker,
}

/// The queue's waker: a future woke since the last sweep.
#[derive(Default)]
struct Woken {
    flag: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.flag.store(true, Ordering::Release);
        self.task.wake();
    }
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
        let woken = Arc::new(Woken::default());
        Ordered {
            queue: VecDeque::with_capacity(capacity),
            unpolled: 0,
            waker: Waker::from(woken.clone()),
            woken,
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

    /// Polls the commands pushed since the last call once each, or, when a
    /// future was woken since the last sweep, every started one (see the
    /// module doc); a deferred oldest starts. Ready with the oldest's data
    /// and answer once it is done.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<(S, T)>> {
        // Registered before the flag is taken: a wake after the swap finds
        // this task and polls it again.
        self.woken.task.register(cx.waker());
        let sweep = self.woken.flag.swap(false, Ordering::Acquire);
        let mut own = Context::from_waker(&self.waker);
        let len = self.queue.len();
        let fresh = self.unpolled.min(len);
        self.unpolled = 0;
        let from = if sweep { 0 } else { len - fresh };
        // In push order: a write is stamped when it is first polled.
        for slot in self.queue.range_mut(from..) {
            if !slot.deferred() {
                slot.poll(&mut own);
            }
        }
        let Some(head) = self.queue.front_mut() else {
            return Poll::Ready(None);
        };
        if head.deferred() {
            head.poll(&mut own);
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

    /// A younger command woken while an older one still waits takes its
    /// next step at once (a read confirming a miss sends its second round),
    /// not only when it becomes the oldest.
    #[tokio::test]
    async fn a_younger_command_woken_takes_its_next_step_before_the_oldest_is_done() {
        let second_round = Arc::new(AtomicUsize::new(0));
        let mut q: Ordered<u32, &str> = Ordered::with_capacity(4);
        let (tx1, rx1) = oneshot::channel::<&str>();
        let (tx2, rx2) = oneshot::channel::<&str>();
        let (tx3, rx3) = oneshot::channel::<&str>();
        q.push(1, Box::pin(async move { rx1.await.unwrap_or("dropped") }));
        let steps = second_round.clone();
        q.push(
            2,
            Box::pin(async move {
                let first = rx2.await.unwrap_or("dropped");
                steps.fetch_add(1, Ordering::Relaxed);
                let second = rx3.await.unwrap_or("dropped");
                if first == "miss" {
                    second
                } else {
                    first
                }
            }),
        );
        assert_eq!(next(&mut q), None);
        tx2.send("miss").unwrap();
        assert_eq!(next(&mut q), None, "the oldest is not done");
        assert_eq!(
            second_round.load(Ordering::Relaxed),
            1,
            "the younger one went on to its second round"
        );
        // Not woken again: polling again runs nothing twice.
        assert_eq!(next(&mut q), None);
        assert_eq!(second_round.load(Ordering::Relaxed), 1);
        tx3.send("two").unwrap();
        tx1.send("one").unwrap();
        assert_eq!(next(&mut q), Some(Some((1, "one"))));
        assert_eq!(next(&mut q), Some(Some((2, "two"))));
    }

    /// A deferred command is not swept: it starts only as the oldest.
    #[tokio::test]
    async fn a_wake_does_not_start_a_deferred_command() {
        let started = Arc::new(AtomicUsize::new(0));
        let mut q: Ordered<u32, u32> = Ordered::with_capacity(4);
        let (tx1, rx1) = oneshot::channel::<u32>();
        let (tx2, rx2) = oneshot::channel::<u32>();
        q.push(1, Box::pin(async move { rx1.await.unwrap_or(0) }));
        q.push(2, Box::pin(async move { rx2.await.unwrap_or(0) }));
        let counted = started.clone();
        q.push_deferred(
            3,
            Box::pin(async move {
                counted.fetch_add(1, Ordering::Relaxed);
                3
            }),
        );
        assert_eq!(next(&mut q), None);
        tx2.send(2).unwrap();
        assert_eq!(next(&mut q), None);
        assert_eq!(started.load(Ordering::Relaxed), 0, "deferred: not started");
        tx1.send(1).unwrap();
        assert_eq!(next(&mut q), Some(Some((1, 1))));
        assert_eq!(next(&mut q), Some(Some((2, 2))));
        assert_eq!(next(&mut q), Some(Some((3, 3))));
        assert_eq!(started.load(Ordering::Relaxed), 1);
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
