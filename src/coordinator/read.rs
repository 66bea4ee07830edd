//! Quorum reads: whom a read asks, when it asks more, how it resolves
//! the answers and repairs stale replicas (see the module doc of
//! `coordinator`), and the cluster-wide key listing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Quorum, MISS_CONFIRM_WAIT};
use crate::error::{Error, Result};
use crate::message::PeerMsg;
use crate::metrics::Op;
use crate::node::pending::{Inbox, PendingGuard};
use crate::node::shared::Shared;
use crate::quorum::{
    replicas, resolve, same, Answer, Answers, ReadQuorum, ReadStep, Resolved, Timing, Why,
};
use crate::ring::{NodeName, Token};
use crate::store::Entry;
use crate::values::{Part, Want};

/// A read's answer taken out of a replica's reply (`None`: not one).
trait FromReply: Sized {
    fn from_reply(msg: PeerMsg) -> Option<Self>;
}

impl FromReply for Option<Entry> {
    fn from_reply(msg: PeerMsg) -> Option<Self> {
        match msg {
            PeerMsg::GetReply { entry, .. } => Some(entry),
            _ => None,
        }
    }
}

impl FromReply for Option<Box<Part>> {
    fn from_reply(msg: PeerMsg) -> Option<Self> {
        match msg {
            PeerMsg::ReadReply { part, .. } => Some(part),
            _ => None,
        }
    }
}

impl Shared {
    /// Reads `key` with quorum `q.r`: the newest version among the first
    /// replies (tombstones included; the caller treats them as absent).
    pub async fn read(&self, key: Bytes, q: Quorum) -> Result<Option<Entry>> {
        let pos = Token::of(&key);
        self.read_at(key, pos, q).await
    }

    /// [`Shared::read`] of `key`, whose ring position `pos` the caller
    /// already has.
    pub async fn read_at(&self, key: Bytes, pos: Token, q: Quorum) -> Result<Option<Entry>> {
        // One future, not one awaiting another: each layer's future was
        // copied into its caller's.
        let now = crate::clock::instant();
        let mut read = self.read_quorum(&pos, q, now, self.cfg.confirm_misses);
        let message = |id| PeerMsg::Get {
            id,
            key: key.clone(),
        };
        let local = || self.store.get_at(&pos, &key);
        let result = match self.drive(&mut read, &pos, now, message, local).await {
            Ok(()) => Ok(self.resolve(&key, read.answers())),
            Err(e) => Err(e),
        };
        self.count_read(&result);
        result
    }

