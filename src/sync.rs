//! When replicas reconcile, and what happens to copies a node should not hold.
//!
//! This task runs [`anti_entropy::sync_with`] rounds:
//! - at once whenever the routing view changes (a node appears, reappears
//!   after a crash or a healed partition, restarts, or goes down), with every
//!   peer in the new view, over the ranges the two share in it, so a node
//!   newly responsible for a range is filled from the others, and the two
//!   sides of a healed partition exchange what each missed;
//! - periodically (every `anti_entropy_interval_ms`, jittered by +-20 %)
//!   with every peer whose name sorts after this node's (each pair once),
//!   which repairs any replica message that was lost.
//!
//! A burst of view changes is handled as one. A newer view abandons a
//! running round only if a node left or restarted (it may never answer);
//! nodes that merely joined get a new round as soon as this one ends.
//!
//! After each round it hands off **strays**: entries this node holds for
//! ranges it no longer replicates (the ring changed back, or it stood in
//! for a node that returned). Each goes to the key's preference list, and
//! the local copy is dropped once every transfer was acknowledged and only
//! if it did not change meanwhile.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::anti_entropy::{self, digest};
use crate::message::PeerMsg;
use crate::node::shared::{Shared, View};
use crate::ring::{NodeName, Token};
use crate::store::{Entry, Version, LEAVES};

const DEBOUNCE: Duration = Duration::from_millis(10);
const RETRY: Duration = Duration::from_millis(500);

fn jittered(base: Duration) -> Duration {
    base.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
}

/// Runs reconciliation until shutdown.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut rx = shared.view_tx.subscribe();
    let period = Duration::from_millis(shared.cfg.anti_entropy_interval_ms);
    let mut retry = false;
    loop {
        let pause = if retry { RETRY } else { jittered(period) };
        let periodic = tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = rx.changed() => { if changed.is_err() { return } false }
            _ = tokio::time::sleep(pause) => !retry,
        };
        tokio::time::sleep(DEBOUNCE).await;
        rx.mark_unchanged();
        let view = shared.view.load_full();
        let round = round(&shared, &view, periodic);
        tokio::pin!(round);
        let mut again = false;
        loop {
            tokio::select! {
                complete = &mut round => {
                    retry = !complete;
                    if complete {
                        shared.reconciled_epoch.fetch_max(view.epoch, Ordering::Relaxed);
                    }
                    break;
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // A node that left (or restarted) may never answer this
                    // round: give it up and start over from the newer view.
                    // Nodes that only joined can wait for the next round,
                    // which starts as soon as this one ends, so a healing
                    // partition (nodes returning one by one) does not
                    // restart the round once per node.
                    if lost_a_node(&view, &shared.view.load()) {
                        again = true;
                        retry = false;
                        break;
                    }
                    again = true;
                }
            }
        }
        if again {
            rx.mark_changed();
        }
    }
}

/// Whether a node of `old` is gone from `new`, or restarted.
fn lost_a_node(old: &View, new: &View) -> bool {
    old.generations
        .iter()
        .any(|(name, generation)| new.generations.get(name) != Some(generation))
}

/// One reconciliation round over `view`: anti-entropy with the peers and
/// the hand-off of strays, side by side (they touch disjoint keys: shared
/// ranges versus ranges this node does not replicate). Returns whether both
/// completed.
async fn round(shared: &Shared, view: &View, periodic: bool) -> bool {
    let (peers_ok, strays_ok) = tokio::join!(
        reconcile_with_peers(shared, view, periodic),
        hand_off_strays(shared, view)
    );
    peers_ok && strays_ok
}

