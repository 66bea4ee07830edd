//! Quorum reads: whom a read asks, when it asks more, how it resolves
//! the answers and repairs stale replicas (see the module doc of
//! `coordinator`), and the cluster-wide key listing.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{same, Answers, Ask, Quorum, Read, MISS_CONFIRM_WAIT};
use crate::error::{Error, Result};
use crate::message::PeerMsg;
use crate::metrics::Op;
use crate::node::shared::{Shared, View};
use crate::ring::{NodeList, NodeName, Token};
use crate::store::Entry;
use crate::values::{Part, Want};

impl Shared {
    /// Reads `key` with quorum `q.r`: the newest version among the first
    /// replies (tombstones included; the caller treats them as absent).
    pub async fn read(&self, key: Bytes, q: Quorum) -> Result<Option<Entry>> {
        let result = self.gather(key, q).await;
        let counter = if result.is_ok() {
            &self.metrics.reads_ok
        } else {
            &self.metrics.reads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn gather(&self, key: Bytes, q: Quorum) -> Result<Option<Entry>> {
        let r = q.r;
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
        let mut home = 0;
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
                let replicas = super::strict::replicas(
                    &view,
                    &view.ring,
                    &pos,
                    self.cfg.replication,
                    q.strict,
                );
                (pref, home) = (replicas.list, replicas.home);
                pref_epoch = Some(view.epoch);
                rescan = true;
            }
            let needed = match q.strict {
                // A confirmation asks one more home replica if there is one.
                true if confirm_miss_by.is_some() => (r + 1).min(pref.len()).max(r),
                strict => super::strict::needed(
                    r + usize::from(confirm_miss_by.is_some()),
                    pref.len(),
                    strict,
                ),
            };
            if q.strict && pref.len() < needed {
                return Err(super::strict::unavailable(
                    "read",
                    true,
                    needed,
                    read.answers.len(),
                    pref.len(),
                    home,
                ));
            }
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
                return Err(super::strict::unavailable(
                    "read",
                    q.strict,
                    needed,
                    read.answers.len(),
                    pref.len(),
                    home,
                ));
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
    fn resolve(&self, key: &Bytes, mut answers: Answers) -> Option<Entry> {
        // A coordinator that is not a replica of the key may still hold a
        // copy of it: a write it took as a stand-in during a partition,
        // not yet handed back. Right after the heal that copy can be the
        // newest: it counts as an answer (and read repair hands it on).
        if !answers.iter().any(|(n, _)| same(n, &self.me)) {
            if let Some(stray) = self.store.get(key) {
                answers.push((self.me.clone(), Some(stray)));
            }
        }
        // The merge of the answers, copying one of them (the hot path: two
        // equal answers cost one copy and one comparison).
        let flushed = self.store.flush_marker().is_some();
        let mut newest: Option<Entry> = None;
        for (_, e) in &answers {
            let Some(e) = e else { continue };
            // A replica that has not yet learned of a FLUSHALL this node
            // knows may still answer with what it removed: that part is no
            // answer.
            let unflushed;
            let e = if flushed {
                match self.store.unflushed_entry(e.clone()) {
                    Some(u) => {
                        unflushed = u;
                        &unflushed
                    }
                    None => continue,
                }
            } else {
                e
            };
            match &mut newest {
                None => newest = Some(e.clone()),
                Some(n) => {
                    n.merge_in(e);
                }
            }
        }
        let newest = newest?;
        let mut view = None;
        for (node, entry) in &answers {
            if entry.as_ref() == Some(&newest) {
                continue;
            }
            let view = view.get_or_insert_with(|| self.view.load());
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
                self.send_to(view, node, msg);
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

    /// Reads the part of `key` that `want` names (a few hash fields or
    /// set members, or only the head and counts) from `q.r` replicas. When
    /// their parts describe the same whole (equal versions and digests),
    /// that part is the answer; when they differ, the whole key is read
    /// (with read repair) and the part taken from the merge.
    pub async fn read_part(&self, key: Bytes, want: Want, q: Quorum) -> Result<Option<Part>> {
        let pos = Token::of(&key);
        let deadline = Instant::now() + self.cfg.request_timeout();
        let mut speculate_at = self.cfg.read_speculation().map(|d| Instant::now() + d);
        let (guard, replies) = self.pending.register();
        let view = self.view.load();
        let replicas =
            super::strict::replicas(&view, &view.ring, &pos, self.cfg.replication, q.strict);
        let (pref, home) = (replicas.list, replicas.home);
        let needed = super::strict::needed(q.r, pref.len(), q.strict);
        let mut parts: Vec<Option<Box<Part>>> = Vec::new();
        let mut asked = NodeList::new();
        if pref.iter().any(|n| same(n, &self.me)) {
            asked.push(self.me.clone());
            parts.push(self.store.part_at(&pos, &key, &want).map(Box::new));
        }
        let ask = |all: bool, asked: &mut NodeList| {
            let first = usize::from(pos.0[19]);
            for i in 0..pref.len() {
                let node = &pref[(first + i) % pref.len()];
                if !all && asked.len() >= needed {
                    break;
                }
                if asked.iter().any(|a| same(a, node)) {
                    continue;
                }
                let msg = PeerMsg::Read {
                    id: guard.id,
                    key: key.clone(),
                    want: want.clone(),
                };
                if self.send_to(&view, node, msg) {
                    asked.push(node.clone());
                }
            }
        };
        ask(speculate_at.is_none(), &mut asked);
        while parts.len() < needed {
            let now = Instant::now();
            if now >= deadline || (q.strict && pref.len() < needed) {
                self.metrics.reads_failed.fetch_add(1, Ordering::Relaxed);
                let got = parts.len();
                return Err(super::strict::unavailable(
                    "read",
                    q.strict,
                    needed,
                    got,
                    pref.len(),
                    home,
                ));
            }
            if speculate_at.is_some_and(|at| now >= at) {
                speculate_at = None;
                ask(true, &mut asked);
            }
            replies.wake_at(speculate_at.map_or(deadline, |at| at.min(deadline)));
            if let Some((_, PeerMsg::ReadReply { part, .. })) = replies.next().await {
                self.metrics.replica_ack(Op::Read);
                parts.push(part);
            }
        }
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
        drop(guard);
        self.metrics
            .read_part_mismatches
            .fetch_add(1, Ordering::Relaxed);
        Ok(self.read(key, q).await?.map(|e| e.part(&want)))
    }
}
