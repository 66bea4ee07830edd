//! The replica side: what a node does with each message from a peer.
//!
//! Requests are answered at once from the local store (no await, no lock
//! beyond one store shard), and the answer goes back over this node's own
//! link to the sender's `reply_to` address. Replies are handed to the
//! request waiting for them. Heartbeats update the routing table.
//!
//! A replica write first moves the local clock past the write's timestamp,
//! so this node's next own write orders after it; a timestamp too far in the
//! future is refused and the coordinator is told why.

use std::time::Instant;

use crate::message::{PeerMsg, PutResult};
use crate::node::shared::Shared;
use crate::resp::glob;
use crate::ring::NodeName;
use crate::transport::{Peer, PeerHandler};

impl PeerHandler for Shared {
    fn on_message(&self, from: &Peer, msg: PeerMsg) {
        if let Some(id) = msg.reply_id() {
            self.pending
                .deliver(id, NodeName::from(from.name.as_str()), msg);
            return;
        }
        let reply = match msg {
            PeerMsg::Heartbeat(hb) => {
                let events = self.membership().on_heartbeat(&hb, Instant::now());
                self.handle_events(events);
                return;
            }
            PeerMsg::Put { id, key, entry } => {
                let result = match self.clock.observe(entry.version.ts) {
                    Ok(()) => PutResult::Ok {
                        was_live: self.store.apply(&key, entry).was_live,
                    },
                    Err(e) => PutResult::Refused(e.to_string()),
                };
                if id == 0 {
                    return; // read repair: nobody waits
                }
                PeerMsg::PutAck { id, result }
            }
            PeerMsg::Get { id, key } => PeerMsg::GetReply {
                id,
                entry: self.store.get(&key),
            },
            PeerMsg::Transfer { id, items } => {
                for (key, entry) in items {
                    // A hand-off carries old timestamps; only refuse the future.
                    if self.clock.observe(entry.version.ts).is_ok() {
                        self.store.apply(&key, entry);
                    }
                }
                PeerMsg::TransferAck { id }
            }
            PeerMsg::Keys { id, pattern } => PeerMsg::KeysReply {
                id,
                keys: self.store.live_keys(|k| glob::matches(&pattern, k)),
            },
            PeerMsg::PutAck { .. }
            | PeerMsg::GetReply { .. }
            | PeerMsg::TransferAck { .. }
            | PeerMsg::KeysReply { .. } => return,
        };
        self.net.send(&from.reply_to, reply);
    }
}
