//! The coordinator: quorum reads and writes from any node.
//!
//! Any node accepts any request and coordinates it. A write stamps the
//! value with the node's hybrid logical clock, sends it to the key's whole
//! preference list at once, and succeeds after W acknowledgements. A read
//! asks only R replicas of the preference list (itself first when it is
//! one, since that answer is free; among the others, those whose peer link
//! is connected first), asks the others too if the first ones have not
//! answered within `read_speculation_ms`, and answers the newest
//! version among the first R replies; if those replies disagree, the stale
//! replicas are sent the newest version (read repair) without delaying the
//! answer. If the first R answers all say "no such key" (tombstones are
//! answers, not misses), the read asks one more replica before believing
//! it (`confirm_misses`): right after a ring change, anti-entropy may not
//! yet have filled the replicas asked first. Only a replica whose peer
//! link works is asked for that: one that just died would make every miss
//! wait out the speculation delay until the failure detector catches up.
//! Asking R rather than N replicas saves a third of the messages of a read
//! at N = 3, R = 2; anti-entropy, not read repair, is what brings a
//! replica that no read asked up to date.
//!
//! The preference list is recomputed whenever the routing view changes while
//! a request waits: a replica that was marked down is replaced by the node
//! that now completes the list, and the request goes on. Quorums count over
//! the nodes there are (min(W, |list|)), so a cluster shrunk to one node
//! still reads and writes, as the seed design promises. A dead or slow
//! replica never delays a request that already has enough answers, and a
//! request that cannot gather its quorum by its deadline fails with
//! [`Error::Unavailable`], which says how many answered and how many were
//! needed.
//!
//! Deliberately left out: sloppy-quorum hints. A stand-in replica simply
//! stores the write; when the ring changes back, hand-off moves it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::message::{ApplyResult, PeerMsg, PutResult};
use crate::metrics::Op;
use crate::node::pending::{Inbox, PendingGuard};
use crate::node::shared::{Shared, View};
use crate::quorum::{replicas, same, Ack, Replicas, Targets, WriteQuorum, WriteStep};
use crate::ring::{NodeList, NodeName, Ring, Token};
use crate::store::{Entry, Version};

mod counter;
mod local;
mod mode;
mod owner;
mod read;
mod refusal;

pub use crate::quorum::{Quorum, WriteOutcome};
pub(crate) use mode::Mode;
pub(crate) use owner::AnswerTo;

use local::{local_refusal, logged, Local, OwnLog};
pub(crate) use refusal::fenced_everywhere;
use refusal::refusal_text;

/// A string, or a tombstone for `None`, at `version`.
fn simple(version: Version, value: Option<Bytes>) -> Entry {
    match value {
        Some(v) => Entry::string(version, v),
        None => Entry::tombstone(version),
    }
}

/// The peer protocol version that carries rich values.
const RICH_SINCE: u32 = 7;

/// How long a read that found no such key waits for one more replica to
/// confirm it when `read_speculation_ms` is 0 (else that setting).
const MISS_CONFIRM_WAIT: Duration = Duration::from_millis(20);

impl Shared {
    /// The node's default quorums.
    pub fn default_quorum(&self) -> Quorum {
        Quorum {
            r: self.cfg.read_quorum,
            w: self.cfg.write_quorum,
            strict: self.cfg.strict_quorums,
        }
    }

    /// Writes `value` (or a tombstone, for `None`) under `key` with quorum `q.w`.
    pub async fn write(&self, key: Bytes, value: Option<Bytes>, q: Quorum) -> Result<WriteOutcome> {
        self.write_with(key, q, None, |v| simple(v, value)).await
    }

    /// The write of a read-modify-write: `value` (or a tombstone) under
    /// `key`, computed from what a quorum read found, `read` (the version
    /// of the newest answer, or `None` when no replica had the key). See
    /// [`Shared::write_with`].
    pub async fn write_after(
        &self,
        key: Bytes,
        value: Option<Bytes>,
        q: Quorum,
        read: Option<Version>,
    ) -> Result<WriteOutcome> {
        self.write_with(key, q, Some(read), |v| simple(v, value))
            .await
    }

