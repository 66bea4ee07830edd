//! The TCP peer transport: one persistent outbound connection per peer.
//!
//! Each destination address gets a *link*: a bounded queue (the `queue`
//! module) and a task that connects, handshakes, and then drains the queue,
//! encoding every message that is waiting into one buffer and writing it
//! with one system call. A burst of replica writes to a peer therefore costs
//! one write, not one per message. If connecting fails, the task backs off
//! (doubling up to a cap) and discards what queued meanwhile: a message that
//! could not be sent promptly is better lost than delivered late, since every
//! request has its own deadline and retargets on its own.
//!
//! Each node *accepts* connections and only reads from them; replies travel
//! back over the replier's own outbound link to the `reply_to` address the
//! handshake named. Connections are therefore one-way, which keeps each
//! task's job simple: a link task only writes, an accepted connection only
//! reads.
//!
//! Every connection opens with the peer handshake (see the `handshake`
//! module): the acceptor reads no message, and the connector sends none,
//! before both sides have proved the cluster secret.
//!
//! Deliberately left out: TLS (peers authenticate with the cluster secret;
//! the traffic itself is not encrypted).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::batch::Batch;
pub use super::counters::NetStats;
use super::fault::{Faults, Verdict};
use super::handshake::{Connected, HANDSHAKE_TIMEOUT};
use super::queue::Queue;
use super::stream::PeerStream;
use super::{PeerHandler, Transport, Versions};
use crate::auth::{ClusterKey, KeyedRateLimit};
use crate::error::{Error, Result};
use crate::message::{Hello, PeerMsg, CLOCK_SINCE};

/// A connect to a peer on the cluster's network takes a round trip; one
/// still pending after this was most likely dropped (a partition, a dead
/// host) and is retried, so a healed link reconnects within about this.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const MIN_BACKOFF: Duration = Duration::from_millis(20);
/// Reconnect attempts to an unreachable peer back off to at most this, so
/// a restarted node or a healed partition is reconnected within about one
/// heartbeat interval (an attempt costs one refused or timed-out SYN).
const MAX_BACKOFF: Duration = Duration::from_millis(200);
const BATCH_BYTES: usize = 256 * 1024;
/// Room for this many taken messages is kept between a link's batches.
const TAKEN_KEPT: usize = 4096;

/// Settings of the TCP transport.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// This node's handshake. Its `version` is replaced, on every
    /// connection, by the version offered (`versions.max`, or an older one
    /// when retrying an older node).
    pub hello: Hello,
    /// The protocol versions this node speaks (see the `negotiate` module).
    pub versions: Versions,
    /// The cluster secret peers must prove (and this node proves to them).
    pub key: ClusterKey,
    /// Largest frame sent or accepted.
    pub max_frame: usize,
    /// Queue length per peer.
    pub queue_len: usize,
    /// How long an accepted connection may stay silent before it is closed.
    pub idle_timeout: Duration,
    /// How long one batch write may take before the link reconnects.
    pub write_timeout: Duration,
    /// This node's hybrid clock, announced at the start of every socket
    /// write on links of protocol 8 or later ([`PeerMsg::Clock`]); `None`
    /// announces nothing.
    pub clock: Option<Arc<crate::clock::Hlc>>,
    /// Mutual TLS on every peer connection (`tls_peers`), if on.
    pub tls: Option<Arc<crate::tls::peer::PeerTls>>,
}

struct Outgoing {
    msg: PeerMsg,
    /// Already passed fault injection once (a delayed message).
    faulted: bool,
}

struct Link {
    queue: Arc<Queue<Outgoing>>,
    /// See [`Transport::reachable`]; written by the link task.
    up: Arc<AtomicBool>,
    /// The protocol version of the link's connection; 0 while it has none
    /// (see [`Transport::peer_version`]). Written by the link task.
    version: Arc<AtomicU32>,
    reset: watch::Sender<u64>,
    /// Bumped when the peer was heard from: a link that is connecting or
    /// backing off tries again at once.
    wake: watch::Sender<u64>,
}

