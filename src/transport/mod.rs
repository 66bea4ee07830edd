//! The network seam between nodes.
//!
//! Everything a node sends to another node goes through [`Transport::send`],
//! and everything it receives arrives through [`PeerHandler::on_message`].
//! Sending never blocks and never fails loudly: each destination has its own
//! bounded queue drained by its own connection task, so a dead or slow peer
//! only ever loses its own messages and can never hold up traffic to the
//! others. Losing a message is fine at this layer; the protocol above it
//! (quorums with deadlines, retargeting, hand-off) is built for it.
//!
//! Every connection settles on a protocol version in its handshake (the
//! newest both sides speak; the decisions are in the `negotiate` module):
//! the receiving side finds it in [`Peer::version`], the sending side asks
//! [`Transport::peer_version`], and a link never sends a message its
//! peer's version cannot decode (see [`crate::message::compat`]).
//!
//! Fault injection ([`fault::Faults`]) sits at this same seam, so the
//! scenario runner can cut, drop and delay node-to-node traffic in real node
//! processes while client traffic is never touched.
//!
//! [`mem`] is an in-memory network for simulated clusters (several nodes in
//! one process, on paused time): the same codec, no sockets. The cluster
//! is tested through real processes and sockets as well; the simulation
//! adds to those tests and replaces none.

mod accepted;
mod batch;
mod counters;
pub mod fault;
mod handshake;
pub mod mem;
mod negotiate;
#[cfg(test)]
mod negotiation_tests;
mod queue;
mod stream;
pub mod tcp;

pub use negotiate::Versions;

use crate::message::{PeerMsg, PROTOCOL_VERSION};

/// Who sent a message, as established by the connection's handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The sender's node name.
    pub name: crate::ring::NodeName,
    /// The sender's generation.
    pub generation: u64,
    /// Where replies to the sender go (shared, not copied, by every
    /// acknowledgement a replica sends later).
    pub reply_to: std::sync::Arc<str>,
    /// The protocol version the connection settled on in its handshake
    /// (the highest both sides speak).
    pub version: u32,
}

/// The receiving side of the seam: the node.
pub trait PeerHandler: Send + Sync + 'static {
    /// One message from `from`. Must not block.
    fn on_message(&self, from: &Peer, msg: PeerMsg);

    /// The clocks `from` opened a socket write with ([`PeerMsg::Clock`]).
    /// Returns whether the messages of that connection are accepted (until
    /// its next clocks): false refuses the peer, whose messages are then
    /// dropped. Must not block.
    fn on_clock(&self, _from: &Peer, _wall_micros: u64, _hlc: crate::clock::Timestamp) -> bool {
        true
    }
}

/// The sending side of the seam.
pub trait Transport: Send + Sync + 'static {
    /// Queues `msg` for the peer at `addr`. Returns false when it was
    /// dropped at once (queue full or shutting down).
    fn send(&self, addr: &str, msg: PeerMsg) -> bool;

    /// [`Transport::send`] of each of `msgs`, in order, to the peer at
    /// `addr`: for a batch of answers to one peer (a replica's
    /// acknowledgements of a coalesced write), which the TCP transport
    /// queues with one lookup of the link and one lock. What is dropped is
    /// dropped (and counted) as by `send`.
    fn send_all(&self, addr: &str, msgs: Vec<PeerMsg>) {
        for msg in msgs {
            self.send(addr, msg);
        }
    }

    /// Drops the connection to `addr` (if any) and reconnects on the next
    /// message: used when the peer is marked down, so a connection that a
    /// partition left half-open is not reused after the heal.
    fn reset(&self, addr: &str);

    /// The peer at `addr` was just heard from: if the link to it is
    /// connecting or backing off, try again now (after a partition heals,
    /// a connect attempt may still be waiting on a SYN the partition
    /// dropped).
    fn nudge(&self, addr: &str);

    /// Whether the link to `addr` is believed to work: false once its
    /// connection broke or a connect failed, until one succeeds again.
    /// Much quicker than the failure detector for a peer that died (its
    /// kernel refuses the reconnect), so a read can ask another replica
    /// first instead of waiting out its speculation delay.
    fn reachable(&self, _addr: &str) -> bool {
        true
    }

    /// [`Transport::send`] if `addr` is [`Transport::reachable`], with one
    /// lookup of the link instead of two: `None` (and `msg` dropped
    /// unsent) when it is not, else whether it was queued.
    fn send_if_reachable(&self, addr: &str, msg: PeerMsg) -> Option<bool> {
        self.reachable(addr).then(|| self.send(addr, msg))
    }

    /// The protocol version the link to `addr` settled on in its handshake,
    /// while it is connected; `None` otherwise. One lookup, no I/O. (An
    /// implementation without handshakes speaks this build's newest.)
    fn peer_version(&self, _addr: &str) -> Option<u32> {
        Some(PROTOCOL_VERSION)
    }

    /// The oldest protocol version any connected link speaks, `None`
    /// with none connected: one load, so that a check every write makes
    /// of its replicas' versions is skipped while no link is older than it
    /// needs. Never newer than a connected link's [`Self::peer_version`]
    /// once that link's version is set.
    fn oldest_peer_version(&self) -> Option<u32> {
        Some(PROTOCOL_VERSION)
    }
}
