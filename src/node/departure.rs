//! Nodes leaving for good: `ringkv leave` (a live node hands over what it
//! holds, then stops) and `ringkv forget` (the survivors re-replicate a
//! dead node's ranges), and what the others do when they learn of either.
//!
//! Both are facts in the cluster-wide metadata record, one entry per data
//! directory that departs (`gone/NAME/DATA_ID`, see
//! [`crate::placement`]), so a node that was away learns of them, and so
//! the same name with a new, empty data directory (a replacement) is told
//! apart from the old data coming back:
//!
//! - **Leave.** The node writes `Leaving` and spreads it. Every node that
//!   merges it leaves the node out of writes (it is write-fenced, as a
//!   full disk fences it), so once all have it no new write lands there.
//!   The node then streams every entry it holds to the replicas each key
//!   has on the ring without it, offering first (only those lacking an
//!   entry are sent it) and paced by `stream_bytes_per_sec`, twice (the
//!   second pass catches writes that reached it while the fence spread).
//!   Only when every transfer was acknowledged does it write `Left`,
//!   spread it, and exit. Reads keep using it until then.
//! - **Forget.** For a node that is down: `Forgotten` is written and
//!   spread; the survivors remove it at once (no rebuild delay), and the
//!   rounds their new view starts fill the nodes that take over its
//!   ranges, from the surviving replicas.
//! - **On learning** that a data directory left or was forgotten, a node
//!   removes the node from its routing table (`Membership::forget`): it is
//!   no longer heartbeated, nor learned again from other nodes' lists.
//!   If it comes back with that data directory, it is refused (see
//!   `node/placed.rs`): it may hold deletes the others purged since, and
//!   values they overwrote. Started with an empty data directory under
//!   the same name, it is a **replacement**: a new data_id, accepted,
//!   and refilled by anti-entropy like any node that joins (its tokens
//!   follow from its name, so it takes the same ranges).
//!
//! `/status` shows a leaving node as `leaving`, then `left` (or
//! `forgotten`) for [`SHOWN_FOR`] after it went, then not at all.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tracing::{info, warn};

use super::shared::Shared;
use crate::error::{Error, Result};
use crate::placement::{gone_name, Departure, GoneRecord};
use crate::ring::{NodeName, Ring, Token};
use crate::store::{Entry, LEAVES};

/// How long `/status` lists a node after it left or was forgotten.
pub const SHOWN_FOR: Duration = Duration::from_secs(300);

/// Leaves streamed per batch of offers.
const LEAVES_PER_STEP: usize = 256;

/// What `ringkv leave` is doing, for `/status`.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Progress {
    /// `fencing`, `streaming` (pass 1 or 2), `done`, or `failed: why`.
    pub phase: String,
    /// The streaming pass (1 or 2).
    pub pass: u32,
    /// Leaves of the store streamed in this pass, of 65,536.
    pub leaves_done: u32,
    /// Entries the new replicas were sent (they lacked them).
    pub entries_sent: u64,
    /// Entries offered that they already held.
    pub entries_offered: u64,
    /// Bytes sent (keys and values).
    pub bytes_sent: u64,
    /// About how many bytes this pass has still to look at: what the node
    /// holds, times the share of leaves not yet streamed (most of them are
    /// offered and found already held, not sent).
    pub bytes_left: u64,
}

/// The answer of a finished leave.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LeaveReport {
    /// The node that left.
    pub node: String,
    /// What was streamed.
    pub progress: Progress,
    /// The nodes that received entries.
    pub to: Vec<String>,
    /// Nodes that merged `Left` before it stopped, itself included, and
    /// nodes up.
    pub confirmed: (usize, usize),
}

/// The answer of a forget.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ForgetReport {
    /// The node forgotten.
    pub node: String,
    /// Its data directory's identity.
    pub data_id: String,
    /// Nodes that merged `Forgotten` (this one included), and nodes up.
    pub confirmed: (usize, usize),
}

impl Shared {
    /// The nodes whose current data directory is leaving: coordinators
    /// write around them (see `publish_view`).
    pub fn leaving_nodes(&self) -> HashSet<NodeName> {
        let meta = self.metadata();
        crate::placement::departures(&meta)
            .into_iter()
            .filter(|(name, record, _)| {
                record.departure == Departure::Leaving
                    && self
                        .record_of_node(name)
                        .is_some_and(|n| n.data_id == record.data_id)
            })
            .map(|(name, _, _)| NodeName::from(name.as_str()))
            .collect()
    }

