//! Counters: INCR and its family, coordinated through the share's owner.
//!
//! A counter is a sum of shares, one per data identity, each written only
//! by its owner with rising versions (see `values`), so increments made
//! through different nodes, even on two sides of a partition, are in
//! different shares and all count. A share's total must be computed from
//! the owner's own latest total, so an increment is applied by the node
//! whose share it goes to, under the key's store lock: the **owner** for a
//! request is the first node of the key's preference list that is up (the
//! view's), so in a healthy cluster every increment of a key goes to one
//! node and one share, and a counter has as many shares as nodes that
//! were ever first for it.
//!
//! The coordinator sends the increment to the owner ([`PeerMsg::Incr`]),
//! or applies it itself when it is the owner. The owner reads its copy,
//! checks type, integer-ness and overflow as Redis does, merges the delta
//! (its share's new total) into its store, logs it, and replicates it like
//! any write, answering once `w` replicas, itself included, have it. The
//! value answered is the counter as the owner's copy has it.
//!
//! An increment whose answer does not arrive (the owner died, the link
//! broke) is **indeterminate**: it may or may not count, and retrying it
//! may count it twice. The error says so.

use bytes::Bytes;

use crate::message::{IncrResult, PeerMsg};
use crate::node::shared::Shared;
use crate::quorum::replicas;
use crate::ring::Token;
use crate::store::{Entry, Version};

impl Shared {
    /// Adds `by` to the counter at `key` (or at its hash field `field`)
    /// with `q.w` acknowledgements, through the key's owner (see the module
    /// doc). Under strict quorums the owner is the first home replica
    /// that takes writes, and it counts only home replicas.
    pub async fn increment(
        &self,
        key: Bytes,
        field: Option<Bytes>,
        by: i64,
        q: super::Quorum,
    ) -> IncrResult {
        let pos = Token::of(&key);
        let view = self.view.load_full();
        // The owner is the first replica that takes writes.
        let replicas = replicas::replicas(
            &view,
            &view.write_ring,
            &pos,
            self.cfg.replication,
            q.strict,
        );
        let pref = replicas.list;
        if q.strict && pref.len() < q.w.max(1) {
            let e = replicas::unavailable("write", true, q.w, 0, pref.len(), replicas.home);
            return IncrResult::Failed(e.to_string());
        }
        let Some(owner) = pref.first().cloned() else {
            match super::fenced_everywhere(&view, &view.write_ring) {
                Some(crate::error::Error::Misconf(why)) => {
                    return IncrResult::Invalid(crate::error::MISCONF_PREFIX.to_string() + &why)
                }
                Some(_) => return IncrResult::Invalid(crate::error::OOM_REFUSAL.into()),
                None => {}
            }
            return IncrResult::Failed("no node is up".into());
        };
        if owner == self.me {
            // Boxed, so that an increment sent to another owner does not
            // carry the owner's state in its future.
            return Box::pin(self.increment_as_owner(pos, key, field, by, q)).await;
        }
        let since = if q.strict {
            STRICT_INCR_SINCE
        } else {
            INCR_SINCE
        };
        // No link is older: nothing to look up (every increment, at full load).
        let old_links = self.net.oldest_peer_version().is_some_and(|v| v < since);
        if let Some(addr) = old_links.then(|| view.addrs.get(&owner)).flatten() {
            if let Some(v) = self.net.peer_version(addr).filter(|v| *v < since) {
                let what = if q.strict {
                    "counters under strict quorums"
                } else {
                    "counters"
                };
                return IncrResult::Invalid(format!(
                    "{what} need peer protocol {since}, and {owner}, the key's first replica, speaks {v}: finish the upgrade first"
                ));
            }
        }
        let deadline = crate::clock::instant() + self.cfg.request_timeout();
        let (guard, replies) = self.pending.register();
        let (id, w) = (guard.id, q.w as u32);
        let msg = match q.strict {
            false => PeerMsg::Incr {
                id,
                key,
                field,
                by,
                w,
            },
            true => PeerMsg::IncrStrict {
                id,
                key,
                field,
                by,
                w,
            },
        };
        if !self.send_to(&view, &owner, msg) {
            return IncrResult::Failed(format!(
                "the increment could not be sent to {owner}, the key's first replica"
            ));
        }
        loop {
            replies.wake_at(deadline);
            match replies.next().await {
                Some((_, PeerMsg::IncrReply { result, .. })) => return result,
                Some(_) => continue,
                None if crate::clock::instant() >= deadline => {
                    return IncrResult::Failed(format!(
                        "{owner}, the key's first replica, did not answer in time: the increment may or may not have been applied"
                    ))
                }
                // A poke: the view changed. An owner marked down will not
                // answer, so the client hears so now, not at the deadline.
                None if !self.view.load().ring.contains(&owner) => {
                    return IncrResult::Failed(format!(
                        "{owner}, the key's first replica, went down before it answered: the increment may or may not have been applied"
                    ))
                }
                None => continue,
            }
        }
    }

