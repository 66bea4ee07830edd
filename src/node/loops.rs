//! The node's periodic tasks: the deadline sweeper, heartbeats and the
//! failure sweep, log compaction, the tombstone purge and the expiry
//! reclaimer. Each runs until the node's shutdown token is cancelled;
//! `Node::start_on` spawns them.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::pending;
use super::shared::{record_of, Shared};
use crate::clock::Timestamp;
use crate::message::PeerMsg;

/// Wakes waiting requests whose deadline passed (see the `pending` module).
pub(super) async fn sweep_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        // An idle node does not tick at all.
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = shared.pending.busy() => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pending::SWEEP_EVERY) => {}
        }
        for request in shared.pending.sweep(crate::clock::instant()) {
            request.on_poke(&shared);
        }
    }
}

/// Compacts the commit log in the background when it holds more than
/// `compaction_factor` times the live data (and `compaction_min_bytes`).
pub(super) async fn compaction_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    let (factor, min) = (
        shared.cfg.compaction_factor,
        shared.cfg.compaction_min_bytes,
    );
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !shared
            .log
            .stats()
            .should_compact(shared.store.bytes() as u64, factor, min)
        {
            continue;
        }
        let snapshot_of = shared.clone();
        let result = shared
            .log
            .compact(move |w| {
                let mut result = Ok(());
                snapshot_of.store.for_each_copying_large(|key, entry| {
                    if result.is_ok() {
                        result = w.push(&record_of(key, entry));
                    }
                });
                result
            })
            .await;
        match result {
            Ok(c) => info!(
                live_records = c.live_records,
                snapshot_bytes = c.snapshot_bytes,
                removed_bytes = c.removed_bytes,
                elapsed_ms = c.elapsed.as_millis() as u64,
                "compacted the commit log"
            ),
            Err(e) => warn!(error = %e, "commit log compaction failed; will retry"),
        }
    }
}

/// Heartbeats every known node and seed, and sweeps for silent ones.
pub(super) async fn heartbeat_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(shared.cfg.heartbeat_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let keys = shared.store.live_len() as u64;
        let (hb, targets, events) = {
            let mut m = shared.membership();
            let events = m.tick(crate::clock::instant());
            let interval = shared.cfg.heartbeat_interval();
            let missed = crate::metrics::missed_heartbeats(&m, crate::clock::instant(), interval);
            shared
                .metrics
                .heartbeats_missed
                .fetch_add(missed, std::sync::atomic::Ordering::Relaxed);
            (m.heartbeat(keys), m.targets(), events)
        };
        shared.handle_events(events);
        if shared.replica_ring_is_stale() {
            info!("a node's rebuild delay passed: its replicas are rebuilt on the others");
            shared.publish_view();
        }
        let sent = targets.len() as u64;
        let digest = shared.metadata_digest();
        let fence = shared.write_fence();
        shared.note_fence(&shared.me, fence.clone());
        let placement = shared.placement_message();
        for addr in targets {
            // The placement first, so the ring a heartbeat brings the
            // sender onto has its tokens: receivers of protocol 9 ignore
            // heartbeats until they have it. (Before the link has settled
            // its version the heartbeat goes alone, and the next tick's
            // pair brings the node up.)
            if shared
                .net
                .peer_version(&addr)
                .is_some_and(|v| v >= crate::message::PLACEMENT_SINCE)
            {
                shared.net.send(&addr, placement.clone());
            }
            shared
                .net
                .send(&addr, PeerMsg::Heartbeat(Box::new(hb.clone())));
            // Records that differ are exchanged (see `meta`), once the link
            // has settled on a version that carries them (5 does not).
            if shared.net.peer_version(&addr).is_some_and(|v| v >= 6) {
                shared.net.send(&addr, PeerMsg::MetaDigest { digest });
            }
            let version = shared.net.peer_version(&addr);
            if version.is_some_and(|v| v >= crate::message::CLOCK_SINCE) {
                let reason = fence.clone();
                shared.net.send(&addr, PeerMsg::WriteFence { reason });
            }
        }
        shared
            .metrics
            .heartbeats_sent
            .fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Purges tombstones older than the grace period, every tenth of it (at
/// most once a minute).
pub(super) async fn purge_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    let grace = Duration::from_secs(shared.cfg.tombstone_grace_secs);
    let every = (grace / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = shared.clock.now().micros();
        let cutoff = Timestamp::from_micros(now.saturating_sub(grace.as_micros() as u64));
        let purged = shared.store.purge_tombstones(cutoff);
        if purged > 0 {
            info!(purged, "purged tombstones past their grace period");
        }
    }
}

/// Reduces expired keys to tombstones (see `store::expiry`), once a
/// second: those whose deadline is older than the clock tolerance
/// (`max_clock_skew_ms`) by this node's wall clock.
pub(super) async fn reclaim_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    /// Keys reduced per turn before the task yields to the others.
    const BATCH: usize = 4096;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let cutoff = crate::clock::wall_millis().saturating_sub(shared.cfg.max_clock_skew_ms);
        loop {
            let (due, reclaimed) = shared.store.reclaim_expired(cutoff, BATCH);
            shared
                .metrics
                .expired_reclaimed
                .fetch_add(reclaimed as u64, std::sync::atomic::Ordering::Relaxed);
            if due < BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}
