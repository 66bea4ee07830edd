//! A graceful stop: a node told to stop (SIGTERM, SIGINT, or the end of
//! `ringkv leave`) first tells its peers that it takes no more writes,
//! then finishes what it has in flight, and only then closes its ports.
//!
//! Why: the others learn that a node stopped only once its heartbeats have
//! been missing for `failure_timeout_ms`. Until then they would go on
//! sending it writes and, worse, the increments of the keys whose first
//! replica it is (only a share's owner may apply an increment to it, see
//! `coordinator::counter`). An increment sent to a process that has exited
//! is never answered, and its outcome is unknown to the client. So:
//!
//! 1. The node fences itself for writes with a reason that starts with
//!    [`STOPPING`] (the fence a full disk raises, see `log/fence.rs`), and
//!    sends the fence to every peer up at once rather than at the next
//!    heartbeat. Each peer then routes new writes and increments around
//!    it, as it does around a full disk. Reads still come, and are
//!    answered.
//! 2. It asks each of those peers one question on the same link, behind
//!    the fence (a `Get` of the empty key). A peer handles a link's
//!    messages in order, so once the answer is back, the peer has taken
//!    the fence; and whatever the peer sent this node before taking it
//!    travelled ahead of the answer on the other link, so it has arrived.
//! 3. It waits until no increment it applies as an owner and no request
//!    it coordinates (for its own clients, or for the increments) is in
//!    flight.
//!
//! Each step is bounded by the request timeout: a peer that does not
//! answer is not waited for longer (it may be why the node is stopped).
//! Peers of protocol 7 or older know no fence, and are not told.
//! A peer drops a node's stopping fence when it marks the node down or
//! sees it restart, so the node's next run takes writes from the start,
//! whatever release it is.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tracing::info;

use super::shared::Shared;
use crate::message::{PeerMsg, CLOCK_SINCE};
use crate::ring::NodeName;

/// How the reason of a stopping node's write fence starts.
pub const STOPPING: &str = "stopping";

/// How often the last step looks at what is still in flight.
const POLL: Duration = Duration::from_millis(5);

impl Shared {
    /// Whether this node is stopping (see the module doc).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Steps 1 to 3 of the module doc; returns when the node may close.
    pub async fn drain(&self) {
        let started = crate::clock::instant();
        self.draining.store(true, Ordering::Relaxed);
        let fence = self.write_fence();
        self.note_fence(&self.me, fence.clone());
        let view = self.view.load_full();
        let peers: Vec<NodeName> = (view.ring.nodes().iter())
            .filter(|n| **n != self.me)
            .filter(|n| {
                let addr = view.addrs.get(*n);
                addr.and_then(|a| self.net.peer_version(a))
                    .is_some_and(|v| v >= CLOCK_SINCE)
            })
            .cloned()
            .collect();
        let asks = peers.iter().map(|peer| {
            let reason = fence.clone();
            self.send_to(&view, peer, PeerMsg::WriteFence { reason });
            self.ask(&view, peer, |id| PeerMsg::Get {
                id,
                key: Bytes::new(),
            })
        });
        let answers = futures::future::join_all(asks).await;
        let told = answers.iter().filter(|a| a.is_ok()).count();
        let until = crate::clock::instant() + self.cfg.request_timeout();
        let mut settled = false;
        while crate::clock::instant() < until {
            if self.pending.idle() {
                settled = true;
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        info!(
            peers = peers.len(),
            told,
            settled,
            elapsed_ms = crate::clock::since(started).as_millis() as u64,
            "drained: peers route writes around this node{}",
            if settled {
                ""
            } else {
                "; some requests were still in flight"
            }
        );
    }
}
