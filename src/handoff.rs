//! Hand-off: copies a node holds of ranges it does not replicate go to
//! the nodes that do, and are dropped here once they have them.
//!
//! Such **strays** appear when the ring changes back (a node that was down
//! returns, a partition heals) or when this node stood in for a down one
//! (sloppy quorums send it that node's writes). Which ranges a node
//! replicates is read off the view's **replica ring**: the nodes up plus
//! those down for less than `rebuild_delay_ms`. So while a node is briefly
//! down, the writes its stand-ins take for it are strays waiting for it,
//! and nothing else moves; its return hands back exactly those writes.
//!
//! A stray is **offered** before it is sent (`Offer`, protocol 9): the
//! replica answers which entries it lacks or holds older, and only those
//! travel. The other live replicas of a write made during an outage got it
//! from the coordinator, so usually only the returning node wants it. A
//! replica of protocol 8 or older is sent everything, as before. A replica
//! that is down (but within its rebuild delay) holds its strays back
//! whole, offered to no replica until it returns, counted as the hand-off
//! backlog
//! (`ringkv_handoff_backlog`, counted by a pass every two seconds while a
//! node is down). A stray is dropped only once every replica
//! of its key has acknowledged it (or said it did not need it), and only
//! if it did not change meanwhile.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::anti_entropy::digest;
use crate::message::PeerMsg;
use crate::node::shared::{Shared, View};
use crate::ring::{NodeName, Token};
use crate::store::{Entry, Version, LEAVES};

/// What one hand-off pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Strays found.
    pub strays: usize,
    /// Entries sent (after offers).
    pub sent: usize,
    /// Local copies dropped.
    pub dropped: usize,
    /// Strays kept for a replica that is down.
    pub waiting: usize,
    /// Every replica that is up answered.
    pub complete: bool,
}

/// Hands off this node's strays under `view` (see the module doc).
/// Returns whether every replica that is up answered; strays waiting for
/// a replica that is down do not make a pass incomplete (its return is a
/// view change, which starts another).
pub async fn hand_off_strays(shared: &Shared, view: &View) -> bool {
    // One pass at a time (the reconciliation rounds' and the backlog's).
    let _turn = shared.handoff_turn.lock().await;
    let n = shared.cfg.replication;
    let mine = digest::ranges_of(&view.replica_ring, &shared.me, n);
    let mut inside = vec![false; LEAVES];
    for (leaf, whole) in mine.leaves() {
        inside[leaf] = whole;
    }
    let mut outgoing: HashMap<NodeName, Vec<(Bytes, Entry)>> = HashMap::new();
    // Each stray, with whether a replica of it is down.
    let mut strays: Vec<(Bytes, Version, bool)> = Vec::new();
    for (leaf, _) in inside.iter().enumerate().filter(|(_, whole)| !**whole) {
        shared.store.for_each_in_leaf(leaf, |key, entry| {
            let pos = Token::of(key);
            if mine.contains(&pos) {
                return;
            }
            let pref = view.replica_ring.preference_list(&pos, n);
            // A stray that waits for a replica that is down is kept whole
            // and offered to none until it returns (offering it to the
            // others every pass would repeat what they already have).
            let waits = pref.iter().any(|node| !view.ring.contains(node));
            let (key, version) = (Bytes::copy_from_slice(key), entry.version);
            if !waits {
                let entry = entry.to_entry();
                for node in pref {
                    outgoing
                        .entry(node)
                        .or_default()
                        .push((key.clone(), entry.clone()));
                }
            }
            strays.push((key, version, waits));
        });
    }
    let waiting = strays.iter().filter(|(_, _, w)| *w).count();
    shared
        .metrics
        .handoff_backlog
        .store(waiting as u64, Ordering::Relaxed);
    if strays.is_empty() {
        return true;
    }
    let mut targets: Vec<NodeName> = outgoing.keys().cloned().collect();
    targets.sort();
    let sends = outgoing
        .into_iter()
        .map(|(node, items)| offer_and_send(shared, view, node, items));
    let results = join_all(sends).await;
    let complete = results.iter().all(Option::is_some);
    let sent: usize = results.iter().flatten().sum();
    let mut dropped = 0;
    if complete {
        // A dropped copy may hold this node's counter share: its later
        // increments of those keys go to a share of a new identity (see
        // `Shared::share_id`). Moved before the drops, so an increment
        // between two drops already uses the new one.
        if strays.iter().any(|(_, _, waits)| !waits) {
            shared.share_epoch.fetch_add(1, Ordering::SeqCst);
        }
        for (key, version, _) in strays.iter().filter(|(_, _, waits)| !waits) {
            dropped += usize::from(shared.store.remove_if_version(key, *version));
        }
    }
    let pass = Pass {
        strays: strays.len(),
        sent,
        dropped,
        waiting,
        complete,
    };
    shared
        .metrics
        .handoff_entries
        .fetch_add(pass.strays as u64, Ordering::Relaxed);
    shared
        .metrics
        .handoff_dropped
        .fetch_add(dropped as u64, Ordering::Relaxed);
    if pass.sent + pass.dropped > 0 || !complete {
        info!(
            strays = pass.strays,
            sent = pass.sent,
            dropped,
            waiting,
            complete,
            epoch = view.epoch,
            to = ?targets,
            "handed off strays"
        );
        shared.record_handoff(&targets, pass.sent, dropped, complete);
    }
    complete
}

