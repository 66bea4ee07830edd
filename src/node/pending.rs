//! Requests waiting for peer replies, and what wakes them.
//!
//! A coordinator request registers an [`Inbox`] under a fresh request id;
//! replies carrying that id are pushed into it by the peer reader. Besides
//! replies, a waiting request must wake up when a deadline passes (its
//! request timeout, or the moment a read asks more replicas) and when the
//! routing view changes. Giving every request its own timer and view
//! subscription cost more than a tenth of a quorum read's instructions
//! (a timer-wheel entry and a watch registration per request, dropped a
//! millisecond later). Instead:
//!
//! * a request writes the next instant it wants to be woken at into its
//!   inbox ([`Inbox::wake_at`]), and one sweeper task per node
//!   ([`Pending::sweep`], every [`SWEEP_EVERY`] while any request waits)
//!   pokes the inboxes whose instant has passed, so deadlines fire up to
//!   that much late;
//! * a view change pokes every waiting inbox ([`Pending::poke_all`]).
//!
//! A poke carries no message: the woken request looks at the clock and
//! the view and carries on. An inbox wakes its request through one
//! `AtomicWaker` (a `Notify` cost a lock of its waiter list on every wait
//! and every wake); a poke is a flag beside the queue, and both are looked
//! at again after the waker is registered, so neither is lost between a
//! check and the wait.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures::task::AtomicWaker;
use tokio::sync::Notify;

use crate::message::PeerMsg;
use crate::ring::NodeName;

/// How often the sweeper looks for requests whose wake-up instant passed:
/// the most a request deadline or a read's speculation fires late.
pub const SWEEP_EVERY: Duration = Duration::from_millis(5);

/// Replies in flight: request id to the inbox of the request awaiting it.
#[derive(Debug)]
pub struct Pending {
    next: AtomicU64,
    waiting: DashMap<u64, Arc<Inbox>, BuildHasherDefault<IdHasher>>,
    /// Wake-up instants are stored as microseconds since this.
    origin: Instant,
    /// Requests registered and not yet dropped (cheaper to keep than to
    /// ask the map), and the signal that the first one arrived.
    count: AtomicUsize,
    busy: Notify,
    /// Requests this node coordinates, from their start to their end,
    /// whether or not they registered (see [`Pending::begin`]).
    coordinating: AtomicUsize,
    /// How many times [`Pending::poke_all`] ran (see [`Pending::pokes`]).
    pokes: AtomicU64,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            next: AtomicU64::new(0),
            waiting: DashMap::default(),
            origin: crate::clock::instant(),
            count: AtomicUsize::new(0),
            busy: Notify::new(),
            coordinating: AtomicUsize::new(0),
            pokes: AtomicU64::new(0),
        }
    }
}

/// The replies delivered to one waiting request. One allocation per
/// request (a channel would allocate a block of slots, a `VecDeque` its
/// buffer on the first reply); replies wait under a lock that is held only
/// to push or pop.
#[derive(Debug)]
pub struct Inbox {
    queue: Mutex<Bag>,
    waker: AtomicWaker,
    poked: AtomicBool,
    /// When the sweeper should poke this inbox, in microseconds since
    /// [`Pending`]'s origin; `u64::MAX` for never.
    wake_at: AtomicU64,
    origin: Instant,
}

