//! When replicas reconcile, and what happens to copies a node should not hold.
//!
//! This task runs [`anti_entropy::sync_with`] rounds:
//! - at once whenever the routing view changes, over the ranges the two
//!   share in it: with every peer when the replica ring changed (a node
//!   joined, left, or stayed down past its rebuild delay), so a node newly
//!   responsible for a range is filled from the others; with only the
//!   nodes that came back or restarted when it did not (a healed
//!   partition, a node back from a short outage), which are the only
//!   ones that can differ from the rest;
//!   with a node that hand-off is about to fill (it joined, or came back
//!   from a short outage) a second later ([`HANDOFF_FIRST`]), so the
//!   hand-offs to it land first and the round finds agreement at its
//!   root digest;
//! - periodically (every `anti_entropy_interval_ms`, jittered by +-20 %)
//!   with every peer whose name sorts after this node's (each pair once),
//!   which repairs any replica message that was lost.
//!
//! A burst of view changes is handled as one. A newer view abandons a
//! running round if a node left or restarted (it may never answer) or
//! the replica ring changed (the round's ranges are not the ones the
//! newer view's hand-offs keep); nodes that merely came back get a new
//! round as soon as this one ends.
//!
//! Beside each round it hands off **strays** (see [`crate::handoff`]):
//! entries this node holds for ranges it does not replicate.
//!
//! Which ranges each node replicates is read off the view's replica ring
//! (`View::replica_ring`): a node down for less than `rebuild_delay_ms`
//! keeps its ranges, so no other node is filled in its place and a short
//! outage moves only the writes made during it (handed back by the nodes
//! that stood in, and found by the digests when it returns). Once the
//! delay passes, the heartbeat loop publishes a view without it, and the
//! rounds that view starts fill the nodes that take over its ranges.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::anti_entropy;
use crate::node::shared::{Shared, View};
use crate::ring::NodeName;

const DEBOUNCE: Duration = Duration::from_millis(10);
const RETRY: Duration = Duration::from_millis(500);
const SETTLE_POLL: Duration = Duration::from_millis(50);

fn jittered(base: Duration) -> Duration {
    base.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
}

