//! An in-memory network, for simulated clusters: several nodes in one
//! process, their peer traffic passed through the real codec, on links a
//! test can cut, heal, slow down and make lossy.
//!
//! Every message a node sends is encoded exactly as a TCP link encodes it
//! (`batch.rs`, for this build's protocol version), queued on the directed
//! link to the destination, and after the link's delay decoded by the
//! decoder of an accepted connection and handed to its [`PeerHandler`], after
//! the clocks the sender announced (as a TCP link opens each write with
//! [`PeerMsg::Clock`]). One task per directed link delivers in order,
//! so a link is FIFO as TCP is; a message may be dropped (a lossy link),
//! and a message on a link that is cut, or to a node not (or no longer)
//! on the network, is lost.
//!
//! Time is tokio's, so a test on a runtime with paused time (`clock::instant`
//! reads the same clock) runs seconds of heartbeats, failure detection and
//! anti-entropy in milliseconds, and in the same order every run. The wall
//! clock follows it (`clock::simulate_wall_clock`), each node's off by its
//! own offset ([`MemNet::set_clock_offset`]: what is delivered to a node
//! runs on its clock). What a simulation does not control: the order of a
//! node's own tasks beyond what tokio's scheduler gives.
//!
//! The handshake is not simulated: a node on this network is trusted, and
//! speaks this build's newest protocol. Clients still reach a node over
//! TCP (the client and admin ports bind on loopback).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

use super::batch::Batch;
use super::counters::{NetStats, PeerDecoder};
use super::{Peer, PeerHandler, Transport};
use crate::clock::{Hlc, Timestamp};
use crate::message::{PeerMsg, PROTOCOL_VERSION};
use crate::ring::NodeName;

/// The largest frame a simulated link carries (as `max_frame_bytes`).
const MAX_FRAME: usize = 64 << 20;

/// The network every node of one simulation is on.
#[derive(Default)]
pub struct MemNet {
    hub: Mutex<Hub>,
    /// Messages delivered, and lost (cut links, lossy links, nodes gone).
    pub delivered: AtomicU64,
    /// Messages lost.
    pub lost: AtomicU64,
}

#[derive(Default)]
struct Hub {
    /// The nodes on the network, by peer address.
    nodes: HashMap<String, Endpoint>,
    /// Directed links that are cut: (from, to) node names.
    cut: BTreeSet<(String, String)>,
    /// Delay of every link (default: none).
    delay: Duration,
    /// One message in this many is dropped (0: none), counted per link.
    drop_every: u64,
    /// Delivery queues of the directed links that exist: (from, to) addresses.
    links: HashMap<(String, String), mpsc::UnboundedSender<Frame>>,
    /// How far each node's wall clock is off, by peer address (see
    /// [`MemNet::set_clock_offset`]).
    offsets: HashMap<String, i64>,
}

struct Endpoint {
    name: NodeName,
    handler: Weak<dyn PeerHandler>,
}

/// One encoded write on a link, with the clocks its sender announced.
struct Frame {
    bytes: Bytes,
    due: tokio::time::Instant,
    wall_micros: u64,
    hlc: Option<Timestamp>,
    seq: u64,
}

impl MemNet {
    /// An empty network.
    pub fn new() -> Arc<MemNet> {
        Arc::new(MemNet::default())
    }

    fn hub(&self) -> std::sync::MutexGuard<'_, Hub> {
        // No code here panics while holding the lock; a poisoned hub is
        // still a consistent one.
        self.hub.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts the links between nodes `a` and `b`, both ways.
    pub fn cut(&self, a: &str, b: &str) {
        let mut hub = self.hub();
        hub.cut.insert((a.to_string(), b.to_string()));
        hub.cut.insert((b.to_string(), a.to_string()));
    }

    /// Heals the links between nodes `a` and `b`, both ways.
    pub fn heal(&self, a: &str, b: &str) {
        let mut hub = self.hub();
        hub.cut.remove(&(a.to_string(), b.to_string()));
        hub.cut.remove(&(b.to_string(), a.to_string()));
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        self.hub().cut.clear();
    }

    /// Sets the delay of every link.
    pub fn set_delay(&self, delay: Duration) {
        self.hub().delay = delay;
    }

    /// Sets how far the wall clock of the node at `addr` is off, in
    /// microseconds: what is delivered to it runs on that clock
    /// (`clock::with_node_offset_sync`). Its own tasks take the offset
    /// they are started with (`clock::with_node_offset`).
    pub fn set_clock_offset(&self, addr: &str, micros: i64) {
        self.hub().offsets.insert(addr.to_string(), micros);
    }

    /// Makes every link drop one message in `n` (0: none).
    pub fn set_drop_every(&self, n: u64) {
        self.hub().drop_every = n;
    }

