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
//!
//! A request need not be a task. One run to completion by the events that
//! reach it (a counter owner's increment: `coordinator/owner.rs`) registers
//! a [`Driven`] instead of an inbox: a reply is handed to it, and a poke
//! calls it, on whichever task brought the event, with no waking between.
//! `Pending` only finds them; [`Shared`]'s methods call them
//! ([`Delivery::Driven`], and the lists [`Pending::sweep`] and
//! [`Pending::poke_all`] return), after the map's lock is let go.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures::task::AtomicWaker;
use tokio::sync::Notify;

use crate::message::PeerMsg;
use crate::node::shared::Shared;
use crate::ring::NodeName;

/// How often the sweeper looks for requests whose wake-up instant passed:
/// the most a request deadline or a read's speculation fires late.
pub const SWEEP_EVERY: Duration = Duration::from_millis(5);

/// Replies in flight: request id to the inbox of the request awaiting it.
#[derive(Debug)]
pub struct Pending {
    next: AtomicU64,
    waiting: DashMap<u64, Waiter, BuildHasherDefault<IdHasher>>,
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

/// Who waits for a request id's replies.
#[derive(Clone)]
enum Waiter {
    /// A task, through its inbox.
    Inbox(Arc<Inbox>),
    /// A request run to completion by the events that reach it.
    Driven(Arc<dyn Driven>),
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Waiter::Inbox(inbox) => inbox.fmt(f),
            Waiter::Driven(_) => f.write_str("Driven"),
        }
    }
}

/// A request that no task waits for: it does what each event that
/// reaches it calls for, there and then, and removes itself from
/// [`Pending`] when it is done. Its methods must not block, and are
/// never called with `Pending`'s map locked.
pub trait Driven: Send + Sync {
    /// A reply carrying its id.
    fn on_reply(&self, shared: &Shared, from: NodeName, msg: PeerMsg);
    /// The instant it asked to be woken at passed, or the view changed.
    fn on_poke(&self, shared: &Shared);
    /// When the sweeper should poke it, as [`Pending::micros`] counts
    /// (`u64::MAX`: never).
    fn wake_at(&self) -> &AtomicU64;
}

/// What [`Pending::deliver`] did with a reply.
pub enum Delivery {
    /// Queued for the task that waits for it.
    Queued,
    /// Nobody waits for it any more.
    Gone,
    /// For this request to take ([`Driven::on_reply`]).
    Driven(Arc<dyn Driven>, NodeName, PeerMsg),
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
        self.wake_at
            .store(micros_since(self.origin, at), Ordering::Relaxed);
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

/// `at` in microseconds since `origin`: how wake-up instants are kept.
fn micros_since(origin: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(origin).as_micros()).unwrap_or(u64::MAX)
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
        self.pending.remove(self.id);
    }
}

impl Pending {
    /// Registers a new request; replies with its id go to the returned
    /// inbox until the guard is dropped.
    pub fn register(&self) -> (PendingGuard<'_>, Arc<Inbox>) {
        let id = self.next_id();
        let inbox = Arc::new(Inbox {
            queue: Mutex::new(Bag::default()),
            waker: AtomicWaker::new(),
            poked: AtomicBool::new(false),
            wake_at: AtomicU64::new(u64::MAX),
            origin: self.origin,
        });
        self.insert(id, Waiter::Inbox(inbox.clone()));
        (PendingGuard { id, pending: self }, inbox)
    }

