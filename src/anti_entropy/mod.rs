//! Anti-entropy: replicas reconcile by comparing digests, not by shipping
//! their data.
//!
//! The seed design merged whole keystores after a partition healed; with
//! millions of keys that takes minutes, and a replica that missed one
//! message stayed wrong until the next full merge. Here two replicas of a
//! set of ring ranges compare digest trees top-down (groups, then leaves)
//! and exchange only the entries of the leaves that differ, in both
//! directions, merging by last-writer-wins. The digests are kept up to date
//! by the store on every write, so a round between replicas that agree costs
//! one small message each way and no scan.
//!
//! [`sync_with`] runs one round with one peer over the ranges the two share
//! in a view; [`crate::sync`] decides when (a peer appears or reappears, the
//! ring changes, and periodically). The comparison steps are pure functions
//! in [`digest`], shared with the property tests.
//!
//! Deliberately left out: per-range rate limiting (a round's transfers are
//! batched but not throttled), and streaming for leaves holding more keys
//! than fit one frame (a leaf holds ~1/65536 of a node's keys).

pub mod digest;
pub mod local;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use futures::future::join_all;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::message::PeerMsg;
use crate::node::shared::{Shared, View};
use crate::ring::{NodeName, Token};
use crate::values::sections;

/// Differing leaves compared per `AeKeys` message.
const LEAVES_PER_MESSAGE: usize = 256;

/// What one round moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RoundReport {
    /// Leaves whose digests differed.
    pub differing_leaves: u64,
    /// Entries sent to the peer.
    pub keys_sent: u64,
    /// Entries received from the peer.
    pub keys_received: u64,
    /// Bytes of anti-entropy messages sent (encoded).
    pub bytes_sent: u64,
    /// Bytes of anti-entropy messages received (encoded).
    pub bytes_received: u64,
}

/// Anti-entropy counters for one peer.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct PeerStats {
    /// Rounds completed with this peer (either side starting them).
    pub rounds: u64,
    /// Rounds that failed (peer unreachable or slow).
    pub failed_rounds: u64,
    /// Entries sent to it.
    pub keys_sent: u64,
    /// Entries received from it.
    pub keys_received: u64,
    /// Bytes sent to it.
    pub bytes_sent: u64,
    /// Bytes received from it.
    pub bytes_received: u64,
    /// When a round last ended with both sides agreeing (Unix ms).
    pub last_agreement_unix_ms: Option<u64>,
}

/// Anti-entropy counters of a node, per peer.
#[derive(Debug, Default)]
pub struct Stats {
    peers: Mutex<BTreeMap<String, PeerStats>>,
}

impl Stats {
    fn with(&self, peer: &str, f: impl FnOnce(&mut PeerStats)) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        f(peers.entry(peer.to_string()).or_default());
    }

    /// Records a completed round.
    pub fn record(&self, peer: &str, r: &RoundReport) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.with(peer, |s| {
            s.rounds += 1;
            s.keys_sent += r.keys_sent;
            s.keys_received += r.keys_received;
            s.bytes_sent += r.bytes_sent;
            s.bytes_received += r.bytes_received;
            s.last_agreement_unix_ms = Some(now);
        });
    }

    /// Records a failed round.
    pub fn record_failure(&self, peer: &str) {
        self.with(peer, |s| s.failed_rounds += 1);
    }

    /// Records the answering side's share of a round `peer` (speaking
    /// protocol `version`) started: the bytes of a request and its reply,
    /// the entries pushed in the reply, and (on the round's first message:
    /// `AeRoot`, or `AeGroups` before protocol 10) the round itself.
    pub fn record_answer(&self, peer: &str, version: u32, request: &PeerMsg, reply: &PeerMsg) {
        let opens = match request {
            PeerMsg::AeRoot { .. } => true,
            PeerMsg::AeGroups { .. } => version < crate::message::AE_ROOT_SINCE,
            _ => false,
        };
        let pushed = match reply {
            PeerMsg::AeKeysReply { push, .. } => push
                .iter()
                .filter(|(_, e)| !digest::is_sections_mark(e))
                .count() as u64,
            PeerMsg::AeSectionsReply { push, .. } => u64::from(push.is_some()),
            _ => 0,
        };
        let (bytes_in, bytes_out) = (wire_size(request), wire_size(reply));
        self.with(peer, |s| {
            s.rounds += u64::from(opens);
            s.bytes_received += bytes_in;
            s.bytes_sent += bytes_out;
            s.keys_sent += pushed;
        });
    }

    /// A copy of every peer's counters.
    pub fn snapshot(&self) -> BTreeMap<String, PeerStats> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Encoded size of a message, for the byte counters.
