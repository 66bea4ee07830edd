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
//! Placements, which heartbeats of protocol 9 come after, are taken in
//! `node/placed.rs`; a peer refused there is refused here too.

use std::sync::atomic::Ordering::Relaxed;

use tracing::{debug, info, warn};

use super::shared::Shared;
use crate::clock::Timestamp;
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
        if accepted && self.refused_placement(&from.name) {
            return false;
        }
        if accepted {
            if let Err(e) = self.clock.observe(hlc) {
                debug!(peer = %from.name, error = %e, "peer's hybrid clock not followed");
            }
        }
        accepted
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
        if self.draining() {
            return Some(format!(
                "{}: the node is shutting down",
                super::drain::STOPPING
            ));
        }
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