    /// Every departure `/status` still shows: (name, where it stands,
    /// when it was written, Unix microseconds). A node that left and
    /// was replaced is shown as its replacement, not here.
    pub fn departures_shown(&self) -> Vec<(String, Departure, u64)> {
        let meta = self.metadata();
        let now = crate::clock::wall_micros();
        let mut out: HashMap<String, (Departure, u64)> = HashMap::new();
        for (name, record, version) in crate::placement::departures(&meta) {
            let current = self
                .record_of_node(&name)
                .is_none_or(|n| n.data_id == record.data_id);
            let at = version.ts.micros();
            let recent = now.saturating_sub(at) < SHOWN_FOR.as_micros() as u64;
            if current && (recent || record.departure == Departure::Leaving) {
                let newer = out.get(&name).is_none_or(|(_, t)| *t < at);
                if newer {
                    out.insert(name, (record.departure, at));
                }
            }
        }
        let mut rows: Vec<_> = out.into_iter().map(|(n, (d, t))| (n, d, t)).collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }

    /// Removes from the routing table every node whose current data
    /// directory left or was forgotten; called whenever the metadata
    /// record changes.
    pub fn apply_departures(&self) {
        let meta = self.metadata();
        let mut forgot = Vec::new();
        for (name, record, _) in crate::placement::departures(&meta) {
            if !record.departure.is_gone() || name == *self.me {
                continue;
            }
            let current = self
                .record_of_node(&name)
                .is_none_or(|n| n.data_id == record.data_id);
            if current && self.membership().forget(&name) {
                forgot.push((name, record.departure));
            }
        }
        self.recount_refusals();
        for (name, departure) in &forgot {
            let text = format!(
                "{name} {}: removed from the routing table",
                match departure {
                    Departure::Left => "left the cluster",
                    _ => "was forgotten",
                }
            );
            info!(node = %name, "{text}");
            self.events.push("departure", Some(name.clone()), text);
        }
        if !forgot.is_empty() || !self.leaving_nodes().is_empty() {
            self.publish_view();
        }
    }

    /// Writes this node's departure entry and spreads it.
    async fn announce(&self, departure: Departure) -> Result<(usize, usize)> {
        let record = GoneRecord {
            departure,
            data_id: self.data_id,
        };
        let version = self.stamp();
        self.spread(
            &gone_name(&self.me, self.data_id),
            version,
            record.encode()?,
        )
        .await
    }

    fn set_progress(&self, f: impl FnOnce(&mut Progress)) {
        let mut p = self.leaving.lock().unwrap_or_else(|p| p.into_inner());
        f(p.get_or_insert_with(Progress::default));
    }

    /// `ringkv leave` on this node (see the module doc). On success the
    /// caller stops the process.
    pub async fn leave(&self) -> Result<LeaveReport> {
        {
            let mut p = self.leaving.lock().unwrap_or_else(|p| p.into_inner());
            if p.as_ref().is_some_and(|p| !p.phase.starts_with("failed")) {
                return Err(Error::invalid("this node is already leaving"));
            }
            *p = Some(Progress {
                phase: "fencing".into(),
                ..Progress::default()
            });
        }
        let result = self.leave_steps().await;
        if let Err(e) = &result {
            warn!(error = %e, "leave failed; the node stays, fenced for writes, and may be asked to leave again");
            self.set_progress(|p| p.phase = format!("failed: {e}"));
        }
        result
    }

    async fn leave_steps(&self) -> Result<LeaveReport> {
        let (reached, of) = self.announce(Departure::Leaving).await?;
        info!(
            confirmed = reached,
            up = of,
            "leaving: every node writes around this one"
        );
        if reached < of {
            return Err(Error::Unavailable {
                op: "leave",
                needed: of,
                got: reached,
            });
        }
        let mut to = HashSet::new();
        for pass in 1..=2 {
            let held = self.store.bytes() as u64;
            self.set_progress(|p| {
                p.phase = "streaming".into();
                p.pass = pass;
                p.leaves_done = 0;
                p.bytes_left = held;
            });
            self.stream_pass(&mut to).await?;
        }
        self.set_progress(|p| p.phase = "done".into());
        let confirmed = self.announce(Departure::Left).await?;
        let progress = self
            .leaving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        let mut to: Vec<String> = to.into_iter().map(|n: NodeName| n.to_string()).collect();
        to.sort();
        info!(
            sent = progress.entries_sent, bytes = progress.bytes_sent, to = ?to,
            confirmed = confirmed.0, up = confirmed.1, "left the cluster"
        );
        Ok(LeaveReport {
            node: self.me.to_string(),
            progress,
            to,
            confirmed,
        })
    }

