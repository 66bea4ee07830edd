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
use crate::message::{ApplyResult, PeerMsg, PutResult};
use crate::metrics::Op;
use crate::node::shared::{Shared, View};
use crate::ring::{NodeList, NodeName, Token};
use crate::store::{Entry, Version};

mod counter;
mod mode;
mod read;
mod refusal;
mod strict;

pub(crate) use mode::Mode;

pub(crate) use refusal::fenced_everywhere;
use refusal::{refusal_error, refusal_text};

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

/// The peer protocol version that carries rich values.
const RICH_SINCE: u32 = 7;

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
    /// Count only the key's home replicas (see `coordinator/strict.rs`).
    pub strict: bool,
}

/// What a successful write learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Some acknowledging replica held a live value before the write.
    pub was_live: bool,
    /// The version the write was stamped with.
    pub version: Version,
    /// A read-modify-write only: some acknowledging replica held a version
    /// newer than the one read (another write came in between), or
    /// already held one newer than this write (which then lost there).
    pub conflict: bool,
    /// A typed write only: for each checked element, whether some
    /// acknowledging replica held it live before.
    pub present: Vec<bool>,
}

impl WriteOutcome {
    fn absorb(&mut self, was_live: bool, conflict: bool, present: Vec<bool>) {
        self.was_live |= was_live;
        self.conflict |= conflict;
        if self.present.len() < present.len() {
            self.present.resize(present.len(), false);
        }
        for (mine, theirs) in self.present.iter_mut().zip(present) {
            *mine |= theirs;
        }
    }
}