    /// Writes under `key`, with quorum `q.w`, what `build` makes of the
    /// version the write is stamped with (a string, a tombstone, or a
    /// delta of a rich value: one hash field, one set member...).
    ///
    /// With `read` (a read-modify-write computed from a quorum read that
    /// found that version, `None` for nothing), the write is stamped after
    /// it, so it orders after what it was computed from, and each replica
    /// reports whether it held something newer (a write that came in
    /// between). Such a conflict is counted (`ringkv_rmw_conflicts_total`)
    /// and returned; the merge still decides what survives (see README,
    /// "Conditional and read-modify-write commands").
    pub async fn write_with(
        &self,
        key: Bytes,
        q: Quorum,
        read: Option<Option<Version>>,
        build: impl FnOnce(Version) -> Entry,
    ) -> Result<WriteOutcome> {
        if let Some(Some(v)) = read {
            self.clock.advance_past(v.ts);
        }
        let version = Version {
            ts: self.clock.now(),
            node: self.id,
        };
        let mode = match read {
            Some(read) => Mode::Rmw(read),
            None => Mode::Plain,
        };
        let result = self.replicate(key, build(version), q, mode).await;
        self.count_write(&result);
        if matches!(result, Ok(WriteOutcome { conflict: true, .. })) {
            self.metrics.rmw_conflicts.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// A typed write under `key` (HSET, SADD, HDEL, SREM...): what `build`
    /// makes of the write's version, applied by each replica only if the
    /// key holds `check.kind` or nothing, and reporting which of the
    /// checked elements were live before ([`WriteOutcome::present`]).
    /// [`Error::WrongType`] when the replicas refused it for the key's
    /// type.
    pub async fn write_checked(
        &self,
        key: Bytes,
        q: Quorum,
        check: &crate::values::Check,
        build: impl FnOnce(Version) -> Entry,
    ) -> Result<WriteOutcome> {
        // One reading of the wall clock for the stamp and for the expiry
        // this node's copy is judged by.
        let wall = crate::clock::wall_micros();
        let version = Version {
            ts: self.clock.now_at(wall),
            node: self.id,
        };
        let result = self
            .replicate(key, build(version), q, Mode::Checked(check, wall / 1000))
            .await;
        self.count_write(&result);
        result
    }

    /// [`Shared::write_checked`] for a write computed from a quorum read
    /// that found `read` (HINCRBYFLOAT...): stamped after it.
    pub async fn write_checked_after(
        &self,
        key: Bytes,
        q: Quorum,
        check: &crate::values::Check,
        read: Option<Version>,
        build: impl FnOnce(Version) -> Entry,
    ) -> Result<WriteOutcome> {
        if let Some(v) = read {
            self.clock.advance_past(v.ts);
        }
        self.write_checked(key, q, check, build).await
    }

    fn count_write(&self, result: &Result<WriteOutcome>) {
        let counter = if result.is_ok() {
            &self.metrics.writes_ok
        } else {
            &self.metrics.writes_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends `entry` to the key's replicas and waits for `q.w` of them
    /// (home replicas only when `q.strict`), as `mode` says (see [`Mode`]).
    /// The decisions are [`WriteQuorum`]'s; this is its driver.
    async fn replicate(
        &self,
        key: Bytes,
        entry: Entry,
        q: Quorum,
        mode: Mode<'_>,
    ) -> Result<WriteOutcome> {
        // Computed here, not passed in: a SET's future is then built in
        // place, where a token argument made the caller copy it.
        let pos = Token::of(&key);
        let rich = entry.as_simple().is_none();
        // Read again only after a wait: the deadline is checked late by
        // at most the local write, which costs no clock read per write.
        let mut now = crate::clock::instant();
        let deadline = now + self.cfg.request_timeout();
        // Registered for replies when it first sends to a replica or
        // waits: a write this node takes alone never touches `Pending`.
        let _counted = self.pending.begin();
        // The only node up, taking this write, under sloppy quorums: its
        // own answer decides, as the machine would (`quorum::alone_outcome`).
        if let Some(local) = self.write_alone(&pos, &key, &entry, &mode, q) {
            let ack = match local {
                Local::Done(ack) => ack,
                Local::Logging(logging, ack) => logged(logging.await, ack),
                Local::Checked(checked) => checked.await,
            };
            return crate::quorum::alone_outcome(entry.version(), ack);
        }
        let mut registered: Option<(PendingGuard<'_>, Arc<Inbox>)> = None;
        let mut write = WriteQuorum::new(self.me.clone(), q, entry.version(), deadline);
        let mut own_log = OwnLog(None);
        loop {
            // Read before the view, while not registered (see `Pending::pokes`).
            let pokes = registered.is_none().then(|| self.pending.pokes());
            // Replicas are computed and asked only when the view is new
            // (the first turn, or it changed), not on every reply. The
            // view's guard is dropped before any wait: a guard held across
            // one takes one of the thread's few fast slots, and with more
            // requests in flight than slots every load took the slow path.
            let local = {
                let view = self.view.load();
                match write.is_new_view(view.epoch) {
                    true => {
                        let first = write.is_first_view();
                        let replicas = self.write_replicas_for(&view, &pos, &entry, q)?;
                        if rich && first {
                            self.check_replicas_hold_rich(&view, &replicas.list)?;
                        }
                        let asking = write.on_view(view.epoch, replicas);
                        if !asking.remote.is_empty() && registered.is_none() {
                            registered = Some(self.pending.register());
                        }
                        let id = registered.as_ref().map_or(0, |(guard, _)| guard.id);
                        for node in asking.remote {
                            let msg = mode.message(id, key.clone(), entry.clone());
                            self.send_to(&view, node, msg);
                        }
                        asking.local
                    }
                    false => false,
                }
            };
            // The local copy is written while the remote ones are in flight.
            if local {
                let ack = match self.apply_locally(&pos, &key, &entry, &mode) {
                    Local::Done(ack) => Some(ack),
                    Local::Logging(logging, ack) => {
                        own_log.0 = Some((logging, ack));
                        None
                    }
                    Local::Checked(checked) => Some(checked.await),
                };
                if let Some(ack) = ack {
                    write.on_ack(write.me().clone(), ack);
                }
            }
            if let Some(ack) = own_log.settle(write.short_by() <= 1).await {
                write.on_ack(write.me().clone(), ack);
            }
            match write.next(now) {
                WriteStep::Done(result) => return result,
                WriteStep::TimedOut { error, unanswered } => {
                    self.metrics.replica_timeouts(Op::Write, unanswered);
                    return Err(error);
                }
                WriteStep::Force(targets) => {
                    let id = registered
                        .get_or_insert_with(|| self.pending.register())
                        .0
                        .id;
                    // Boxed: a cold path, kept out of every write's future.
                    let view = self.view.load_full();
                    Box::pin(self.force(&view, &pos, &key, &entry, id, targets, &mut write)).await;
                }
                WriteStep::Wait(until) => {
                    let (_, replies) = registered.get_or_insert_with(|| self.pending.register());
                    // A view published before this write registered poked
                    // no one: one that registered on this pass looks at
                    // the view again before it waits.
                    if pokes.is_some_and(|p| p != self.pending.pokes()) {
                        continue;
                    }
                    replies.wake_at(until);
                    // `None` is a poke (the deadline passed or the view
                    // changed): the loop looks at both again.
                    let reply = replies.next().await;
                    now = crate::clock::instant();
                    let Some((from, reply)) = reply else {
                        continue;
                    };
                    self.take_write_ack(&mut write, from, reply);
                }
            }
        }
    }

    /// The replicas a write of the key at `pos` goes to on `ring` (see
    /// `quorum/replicas.rs`), or, when there are none because every node's
    /// commit log takes no writes, the client's error for that.
    #[inline]
    pub(super) fn write_replicas(
        &self,
        view: &View,
        ring: &Ring,
        pos: &Token,
        strict: bool,
    ) -> Result<Replicas> {
        let replicas = replicas::replicas(view, ring, pos, self.cfg.replication, strict);
        if replicas.list.is_empty() {
            if let Some(e) = fenced_everywhere(view, ring) {
                return Err(e);
            }
        }
        Ok(replicas)
    }

    /// [`Shared::write_replicas`] for a write of `entry`: nodes whose
    /// commit log takes no writes are left out, as if they were down (see
    /// `log/fence.rs`); a delete (or a delta of removals only) still
    /// reaches nodes past `maxmemory`, as Redis lets DEL through.
    fn write_replicas_for(
        &self,
        view: &View,
        pos: &Token,
        entry: &Entry,
        q: Quorum,
    ) -> Result<Replicas> {
        let ring = match entry.is_tombstone() {
            true => &view.delete_ring,
            false => &view.write_ring,
        };
        self.write_replicas(view, ring, pos, q.strict)
    }

    /// Feeds `reply` to `write` if it answers a write, counting an
    /// acknowledgement in the metrics.
    #[inline]
    pub(super) fn take_write_ack(&self, write: &mut WriteQuorum, from: NodeName, reply: PeerMsg) {
        if let Some(ack) = write_ack(&from, reply) {
            if matches!(ack, Ack::Done { .. }) {
                self.metrics.replica_ack(Op::Write);
            }
            write.on_ack(from, ack);
        }
    }

    /// [`Shared::apply_locally`] when this node is the only one up and
    /// the ring the write goes to (writes or deletes: see `replicate`)
    /// holds it, under sloppy quorums; `None` (nothing done) otherwise,
    /// and the quorum machine decides. Checked on [`Shared::alone`] before
    /// the view is loaded.
    fn write_alone<'a>(
        &'a self,
        pos: &'a Token,
        key: &'a Bytes,
        entry: &'a Entry,
        mode: &Mode<'a>,
        q: Quorum,
    ) -> Option<Local<'a>> {
        if q.strict || !self.alone.load(Ordering::Relaxed) {
            return None;
        }
        let view = self.view.load();
        let ring = match entry.is_tombstone() {
            true => &view.delete_ring,
            false => &view.write_ring,
        };
        if ring.nodes() != std::slice::from_ref(&self.me) {
            return None;
        }
        Some(self.apply_locally(pos, key, entry, mode))
    }

    /// Applies `entry` to this node's copy as `mode` says: this node's
    /// answer to its own write, once what [`Local`] says to wait for is
    /// done. The wait is all the write's future holds meanwhile.
    fn apply_locally<'a>(
        &'a self,
        pos: &'a Token,
        key: &'a Bytes,
        entry: &'a Entry,
        mode: &Mode<'a>,
    ) -> Local<'a> {
        match mode {
            // Boxed, so that a plain write's future does not carry a typed
            // write's state.
            Mode::Checked(check, now_ms) => {
                let (check, now_ms) = (*check, *now_ms);
                Local::Checked(Box::pin(async move {
                    let applied = self
                        .apply_checked_durably(pos, key, entry, check, now_ms)
                        .await;
                    match applied {
                        Ok(ApplyResult::Done { was_live, present }) => Ack::Done {
                            was_live,
                            conflict: false,
                            present,
                        },
                        Ok(ApplyResult::WrongType) => Ack::WrongType,
                        Ok(ApplyResult::Refused(why)) => local_refusal(Error::invalid(why)),
                        Err(e) => local_refusal(e),
                    }
                }))
            }
            Mode::Plain | Mode::Rmw(_) => match self.apply_logging(pos, key, entry) {
                Ok((applied, logging)) => {
                    let ack = Ack::Done {
                        was_live: applied.was_live,
                        conflict: match mode {
                            Mode::Rmw(read) => applied.conflicts_with(*read),
                            _ => false,
                        },
                        present: crate::values::Present::new(),
                    };
                    match logging {
                        Some(logging) => Local::Logging(logging, ack),
                        None => Local::Done(ack),
                    }
                }
                Err(e) => Local::Done(local_refusal(e)),
            },
        }
    }

    /// Sends `entry` as a plain write to the replicas that refused it for
    /// the key's type (see [`WriteStep::Force`]); this node's own copy is
    /// written at once and counted.
    #[allow(clippy::too_many_arguments)]
    async fn force(
        &self,
        view: &View,
        pos: &Token,
        key: &Bytes,
        entry: &Entry,
        id: u64,
        targets: Targets,
        write: &mut WriteQuorum,
    ) {
        for node in &targets.remote {
            let msg = PeerMsg::Put {
                id,
                key: key.clone(),
                entry: entry.clone(),
            };
            self.send_to(view, node, msg);
        }
        if targets.local {
            match self.apply_durably(pos, key, entry).await {
                Ok(_) => {
                    write.on_ack(write.me().clone(), Ack::done(false));
                }
                Err(e) => {
                    tracing::error!(error = %e, "local write failed to reach the commit log")
                }
            }
        }
    }

    /// Refuses, naming the node, when a replica in `pref` (the key's
    /// preference list, on a write's first turn) speaks a peer protocol
    /// older than 7 (during a rolling upgrade): it cannot
    /// hold an expiry, a counter, a hash or a set, and the write would
    /// silently miss it.
    fn check_replicas_hold_rich(&self, view: &View, pref: &NodeList) -> Result<()> {
        // No link is older: nothing to look up (every write, at full load).
        if self
            .net
            .oldest_peer_version()
            .is_none_or(|v| v >= RICH_SINCE)
        {
            return Ok(());
        }
        for name in pref.iter() {
            let Some(addr) = view.addrs.get(name).filter(|_| !same(name, &self.me)) else {
                continue;
            };
            if let Some(v) = self.net.peer_version(addr).filter(|v| *v < RICH_SINCE) {
                return Err(Error::invalid(format!(
                    "expiry, counters, hashes and sets need peer protocol {RICH_SINCE}, and {name}, a replica of this key, speaks {v}: finish the upgrade first"
                )));
            }
        }
        Ok(())
    }
}

/// A replica's answer to a write, as [`WriteQuorum`] takes it (`None`:
/// not an answer to a write).
fn write_ack(from: &NodeName, reply: PeerMsg) -> Option<Ack> {
    let refused = |why: String| {
        tracing::debug!(replica = %from, reason = %why, "replica refused a write");
        Ack::Refused(refusal_text(from, why))
    };
    Some(match reply {
        PeerMsg::PutAck { result, .. } => match result {
            PutResult::Ok { was_live } => Ack::done(was_live),
            PutResult::Refused(why) => refused(why),
        },
        PeerMsg::PutRmwAck {
            was_live, conflict, ..
        } => Ack::Done {
            was_live,
            conflict,
            present: crate::values::Present::new(),
        },
        PeerMsg::ApplyAck { result, .. } => match result {
            ApplyResult::Done { was_live, present } => Ack::Done {
                was_live,
                conflict: false,
                present,
            },
            ApplyResult::WrongType => Ack::WrongType,
            ApplyResult::Refused(why) => refused(why),
        },
        _ => return None,
    })
}