/// Runs reconciliation until shutdown.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut rx = shared.view_tx.subscribe();
    let period = Duration::from_millis(shared.cfg.anti_entropy_interval_ms);
    let mut retry = false;
    // The newest view whose round completed.
    let mut reconciled: Option<Arc<View>> = None;
    loop {
        let pause = if retry { RETRY } else { jittered(period) };
        let periodic = tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = rx.changed() => { if changed.is_err() { return } false }
            _ = tokio::time::sleep(pause) => !retry,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(DEBOUNCE) => {}
        }
        rx.mark_unchanged();
        if shared.draining() {
            // A stopping node's own fence changed the view: nothing to
            // reconcile on its way out (see `node/drain.rs`).
            continue;
        }
        if shared.view_settling() {
            // Nodes this one has heard of but not yet from (it just
            // started, or joined): a round now would fill it with ranges
            // it holds only until they are heard, so it waits for them.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(SETTLE_POLL) => {}
            }
            rx.mark_changed();
            continue;
        }
        let view = shared.view.load_full();
        let only = match (&reconciled, periodic || retry) {
            (Some(before), false) => returned(before, &view),
            _ => None,
        };
        let fresh = match periodic {
            true => Vec::new(),
            false => appeared(reconciled.as_deref(), &view),
        };
        let round = round(&shared, &view, periodic, only.as_deref(), &fresh);
        tokio::pin!(round);
        let mut again = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                complete = &mut round => {
                    retry = !complete;
                    if complete {
                        shared.reconciled_epoch.fetch_max(view.epoch, Ordering::Relaxed);
                        reconciled = Some(view.clone());
                    }
                    break;
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // A node that left (or restarted) may never answer this
                    // round, and a round over ranges that moved would fight
                    // the hand-offs of the newer view: give it up and start
                    // over from the newer view. Nodes that only came back
                    // (the same ranges) can wait for the next round, which
                    // starts as soon as this one ends, so a healing
                    // partition (nodes returning one by one) does not
                    // restart the round once per node.
                    if outdated(&view, &shared.view.load()) {
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

/// Whether a round over `old` is outdated by `new`: a node of `old` is
/// gone or restarted, or the replica ring changed. A round over the old
/// ranges, still running when a node joins, sent this node's peers the
/// entries they had just handed off and dropped as strays, and took back
/// its own: they went back and forth once more (in `tests/placement.rs`
/// on a loaded machine, 2,447 copies moved for a sixth node's 1,478).
fn outdated(old: &View, new: &View) -> bool {
    old.replica_ring != new.replica_ring
        || old
            .generations
            .iter()
            .any(|(name, generation)| new.generations.get(name) != Some(generation))
}

/// When `now` differs from `before` (a reconciled view) only by nodes that
/// came up or restarted, with the same replica ring: those nodes. Only
/// they can hold what the others lack or lack what the others hold (the
/// others were reconciled, and took the same writes since), so a node
/// back from a short outage costs rounds with it alone. `None`: the
/// ranges changed, and every peer needs a round.
fn returned(before: &View, now: &View) -> Option<Vec<NodeName>> {
    if before.replica_ring != now.replica_ring {
        return None;
    }
    Some(
        now.generations
            .iter()
            .filter(|(name, generation)| before.generations.get(*name) != Some(generation))
            .map(|(name, _)| name.clone())
            .collect(),
    )
}

/// The nodes of `now` that hand-off is about to fill, so anti-entropy
/// with them waits ([`HANDOFF_FIRST`]): those new to `before` (a
/// reconciled view; they joined), and, when the replica ring did not
/// change, those that came back or restarted (back from a short outage:
/// the writes they missed are strays on the nodes that stood in). With
/// no reconciled view (this node's first round since it started), every
/// node: it joined, or was down, and the hand-offs to it are starting.
/// (Run at once, that round raced them on a busy machine and fetched 700
/// entries that hand-off then offered again.) A node that comes back
/// after its ranges were rebuilt elsewhere (past `rebuild_delay_ms`, or
/// a partition that long) is not waited for: both sides took writes as
/// replicas, which only anti-entropy reconciles.
fn appeared(before: Option<&View>, now: &View) -> Vec<NodeName> {
    let Some(before) = before else {
        return now.ring.nodes().to_vec();
    };
    let same_ring = before.replica_ring == now.replica_ring;
    now.generations
        .iter()
        .filter(|(name, generation)| {
            !before.home_ring.contains(name)
                || (same_ring && before.generations.get(*name) != Some(*generation))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// How long anti-entropy with a node that just appeared waits, so that
/// the hand-offs to it (from every node holding strays for it) land first.
/// A node back from a short outage is owed the writes made meanwhile,
/// and a joining node the ranges it takes over; hand-off delivers each of
/// them once, from the node holding it, where anti-entropy would first
/// have to find them by digests and then send them again from every
/// replica that races the hand-off. What hand-off does not cover (a write
/// in flight as the node went away) is still found, a moment later. A
/// node still being filled when the moment comes is waited for again
/// ([`FILLING_WAIT`]).
pub const HANDOFF_FIRST: Duration = Duration::from_secs(1);

/// How long a round with a node that is being filled by hand-off (one
/// arrived within [`HANDOFF_FIRST`]) waits, asking again every
/// [`HANDOFF_FIRST`], before it compares anyway.
pub const FILLING_WAIT: Duration = Duration::from_secs(30);

/// One reconciliation round over `view`: anti-entropy with the peers
/// (periodic rounds: only those whose names sort after this node's; with
/// `only`, those) and the hand-off of strays, side by side (they touch disjoint keys: shared
/// ranges versus ranges this node does not replicate); anti-entropy with
/// the `fresh` peers (see [`appeared`]) starts [`HANDOFF_FIRST`] later.
/// Returns whether all of it completed.
async fn round(
    shared: &Shared,
    view: &View,
    periodic: bool,
    only: Option<&[NodeName]>,
    fresh: &[NodeName],
) -> bool {
    let (later, now): (Vec<&NodeName>, Vec<&NodeName>) = view
        .ring
        .nodes()
        .iter()
        .filter(|n| **n != shared.me && (!periodic || **n > shared.me))
        .filter(|n| only.is_none_or(|o| o.contains(n)))
        .partition(|n| fresh.contains(n));
    let later = async {
        if later.is_empty() {
            return true;
        }
        tokio::time::sleep(HANDOFF_FIRST).await;
        // This node itself still being filled (it joined, or returned):
        // what its peers would send is on its way.
        let patience = crate::clock::instant() + FILLING_WAIT;
        while shared.taking_handoff() && crate::clock::instant() < patience {
            tokio::time::sleep(HANDOFF_FIRST).await;
        }
        reconcile_with_peers(shared, view, later, true).await
    };
    let (now_ok, later_ok, strays_ok) = tokio::join!(
        reconcile_with_peers(shared, view, now, false),
        later,
        crate::handoff::hand_off_strays(shared, view)
    );
    now_ok && later_ok && strays_ok
}

/// Anti-entropy rounds with `peers`, at once (`patient`: peers hand-off
/// is filling, waited for while they say so).
async fn reconcile_with_peers(
    shared: &Shared,
    view: &View,
    peers: Vec<&NodeName>,
    patient: bool,
) -> bool {
    let rounds = peers
        .iter()
        .map(|p| async move { (*p, anti_entropy::sync_with(shared, view, p, patient).await) });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Ring;

    /// A view of the nodes `up` (name, generation) whose replica ring
    /// holds `held` (the nodes up, and those down within their rebuild
    /// delay), and whose home ring (every node known) holds them too.
    fn view(up: &[(&str, u64)], held: &[&str]) -> View {
        let ring = |names: &mut dyn Iterator<Item = &str>| {
            Ring::build(names.map(|n| (NodeName::from(n), 16)))
        };
        View {
            ring: ring(&mut up.iter().map(|(n, _)| *n)),
            home_ring: ring(&mut held.iter().copied()),
            replica_ring: ring(&mut held.iter().copied()),
            generations: up.iter().map(|(n, g)| (NodeName::from(*n), *g)).collect(),
            ..Default::default()
        }
    }

    const FIVE: [&str; 5] = ["a", "b", "c", "d", "e"];

    #[test]
    fn the_peers_hand_off_is_about_to_fill_wait() {
        let names = |v: Vec<NodeName>| {
            let mut v: Vec<String> = v.iter().map(|n| n.to_string()).collect();
            v.sort();
            v
        };
        let five = view(&FIVE.map(|n| (n, 1)), &FIVE);
        // This node's first round: every peer may be handing off to it.
        assert_eq!(names(appeared(None, &five)), FIVE);
        assert!(appeared(Some(&five), &five).is_empty());
        // A sixth node joined.
        let six = view(
            &["a", "b", "c", "d", "e", "f"].map(|n| (n, 1)),
            &["a", "b", "c", "d", "e", "f"],
        );
        assert_eq!(names(appeared(Some(&five), &six)), ["f"]);
        // d back from a short outage (the same ranges), or restarted.
        let d_down = view(&["a", "b", "c", "e"].map(|n| (n, 1)), &FIVE);
        assert_eq!(names(appeared(Some(&d_down), &five)), ["d"]);
        let d_again = view(&FIVE.map(|n| (n, if n == "d" { 2 } else { 1 })), &FIVE);
        assert_eq!(names(appeared(Some(&five), &d_again)), ["d"]);
        // d back after its ranges were rebuilt elsewhere (still known, so
        // still in the home ring): not waited for.
        let d_gone = View {
            home_ring: five.home_ring.clone(),
            ..view(&["a", "b", "c", "e"].map(|n| (n, 1)), &["a", "b", "c", "e"])
        };
        assert!(appeared(Some(&d_gone), &five).is_empty());
    }

    #[test]
    fn a_round_is_outdated_when_its_ranges_moved_or_a_node_left() {
        let five = view(&FIVE.map(|n| (n, 1)), &FIVE);
        assert!(!outdated(&five, &five));
        // A sixth node joined: the ranges moved, and the others' hand-offs
        // to it are dropping what a round over the old ranges would send
        // back.
        let six = view(
            &["a", "b", "c", "d", "e", "f"].map(|n| (n, 1)),
            &["a", "b", "c", "d", "e", "f"],
        );
        assert!(outdated(&five, &six));
        // d went down (still held: its rebuild delay runs): it may never
        // answer.
        let d_down = view(&["a", "b", "c", "e"].map(|n| (n, 1)), &FIVE);
        assert!(outdated(&five, &d_down));
        // d came back with the same ranges: the running round goes on.
        assert!(!outdated(&d_down, &five));
        // d restarted.
        let d_again = view(&FIVE.map(|n| (n, if n == "d" { 2 } else { 1 })), &FIVE);
        assert!(outdated(&five, &d_again));
        // d's rebuild delay passed: its ranges moved to the others.
        let d_gone = view(&["a", "b", "c", "e"].map(|n| (n, 1)), &["a", "b", "c", "e"]);
        assert!(outdated(&d_down, &d_gone));
    }
}