/// Anti-entropy rounds with every peer in `view` (periodic rounds: only
/// those whose names sort after this node's), concurrently.
async fn reconcile_with_peers(shared: &Shared, view: &View, periodic: bool) -> bool {
    let peers: Vec<&NodeName> = view
        .ring
        .nodes()
        .iter()
        .filter(|n| **n != shared.me && (!periodic || **n > shared.me))
        .collect();
    let rounds = peers
        .iter()
        .map(|p| async move { (*p, anti_entropy::sync_with(shared, view, p).await) });
    let mut complete = true;
    for (peer, result) in join_all(rounds).await {
        match result {
            Ok(r) => {
                shared.ae_stats.record(peer, &r);
                if r.keys_sent + r.keys_received > 0 {
                    shared.record_repair(peer, &r);
                    info!(
                        peer = %peer, differing_leaves = r.differing_leaves,
                        sent = r.keys_sent, received = r.keys_received,
                        bytes_sent = r.bytes_sent, bytes_received = r.bytes_received,
                        "anti-entropy repaired differences"
                    );
                }
            }
            Err(e) => {
                complete = false;
                shared.ae_stats.record_failure(peer);
                debug!(peer = %peer, error = %e, "anti-entropy round failed");
            }
        }
    }
    complete
}

/// Sends entries of ranges this node does not replicate to the nodes that
/// do, and drops them once all acknowledged. Returns whether all did.
pub async fn hand_off_strays(shared: &Shared, view: &View) -> bool {
    let n = shared.cfg.replication;
    let mine = digest::ranges_of(&view.ring, &shared.me, n);
    let mut inside = vec![false; LEAVES];
    for (leaf, whole) in mine.leaves() {
        inside[leaf] = whole;
    }
    let mut outgoing: HashMap<NodeName, Vec<(Bytes, Entry)>> = HashMap::new();
    let mut to_drop: Vec<(Bytes, Version)> = Vec::new();
    for (leaf, _) in inside.iter().enumerate().filter(|(_, whole)| !**whole) {
        shared.store.for_each_in_leaf(leaf, |key, entry| {
            let pos = Token::of(key);
            if mine.contains(&pos) {
                return;
            }
            let (key, entry) = (Bytes::copy_from_slice(key), entry.to_entry());
            for node in view.ring.preference_list(&pos, n) {
                outgoing
                    .entry(node)
                    .or_default()
                    .push((key.clone(), entry.clone()));
            }
            to_drop.push((key, entry.version()));
        });
    }
    if to_drop.is_empty() {
        return true;
    }
    let mut targets: Vec<NodeName> = outgoing.keys().cloned().collect();
    targets.sort();
    let sends = outgoing
        .into_iter()
        .map(|(node, items)| transfer(shared, view, node, items));
    let all_acked = join_all(sends).await.into_iter().all(|ok| ok);
    let mut dropped = 0;
    if all_acked {
        for (key, version) in &to_drop {
            dropped += usize::from(shared.store.remove_if_version(key, *version));
        }
    }
    shared
        .metrics
        .handoff_entries
        .fetch_add(to_drop.len() as u64, Ordering::Relaxed);
    shared
        .metrics
        .handoff_dropped
        .fetch_add(dropped as u64, Ordering::Relaxed);
    info!(
        strays = to_drop.len(),
        dropped,
        complete = all_acked,
        epoch = view.epoch,
        to = ?targets,
        "handed off strays"
    );
    shared.record_handoff(&targets, to_drop.len(), dropped, all_acked);
    all_acked
}

/// Sends `items` to `node` in batches, each awaiting its acknowledgement.
async fn transfer(
    shared: &Shared,
    view: &View,
    node: NodeName,
    items: Vec<(Bytes, Entry)>,
) -> bool {
    for batch in items.chunks(shared.cfg.transfer_batch) {
        let items = batch.to_vec();
        match shared
            .ask(view, &node, |id| PeerMsg::Transfer { id, items })
            .await
        {
            Ok(PeerMsg::TransferAck { .. }) => {}
            Ok(other) => {
                warn!(node = %node, reply = other.kind(), "hand-off batch answered oddly");
                return false;
            }
            Err(e) => {
                warn!(node = %node, error = %e, "hand-off batch not acknowledged");
                return false;
            }
        }
    }
    true
}