    fn count_read<T>(&self, result: &Result<T>) {
        let counter = if result.is_ok() {
            &self.metrics.reads_ok
        } else {
            &self.metrics.reads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// [`Shared::read_at`] answered now, without a future, when this node
    /// alone answers it: it is the only node up, or R = 1 and it is the
    /// key's first replica (and holds the key, or no other replica is to
    /// confirm the miss). `None`, having sent nothing and changed nothing,
    /// when the read needs another replica or a wait: the caller then
    /// reads with [`Shared::read_at`]. (A single node's GET is then one
    /// lookup, not a request future, its box and its polls.)
    pub fn read_alone(&self, key: &Bytes, pos: &Token, q: Quorum) -> Option<Result<Option<Entry>>> {
        // Cheap checks first: a read that needs another replica leaves
        // before it loads the view.
        let alone = self.alone.load(Ordering::Relaxed);
        if q.r != 1 && !alone {
            return None;
        }
        if alone && !q.strict {
            // The only node up, under sloppy quorums: its own copy is the
            // whole answer, as the quorum machine would conclude (R is
            // capped by the one replica listed, and no other is there to
            // confirm a miss), without its lists. (Strict quorums go on to
            // the machine, which refuses a read without enough home
            // replicas.)
            let mut answers: crate::quorum::Answers<Option<Entry>> =
                smallvec::smallvec![(self.me.clone(), self.store.get_at(pos, key))];
            let result = Ok(self.resolve(key, &mut answers));
            self.count_read(&result);
            return Some(result);
        }
        let view = self.view.load();
        let now = crate::clock::instant();
        let mut read = self.read_quorum(pos, q, now, self.cfg.confirm_misses);
        let replicas =
            replicas::replicas(&view, &view.ring, pos, self.cfg.replication, read.strict());
        read.on_view(view.epoch, replicas);
        let result = loop {
            match read.next(now) {
                ReadStep::Ask(_) => {
                    let asking = read.asking();
                    if !asking.remote.is_empty() || !asking.local {
                        return None;
                    }
                    read.on_answer(read.me().clone(), self.store.get_at(pos, key));
                }
                ReadStep::Done => break Ok(self.resolve(key, read.answers())),
                ReadStep::Failed(e) => break Err(e),
                ReadStep::Wait(_) | ReadStep::TimedOut { .. } => return None,
            }
        };
        self.count_read(&result);
        Some(result)
    }

    /// A read of the key at `pos` with quorum `q`, starting `now`, with
    /// this node's timing settings.
    fn read_quorum<A: Answer>(
        &self,
        pos: &Token,
        q: Quorum,
        now: Instant,
        confirm_misses: bool,
    ) -> ReadQuorum<A> {
        let timing = Timing {
            deadline: now + self.cfg.request_timeout(),
            // Until this passes, only as many replicas are asked as the
            // quorum needs.
            speculate_at: self.cfg.read_speculation().map(|d| now + d),
            confirm_wait: confirm_misses
                .then(|| self.cfg.read_speculation().unwrap_or(MISS_CONFIRM_WAIT)),
        };
        ReadQuorum::new(self.me.clone(), q, pos.0[19], timing)
    }

    /// Drives `read` until it has its answers: the replicas of each new
    /// view, the asks (`message` is the request a replica is sent, given
    /// the request's id, only over a working link when the machine says
    /// so; `local_answer` reads this node's copy), the waits and the
    /// answers (`Get` replies for whole entries, `Read` replies for parts).
    /// The decisions are [`ReadQuorum`]'s.
    ///
    /// The read registers for replies only when it first sends to a
    /// replica or waits: one that this node answers alone (a node without
    /// peers, R = 1 on a replica) never touches `Pending`.
    async fn drive<A: Answer + FromReply>(
        &self,
        read: &mut ReadQuorum<A>,
        pos: &Token,
        mut now: Instant,
        message: impl Fn(u64) -> PeerMsg,
        local_answer: impl Fn() -> A,
    ) -> Result<()> {
        let _counted = self.pending.begin();
        let mut registered: Option<(PendingGuard<'_>, Arc<Inbox>)> = None;
        // `now` is read again only after a wait.
        loop {
            // Read before the view, while not registered (see `Pending::pokes`).
            let pokes = registered.is_none().then(|| self.pending.pokes());
            let view = self.view.load();
            if read.is_new_view(view.epoch) {
                let replicas =
                    replicas::replicas(&view, &view.ring, pos, self.cfg.replication, read.strict());
                read.on_view(view.epoch, replicas);
            }
            // Steps that need no waiting run on the same view.
            let until = loop {
                match read.next(now) {
                    ReadStep::Ask(why) => {
                        let asking = read.asking();
                        let id = match (&registered, asking.remote.is_empty()) {
                            (_, true) => 0,
                            (Some((guard, _)), false) => guard.id,
                            (None, false) => registered.insert(self.pending.register()).0.id,
                        };
                        // Replicas whose link turned out broken (rare: no
                        // allocation unless there are more than two).
                        let mut broken = smallvec::SmallVec::<[NodeName; 2]>::new();
                        for node in asking.remote {
                            if !asking.if_reachable {
                                self.send_to(&view, node, message(id));
                            } else if self.send_if_reachable(&view, node, message(id)).is_none() {
                                broken.push(node.clone());
                            }
                        }
                        // Counted when something was sent for them.
                        let counter = match why {
                            Why::Speculate => Some(&self.metrics.read_speculations),
                            Why::ConfirmMiss => Some(&self.metrics.read_miss_confirmations),
                            Why::First | Why::ViewChanged => None,
                        };
                        if let Some(counter) =
                            counter.filter(|_| asking.remote.len() > broken.len())
                        {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        let local = asking.local;
                        for node in &broken {
                            read.on_unreachable(node);
                        }
                        if local {
                            read.on_answer(read.me().clone(), local_answer());
                        }
                    }
                    ReadStep::Done => return Ok(()),
                    ReadStep::Failed(e) => return Err(e),
                    ReadStep::TimedOut { error, unanswered } => {
                        self.metrics.replica_timeouts(Op::Read, unanswered);
                        return Err(error);
                    }
                    ReadStep::Wait(until) => break until,
                }
            };
            // Not held across the wait (see `replicate` in `mod.rs`).
            drop(view);
            let (_, replies) = registered.get_or_insert_with(|| self.pending.register());
            // A view published before this read registered poked no one:
            // a read that registered on this pass looks at the view again
            // before it waits if one may have been.
            if pokes.is_some_and(|p| p != self.pending.pokes()) {
                continue;
            }
            replies.wake_at(until);
            // `None` is a poke: a deadline passed or the view changed.
            let reply = replies.next().await;
            now = crate::clock::instant();
            if let Some((from, answer)) =
                reply.and_then(|(from, msg)| A::from_reply(msg).map(|answer| (from, answer)))
            {
                self.metrics.replica_ack(Op::Read);
                read.on_answer(from, answer);
            }
        }
    }

    /// The merge of the answers; replicas that answered something else are
    /// sent the merge (fire-and-forget read repair).
    fn resolve(&self, key: &Bytes, answers: &mut Answers<Option<Entry>>) -> Option<Entry> {
        // A coordinator that is not a replica of the key may still hold a
        // copy of it: a write it took as a stand-in during a partition,
        // not yet handed back. Right after the heal that copy can be the
        // newest: it counts as an answer (and read repair hands it on).
        if !answers.iter().any(|(n, _)| same(n, &self.me)) {
            if let Some(stray) = self.store.get(key) {
                answers.push((self.me.clone(), Some(stray)));
            }
        }
        // A replica that has not yet learned of a FLUSHALL this node
        // knows may still answer with what it removed: that part is no
        // answer.
        let unflushed = |e: Entry| self.store.unflushed_entry(e);
        let flushed = self.store.flush_marker().is_some();
        let Resolved { merged, stale } = resolve(
            answers,
            flushed.then_some(&unflushed as &dyn Fn(Entry) -> Option<Entry>),
        );
        let merged = merged?;
        if stale.is_empty() {
            return Some(merged);
        }
        let view = self.view.load();
        for node in &stale {
            self.metrics.read_repairs.fetch_add(1, Ordering::Relaxed);
            if *node == self.me {
                match self.apply_staging(&Token::of(key), key, &merged) {
                    Ok((_, None)) => {}
                    Ok((_, Some(logging))) => {
                        tokio::spawn(async move {
                            if let Err(e) = logging.await {
                                tracing::warn!(error = %e, "read repair not logged");
                            }
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "read repair not logged"),
                }
            } else {
                let msg = PeerMsg::Put {
                    id: 0,
                    key: key.clone(),
                    entry: merged.clone(),
                };
                self.send_to(&view, node, msg);
            }
        }
        Some(merged)
    }

    /// How many replicas of `key` (its preference list now) hold the newest
    /// version any of them holds: every replica is asked, and the count is
    /// taken when all have answered or the request timeout passes (WAIT).
    pub async fn replicas_holding_newest(&self, key: &Bytes) -> usize {
        let pos = Token::of(key);
        let deadline = crate::clock::instant() + self.cfg.request_timeout();
        let (guard, replies) = self.pending.register();
        let view = self.view.load();
        let pref = view.ring.preference_list(&pos, self.cfg.replication);
        let mut answers: Vec<Option<Entry>> = Vec::with_capacity(pref.len());
        let mut waiting = 0;
        for node in &pref {
            if same(node, &self.me) {
                answers.push(self.store.get_at(&pos, key));
            } else {
                let msg = PeerMsg::Get {
                    id: guard.id,
                    key: key.clone(),
                };
                waiting += usize::from(self.send_to(&view, node, msg));
            }
        }
        while waiting > 0 {
            replies.wake_at(deadline);
            match replies.next().await {
                Some((_, PeerMsg::GetReply { entry, .. })) => {
                    answers.push(entry);
                    waiting -= 1;
                }
                Some(_) => {}
                None if crate::clock::instant() >= deadline => break,
                None => {}
            }
        }
        let newest = answers
            .iter()
            .fold(None, |acc, e| Entry::merge_options(acc, e.as_ref()));
        match newest {
            None => 0,
            Some(newest) => answers
                .iter()
                .filter(|e| e.as_ref() == Some(&newest))
                .count(),
        }
    }

    /// Live keys matching a glob `pattern`, gathered from every node up.
    /// Succeeds when all but N-1 nodes answered (so every key still has a
    /// replica among the answers).
    pub async fn keys(&self, pattern: Bytes) -> Result<Vec<Bytes>> {
        let deadline = crate::clock::instant() + self.cfg.request_timeout();
        let (guard, replies) = self.pending.register();
        let view = self.view.load_full();
        let nodes = view.ring.nodes();
        let needed = nodes.len().saturating_sub(self.cfg.replication - 1).max(1);
        let mut keys: Vec<Bytes> = self.store.live_keys(crate::clock::wall_millis(), |k| {
            crate::resp::glob::matches(&pattern, k)
        });
        let mut got = 1;
        for node in nodes.iter().filter(|n| **n != self.me) {
            self.send_to(
                &view,
                node,
                PeerMsg::Keys {
                    id: guard.id,
                    pattern: pattern.clone(),
                },
            );
        }
        let grace = Duration::from_millis(50);
        while got < nodes.len() {
            // Once enough answered, wait only briefly for the stragglers.
            let until = if got >= needed {
                crate::clock::instant() + grace
            } else {
                deadline
            };
            tokio::select! {
                reply = replies.recv() => if let (_, PeerMsg::KeysReply { keys: more, .. }) = reply {
                    keys.extend(more);
                    got += 1;
                },
                _ = tokio::time::sleep_until(until.min(deadline).into()) => break,
            }
        }
        if got < needed {
            return Err(Error::Unavailable {
                op: "keys",
                needed,
                got,
            });
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Reads the part of `key` that `want` names (a few hash fields or
    /// set members, or only the head and counts) from `q.r` replicas. When
    /// their parts describe the same whole (equal versions and digests),
    /// that part is the answer; when they differ, the whole key is read
    /// (with read repair) and the part taken from the merge.
    pub async fn read_part(&self, key: Bytes, want: Want, q: Quorum) -> Result<Option<Part>> {
        let pos = Token::of(&key);
        // Parts do not confirm misses: a miss read whole would.
        let now = crate::clock::instant();
        let mut read = self.read_quorum(&pos, q, now, false);
        let message = |id| PeerMsg::Read {
            id,
            key: key.clone(),
            want: want.clone(),
        };
        let local = || self.store.part_at(&pos, &key, &want).map(Box::new);
        let result = self.drive(&mut read, &pos, now, message, local).await;
        if let Err(e) = result {
            self.metrics.reads_failed.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        let mut parts: Vec<Option<Box<Part>>> =
            read.answers().drain(..).map(|(_, part)| part).collect();
        let agree = parts.windows(2).all(|w| match (&w[0], &w[1]) {
            (Some(a), Some(b)) => a.version == b.version && a.digest == b.digest,
            (None, None) => true,
            _ => false,
        });
        if agree {
            self.metrics.reads_ok.fetch_add(1, Ordering::Relaxed);
            let part = parts.swap_remove(0).map(|p| *p);
            // What a FLUSHALL this node knows removed is no answer (a
            // replica may not have heard of it yet).
            return Ok(match (part, self.store.flush_marker()) {
                (Some(p), Some(marker)) if p.version <= marker => None,
                (Some(mut p), Some(marker)) => {
                    p.rich.clear_up_to(marker);
                    Some(p)
                }
                (part, _) => part,
            });
        }
        self.metrics
            .read_part_mismatches
            .fetch_add(1, Ordering::Relaxed);
        Ok(self.read(key, q).await?.map(|e| e.part(&want)))
    }
}
