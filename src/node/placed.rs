//! The placements peers announce, and whom they refuse.
//!
//! Heartbeats of protocol 9 or later come after the sender's placement
//! (`PeerMsg::Placement`): its number of tokens, which the view builds
//! the ring with, its N, and the identity of its data directory (its
//! data_id). A receiver takes a peer's heartbeats only once it has
//! its placement, and refuses the peer, as it refuses one whose clock is
//! too far off (its messages dropped, all but its placement), when
//!
//! - its N differs from this node's: keys would not have the same
//!   replicas in every node's view; or
//! - its data directory left the cluster or was forgotten (`ringkv
//!   leave`, `ringkv forget`; see `node/departure.rs`): what it holds is
//!   older than what the others have since written and deleted, so it
//!   may not rejoin. The same name with a new, empty data directory is a
//!   replacement and is taken.
//!
//! Placements are also kept in the metadata record (`node/NAME`), so a
//! node knows those of nodes that are down.

use std::collections::HashMap;

use tracing::{info, warn};

use super::shared::Shared;
use crate::message::PeerMsg;
use crate::placement::{NodeRecord, Placement};
use crate::ring::NodeName;
use crate::transport::Peer;

impl Shared {
    /// This node's placement, as sent before every heartbeat.
    pub fn placement_message(&self) -> PeerMsg {
        PeerMsg::Placement {
            tokens: self.placement.tokens as u32,
            replication: self.placement.replication as u32,
            data_id: self.data_id,
        }
    }

    /// Takes the placement `peer` announced. A change of its tokens
    /// rebuilds the view; a refusal (see the module doc) is logged once
    /// and answered with this node's placement, so the refused node, which
    /// may never have heard of this one, learns why too.
    pub(crate) fn take_placement(&self, peer: &Peer, announced: NodeRecord) {
        let from = &peer.name;
        let why = self.refusal(from, &announced);
        if why.is_some() {
            self.net.send(&peer.reply_to, self.placement_message());
        }
        let before = {
            let mut all = self.placements.lock().unwrap_or_else(|p| p.into_inner());
            all.insert(from.clone(), announced.clone())
        };
        if let Some(text) = &why {
            // Once per life (generation) of the refused node.
            let first = {
                let mut logged = self
                    .refusals_logged
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                logged.insert(from.clone(), peer.generation) != Some(peer.generation)
            };
            if first {
                let text = format!("{from} refused: {text}");
                warn!(peer = %from, "{text}");
                self.events.push("placement", Some(from.to_string()), text);
            }
        }
        if before.as_ref() == Some(&announced) {
            return;
        }
        if why.is_none()
            && before
                .as_ref()
                .is_some_and(|b| self.refusal(from, b).is_some())
        {
            let text = format!("{from} accepted again");
            info!(peer = %from, "{text}");
            self.events.push("placement", Some(from.to_string()), text);
        }
        if before.map(|b| b.placement.tokens) != Some(announced.placement.tokens) {
            info!(peer = %from, tokens = announced.placement.tokens, "learned a node's placement");
        }
        self.recount_refusals();
        self.publish_view();
    }

    /// Works out again which peers' placements are refused (after a
    /// placement or a departure changed), for [`Shared::refused_placement`].
    pub(crate) fn recount_refusals(&self) {
        let all: Vec<(NodeName, NodeRecord)> = {
            let all = self.placements.lock().unwrap_or_else(|p| p.into_inner());
            all.iter().map(|(n, r)| (n.clone(), r.clone())).collect()
        };
        let refused: std::collections::HashSet<NodeName> = all
            .into_iter()
            .filter(|(n, r)| self.refusal(n, r).is_some())
            .map(|(n, _)| n)
            .collect();
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = refused;
    }

    /// Why a node announcing `record` under `name` is refused, if it is.
    fn refusal(&self, name: &str, record: &NodeRecord) -> Option<String> {
        let ours = self.placement.replication;
        if record.placement.replication != ours {
            return Some(format!(
                "it places keys on {} replicas and this node on {ours}; every node of a cluster \
                 needs the same replication factor",
                record.placement.replication
            ));
        }
        let departed = {
            let meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
            crate::placement::departure_of(&meta, name, record.data_id)
        };
        match departed {
            Some(d) if d.is_gone() => Some(format!(
                "its data directory ({:016x}) {} the cluster; what it holds may be older than \
                 what was written and deleted since. To bring the node back, start it with an \
                 empty data directory: it is refilled",
                record.data_id,
                if d == crate::placement::Departure::Left {
                    "left"
                } else {
                    "was forgotten by"
                }
            )),
            _ => None,
        }
    }

    /// Whether `from`'s heartbeats may bring it onto the ring: a peer of
    /// protocol 9 or later must have announced its placement (it comes
    /// first in the same socket write), and not be refused.
    pub(crate) fn placement_accepted(&self, from: &Peer) -> bool {
        if from.version < crate::message::PLACEMENT_SINCE {
            return true;
        }
        let known = {
            let all = self.placements.lock().unwrap_or_else(|p| p.into_inner());
            all.contains_key(&from.name)
        };
        // The refusals were worked out when the placement (or a departure)
        // changed: no copy of the record, no lookup of the metadata here.
        known && !self.refused_placement(&from.name)
    }

    /// Whether `name` announced a placement this node refuses (asked on
    /// every socket write a peer makes: one lookup, no allocation).
    pub(crate) fn refused_placement(&self, name: &str) -> bool {
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        !refused.is_empty() && refused.contains(name)
    }

    /// Every known node's number of tokens: as it announced, or else as
    /// the metadata record keeps it; this node's own.
    pub fn token_counts(&self) -> HashMap<NodeName, usize> {
        let mut out: HashMap<NodeName, usize> = self
            .metadata()
            .entries()
            .filter_map(|(name, reg)| {
                let node = name.strip_prefix(crate::placement::RECORD_PREFIX)?;
                let record = NodeRecord::decode(&reg.value)?;
                Some((NodeName::from(node), record.placement.tokens))
            })
            .collect();
        let announced = self.placements.lock().unwrap_or_else(|p| p.into_inner());
        out.extend(
            announced
                .iter()
                .map(|(n, p)| (n.clone(), p.placement.tokens)),
        );
        out.insert(self.me.clone(), self.placement.tokens);
        out
    }

    /// A node's placement and data_id, as it announced them or else
    /// as the metadata record keeps them.
    pub fn record_of_node(&self, name: &str) -> Option<NodeRecord> {
        if name == &*self.me {
            return Some(NodeRecord {
                placement: self.placement,
                data_id: self.data_id,
            });
        }
        if let Some(p) = self
            .placements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Some(p.clone());
        }
        let meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        let reg = meta.get(&crate::placement::record_name(name))?;
        NodeRecord::decode(&reg.value)
    }

    /// A node's placement (see [`Shared::record_of_node`]).
    pub fn placement_of(&self, name: &str) -> Option<Placement> {
        self.record_of_node(name).map(|r| r.placement)
    }
}
