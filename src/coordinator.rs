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
use std::time::Duration;

use bytes::Bytes;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::message::{PeerMsg, PutResult, RmwPut};
use crate::metrics::Op;
use crate::node::shared::{Shared, View};
use crate::ring::{NodeList, NodeName, Token};
use crate::store::{Entry, Version};

/// A string, or a tombstone for `None`, at `version`.
fn simple(version: Version, value: Option<Bytes>) -> Entry {
    match value {
        Some(v) => Entry::string(version, v),
        None => Entry::tombstone(version),
    }
}

/// Node names compared by pointer first: the names in a request's lists
/// are clones of the ring's, so the string comparison is rarely needed.
fn same(a: &NodeName, b: &NodeName) -> bool {
    // Names of one length usually differ in their last byte (n1, n2...):
    // checked before calling memcmp.
    std::sync::Arc::ptr_eq(a, b)
        || (a.len() == b.len() && a.as_bytes().last() == b.as_bytes().last() && a == b)
}

/// How long a read that found no such key waits for one more replica to
/// confirm it when `read_speculation_ms` is 0 (else that setting).
const MISS_CONFIRM_WAIT: Duration = Duration::from_millis(20);

/// The replies a read gathered, inline for the usual few.
type Answers = smallvec::SmallVec<[(NodeName, Option<Entry>); 4]>;

/// Whom a read asks, beyond the replicas it already asked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// Enough to make `needed`: replicas with a working link first, the
    /// others only if those do not make it.
    Enough,
    /// Every replica on the list (the speculation delay passed).
    All,
    /// Enough to make `needed`, from replicas with a working link only:
    /// confirming a miss is not worth waiting on one that may be dead.
    Reachable,
}

/// One read: what it reads, whom it asked, and what came back.
struct Read<'k> {
    pos: Token,
    key: &'k Bytes,
    /// The request id replies carry.
    id: u64,
    asked: NodeList,
    answers: Answers,
}

/// Read and write quorums for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    /// Replies a read waits for.
    pub r: usize,
    /// Acknowledgements a write waits for.
    pub w: usize,
}

/// What a successful write learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Some acknowledging replica held a live value before the write.
    pub was_live: bool,
    /// The version the write was stamped with.
    pub version: Version,
    /// A read-modify-write only: some acknowledging replica held a version
    /// newer than the one read (another write came in between), or
    /// already held one newer than this write (which then lost there).
    pub conflict: bool,
}

