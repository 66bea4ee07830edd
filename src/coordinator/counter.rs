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
//! or applies it itself when it is the owner (`owner.rs`, where it runs
//! to completion with no task of its own). A coordinator that is itself
//! one of the key's replicas asks the owner to bring the delta back with
//! its answer instead of sending it as a replica write
//! ([`PeerMsg::IncrCarry`]): the owner counts it as one acknowledgement,
//! and it applies and logs the delta before it answers its client. With
//! W = 2 on three nodes that is one round trip to the owner where there
//! were two in a row (owner to replica and back, then owner to
//! coordinator), and two messages fewer. The owner reads its copy,
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
            // Applied here (`owner.rs`), answered through `Pending` as a
            // peer's answer would be.
            let (guard, replies) = self.pending.register();
            let to = super::owner::AnswerTo::Here(guard.id);
            self.increment_owned(pos, key, field, by, q, to);
            loop {
                if let (_, PeerMsg::IncrReply { result, .. }) = replies.recv().await {
                    return result;
                }
            }
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
        // One of the replicas, and able to log: it carries the delta (see
        // the module doc), unless one acknowledgement is all it takes.
        let carry = q.w >= 2 && pref.contains(&self.me) && self.log.fenced().is_none();
        let carried_key = carry.then(|| key.clone());
        let msg = match q.strict {
            _ if carry => PeerMsg::IncrCarry {
                id,
                key,
                field,
                by,
                w,
                strict: q.strict,
            },
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
                Some((_, PeerMsg::IncrCarried { value, delta, .. })) => {
                    let Some(key) = &carried_key else { continue };
                    return self.carry(&pos, key, &delta, value, &owner).await;
                }
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
}

impl Shared {
    /// Applies and logs the delta of an increment the owner counted this
    /// node for ([`PeerMsg::IncrCarried`]), then answers the client with
    /// `value`. The owner has already answered, so a failure here leaves
    /// the increment applied there: indeterminate, and said so.
    async fn carry(
        &self,
        pos: &Token,
        key: &Bytes,
        delta: &crate::store::Entry,
        value: i64,
        owner: &str,
    ) -> IncrResult {
        let applied = match self.clock.observe(delta.version().ts) {
            Ok(()) => self.apply_durably(pos, key, delta).await.map(drop),
            Err(e) => Err(e),
        };
        match applied {
            Ok(()) => IncrResult::Value(value),
            Err(e) => IncrResult::Failed(format!(
                "{e} (the increment was applied by {owner}, and may count)"
            )),
        }
    }
}

/// The peer protocol version that carries increments.
const INCR_SINCE: u32 = 7;

/// The peer protocol version that carries increments under strict quorums.
const STRICT_INCR_SINCE: u32 = crate::message::PLACEMENT_SINCE;