    /// Applies an increment as the owner of this node's share (see the
    /// module doc): reads, checks and merges under the key's lock, then
    /// logs the delta and replicates it at once, and answers when both are
    /// done: the log has the record and `q.w` replicas in all have the
    /// delta. `pos` is the key's token.
    pub async fn increment_as_owner(
        &self,
        pos: Token,
        key: Bytes,
        field: Option<Bytes>,
        by: i64,
        q: super::Quorum,
    ) -> IncrResult {
        if let Some(why) = self.log.fenced() {
            return IncrResult::Invalid(crate::error::MISCONF_PREFIX.to_string() + &why);
        }
        // Refused before anything is applied while a replica could not
        // hold the delta (`replicate` would refuse it only after).
        if self
            .net
            .oldest_peer_version()
            .is_some_and(|v| v < super::RICH_SINCE)
        {
            let view = self.view.load();
            let ring = &view.write_ring;
            let replicas = replicas::replicas(&view, ring, &pos, self.cfg.replication, q.strict);
            if let Err(e) = self.check_replicas_hold_rich(&view, &replicas.list) {
                return match e {
                    crate::error::Error::InvalidInput(why) => IncrResult::Invalid(why),
                    e => IncrResult::Failed(e.to_string()),
                };
            }
        }
        // One reading of the wall clock for the stamp and for expiry.
        let wall = crate::clock::wall_micros();
        let now = wall / 1000;
        let updated = self.store.update_at(&pos, &key, now, |current| {
            if let Some(c) = &current {
                self.clock.advance_past(c.version.ts);
            }
            let version = Version {
                ts: self.clock.now_at(wall),
                node: self.id,
            };
            Entry::increment(current, field.as_ref(), self.share_id(), by, version, now)
        });
        let (delta, value, applied) = match updated {
            Ok(done) => done,
            Err(why) => return IncrResult::Refused(why),
        };
        // Staged in the log now, before the replicas are sent the delta,
        // as a coordinator's own copy of a SET is: the two waits overlap.
        let logging = match applied.needs_log() {
            true => match self.begin_log(&key, &delta) {
                Ok(appending) => Some(appending),
                Err(e) => return not_logged(e),
            },
            false => None,
        };
        let logged = async {
            match logging {
                Some(appending) => appending.await,
                None => Ok(()),
            }
        };
        let replicated = self.replicate(key, delta, q, super::Mode::AppliedHere(pos));
        match futures::future::join(logged, replicated).await {
            (Err(e), _) => not_logged(e),
            (Ok(()), Ok(_)) => IncrResult::Value(value),
            (Ok(()), Err(e)) => IncrResult::Failed(format!(
                "{e} (the increment was applied by {}, and may count)",
                self.me
            )),
        }
    }
}

/// The answer to an increment this node applied but could not log. The
/// replicas may have it (they are sent it while the log writes), so it
/// is indeterminate like any increment whose answer did not come.
fn not_logged(e: crate::error::Error) -> IncrResult {
    IncrResult::Failed(format!(
        "the increment was applied but not logged, and may or may not count: {e}"
    ))
}

/// The peer protocol version that carries increments.
const INCR_SINCE: u32 = 7;

/// The peer protocol version that carries increments under strict quorums.
const STRICT_INCR_SINCE: u32 = crate::message::PLACEMENT_SINCE;