impl Shared {
    /// The node's default quorums.
    pub fn default_quorum(&self) -> Quorum {
        Quorum {
            r: self.cfg.read_quorum,
            w: self.cfg.write_quorum,
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
        let result = self.replicate(key, build(version), q.w, read).await;
        self.count_write(&result);
        if matches!(result, Ok(WriteOutcome { conflict: true, .. })) {
            self.metrics.rmw_conflicts.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn count_write(&self, result: &Result<WriteOutcome>) {
        let counter = if result.is_ok() {
            &self.metrics.writes_ok
        } else {
            &self.metrics.writes_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends `entry` to the key's replicas and waits for `w` of them. With
    /// `read` (a read-modify-write), replicas are sent the version read
    /// and report conflicts.
    async fn replicate(
        &self,
        key: Bytes,
        entry: Entry,
        w: usize,
        read: Option<Option<Version>>,
    ) -> Result<WriteOutcome> {
        let pos = Token::of(&key);
        let deadline = Instant::now() + self.cfg.request_timeout();
        let (guard, replies) = self.pending.register();
        let mut asked = NodeList::new();
        let mut acked = NodeList::new();
        let mut outcome = WriteOutcome {
            was_live: false,
            version: entry.version(),
            conflict: false,
        };
        let mut refusal: Option<String> = None;
        // The preference list is computed again only when the view changes.
        let mut pref = NodeList::new();
        let mut pref_epoch = None;
        loop {
            let view = self.view.load();
            // Replicas are asked only when the list is new (the first turn,
            // or the view changed), not on every reply.
            let mut local = false;
            if pref_epoch != Some(view.epoch) {
                pref = view.ring.preference_list(&pos, self.cfg.replication);
                pref_epoch = Some(view.epoch);
                for node in &pref {
                    if asked.iter().any(|a| same(a, node)) {
                        continue;
                    }
                    asked.push(node.clone());
                    if same(node, &self.me) {
                        local = true;
                    } else {
                        let (id, key, entry) = (guard.id, key.clone(), entry.clone());
                        let msg = match read {
                            None => PeerMsg::Put { id, key, entry },
                            Some(read) => PeerMsg::PutRmw(Box::new(RmwPut {
                                id,
                                key,
                                entry,
                                read,
                            })),
                        };
                        self.send_to(&view, node, msg);
                    }
                }
            }
            let needed = w.min(pref.len()).max(1);
            // The local copy is written while the remote ones are in flight.
            if local {
                match self.apply_durably(&pos, &key, entry.clone()).await {
                    Ok(applied) => {
                        outcome.was_live |= applied.was_live;
                        if let Some(read) = read {
                            outcome.conflict |= applied.conflicts_with(read);
                        }
                        acked.push(self.me.clone());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "local write failed to reach the commit log")
                    }
                }
            }
            if acked.len() >= needed {
                return Ok(outcome);
            }
            if Instant::now() >= deadline {
                self.metrics
                    .replica_timeouts(Op::Write, asked.len().saturating_sub(acked.len()));
                if let Some(why) = refusal {
                    return Err(Error::invalid(why));
                }
                return Err(Error::Unavailable {
                    op: "write",
                    needed,
                    got: acked.len(),
                });
            }
            replies.wake_at(deadline);
            // `None` is a poke (the deadline passed or the view changed):
            // the loop looks at both again.
            let (from, result) = match replies.next().await {
                Some((from, PeerMsg::PutAck { result, .. })) => (from, result),
                Some((
                    from,
                    PeerMsg::PutRmwAck {
                        was_live, conflict, ..
                    },
                )) => {
                    outcome.conflict |= conflict;
                    (from, PutResult::Ok { was_live })
                }
                _ => continue,
            };
            match result {
                PutResult::Ok { was_live } => {
                    self.metrics.replica_ack(Op::Write);
                    outcome.was_live |= was_live;
                    if !acked.iter().any(|a| same(a, &from)) {
                        acked.push(from);
                    }
                }
                PutResult::Refused(why) => {
                    tracing::warn!(replica = %from, reason = %why, "replica refused a write");
                    refusal = Some(format!("{from} refused: {why}"));
                }
            }
        }
    }

    /// Reads `key` with quorum `q.r`: the newest version among the first
    /// replies (tombstones included; the caller treats them as absent).
    pub async fn read(&self, key: Bytes, q: Quorum) -> Result<Option<Entry>> {
        let result = self.gather(key, q.r).await;
        let counter = if result.is_ok() {
            &self.metrics.reads_ok
        } else {
            &self.metrics.reads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn gather(&self, key: Bytes, r: usize) -> Result<Option<Entry>> {
        let pos = Token::of(&key);
        let now = Instant::now();
        let deadline = now + self.cfg.request_timeout();
        // Until this passes, only as many replicas are asked as the quorum needs.
        let mut speculate_at = self.cfg.read_speculation().map(|d| now + d);
        let (guard, replies) = self.pending.register();
        let mut read = Read {
            pos,
            key: &key,
            id: guard.id,
            asked: NodeList::new(),
            answers: Answers::new(),
        };
        let mut pref = NodeList::new();
        let mut pref_epoch = None;
        // Whether to (re)consider whom to ask: on the first turn, when the
        // view changed, and when speculation starts; not on every reply.
        let mut rescan = true;
        // Set once the first R answers all said "no such key" while the
        // list has a replica not yet heard: right after a ring change (a
        // partition, a node down) the first replicas asked may be ones
        // anti-entropy has not filled yet while another holds the key, so a
        // miss waits for one more answer, until this instant at most.
        let mut confirm_miss_by: Option<Instant> = None;
        loop {
            let view = self.view.load();
            if pref_epoch != Some(view.epoch) {
                pref = view.ring.preference_list(&pos, self.cfg.replication);
                pref_epoch = Some(view.epoch);
                rescan = true;
            }
            let needed = (r + usize::from(confirm_miss_by.is_some()))
                .min(pref.len())
                .max(1);
            if std::mem::take(&mut rescan) {
                let ask = if speculate_at.is_some() {
                    Ask::Enough
                } else {
                    Ask::All
                };
                self.ask_readers(&view, &pref, needed, ask, &mut read);
            }
            if read.answers.len() >= needed {
                let miss = read.answers.iter().all(|(_, e)| e.is_none());
                if miss
                    && self.cfg.confirm_misses
                    && confirm_miss_by.is_none()
                    && self.ask_readers(&view, &pref, needed + 1, Ask::Reachable, &mut read) > 0
                {
                    let wait = self.cfg.read_speculation().unwrap_or(MISS_CONFIRM_WAIT);
                    confirm_miss_by = Some(Instant::now() + wait);
                    self.metrics
                        .read_miss_confirmations
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                return Ok(self.resolve(&key, read.answers));
            }
            let now = Instant::now();
            if confirm_miss_by.is_some_and(|at| now >= at) {
                // The extra replica did not answer in time: the R answers
                // stand.
                return Ok(self.resolve(&key, read.answers));
            }
            if now >= deadline {
                self.metrics.replica_timeouts(
                    Op::Read,
                    read.asked.len().saturating_sub(read.answers.len()),
                );
                return Err(Error::Unavailable {
                    op: "read",
                    needed,
                    got: read.answers.len(),
                });
            }
            if let Some(at) = speculate_at {
                if now >= at {
                    // The replicas asked are slow (or dead and not yet
                    // marked down): the loop now asks the rest.
                    speculate_at = None;
                    rescan = true;
                    self.metrics
                        .read_speculations
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            let wake = speculate_at.map_or(deadline, |at| at.min(deadline));
            replies.wake_at(confirm_miss_by.map_or(wake, |at| at.min(wake)));
            // `None` is a poke: a deadline passed or the view changed.
            if let Some((from, PeerMsg::GetReply { entry, .. })) = replies.next().await {
                self.metrics.replica_ack(Op::Read);
                if !read.answers.iter().any(|(n, _)| same(n, &from)) {
                    read.answers.push((from, entry));
                }
            }
        }
    }

    /// Asks the replicas a read still needs: the local copy first (it
    /// answers at once), then others, as `ask` says. Returns how many
    /// other replicas it asked.
    fn ask_readers(
        &self,
        view: &View,
        pref: &[NodeName],
        needed: usize,
        ask: Ask,
        read: &mut Read<'_>,
    ) -> usize {
        let limited = ask != Ask::All;
        let (pos, key, id) = (&read.pos, read.key, read.id);
        let (asked, answers) = (&mut read.asked, &mut read.answers);
        let me_listed = pref.iter().any(|n| same(n, &self.me));
        if me_listed && !asked.iter().any(|n| same(n, &self.me)) {
            asked.push(self.me.clone());
            answers.push((self.me.clone(), self.store.get_at(pos, key)));
        }
        // Which replicas are asked first rotates with the key, so the
        // reads a coordinator forwards spread over all the replicas; a
        // replica whose link is broken is asked only if the others do
        // not make R (first pass: reachable ones only).
        let first = usize::from(pos.0[19]);
        // Replicas asked that are still on the list and have not answered.
        let mut waiting = asked
            .iter()
            .filter(|n| pref.iter().any(|p| same(p, n)) && !answers.iter().any(|(a, _)| same(a, n)))
            .count();
        let mut sent = 0;
        let passes = if ask == Ask::Reachable { 1 } else { 2 };
        for pass in 0..passes {
            let rotated = (0..pref.len()).map(|i| &pref[(first + i) % pref.len()]);
            for node in rotated {
                if limited && answers.len() + waiting >= needed {
                    break;
                }
                if same(node, &self.me) || asked.iter().any(|a| same(a, node)) {
                    continue;
                }
                let msg = PeerMsg::Get {
                    id,
                    key: key.clone(),
                };
                // First pass: reachable replicas only (one link lookup).
                if pass == 0 && limited {
                    if self.send_if_reachable(view, node, msg).is_none() {
                        continue;
                    }
                } else {
                    self.send_to(view, node, msg);
                }
                asked.push(node.clone());
                waiting += 1;
                sent += 1;
            }
        }
        sent
    }

    /// The merge of the answers; replicas that answered something else are
    /// sent the merge (fire-and-forget read repair).
    fn resolve(&self, key: &Bytes, answers: Answers) -> Option<Entry> {
        // A replica that has not yet learned of a FLUSHALL this node knows
        // may still answer with what it removed: that part is no answer.
        let newest = answers.iter().fold(None, |acc, (_, e)| {
            let alive = e.clone().and_then(|e| self.store.unflushed_entry(e));
            Entry::merge_options(acc, alive.as_ref())
        })?;
        let view = self.view.load();
        for (node, entry) in &answers {
            if entry.as_ref() == Some(&newest) {
                continue;
            }
            self.metrics.read_repairs.fetch_add(1, Ordering::Relaxed);
            if *node == self.me {
                let applied = self.apply(key, newest.clone());
                if let Ok((_, Some(rec))) = applied {
                    let log = self.log.clone();
                    tokio::spawn(async move {
                        if let Err(e) = log.append(rec).await {
                            tracing::warn!(error = %e, "read repair not logged");
                        }
                    });
                }
            } else {
                let msg = PeerMsg::Put {
                    id: 0,
                    key: key.clone(),
                    entry: newest.clone(),
                };
                self.send_to(&view, node, msg);
            }
        }
        Some(newest)
    }

    /// How many replicas of `key` (its preference list now) hold the newest
    /// version any of them holds: every replica is asked, and the count is
    /// taken when all have answered or the request timeout passes (WAIT).
    pub async fn replicas_holding_newest(&self, key: &Bytes) -> usize {
        let pos = Token::of(key);
        let deadline = Instant::now() + self.cfg.request_timeout();
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
                None if Instant::now() >= deadline => break,
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
        let deadline = Instant::now() + self.cfg.request_timeout();
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
                Instant::now() + grace
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
}