impl Inbox {
    /// The next reply, or `None` when the request was poked (a deadline it
    /// asked for passed, or the view changed) with no reply waiting.
    pub async fn next(&self) -> Option<(NodeName, PeerMsg)> {
        std::future::poll_fn(|cx| {
            if let Some(ready) = self.take() {
                return Poll::Ready(ready);
            }
            self.waker.register(cx.waker());
            // A reply or a poke that came between the look above and the
            // registration woke the previous waker: look again.
            match self.take() {
                Some(ready) => Poll::Ready(ready),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// A waiting reply (`Some(Some(..))`), else a poke (`Some(None)`), else
    /// nothing yet.
    fn take(&self) -> Option<Option<(NodeName, PeerMsg)>> {
        if let Some(reply) = self.lock().pop() {
            return Some(Some(reply));
        }
        self.poked.swap(false, Ordering::AcqRel).then_some(None)
    }

    /// The next reply, however long it takes (callers bound it with their
    /// own timeout); pokes are skipped.
    pub async fn recv(&self) -> (NodeName, PeerMsg) {
        loop {
            if let Some(reply) = self.next().await {
                return reply;
            }
        }
    }

    /// Asks the sweeper to poke this inbox once `at` has passed (replacing
    /// any earlier request).
    pub fn wake_at(&self, at: Instant) {
        let micros = at.saturating_duration_since(self.origin).as_micros();
        self.wake_at
            .store(u64::try_from(micros).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn push(&self, from: NodeName, msg: PeerMsg) {
        self.lock().push((from, msg));
        self.waker.wake();
    }

    fn poke(&self) {
        self.poked.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn lock(&self) -> MutexGuard<'_, Bag> {
        // Push and pop cannot leave the queue half-changed.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Replies not yet taken. Their order does not matter (a request counts
/// the answers of distinct replicas), so the first few sit inline in the
/// inbox and only a request with more replies than that allocates.
#[derive(Debug, Default)]
struct Bag {
    inline: [Option<(NodeName, PeerMsg)>; 3],
    more: Vec<(NodeName, PeerMsg)>,
}

impl Bag {
    fn push(&mut self, reply: (NodeName, PeerMsg)) {
        match self.inline.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(reply),
            None => self.more.push(reply),
        }
    }

    fn pop(&mut self) -> Option<(NodeName, PeerMsg)> {
        self.more
            .pop()
            .or_else(|| self.inline.iter_mut().find_map(Option::take))
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.more.is_empty() && self.inline.iter().all(Option::is_none)
    }
}

/// Hashes request ids (a counter) with one multiply: no need for SipHash's
/// flood resistance on ids this node chose itself.
#[derive(Debug, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A request counted by [`Pending::begin`], until dropped.
pub struct Coordinating<'a>(&'a Pending);

impl Drop for Coordinating<'_> {
    fn drop(&mut self) {
        self.0.coordinating.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Removes its request from [`Pending`] when dropped.
pub struct PendingGuard<'a> {
    /// The request id to put in outgoing messages.
    pub id: u64,
    pending: &'a Pending,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.pending.waiting.remove(&self.id);
        self.pending.count.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pending {
    /// Registers a new request; replies with its id go to the returned
    /// inbox until the guard is dropped.
    pub fn register(&self) -> (PendingGuard<'_>, Arc<Inbox>) {
        // Id 0 is reserved for fire-and-forget messages (read repair).
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let inbox = Arc::new(Inbox {
            queue: Mutex::new(Bag::default()),
            waker: AtomicWaker::new(),
            poked: AtomicBool::new(false),
            wake_at: AtomicU64::new(u64::MAX),
            origin: self.origin,
        });
        self.waiting.insert(id, inbox.clone());
        if self.count.fetch_add(1, Ordering::Relaxed) == 0 {
            self.busy.notify_one();
        }
        (PendingGuard { id, pending: self }, inbox)
    }

    /// Hands a reply to its request, if it still waits. Returns whether it did.
    pub fn deliver(&self, id: u64, from: NodeName, msg: PeerMsg) -> bool {
        match self.waiting.get(&id) {
            Some(inbox) => {
                inbox.push(from, msg);
                true
            }
            None => false,
        }
    }

    /// Pokes every request whose wake-up instant is at or before `now`.
    pub fn sweep(&self, now: Instant) {
        let now = u64::try_from(now.saturating_duration_since(self.origin).as_micros())
            .unwrap_or(u64::MAX);
        for inbox in self.waiting.iter() {
            let at = inbox.wake_at.load(Ordering::Relaxed);
            if at <= now
                && inbox
                    .wake_at
                    .compare_exchange(at, u64::MAX, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                inbox.poke();
            }
        }
    }

    /// Pokes every waiting request (the routing view changed).
    pub fn poke_all(&self) {
        // Counted before the inboxes are poked (see `pokes`).
        self.pokes.fetch_add(1, Ordering::SeqCst);
        for inbox in self.waiting.iter() {
            inbox.poke();
        }
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether no request waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many times every waiting request was poked (the view changed).
    /// A request that loads the view before it registers reads this
    /// first, and again once registered: if it moved, the view may have
    /// changed before the registration, whose poke it missed, so it looks
    /// at the view again before it waits. If it did not, any later view
    /// change pokes it (the count moves before the inboxes are poked).
    pub fn pokes(&self) -> u64 {
        self.pokes.load(Ordering::SeqCst)
    }

    /// Counts a request this node coordinates until the guard is dropped.
    /// A request registers only when it first sends to a peer or waits,
    /// so one this node answers alone (its own log append under way, say)
    /// is counted here and not in the map.
    pub fn begin(&self) -> Coordinating<'_> {
        self.coordinating.fetch_add(1, Ordering::Relaxed);
        Coordinating(self)
    }

    /// Whether no request this node coordinates is under way, registered
    /// or not (a graceful stop waits for this; see `node/drain.rs`).
    pub fn idle(&self) -> bool {
        self.is_empty() && self.coordinating.load(Ordering::Relaxed) == 0
    }

    /// Returns once a request waits (at once if one already does), so the
    /// sweeper of an idle node sleeps instead of ticking.
    pub async fn busy(&self) {
        while self.is_empty() {
            self.busy.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_already_waiting_is_woken_by_a_reply_and_by_a_poke() {
        let pending = Arc::new(Pending::default());
        let (guard, inbox) = pending.register();
        let id = guard.id;
        let waiter = tokio::spawn({
            let inbox = inbox.clone();
            async move { (inbox.next().await.map(|(from, _)| from), inbox.next().await) }
        });
        // Let the waiter register before anything arrives.
        tokio::task::yield_now().await;
        assert!(pending.deliver(id, "a".into(), PeerMsg::TransferAck { id }));
        tokio::task::yield_now().await;
        pending.poke_all();
        let (first, second) = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiting request was woken")
            .unwrap();
        assert_eq!(first.as_deref(), Some("a"));
        assert!(second.is_none(), "the poke came through as a poke");
        drop(guard);
    }

    #[tokio::test]
    async fn replies_pokes_and_deadlines_reach_the_waiting_request() {
        let pending = Pending::default();
        let (guard, inbox) = pending.register();
        assert!(pending.deliver(guard.id, "a".into(), PeerMsg::TransferAck { id: guard.id }));
        assert!(matches!(inbox.next().await, Some((from, _)) if &*from == "a"));

        // A deadline not yet passed does not poke; a passed one does, once.
        let soon = Instant::now() + Duration::from_millis(30);
        inbox.wake_at(soon);
        pending.sweep(Instant::now());
        assert!(inbox.lock().is_empty());
        pending.sweep(soon);
        assert_eq!(inbox.next().await.map(|(f, _)| f), None, "poked, no reply");
        assert_eq!(inbox.wake_at.load(Ordering::Relaxed), u64::MAX);

        pending.poke_all();
        assert!(inbox.next().await.is_none());

        // More replies than the inline slots: every one comes out once.
        for i in 0..5 {
            assert!(pending.deliver(guard.id, "b".into(), PeerMsg::TransferAck { id: i }));
        }
        let mut ids = Vec::new();
        while let Some((_, PeerMsg::TransferAck { id })) = inbox.lock().pop() {
            ids.push(id);
        }
        ids.sort_unstable();
        assert_eq!(ids, [0, 1, 2, 3, 4]);
        assert!(inbox.lock().is_empty());

        drop(guard);
        assert!(pending.is_empty());
        assert!(!pending.deliver(1, "a".into(), PeerMsg::TransferAck { id: 1 }));
    }
}
