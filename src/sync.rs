//! Keeping three copies: hand-off after ring changes.
//!
//! When the ring changes, some keys' preference lists change with it: a node
//! that went down is replaced by the next node clockwise; a node that comes
//! back (or restarts, with a new generation) takes its place again. This
//! task watches the view and, for every key this node holds, sends the entry
//! to each node that is in the key's new preference list but was not in the
//! old one (or restarted since). Every holder does this, so a key reaches
//! its new replicas as long as any one of its old holders is up.
//!
//! A node that is no longer in a key's preference list drops its copy once
//! every new holder has acknowledged it, and only if the copy did not change
//! meanwhile. A periodic sweep repeats the same for keys this node holds but
//! should not (a write that raced a ring change), so strays do not linger.
//!
//! Transfers are batched (a few hundred entries per message), merged by the
//! receiver under last-writer-wins, and coalesced: a burst of membership
//! changes (a whole partition healing) is handled as one change from the
//! last view handed off to the newest.
//!
//! Deliberately left out: digest-based anti-entropy. This is a plain
//! transfer of the affected keys; comparing range digests to send only the
//! difference is a separate, later piece.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::message::PeerMsg;
use crate::node::shared::{Shared, View};
use crate::ring::{NodeName, Token};
use crate::store::{Entry, Version};

const DEBOUNCE: Duration = Duration::from_millis(10);
const STRAY_SWEEP: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_millis(500);

/// Runs hand-off until shutdown.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut rx = shared.view_tx.subscribe();
    let mut last = shared.view.load_full();
    let mut sweep = tokio::time::interval(STRAY_SWEEP);
    sweep.tick().await;
    let mut retry = false;
    loop {
        let pause = if retry { RETRY } else { STRAY_SWEEP };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
            _ = sweep.tick() => {}
            _ = tokio::time::sleep(pause), if retry => {}
        }
        tokio::time::sleep(DEBOUNCE).await;
        rx.mark_unchanged();
        let now = shared.view.load_full();
        // A newer view supersedes a round still waiting for acknowledgements
        // (say from nodes just cut off but not yet marked down): abandon it
        // and start over from `last` to the newest view at once. Safe,
        // because a round drops copies only after all its transfers are acked.
        tokio::select! {
            complete = handoff(&shared, &last, &now) => retry = !complete,
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                rx.mark_changed();
                retry = true;
                continue;
            }
        }
        if !retry {
            last = now;
        }
    }
}

/// Sends every held entry to the nodes newly in its preference list, and
/// drops copies this node should no longer hold. Returns whether every
/// transfer was acknowledged (otherwise the next round retries from the
/// same old view).
pub async fn handoff(shared: &Shared, old: &View, new: &View) -> bool {
    let n = shared.cfg.replication;
    let mut outgoing: HashMap<NodeName, Vec<(Bytes, Entry)>> = HashMap::new();
    let mut to_drop: Vec<(Bytes, Version)> = Vec::new();
    shared.store.for_each(|key, entry| {
        let pos = Token::of(key);
        let new_pref = new.ring.preference_list(&pos, n);
        let leaving = !new_pref.contains(&shared.me);
        let old_pref = if leaving {
            Vec::new()
        } else {
            old.ring.preference_list(&pos, n)
        };
        for node in new_pref.iter().filter(|x| **x != shared.me) {
            let restarted = old.generations.get(node) != new.generations.get(node);
            if leaving || restarted || !old_pref.contains(node) {
                outgoing
                    .entry(node.clone())
                    .or_default()
                    .push((key.clone(), entry.clone()));
            }
        }
        if leaving {
            to_drop.push((key.clone(), entry.version));
        }
    });
    if outgoing.is_empty() && to_drop.is_empty() {
        return true;
    }
    let total: usize = outgoing.values().map(Vec::len).sum();
    let mut targets: Vec<NodeName> = outgoing.keys().cloned().collect();
    targets.sort();
    let sends = outgoing
        .into_iter()
        .map(|(node, items)| transfer(shared, new, node, items));
    let all_acked = join_all(sends).await.into_iter().all(|ok| ok);
    shared
        .metrics
        .handoff_entries
        .fetch_add(total as u64, Ordering::Relaxed);
    let mut dropped = 0;
    if all_acked {
        for (key, version) in to_drop {
            dropped += usize::from(shared.store.remove_if_version(&key, version));
        }
        shared
            .metrics
            .handoff_dropped
            .fetch_add(dropped as u64, Ordering::Relaxed);
    }
    info!(
        entries = total,
        to = ?targets,
        dropped,
        complete = all_acked,
        epoch = new.epoch,
        "hand-off round"
    );
    shared.record_handoff(&targets, total, dropped, all_acked);
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
        let (guard, mut replies) = shared.pending.register();
        let msg = PeerMsg::Transfer {
            id: guard.id,
            items: batch.to_vec(),
        };
        if !shared.send_to(view, &node, msg) {
            return false;
        }
        let acked = tokio::time::timeout(shared.cfg.request_timeout(), async {
            while let Some((_, reply)) = replies.recv().await {
                if matches!(reply, PeerMsg::TransferAck { .. }) {
                    return true;
                }
            }
            false
        })
        .await;
        if acked != Ok(true) {
            debug!(node = %node, "hand-off batch not acknowledged");
            return false;
        }
    }
    true
}