/// A replica's answer to a write.
enum Ack {
    Done {
        was_live: bool,
        conflict: bool,
        present: Vec<bool>,
    },
    WrongType,
}

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
        let version = Version {
            ts: self.clock.now(),
            node: self.id,
        };
        let result = self
            .replicate(key, build(version), q, Mode::Checked(check))
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
    async fn replicate(
        &self,
        key: Bytes,
        entry: Entry,
        q: Quorum,
        mode: Mode<'_>,
    ) -> Result<WriteOutcome> {
        let pos = Token::of(&key);
        let rich = entry.as_simple().is_none();
        let deadline = Instant::now() + self.cfg.request_timeout();
        let (guard, replies) = self.pending.register();
        let mut asked = NodeList::new();
        let mut acked = NodeList::new();
        // Replicas that refused a typed write for the key's type, and
        // whether each was since sent it as a plain write.
        let mut wrong: Vec<(NodeName, bool)> = Vec::new();
        let mut outcome = WriteOutcome {
            was_live: false,
            version: entry.version(),
            conflict: false,
            present: Vec::new(),
        };
        let mut refusal: Option<String> = None;
        // Replicas that refused the write (this node too, when its own
        // copy could not be logged): once too many have, it fails at once.
        let mut refused = NodeList::new();
        // The preference list is computed again only when the view changes.
        let mut pref = NodeList::new();
        let mut home = 0;
        let mut pref_epoch = None;
        loop {
            let view = self.view.load();
            // Replicas are asked only when the list is new (the first turn,
            // or the view changed), not on every reply.
            let mut local = false;
            if pref_epoch != Some(view.epoch) {
                // Nodes whose commit log takes no writes are left out, as
                // if they were down (see `log/fence.rs`).
                // A delete (or a delta of removals only) still reaches
                // nodes past `maxmemory`, as Redis lets DEL through.
                let ring = match entry.is_tombstone() {
                    true => &view.delete_ring,
                    false => &view.write_ring,
                };
                let replicas = strict::replicas(&view, ring, &pos, self.cfg.replication, q.strict);
                (pref, home) = (replicas.list, replicas.home);
                if pref.is_empty() {
                    if let Some(e) = fenced_everywhere(&view, ring) {
                        return Err(e);
                    }
                }
                if rich && pref_epoch.is_none() {
                    self.check_replicas_hold_rich(&view, &pref)?;
                }
                pref_epoch = Some(view.epoch);
                for node in &pref {
                    if asked.iter().any(|a| same(a, node)) {
                        continue;
                    }
                    asked.push(node.clone());
                    if same(node, &self.me) {
                        local = true;
                    } else {
                        let msg = mode.message(guard.id, key.clone(), entry.clone());
                        self.send_to(&view, node, msg);
                    }
                }
            }
            let needed = strict::needed(q.w, pref.len(), q.strict);
            // The local copy is written while the remote ones are in flight.
            if local {
                match self.apply_locally(&pos, &key, &entry, &mode).await {
                    Ok(Ack::Done {
                        was_live,
                        conflict,
                        present,
                    }) => {
                        outcome.absorb(was_live, conflict, present);
                        acked.push(self.me.clone());
                    }
                    Ok(Ack::WrongType) => wrong.push((self.me.clone(), false)),
                    Err(e) => {
                        tracing::debug!(error = %e, "local write refused");
                        refusal = Some(match e {
                            Error::Misconf(why) => crate::error::MISCONF_PREFIX.to_string() + &why,
                            e => e.to_string(),
                        });
                        refused.push(self.me.clone());
                    }
                }
            }
            // A typed write that some replicas applied and others refused
            // for the key's type (their copies disagree on it, after a
            // partition): it took effect, and the merge will show it, so it
            // is made to take effect everywhere, and reported as done.
            if !acked.is_empty() && wrong.iter().any(|(_, forced)| !forced) {
                // Boxed: a cold path, kept out of every write's future.
                Box::pin(self.force(&view, &pos, &key, &entry, guard.id, &mut wrong, &mut acked))
                    .await;
            }
            if acked.len() >= needed {
                return Ok(outcome);
            }
            let answered = acked.len() + wrong.len();
            if acked.is_empty() && !wrong.is_empty() && answered >= asked.len() {
                return Err(Error::WrongType);
            }
            // Too many refusals for a quorum: the client is told at once,
            // and why, rather than after the timeout.
            if asked.len() - refused.len() < needed && wrong.is_empty() {
                if let Some(why) = refusal {
                    return Err(refusal_error(why));
                }
            }
            // Strict, and too few home replicas up: no other node may
            // stand in, so the client is told at once.
            let short = q.strict && pref.len() < needed;
            if short || Instant::now() >= deadline {
                self.metrics
                    .replica_timeouts(Op::Write, asked.len().saturating_sub(acked.len()));
                if acked.is_empty() && !wrong.is_empty() {
                    return Err(Error::WrongType);
                }
                if let Some(why) = refusal {
                    return Err(refusal_error(why));
                }
                return Err(strict::unavailable(
                    "write",
                    q.strict,
                    needed,
                    acked.len(),
                    pref.len(),
                    home,
                ));
            }
            replies.wake_at(deadline);
            // `None` is a poke (the deadline passed or the view changed):
            // the loop looks at both again.
            let Some((from, reply)) = replies.next().await else {
                continue;
            };
            let ack = match reply {
                PeerMsg::PutAck {
                    result: PutResult::Ok { was_live },
                    ..
                } => Ack::Done {
                    was_live,
                    conflict: false,
                    present: Vec::new(),
                },
                PeerMsg::PutRmwAck {
                    was_live, conflict, ..
                } => Ack::Done {
                    was_live,
                    conflict,
                    present: Vec::new(),
                },
                PeerMsg::ApplyAck { result, .. } => match result {
                    ApplyResult::Done { was_live, present } => Ack::Done {
                        was_live,
                        conflict: false,
                        present,
                    },
                    ApplyResult::WrongType => Ack::WrongType,
                    ApplyResult::Refused(why) => {
                        tracing::debug!(replica = %from, reason = %why, "replica refused a write");
                        refusal = Some(refusal_text(&from, why));
                        if !refused.iter().any(|r| same(r, &from)) {
                            refused.push(from);
                        }
                        continue;
                    }
                },
                PeerMsg::PutAck {
                    result: PutResult::Refused(why),
                    ..
                } => {
                    tracing::debug!(replica = %from, reason = %why, "replica refused a write");
                    refusal = Some(refusal_text(&from, why));
                    if !refused.iter().any(|r| same(r, &from)) {
                        refused.push(from);
                    }
                    continue;
                }
                _ => continue,
            };
            match ack {
                Ack::Done {
                    was_live,
                    conflict,
                    present,
                } => {
                    self.metrics.replica_ack(Op::Write);
                    if !acked.iter().any(|a| same(a, &from)) {
                        outcome.absorb(was_live, conflict, present);
                        acked.push(from);
                    }
                }
                Ack::WrongType => {
                    if !wrong.iter().any(|(n, _)| same(n, &from)) {
                        wrong.push((from, false));
                    }
                }
            }
        }
    }

    /// Applies `entry` to this node's copy as `mode` says, durably.
    async fn apply_locally(
        &self,
        pos: &Token,
        key: &Bytes,
        entry: &Entry,
        mode: &Mode<'_>,
    ) -> Result<Ack> {
        match mode {
            Mode::AppliedHere => Ok(Ack::Done {
                was_live: false,
                conflict: false,
                present: Vec::new(),
            }),
            Mode::Checked(check) => {
                // Boxed, so that a plain write's future does not carry a
                // typed write's state.
                match Box::pin(self.apply_checked_durably(pos, key, entry, check)).await? {
                    ApplyResult::Done { was_live, present } => Ok(Ack::Done {
                        was_live,
                        conflict: false,
                        present,
                    }),
                    ApplyResult::WrongType => Ok(Ack::WrongType),
                    ApplyResult::Refused(why) => Err(Error::invalid(why)),
                }
            }
            Mode::Plain | Mode::Rmw(_) => {
                let applied = self.apply_durably(pos, key, entry.clone()).await?;
                let conflict = match mode {
                    Mode::Rmw(read) => applied.conflicts_with(*read),
                    _ => false,
                };
                Ok(Ack::Done {
                    was_live: applied.was_live,
                    conflict,
                    present: Vec::new(),
                })
            }
        }
    }

    /// Sends `entry` as a plain write to the replicas in `wrong` not yet
    /// sent it (see [`Shared::replicate`]); this node's own copy is
    /// written at once and counted.
    #[allow(clippy::too_many_arguments)]
    async fn force(
        &self,
        view: &View,
        pos: &Token,
        key: &Bytes,
        entry: &Entry,
        id: u64,
        wrong: &mut [(NodeName, bool)],
        acked: &mut NodeList,
    ) {
        for (node, forced) in wrong.iter_mut().filter(|(_, f)| !*f) {
            *forced = true;
            if same(node, &self.me) {
                match self.apply_durably(pos, key, entry.clone()).await {
                    Ok(_) => acked.push(self.me.clone()),
                    Err(e) => {
                        tracing::error!(error = %e, "local write failed to reach the commit log")
                    }
                }
            } else {
                let msg = PeerMsg::Put {
                    id,
                    key: key.clone(),
                    entry: entry.clone(),
                };
                self.send_to(view, node, msg);
            }
        }
    }

    /// Refuses, naming the node, when a replica in `pref` (the key's
    /// preference list, on a write's first turn) speaks a peer protocol
    /// older than 7 (during a rolling upgrade): it cannot
    /// hold an expiry, a counter, a hash or a set, and the write would
    /// silently miss it.
    fn check_replicas_hold_rich(&self, view: &View, pref: &NodeList) -> Result<()> {
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