impl Link {
    /// Queues `msg` without waiting; false (and counted as dropped) when
    /// the queue is full or the link task is gone.
    fn enqueue(&self, msg: PeerMsg, stats: &NetStats) -> bool {
        let outgoing = Outgoing {
            msg,
            faulted: false,
        };
        let ok = self.queue.push(outgoing).is_ok();
        if !ok {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// [`Link::enqueue`] of each of `msgs`, under one lock of the queue.
    fn enqueue_all(&self, msgs: Vec<PeerMsg>, stats: &NetStats) {
        let outgoing = msgs.into_iter().map(|msg| Outgoing {
            msg,
            faulted: false,
        });
        let dropped = self.queue.push_all(outgoing);
        stats.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
    }
}

/// The shared state of a transport; the handshake (in its own module) reads
/// the config, counts refusals and rate-limits their logs.
pub(super) struct Inner {
    pub(super) cfg: TcpConfig,
    /// Looked up on every send: hashed with foldhash, not SipHash (the
    /// keys are peer addresses this node was configured with or told).
    links: DashMap<String, Link, foldhash::fast::RandomState>,
    pub(super) faults: Option<Arc<Faults>>,
    shutdown: CancellationToken,
    pub(super) stats: Arc<NetStats>,
    /// Keeps refusal logs to a few lines per window.
    pub(super) refusals: KeyedRateLimit,
    /// The oldest protocol version of any connected link, 0 with none
    /// (see [`Transport::oldest_peer_version`]); recomputed under
    /// `oldest_lock` after every change of a link's version, so the last
    /// recomputation always sees the last change.
    oldest: AtomicU32,
    oldest_lock: std::sync::Mutex<()>,
}

/// The TCP implementation of [`Transport`]. Cheap to clone.
#[derive(Clone)]
pub struct TcpTransport {
    inner: Arc<Inner>,
}

impl TcpTransport {
    /// A transport that stops all its tasks when `shutdown` is cancelled.
    pub fn new(cfg: TcpConfig, faults: Option<Arc<Faults>>, shutdown: CancellationToken) -> Self {
        TcpTransport {
            inner: Arc::new(Inner {
                cfg,
                links: DashMap::default(),
                faults,
                shutdown,
                stats: Arc::new(NetStats::default()),
                refusals: KeyedRateLimit::new(5, Duration::from_secs(10), 64),
                oldest: AtomicU32::new(0),
                oldest_lock: std::sync::Mutex::new(()),
            }),
        }
    }

    /// Traffic counters.
    pub fn stats(&self) -> Arc<NetStats> {
        self.inner.stats.clone()
    }

    /// One connection and handshake to `addr`, as a link makes them, for
    /// tests that look at the outcome rather than at messages.
    #[cfg(test)]
    pub(super) async fn connect_once(&self, addr: &str) -> Result<(PeerStream, String, u32)> {
        self.inner.connect(addr).await
    }

    /// Accepts peer connections on `listener` until shutdown, handing every
    /// message to `handler`.
    pub async fn serve(self, listener: TcpListener, handler: Arc<dyn PeerHandler>) {
        let shutdown = self.inner.shutdown.clone();
        // Dropped at shutdown, which aborts the connections: their loops
        // need not poll a shutdown future for every batch they read.
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, addr)) => {
                    let inner = self.inner.clone();
                    let handler = handler.clone();
                    conns.spawn(async move {
                        if let Err(e) = inner.read_connection(stream, addr, handler).await {
                            debug!(%addr, error = %e, "peer connection closed");
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "accepting a peer connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn link(&self, addr: &str) -> dashmap::mapref::one::Ref<'_, String, Link> {
        if let Some(link) = self.inner.links.get(addr) {
            return link;
        }
        self.inner
            .links
            .entry(addr.to_string())
            .or_insert_with(|| {
                let queue = Arc::new(Queue::new(self.inner.cfg.queue_len));
                let (reset, reset_rx) = watch::channel(0);
                let (wake, wake_rx) = watch::channel(0);
                let inner = self.inner.clone();
                let addr = addr.to_string();
                let up = Arc::new(AtomicBool::new(true));
                let version = Arc::new(AtomicU32::new(0));
                let signals = Signals {
                    reset: reset_rx,
                    wake: wake_rx,
                    up: up.clone(),
                    version: version.clone(),
                };
                let link_queue = queue.clone();
                tokio::spawn(async move { inner.run_link(addr, link_queue, signals).await });
                Link {
                    queue,
                    up,
                    version,
                    reset,
                    wake,
                }
            })
            .downgrade()
    }
}

impl Transport for TcpTransport {
    fn send(&self, addr: &str, msg: PeerMsg) -> bool {
        if self.inner.shutdown.is_cancelled() {
            return false;
        }
        self.link(addr).enqueue(msg, &self.inner.stats)
    }

    fn send_all(&self, addr: &str, msgs: Vec<PeerMsg>) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        self.link(addr).enqueue_all(msgs, &self.inner.stats);
    }

    fn send_if_reachable(&self, addr: &str, msg: PeerMsg) -> Option<bool> {
        if self.inner.shutdown.is_cancelled() {
            return Some(false);
        }
        let link = self.link(addr);
        link.up
            .load(Ordering::Relaxed)
            .then(|| link.enqueue(msg, &self.inner.stats))
    }

    fn reset(&self, addr: &str) {
        if let Some(link) = self.inner.links.get(addr) {
            link.reset.send_modify(|epoch| *epoch += 1);
        }
    }

    fn nudge(&self, addr: &str) {
        if let Some(link) = self.inner.links.get(addr) {
            link.wake.send_modify(|epoch| *epoch += 1);
        }
    }

    fn reachable(&self, addr: &str) -> bool {
        self.inner
            .links
            .get(addr)
            .is_none_or(|link| link.up.load(Ordering::Relaxed))
    }

    fn peer_version(&self, addr: &str) -> Option<u32> {
        let link = self.inner.links.get(addr)?;
        match link.version.load(Ordering::Relaxed) {
            0 => None,
            version => Some(version),
        }
    }

    fn oldest_peer_version(&self) -> Option<u32> {
        match self.inner.oldest.load(Ordering::Acquire) {
            0 => None,
            version => Some(version),
        }
    }
}

/// What a link task listens to besides its queue.
struct Signals {
    reset: watch::Receiver<u64>,
    wake: watch::Receiver<u64>,
    /// Whether the link is connected (see [`Transport::reachable`]).
    up: Arc<AtomicBool>,
    /// The connection's protocol version, 0 without one.
    version: Arc<AtomicU32>,
}

impl Inner {
    /// Sets a link's version (0: no connection) and recomputes the
    /// oldest of all links'.
    fn set_version(&self, link: &AtomicU32, version: u32) {
        link.store(version, Ordering::Release);
        // A poisoned lock guards nothing that could be left half done.
        let _serial = self
            .oldest_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let oldest = self
            .links
            .iter()
            .map(|l| l.version.load(Ordering::Acquire))
            .filter(|v| *v != 0)
            .min()
            .unwrap_or(0);
        self.oldest.store(oldest, Ordering::Release);
    }

    async fn run_link(
        self: Arc<Self>,
        addr: String,
        queue: Arc<Queue<Outgoing>>,
        mut signals: Signals,
    ) {
        self.link_until_shutdown(&addr, &queue, &mut signals).await;
        // Later sends fail at once, as they did to a closed channel.
        queue.close();
    }

    async fn link_until_shutdown(
        &self,
        addr: &str,
        queue: &Arc<Queue<Outgoing>>,
        signals: &mut Signals,
    ) {
        let mut backoff = MIN_BACKOFF;
        let mut failures = 0u32;
        // The version last announced in the log (once per change, not per
        // reconnect).
        let mut announced = 0u32;
        while !self.shutdown.is_cancelled() {
            signals.wake.mark_unchanged();
            // A connect that a partition left waiting for a SYN-ACK is given
            // up as soon as the peer is heard from: a fresh one gets through.
            let connected = tokio::select! {
                c = self.connect(addr) => c,
                _ = signals.wake.changed() => Err(Error::Timeout(format!("connect to {addr} superseded"))),
            };
            match connected {
                Ok((stream, peer, version)) => {
                    if failures > 0 {
                        info!(%addr, peer = %peer, version, "peer link connected");
                    }
                    if version != std::mem::replace(&mut announced, version)
                        && version < self.cfg.versions.max
                    {
                        info!(%addr, peer = %peer, version, "peer link speaks an older protocol version");
                    }
                    backoff = MIN_BACKOFF;
                    failures = 0;
                    signals.reset.mark_unchanged();
                    self.set_version(&signals.version, version);
                    signals.up.store(true, Ordering::Relaxed);
                    if let Err(e) = self
                        .pump(stream, &peer, version, queue, &mut signals.reset)
                        .await
                    {
                        debug!(%addr, error = %e, "peer link lost");
                    }
                    signals.up.store(false, Ordering::Relaxed);
                    self.set_version(&signals.version, 0);
                }
                Err(e) => {
                    signals.up.store(false, Ordering::Relaxed);
                    failures += 1;
                    if failures == 1 || failures % 100 == 0 {
                        debug!(%addr, error = %e, failures, "cannot reach peer");
                    }
                    // What queued while the peer was unreachable is stale.
                    let stale = queue.clear() as u64;
                    self.stats.dropped.fetch_add(stale, Ordering::Relaxed);
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                        _ = signals.wake.changed() => backoff = MIN_BACKOFF,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Connects to `addr` and runs the handshake: the stream, the peer's
    /// name and the protocol version settled on. An older peer that
    /// refuses our newest version is connected to once more, offering the
    /// version it named.
    async fn connect(&self, addr: &str) -> Result<(PeerStream, String, u32)> {
        let mut offer = self.cfg.versions.max;
        loop {
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| Error::Timeout(format!("connect to {addr}")))??;
            let mut stream = PeerStream::connected(tcp, self.cfg.tls.as_deref(), addr).await?;
            let handshake = self.connect_handshake(&mut stream, addr, offer);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
                .await
                .map_err(|_| Error::Timeout(format!("handshake with {addr}")))??
            {
                Connected::Linked { name, version } => return Ok((stream, name, version)),
                // Only the first offer is retried (see negotiate::retry_with),
                // and the retry offers less: this loops at most twice.
                Connected::Retry(older) => offer = older,
            }
        }
    }

    /// Drains the queue into the socket in batches, encoded for protocol
    /// `version`, until an error, a reset or shutdown.
    async fn pump(
        &self,
        mut stream: PeerStream,
        peer: &str,
        version: u32,
        queue: &Arc<Queue<Outgoing>>,
        reset: &mut watch::Receiver<u64>,
    ) -> Result<()> {
        // One batch and one vector of taken messages for the link's life:
        // the buffers keep their capacity from one write to the next.
        let mut batch = Batch::new(self.cfg.max_frame, version);
        let mut taken = Vec::new();
        loop {
            // Shutdown and reset are checked with two loads while messages
            // are waiting; the futures that wait for them are built only
            // when the link is about to sleep (they showed up in profiles of
            // unpipelined traffic, polled once a batch).
            let reset_err = || Error::Protocol(format!("link to {peer} reset"));
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            if reset.has_changed().unwrap_or(true) {
                return Err(reset_err());
            }
            if queue.take_into(&mut taken) == 0 {
                tokio::select! {
                    biased;
                    _ = self.shutdown.cancelled() => return Ok(()),
                    _ = reset.changed() => return Err(reset_err()),
                    _ = queue.ready() => continue,
                }
            }
            let mut messages = taken.drain(..);
            let mut opened = false;
            while let Some(out) = messages.next() {
                if !opened {
                    batch.count = 0;
                    self.announce_clock(peer, &mut batch);
                    opened = true;
                }
                self.frame(out, peer, &mut batch, queue);
                if batch.buf.len() >= BATCH_BYTES {
                    opened = false;
                    if let Err(e) = self.write(&mut stream, &mut batch, peer).await {
                        // What was taken and not written is lost with the
                        // connection, as a message queued behind it would be.
                        let lost = messages.len() as u64;
                        self.stats.dropped.fetch_add(lost, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            drop(messages);
            // A burst's worth of room is not kept for good.
            taken.shrink_to(TAKEN_KEPT);
            if opened {
                self.write(&mut stream, &mut batch, peer).await?;
            }
        }
    }

    /// Encodes what the batch holds back, and writes the batch with one
    /// system call (nothing when it is empty).
    async fn write(&self, stream: &mut PeerStream, batch: &mut Batch, peer: &str) -> Result<()> {
        batch.flush_held(&self.stats, peer);
        if batch.buf.is_empty() {
            return Ok(());
        }
        tokio::time::timeout(self.cfg.write_timeout, stream.write_all(&batch.buf))
            .await
            .map_err(|_| Error::Timeout(format!("write to {peer}")))??;
        self.stats.sent.fetch_add(batch.count, Ordering::Relaxed);
        self.stats
            .bytes_sent
            .fetch_add(batch.buf.len() as u64, Ordering::Relaxed);
        batch.buf.clear();
        Ok(())
    }

    /// Opens a socket write with this node's clocks, on a link that speaks
    /// protocol 8 or later (see [`PeerMsg::Clock`]). A split stops them as
    /// it stops everything else; drop and delay rules count other messages.
    fn announce_clock(&self, peer: &str, batch: &mut Batch) {
        let Some(clock) = &self.cfg.clock else { return };
        if batch.version() < CLOCK_SINCE || self.faults.as_ref().is_some_and(|f| f.split_from(peer))
        {
            return;
        }
        let msg = PeerMsg::Clock {
            wall_micros: crate::clock::wall_micros(),
            hlc: clock.peek(),
        };
        batch.add(msg, &self.stats, peer);
    }

    /// Appends one message to the batch (see [`Batch::add`]) unless fault
    /// injection says otherwise.
    fn frame(&self, out: Outgoing, peer: &str, batch: &mut Batch, queue: &Arc<Queue<Outgoing>>) {
        if let (Some(f), false) = (&self.faults, out.faulted) {
            match f.outgoing(peer) {
                Verdict::Pass => {}
                Verdict::Drop => {
                    self.stats.faulted.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Verdict::Delay(d) => {
                    self.stats.faulted.fetch_add(1, Ordering::Relaxed);
                    let queue = queue.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        // The link may be gone or its queue full by then;
                        // the message is lost like any other.
                        let _lost = queue.push(Outgoing {
                            msg: out.msg,
                            faulted: true,
                        });
                    });
                    return;
                }
            }
        }
        batch.add(out.msg, &self.stats, peer);
    }
}
