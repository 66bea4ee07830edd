//! What a node announces and learns from its peers: their clocks,
//! whether a node takes writes (its commit log, and `maxmemory`), and
//! where their data sits on the ring (their placement).
//!
//! Every socket write from a peer of protocol 8 or later opens with the
//! peer's clocks (`PeerMsg::Clock`). The hybrid clock moves past the
//! peer's, so a write coordinated here after that orders after every
//! write the peer had made, even when this node replicates none of them.
//! The wall clocks go to [`crate::skew`], whose verdict refuses a peer too
//! far off; its changes are logged here, once each.
//!
//! Heartbeats of protocol 9 or later come after the sender's placement
//! (`PeerMsg::Placement`): its number of tokens, which the view builds
//! the ring with, and its N. A peer whose N differs from this node's is
//! refused like a peer whose clock is too far off: its messages are
//! dropped (all but its placement, which may be fixed by a restart).
//! Placements are also kept in the metadata record (`node/NAME`), so a
//! node knows those of nodes that are down.

use std::sync::atomic::Ordering::Relaxed;

use tracing::{debug, info, warn};

use std::collections::HashMap;

use super::shared::Shared;
use crate::clock::Timestamp;
use crate::message::PeerMsg;
use crate::placement::Placement;
use crate::ring::NodeName;
use crate::skew::{Change, Standing};
use crate::transport::Peer;

impl Shared {
    /// Takes `from`'s clocks; returns whether its messages are accepted.
    pub(crate) fn take_clocks(&self, from: &Peer, wall_micros: u64, hlc: Timestamp) -> bool {
        let ours = crate::clock::wall_micros();
        let (accepted, change) = self.skew.lock().unwrap_or_else(|p| p.into_inner()).sample(
            &from.name,
            wall_micros,
            ours,
        );
        if let Some(change) = change {
            self.log_clock_change(&from.name, change);
        }
        if accepted && self.misplaced(&from.name) {
            return false;
        }
        if accepted {
            if let Err(e) = self.clock.observe(hlc) {
                debug!(peer = %from.name, error = %e, "peer's hybrid clock not followed");
            }
        }
        accepted
    }

    /// Takes the placement `from` announced. A change of its tokens
    /// rebuilds the view; an N other than this node's refuses it.
    pub(crate) fn take_placement(&self, peer: &Peer, announced: Placement) {
        let from = &peer.name;
        if announced.replication != self.placement.replication {
            // Answered with this node's, so the refused node learns why
            // (it may never have heard of this one).
            let ours = PeerMsg::Placement {
                tokens: self.placement.tokens as u32,
                replication: self.placement.replication as u32,
            };
            self.net.send(&peer.reply_to, ours);
        }
        let before = {
            let mut all = self.placements.lock().unwrap_or_else(|p| p.into_inner());
            all.insert(from.clone(), announced)
        };
        if before == Some(announced) {
            return;
        }
        let ours = self.placement.replication;
        if announced.replication != ours {
            let text = format!(
                "{from} refused: it places keys on {} replicas and this node on {ours}; every \
                 node of a cluster needs the same replication factor",
                announced.replication
            );
            warn!(peer = %from, "{text}");
            self.events.push("placement", Some(from.to_string()), text);
        } else if before.is_some_and(|b| b.replication != ours) {
            let text = format!("{from} places keys on {ours} replicas again: accepted");
            info!(peer = %from, "{text}");
            self.events.push("placement", Some(from.to_string()), text);
        }
        if before.map(|b| b.tokens) != Some(announced.tokens) {
            info!(peer = %from, tokens = announced.tokens, "learned a node's placement");
        }
        self.publish_view();
    }

    /// Whether `from`'s heartbeats may bring it onto the ring: a peer of
    /// protocol 9 or later must have announced its placement (it comes
    /// first in the same socket write), with this node's N.
    pub(crate) fn placement_accepted(&self, from: &Peer) -> bool {
        if from.version < crate::message::PLACEMENT_SINCE {
            return true;
        }
        let all = self.placements.lock().unwrap_or_else(|p| p.into_inner());
        all.get(&from.name)
            .is_some_and(|p| p.replication == self.placement.replication)
    }

    /// Whether `name` announced a replication factor other than this
    /// node's (and is refused).
    pub(crate) fn misplaced(&self, name: &str) -> bool {
        let all = self.placements.lock().unwrap_or_else(|p| p.into_inner());
        all.get(name)
            .is_some_and(|p| p.replication != self.placement.replication)
    }

    /// Every known node's number of tokens: as it announced, or else as
    /// the metadata record keeps it; this node's own.
    pub fn token_counts(&self) -> HashMap<NodeName, usize> {
        let mut out: HashMap<NodeName, usize> = self
            .metadata()
            .entries()
            .filter_map(|(name, reg)| {
                let node = name.strip_prefix(crate::placement::RECORD_PREFIX)?;
                let record = crate::placement::NodeRecord::decode(&reg.value)?;
                Some((NodeName::from(node), record.placement.tokens))
            })
            .collect();
        let announced = self.placements.lock().unwrap_or_else(|p| p.into_inner());
        out.extend(announced.iter().map(|(n, p)| (n.clone(), p.tokens)));
        out.insert(self.me.clone(), self.placement.tokens);
        out
    }