    /// The transport of node `name` (generation `generation`), whose
    /// peer address on this network is `addr`. It is on the network once
    /// [`MemNet::attach`] gives it its handler.
    pub fn transport(
        self: &Arc<Self>,
        name: &str,
        generation: u64,
        addr: &str,
        clock: Option<Arc<Hlc>>,
    ) -> MemTransport {
        MemTransport {
            net: self.clone(),
            me: Peer {
                name: NodeName::from(name),
                generation,
                reply_to: Arc::from(addr),
                version: PROTOCOL_VERSION,
            },
            clock,
            stats: Arc::new(NetStats::default()),
            sent: AtomicU64::new(0),
        }
    }

    /// Puts the node at `addr` on the network: what reaches it goes to
    /// `handler`.
    pub fn attach(&self, addr: &str, name: &str, handler: Weak<dyn PeerHandler>) {
        let endpoint = Endpoint {
            name: NodeName::from(name),
            handler,
        };
        self.hub().nodes.insert(addr.to_string(), endpoint);
    }

    /// Takes the node at `addr` off the network (it was killed): what is
    /// sent to it, or still on its way, is lost.
    pub fn detach(&self, addr: &str) {
        let mut hub = self.hub();
        hub.nodes.remove(addr);
        hub.links.retain(|(from, to), _| from != addr && to != addr);
    }

    /// Whether a message from node `from` to the node at `to` gets through
    /// now.
    fn open(hub: &Hub, from: &str, to: &str) -> bool {
        match hub.nodes.get(to) {
            Some(e) => !hub.cut.contains(&(from.to_string(), e.name.to_string())),
            None => false,
        }
    }

    /// Delivers what `from` sends to `to`, in order, each frame at its due
    /// instant.
    async fn deliver(
        self: Arc<Self>,
        from: Peer,
        to: String,
        mut frames: mpsc::UnboundedReceiver<Frame>,
    ) {
        let mut decoder = PeerDecoder::new(PROTOCOL_VERSION, MAX_FRAME);
        while let Some(frame) = frames.recv().await {
            tokio::time::sleep_until(frame.due).await;
            let (handler, drop_every, offset) = {
                let hub = self.hub();
                let handler = Self::open(&hub, &from.name, &to)
                    .then(|| hub.nodes.get(&to).map(|e| e.handler.clone()))
                    .flatten();
                (handler, hub.drop_every, hub.offsets.get(&to).copied())
            };
            // What follows runs on the receiver's wall clock.
            let offset = offset.unwrap_or(0);
            let lossy = drop_every > 0 && frame.seq % drop_every == drop_every - 1;
            let Some(handler) = handler.filter(|_| !lossy).and_then(|h| h.upgrade()) else {
                self.lost.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if let Some(hlc) = frame.hlc {
                let on_clock = || handler.on_clock(&from, frame.wall_micros, hlc);
                if !crate::clock::with_node_offset_sync(offset, on_clock) {
                    self.lost.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            let mut buf = BytesMut::from(&frame.bytes[..]);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(msg)) => {
                        self.delivered.fetch_add(1, Ordering::Relaxed);
                        crate::clock::with_node_offset_sync(offset, || {
                            handler.on_message(&from, msg)
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The codec is the real one: this is a bug, and
                        // the simulation's tests must see it.
                        panic!("a simulated link could not decode its own frame: {e}");
                    }
                }
            }
        }
    }
}

/// One node's side of a [`MemNet`].
pub struct MemTransport {
    net: Arc<MemNet>,
    me: Peer,
    clock: Option<Arc<Hlc>>,
    stats: Arc<NetStats>,
    sent: AtomicU64,
}

impl MemTransport {
    /// Traffic counters (sent only; the network counts what it delivers).
    pub fn stats(&self) -> Arc<NetStats> {
        self.stats.clone()
    }
}

impl Transport for MemTransport {
    fn send(&self, addr: &str, msg: PeerMsg) -> bool {
        let mut batch = Batch::new(MAX_FRAME, PROTOCOL_VERSION);
        batch.add(msg, &self.stats, addr);
        batch.flush_held(&self.stats, addr);
        let bytes = batch.buf.split().freeze();
        if bytes.is_empty() {
            return true;
        }
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        let mut hub = self.net.hub();
        if !MemNet::open(&hub, &self.me.name, addr) {
            // Lost, as on a link that cannot connect.
            self.net.lost.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let frame = Frame {
            bytes,
            due: tokio::time::Instant::now() + hub.delay,
            wall_micros: crate::clock::wall_micros(),
            hlc: self.clock.as_ref().map(|c| c.peek()),
            seq: self.sent.fetch_add(1, Ordering::Relaxed),
        };
        let key = (self.me.reply_to.to_string(), addr.to_string());
        let link = hub.links.entry(key).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let net = self.net.clone();
            tokio::spawn(net.deliver(self.me.clone(), addr.to_string(), rx));
            tx
        });
        if link.send(frame).is_err() {
            self.net.lost.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    fn reset(&self, _addr: &str) {}

    fn nudge(&self, _addr: &str) {}

    fn reachable(&self, addr: &str) -> bool {
        MemNet::open(&self.net.hub(), &self.me.name, addr)
    }

    fn peer_version(&self, addr: &str) -> Option<u32> {
        self.net
            .hub()
            .nodes
            .contains_key(addr)
            .then_some(PROTOCOL_VERSION)
    }
}