    /// The ring without this node: the nodes of the replica ring but this
    /// one, with their tokens.
    fn ring_without_me(&self) -> Ring {
        let view = self.view.load();
        let counts = self.token_counts();
        Ring::build(
            view.replica_ring
                .nodes()
                .iter()
                .filter(|n| **n != self.me)
                .map(|n| {
                    (
                        n.clone(),
                        counts.get(n).copied().unwrap_or(self.placement.tokens),
                    )
                }),
        )
    }

    /// One pass over everything this node holds: each entry offered to
    /// the replicas its key has on the ring without this node, and sent to
    /// those that lack it.
    async fn stream_pass(&self, to: &mut HashSet<NodeName>) -> Result<()> {
        let n = self.cfg.replication;
        let after = self.ring_without_me();
        for first in (0..LEAVES).step_by(LEAVES_PER_STEP) {
            let view = self.view.load_full();
            let mut outgoing: HashMap<NodeName, Vec<(Bytes, Entry)>> = HashMap::new();
            for leaf in first..(first + LEAVES_PER_STEP).min(LEAVES) {
                self.store.for_each_in_leaf(leaf, |key, entry| {
                    let pos = Token::of(key);
                    let (key, entry) = (Bytes::copy_from_slice(key), entry.to_entry());
                    for node in after.preference_list(&pos, n) {
                        outgoing
                            .entry(node)
                            .or_default()
                            .push((key.clone(), entry.clone()));
                    }
                });
            }
            for (node, items) in outgoing {
                if !view.ring.contains(&node) {
                    // Down: it is filled by anti-entropy when it returns.
                    continue;
                }
                let offered = items.len() as u64;
                let bytes = crate::throttle::bytes_of(&items);
                let sent = crate::handoff::offer_and_send(self, &view, node.clone(), items)
                    .await
                    .ok_or_else(|| {
                        Error::Timeout(format!("{node} did not take what was streamed"))
                    })?;
                if sent > 0 {
                    to.insert(node);
                }
                self.set_progress(|p| {
                    p.entries_sent += sent as u64;
                    p.entries_offered += offered - sent as u64;
                    p.bytes_sent += bytes * sent as u64 / offered.max(1);
                });
            }
            let done = (first + LEAVES_PER_STEP).min(LEAVES) as u32;
            let held = self.store.bytes() as u64;
            self.set_progress(|p| {
                p.leaves_done = done;
                p.bytes_left = held * u64::from(LEAVES as u32 - done) / LEAVES as u64;
            });
            // Heartbeats and client requests run between steps (one
            // runtime thread may serve them all).
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// `ringkv forget NAME` through this node (see the module doc).
    pub async fn forget(&self, name: &str) -> Result<ForgetReport> {
        if name == &*self.me {
            return Err(Error::invalid(
                "a node cannot forget itself; run `ringkv leave` on it instead",
            ));
        }
        let state = self.membership().get(name).map(|m| m.state);
        match state {
            Some(crate::membership::State::Up) => {
                return Err(Error::invalid(format!(
                    "{name} is up: forget is for a node that is down for good; run `ringkv leave` on {name} instead"
                )))
            }
            None if !self.membership().is_forgotten(name) => {
                return Err(Error::invalid(format!("no node named {name} is known here")))
            }
            _ => {}
        }
        let Some(record) = self.record_of_node(name) else {
            return Err(Error::invalid(format!(
                "{name}'s data directory is not known here (it never announced it: it ran a release before 9): it cannot be forgotten by this node"
            )));
        };
        info!(node = %name, data_id = format!("{:016x}", record.data_id), "forgetting a node");
        let gone = GoneRecord {
            departure: Departure::Forgotten,
            data_id: record.data_id,
        };
        let version = self.stamp();
        let confirmed = self
            .spread(&gone_name(name, record.data_id), version, gone.encode()?)
            .await?;
        self.metrics
            .membership_changes
            .fetch_add(1, Ordering::Relaxed);
        info!(node = %name, confirmed = confirmed.0, up = confirmed.1, "forgot a node: its ranges are re-replicated");
        Ok(ForgetReport {
            node: name.to_string(),
            data_id: format!("{:016x}", record.data_id),
            confirmed,
        })
    }
}