/// While the view holds a node that is down (within its rebuild delay),
/// and for ten seconds after any view change, a hand-off pass every
/// [`BACKLOG_EVERY`], so the backlog is counted as writes for it arrive,
/// and strays that arrive after a round's pass (or that it could not hand
/// off) do not wait for the next view change. (The reconciliation rounds
/// pass on every view change.)
pub async fn backlog_loop(shared: std::sync::Arc<Shared>, shutdown: CancellationToken) {
    let mut last_epoch = 0;
    let mut changed_at = crate::clock::instant();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(BACKLOG_EVERY) => {}
        }
        let view = shared.view.load_full();
        if view.epoch != last_epoch {
            (last_epoch, changed_at) = (view.epoch, crate::clock::instant());
        }
        // Also for a while after a view change: entries a reconciliation
        // round still running delivered after that view's pass looked.
        let settling = crate::clock::since(changed_at) < AFTER_CHANGE;
        if settling || view.replica_ring.nodes().len() > view.ring.nodes().len() {
            hand_off_strays(&shared, &view).await;
        }
    }
}

/// How long after a view change [`backlog_loop`] keeps passing.
const AFTER_CHANGE: std::time::Duration = std::time::Duration::from_secs(10);

/// How often [`backlog_loop`] passes while a node is down.
pub const BACKLOG_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Offers `items` to `node` and sends it those it wants, in batches.
/// Returns how many it was sent, or `None` if it did not answer.
pub(crate) async fn offer_and_send(
    shared: &Shared,
    view: &View,
    node: NodeName,
    items: Vec<(Bytes, Entry)>,
) -> Option<usize> {
    // Offered unless the link is known to speak a version without offers.
    // A link that has not settled a version yet (this node or the peer
    // just started) is offered too: taken for an old peer's, it was sent
    // every stray whole (a rolling restart once moved 89 entries so). Were
    // it old after all, the offer is dropped unsent, this pass counts the
    // node as not answering, and the retry sees the settled version.
    let offers = view
        .addrs
        .get(&node)
        .and_then(|addr| shared.net.peer_version(addr))
        .is_none_or(|v| v >= crate::message::PLACEMENT_SINCE);
    let mut sent = 0;
    for batch in items.chunks(shared.cfg.transfer_batch) {
        let wanted: Vec<(Bytes, Entry)> = if offers {
            let keys = batch
                .iter()
                .map(|(k, e)| (k.clone(), e.summary()))
                .collect();
            match ask(shared, view, &node, "offer", |id| PeerMsg::Offer {
                id,
                keys,
            })
            .await?
            {
                PeerMsg::OfferReply { want, .. } => want
                    .into_iter()
                    .filter_map(|i| batch.get(i as usize).cloned())
                    .collect(),
                other => return odd(&node, "offer", &other),
            }
        } else {
            batch.to_vec()
        };
        if wanted.is_empty() {
            continue;
        }
        sent += wanted.len();
        // Counted as they go: a pass cut short by a later batch still
        // sent these.
        shared
            .metrics
            .handoff_sent
            .fetch_add(wanted.len() as u64, Ordering::Relaxed);
        shared.stream.take(crate::throttle::bytes_of(&wanted)).await;
        let items = wanted;
        match ask(shared, view, &node, "batch", |id| PeerMsg::Transfer {
            id,
            items,
        })
        .await?
        {
            PeerMsg::TransferAck { .. } => {}
            other => return odd(&node, "batch", &other),
        }
    }
    Some(sent)
}

/// [`Shared::ask`] for hand-off's `what` (an offer, a batch); `None`,
/// logged, when `node` did not answer.
async fn ask(
    shared: &Shared,
    view: &View,
    node: &NodeName,
    what: &str,
    make: impl FnOnce(u64) -> PeerMsg,
) -> Option<PeerMsg> {
    match shared.ask(view, node, make).await {
        Ok(reply) => Some(reply),
        Err(e) => {
            warn!(node = %node, error = %e, "hand-off {what} not answered");
            None
        }
    }
}

/// Logs a reply of the wrong kind to hand-off's `what`; `None`.
fn odd<T>(node: &NodeName, what: &str, reply: &PeerMsg) -> Option<T> {
    warn!(node = %node, reply = reply.kind(), "hand-off {what} answered oddly");
    None
}