    /// Every known node's placement, as [`Shared::token_counts`] finds it.
    pub fn placement_of(&self, name: &str) -> Option<Placement> {
        if name == &*self.me {
            return Some(self.placement);
        }
        if let Some(p) = self
            .placements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Some(*p);
        }
        let meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        let reg = meta.get(&crate::placement::record_name(name))?;
        Some(crate::placement::NodeRecord::decode(&reg.value)?.placement)
    }

    /// Every peer's clock offset and standing, by name.
    pub fn clock_offsets(&self) -> Vec<crate::skew::PeerOffset> {
        self.skew.lock().unwrap_or_else(|p| p.into_inner()).peers()
    }

    /// Logs a change of `peer`'s standing, and puts it in the event feed.
    fn log_clock_change(&self, peer: &str, change: Change) {
        let offset_ms = change.offset_micros as f64 / 1000.0;
        let way = if change.offset_micros >= 0 {
            "ahead of"
        } else {
            "behind"
        };
        let size_ms = offset_ms.abs();
        let text = match change.to {
            Standing::Refused => format!(
                "{peer} refused: its wall clock is {size_ms:.0} ms {way} this node's, beyond \
                 max_clock_skew_ms ({} ms); its messages are dropped until the clocks agree",
                self.cfg.max_clock_skew_ms
            ),
            Standing::Warned => format!(
                "{peer}'s wall clock is {size_ms:.0} ms {way} this node's, beyond clock_warn_ms \
                 ({} ms): check the time service (NTP) on both",
                self.cfg.clock_warn_ms
            ),
            Standing::Ok => {
                format!("{peer}'s wall clock agrees with this node's again ({offset_ms:.0} ms)")
            }
        };
        match change.to {
            Standing::Refused | Standing::Warned => warn!(peer, offset_ms, "{text}"),
            Standing::Ok => info!(peer, offset_ms, "{text}"),
        }
        self.events.push("clock", Some(peer.to_string()), text);
    }

    /// Records whether `node`'s commit log takes writes (this node's own,
    /// from the heartbeat loop; a peer's, from its `WriteFence`), and
    /// publishes a new view when that changed, so writes go around it.
    pub(crate) fn note_fence(&self, node: &crate::ring::NodeName, reason: Option<String>) {
        let changed = {
            let mut fences = self.fences.lock().unwrap_or_else(|p| p.into_inner());
            let before = fences.get(node).cloned();
            match &reason {
                Some(why) => fences.insert(node.clone(), why.clone()),
                None => fences.remove(node),
            };
            before.is_some() != reason.is_some()
        };
        if changed {
            match &reason {
                Some(why) => {
                    warn!(node = %node, reason = %why, "node takes no writes: they go to other replicas")
                }
                None => info!(node = %node, "node takes writes again"),
            }
            let text = match &reason {
                Some(why) => format!("{node} takes no writes: {why}"),
                None => format!("{node} takes writes again"),
            };
            self.events.push("fence", Some(node.to_string()), text);
            self.publish_view();
        }
    }

    /// Whether this node holds more data than `maxmemory` allows. Past
    /// it, expired keys are reclaimed first (at most once a second), and
    /// only then is the answer yes.
    pub fn over_maxmemory(&self) -> bool {
        let limit = self.cfg.maxmemory;
        if limit == 0 || (self.store.bytes() as u64) <= limit {
            return false;
        }
        self.reclaim_for_maxmemory();
        self.store.bytes() as u64 > limit
    }

    /// Why this node takes no writes, if it does not: its commit log, or
    /// `maxmemory` (what its heartbeats tell the others).
    pub fn write_fence(&self) -> Option<String> {
        let log = self.log.fenced();
        log.map(|why| format!("commit log cannot be written: {why}"))
            .or_else(|| {
                self.over_maxmemory().then(|| {
                    format!(
                        "OOM: used memory {} > maxmemory {}",
                        self.store.bytes(),
                        self.cfg.maxmemory
                    )
                })
            })
    }

    /// Reclaims expired keys now, as the reclaim loop would (deadlines
    /// older than the clock tolerance), at most once a second: the first
    /// thing a node past `maxmemory` does.
    fn reclaim_for_maxmemory(&self) {
        let now = crate::clock::wall_millis();
        let last = self.maxmemory_reclaimed_at.load(Relaxed);
        if now.saturating_sub(last) < 1000
            || self
                .maxmemory_reclaimed_at
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        let cutoff = now.saturating_sub(self.cfg.max_clock_skew_ms);
        let (_, reclaimed) = self.store.reclaim_expired(cutoff, usize::MAX);
        self.metrics
            .expired_reclaimed
            .fetch_add(reclaimed as u64, Relaxed);
    }
}