pub fn wire_size(msg: &PeerMsg) -> u64 {
    crate::encoding::to_vec(msg).map_or(0, |v| v.len() as u64 + 4)
}

/// [`Shared::ask`], also returning the request's encoded size.
async fn request(
    shared: &Shared,
    view: &View,
    peer: &NodeName,
    make: impl FnOnce(u64) -> PeerMsg,
) -> Result<(PeerMsg, u64)> {
    let mut size = 0;
    let reply = shared
        .ask(view, peer, |id| {
            let msg = make(id);
            size = wire_size(&msg);
            msg
        })
        .await?;
    Ok((reply, size))
}

/// One anti-entropy round with `peer` over the ranges the two share in
/// `view`. On success both hold, for those ranges, the LWW winner of what
/// either held when the round looked.
///
/// With `patient` (a peer that hand-off is filling, see `sync`), a peer
/// that says it is still being filled is asked again a moment later.
pub async fn sync_with(
    shared: &Shared,
    view: &View,
    peer: &NodeName,
    patient: bool,
) -> Result<RoundReport> {
    let store = &shared.store;
    // Over the replica ring: a node briefly down keeps its ranges, so no
    // stand-in is filled with them (see `sync`).
    let ranges =
        digest::shared_ranges(&view.replica_ring, &shared.me, peer, shared.cfg.replication);
    let mut report = RoundReport::default();
    if ranges.is_empty() {
        return Ok(report);
    }
    let version = view
        .addrs
        .get(peer)
        .and_then(|addr| shared.net.peer_version(addr));
    let roots = version.is_some_and(|v| v >= crate::message::AE_ROOT_SINCE);
    let by_sections = version.is_some_and(|v| v >= crate::message::SECTIONS_SINCE);
    // A peer being filled by hand-off is asked again a moment later (for
    // at most `sync::FILLING_WAIT`), rather than sent what is on its way.
    let patience = crate::clock::instant() + crate::sync::FILLING_WAIT;
    if roots {
        loop {
            let (ranges, root) = (ranges.fingerprint(), digest::root_digest(store, &ranges));
            let (reply, sent) = request(shared, view, peer, |id| PeerMsg::AeRoot {
                id,
                ranges,
                root,
            })
            .await?;
            report.bytes_sent += sent;
            report.bytes_received += wire_size(&reply);
            match reply {
                PeerMsg::AeRootReply { agree: true, .. } => return Ok(report),
                PeerMsg::AeRootReply { filling: true, .. }
                    if patient && crate::clock::instant() < patience =>
                {
                    tokio::time::sleep(crate::sync::HANDOFF_FIRST).await;
                }
                PeerMsg::AeRootReply { .. } => break,
                other => {
                    return Err(Error::Protocol(format!(
                        "{peer} answered AeRoot with {}",
                        other.kind()
                    )))
                }
            }
        }
    }
    let groups = digest::group_digests(store, &ranges);
    let r = ranges.clone();
    let (reply, sent) = request(shared, view, peer, |id| PeerMsg::AeGroups {
        id,
        ranges: r,
        groups,
    })
    .await?;
    report.bytes_sent += sent;
    report.bytes_received += wire_size(&reply);
    let PeerMsg::AeGroupsReply { leaves, .. } = reply else {
        return Err(Error::Protocol(format!(
            "{peer} answered AeGroups with {}",
            reply.kind()
        )));
    };
    let differing = digest::differing_leaves(store, &ranges, &leaves);
    report.differing_leaves = differing.len() as u64;
    for chunk in differing.chunks(LEAVES_PER_MESSAGE) {
        let keys = digest::summaries(store, &ranges, chunk);
        let (r, leaves) = (ranges.clone(), chunk.to_vec());
        let (reply, sent) = request(shared, view, peer, |id| PeerMsg::AeKeys {
            id,
            ranges: r,
            leaves,
            keys,
        })
        .await?;
        report.bytes_sent += sent;
        report.bytes_received += wire_size(&reply);
        let PeerMsg::AeKeysReply { push, want, .. } = reply else {
            return Err(Error::Protocol(format!(
                "{peer} answered AeKeys with {}",
                reply.kind()
            )));
        };
        let min = shared.cfg.anti_entropy_sections_min_bytes;
        let plan = digest::plan(push, want, by_sections, |k| {
            store
                .rich_bytes_at(&Token::of(k), k)
                .is_some_and(|b| b >= min)
        });
        report.keys_received += plan.merge.len() as u64;
        // Paced like every bulk stream (see `throttle`).
        shared
            .stream
            .take(crate::throttle::bytes_of(&plan.merge))
            .await;
        merge(shared, plan.merge).await?;
        let whole = digest::entries(store, &plan.whole);
        send(shared, view, peer, whole, &mut report).await?;
        for key in plan.sectioned {
            exchange_sections(shared, view, peer, key, &mut report).await?;
        }
    }
    Ok(report)
}