    /// A fresh request id.
    pub fn next_id(&self) -> u64 {
        // Id 0 is reserved for fire-and-forget messages (read repair).
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a request that no task waits for under `id` (from
    /// [`Pending::next_id`]), until it calls [`Pending::remove`].
    pub fn register_driven(&self, id: u64, request: Arc<dyn Driven>) {
        self.insert(id, Waiter::Driven(request));
    }

    fn insert(&self, id: u64, waiter: Waiter) {
        self.waiting.insert(id, waiter);
        if self.count.fetch_add(1, Ordering::Relaxed) == 0 {
            self.busy.notify_one();
        }
    }

    /// Forgets the request `id`: later replies to it are dropped.
    pub fn remove(&self, id: u64) {
        if self.waiting.remove(&id).is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// `at` as a wake-up instant ([`Inbox::wake_at`], [`Driven::wake_at`]).
    pub fn micros(&self, at: Instant) -> u64 {
        micros_since(self.origin, at)
    }

    /// Hands a reply to its request's inbox, if it still waits, or back
    /// for a driven request to take (see [`Delivery`]).
    pub fn deliver(&self, id: u64, from: NodeName, msg: PeerMsg) -> Delivery {
        let driven = match self.waiting.get(&id).as_deref() {
            Some(Waiter::Inbox(inbox)) => {
                inbox.push(from, msg);
                return Delivery::Queued;
            }
            Some(Waiter::Driven(request)) => request.clone(),
            None => return Delivery::Gone,
        };
        Delivery::Driven(driven, from, msg)
    }

    /// Pokes every request whose wake-up instant is at or before `now`;
    /// returns the driven ones among them, for the caller to poke.
    #[must_use = "the driven requests returned are to be poked"]
    pub fn sweep(&self, now: Instant) -> Vec<Arc<dyn Driven>> {
        let now = self.micros(now);
        let due = |wake_at: &AtomicU64| {
            let at = wake_at.load(Ordering::Relaxed);
            at <= now
                && wake_at
                    .compare_exchange(at, u64::MAX, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
        };
        let mut driven = Vec::new();
        for waiter in self.waiting.iter() {
            match waiter.value() {
                Waiter::Inbox(inbox) if due(&inbox.wake_at) => inbox.poke(),
                Waiter::Driven(request) if due(request.wake_at()) => driven.push(request.clone()),
                _ => {}
            }
        }
        driven
    }

    /// Pokes every waiting request (the routing view changed); returns the
    /// driven ones, for the caller to poke.
    #[must_use = "the driven requests returned are to be poked"]
    pub fn poke_all(&self) -> Vec<Arc<dyn Driven>> {
        // Counted before the inboxes are poked (see `pokes`).
        self.pokes.fetch_add(1, Ordering::SeqCst);
        let mut driven = Vec::new();
        for waiter in self.waiting.iter() {
            match waiter.value() {
                Waiter::Inbox(inbox) => inbox.poke(),
                Waiter::Driven(request) => driven.push(request.clone()),
            }
        }
        driven
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
        assert!(matches!(
            pending.deliver(id, "a".into(), PeerMsg::TransferAck { id }),
            Delivery::Queued
        ));
        tokio::task::yield_now().await;
        assert!(pending.poke_all().is_empty(), "no driven request");
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
        assert!(matches!(
            pending.deliver(guard.id, "a".into(), PeerMsg::TransferAck { id: guard.id }),
            Delivery::Queued
        ));
        assert!(matches!(inbox.next().await, Some((from, _)) if &*from == "a"));

        // A deadline not yet passed does not poke; a passed one does, once.
        let soon = Instant::now() + Duration::from_millis(30);
        inbox.wake_at(soon);
        assert!(pending.sweep(Instant::now()).is_empty());
        assert!(inbox.lock().is_empty());
        assert!(pending.sweep(soon).is_empty());
        assert_eq!(inbox.next().await.map(|(f, _)| f), None, "poked, no reply");
        assert_eq!(inbox.wake_at.load(Ordering::Relaxed), u64::MAX);

        assert!(pending.poke_all().is_empty(), "no driven request");
        assert!(inbox.next().await.is_none());

        // More replies than the inline slots: every one comes out once.
        for i in 0..5 {
            assert!(matches!(
                pending.deliver(guard.id, "b".into(), PeerMsg::TransferAck { id: i }),
                Delivery::Queued
            ));
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
        assert!(matches!(
            pending.deliver(1, "a".into(), PeerMsg::TransferAck { id: 1 }),
            Delivery::Gone
        ));
    }

    /// A driven request that notes nothing: these tests look only at what
    /// `Pending` hands back.
    struct Quiet(AtomicU64);

    impl Driven for Quiet {
        fn on_reply(&self, _: &Shared, _: NodeName, _: PeerMsg) {}
        fn on_poke(&self, _: &Shared) {}
        fn wake_at(&self) -> &AtomicU64 {
            &self.0
        }
    }

    #[test]
    fn a_driven_request_is_handed_back_its_replies_its_deadline_and_view_changes() {
        let pending = Pending::default();
        let (_guard, _inbox) = pending.register();
        let id = pending.next_id();
        let driven = Arc::new(Quiet(AtomicU64::new(u64::MAX)));
        pending.register_driven(id, driven.clone());
        assert_eq!(pending.len(), 2);
        assert!(!pending.idle(), "a drain waits for it");

        let Delivery::Driven(_, from, PeerMsg::TransferAck { id: got }) =
            pending.deliver(id, "a".into(), PeerMsg::TransferAck { id })
        else {
            panic!("handed back, not queued")
        };
        assert_eq!((&*from, got), ("a", id));

        // Its deadline: handed back once it passed, once.
        let soon = Instant::now() + Duration::from_millis(30);
        driven.0.store(pending.micros(soon), Ordering::Relaxed);
        assert!(pending.sweep(Instant::now()).is_empty());
        assert_eq!(pending.sweep(soon).len(), 1);
        assert!(pending.sweep(soon).is_empty(), "not twice");

        // A view change hands back every driven request, and pokes inboxes.
        assert_eq!(pending.poke_all().len(), 1);

        pending.remove(id);
        pending.remove(id);
        assert_eq!(pending.len(), 1, "removed once");
        assert!(matches!(
            pending.deliver(id, "a".into(), PeerMsg::TransferAck { id }),
            Delivery::Gone
        ));
    }
}