/// Sends `items` to `peer` in `Transfer`s of `transfer_batch` entries,
/// paced like every bulk stream.
async fn send(
    shared: &Shared,
    view: &View,
    peer: &NodeName,
    items: Vec<(bytes::Bytes, crate::store::Entry)>,
    report: &mut RoundReport,
) -> Result<()> {
    report.keys_sent += items.len() as u64;
    for batch in items.chunks(shared.cfg.transfer_batch) {
        shared.stream.take(crate::throttle::bytes_of(batch)).await;
        let items = batch.to_vec();
        let (ack, sent) = request(shared, view, peer, |id| PeerMsg::Transfer { id, items }).await?;
        report.bytes_sent += sent;
        if !matches!(ack, PeerMsg::TransferAck { .. }) {
            return Err(Error::Protocol(format!(
                "{peer} answered Transfer with {}",
                ack.kind()
            )));
        }
    }
    Ok(())
}

/// Reconciles one large rich key with `peer` by sections (protocol 12):
/// this side's section digests out, the peer's differing pieces back,
/// merged, and this side's pieces of the same sections sent.
async fn exchange_sections(
    shared: &Shared,
    view: &View,
    peer: &NodeName,
    key: bytes::Bytes,
    report: &mut RoundReport,
) -> Result<()> {
    let (store, pos) = (&shared.store, Token::of(&key));
    let Some(digests) = store.with_cell_at(&pos, &key, sections::digests) else {
        // No rich state here (any more): what there is goes whole.
        return send(shared, view, peer, digest::entries(store, &[key]), report).await;
    };
    let k = key.clone();
    let (reply, sent) = request(shared, view, peer, |id| PeerMsg::AeSections {
        id,
        key: k,
        digests,
    })
    .await?;
    report.bytes_sent += sent;
    report.bytes_received += wire_size(&reply);
    let PeerMsg::AeSectionsReply { push, want, .. } = reply else {
        return Err(Error::Protocol(format!(
            "{peer} answered AeSections with {}",
            reply.kind()
        )));
    };
    if let Some(entry) = push {
        report.keys_received += 1;
        let push = vec![(key.clone(), entry)];
        shared.stream.take(crate::throttle::bytes_of(&push)).await;
        merge(shared, push).await?;
    }
    if want.is_empty() {
        return Ok(());
    }
    let piece = store.piece_at(&pos, &key, &want).map(|e| (key, e));
    send(shared, view, peer, piece.into_iter().collect(), report).await
}

/// Merges entries received from a peer, durably.
async fn merge(shared: &Shared, items: Vec<(bytes::Bytes, crate::store::Entry)>) -> Result<()> {
    shared.writable()?;
    let mut logging = Vec::new();
    for (key, entry) in items {
        if let Err(e) = shared.clock.observe(entry.version().ts) {
            tracing::warn!(error = %e, "refused an entry from anti-entropy");
            continue;
        }
        if let (_, Some(appending)) = shared.apply_staging(&Token::of(&key), &key, &entry)? {
            logging.push(appending);
        }
    }
    for r in join_all(logging).await {
        r?;
    }
    Ok(())
}
