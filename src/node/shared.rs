//! The state one node's tasks share, and the routing view they read.
//!
//! [`Shared`] is what every task of a node holds an `Arc` to: the store, the
//! clock, the membership table, the transport, and the current [`View`].
//! The view is an immutable snapshot (ring, addresses, generations) swapped
//! atomically whenever membership changes, so the request path reads it
//! without taking a lock and a request always sees one consistent ring.
//! Tasks that care about changes (waiting requests, hand-off) watch the
//! view's epoch on a `watch` channel.
//!
//! Replies from peers are routed to the request waiting for them through
//! [`Pending`] (its own module), a map from request id to that request's
//! inbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tracing::{info, warn};

pub use super::apply::{from_record, record_of};
use crate::clock::Hlc;
use crate::config::Config;
use crate::log::CommitLog;
use crate::membership::{Event, Membership};
use crate::message::PeerMsg;
use crate::metrics::Metrics;
use crate::ring::{NodeName, Ring};
use crate::store::{NodeId, Store};
use crate::transport::fault::Faults;
use crate::transport::tcp::NetStats;
use crate::transport::Transport;

pub use super::pending::Pending;

/// A routing snapshot: who is up, where they are, and the ring over them.
#[derive(Debug, Default)]
pub struct View {
    /// Grows by one on every change.
    pub epoch: u64,
    /// The ring over the nodes up (this node included).
    pub ring: Ring,
    /// Peer address of every node on the ring (looked up on every send,
    /// so hashed with foldhash).
    pub addrs: HashMap<NodeName, String, foldhash::fast::RandomState>,
    /// Generation of every node on the ring.
    pub generations: HashMap<NodeName, u64>,
    /// The ring writes go to: `ring` without the nodes whose commit log
    /// takes no writes (see `log/fence.rs`), which coordinators treat as
    /// down for writes and still read from.
    pub write_ring: Ring,
    /// The ring deletes go to (a tombstone, or a delta of removals only):
    /// `ring` without the nodes whose commit log takes no writes, but with
    /// those past `maxmemory` (Redis lets DEL through there).
    pub delete_ring: Ring,
    /// The nodes up that take no writes, and why.
    pub fenced: std::collections::BTreeMap<NodeName, String>,
    /// The ring over every node known, up or down: a key's first N nodes
    /// on it are its home replicas, the only ones strict quorums count.
    pub home_ring: Ring,
    /// The ring whose preference lists say what each node holds: the
    /// nodes up and those down for less than `rebuild_delay_ms`. Anti-
    /// entropy and hand-off use it, so a short outage copies no range to
    /// stand-ins (see `sync`); coordinators use `ring`.
    pub replica_ring: Ring,
}

/// How the reason of a fence for `maxmemory` starts (see
/// `Shared::write_fence`); any other reason is the commit log's.
pub const OOM_FENCE: &str = "OOM";

/// Everything the tasks of one node share.
pub struct Shared {
    /// This value itself, for work that outlives a borrow (background
    /// sweeps, acknowledgements sent once a write is durable).
    pub this: std::sync::Weak<Shared>,
    /// The cluster-wide metadata record (see `node::meta`).
    pub meta: Mutex<crate::metadata::Metadata>,
    /// ACL users (from `meta`) and the ACL LOG.
    pub acl: crate::acl::Acl,
    /// The digest of `meta`, as heartbeats carry it.
    pub meta_digest: std::sync::atomic::AtomicU64,
    /// Writes of `meta` to disk take turns.
    pub meta_persist: tokio::sync::Mutex<()>,
    /// Becomes true once this node's record is known to be at least as new
    /// as a peer's (see [`Shared::wait_for_metadata`]).
    pub meta_synced: watch::Sender<bool>,
    /// Settings.
    pub cfg: Config,
    /// This node's name.
    pub me: NodeName,
    /// This node's numeric id (LWW tie-break).
    pub id: NodeId,
    /// This node's generation.
    pub generation: u64,
    /// The identity of this node's data: its counter shares' (see
    /// `node::incarnation`).
    pub incarnation: u64,
    /// Grows when hand-off drops strays; part of the identity of the
    /// counter shares this process writes (see [`Shared::share_id`]).
    pub share_epoch: AtomicU64,
    /// Local versioned data.
    pub store: Store,
    /// Every accepted write, before it is acknowledged.
    pub log: CommitLog,
    /// Write timestamps (shared with the transport, which announces it).
    pub clock: std::sync::Arc<Hlc>,
    /// The routing table (locked only briefly, never across an await).
    pub membership: Mutex<Membership>,
    /// The current routing snapshot.
    pub view: ArcSwap<View>,
    /// Whether the ring of [`Shared::view`] holds this node alone (set as
    /// the view is published): read without loading the view, which a
    /// request that already holds it makes costlier.
    pub alone: std::sync::atomic::AtomicBool,
    /// Publishes the view's epoch on every change.
    pub view_tx: watch::Sender<u64>,
    /// The peer transport.
    pub net: Arc<dyn Transport>,
    /// Peer traffic counters.
    pub net_stats: Arc<NetStats>,
    /// Replies awaited.
    pub pending: Pending,
    /// Fault injection, when enabled.
    pub faults: Option<Arc<Faults>>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Recent membership and repair events, for the dashboard.
    pub events: crate::events::EventLog,
    /// Anti-entropy counters per peer.
    pub ae_stats: crate::anti_entropy::Stats,
    /// Epoch of the newest view whose reconciliation round completed (see
    /// `sync`): below `view.epoch` while a view change is not yet
    /// reconciled.
    pub reconciled_epoch: std::sync::atomic::AtomicU64,
    /// The nodes (this one included) whose commit log takes no writes, and
    /// why, as their heartbeats last said (see [`View::write_ring`]).
    pub fences: Mutex<HashMap<NodeName, String>>,
    /// When expired keys were last reclaimed because of `maxmemory`
    /// (milliseconds since the epoch).
    pub maxmemory_reclaimed_at: std::sync::atomic::AtomicU64,
    /// The offset of every peer's wall clock from this node's.
    pub skew: Mutex<crate::skew::Skew>,
    /// This node's placement: its tokens and N (see [`crate::placement`]).
    pub placement: crate::placement::Placement,
    /// The identity of this node's data directory, drawn when it was made
    /// (see [`crate::placement::Placement::settle`]).
    pub data_id: u64,
    /// The pace of bulk streams (see `throttle`).
    pub stream: crate::throttle::Throttle,
    /// Cancelled when the node should stop by itself (it has left).
    pub stop_requested: tokio_util::sync::CancellationToken,
    /// Set when the node starts to stop (see `node/drain.rs`).
    pub draining: std::sync::atomic::AtomicBool,
    /// What `ringkv leave` is doing on this node, if it runs.
    pub leaving: Mutex<Option<crate::node::departure::Progress>>,
    /// The generation of each refused peer whose refusal was logged.
    pub refusals_logged: Mutex<HashMap<NodeName, u64>>,
    /// The peers whose placement is refused (see `node/placed.rs`).
    pub refused: Mutex<std::collections::HashSet<NodeName>>,
    /// Hand-off passes take turns (see `handoff`).
    pub handoff_turn: tokio::sync::Mutex<()>,
    /// The placements peers announced (see `node::announced`), kept after
    /// they go down.
    pub placements: Mutex<HashMap<NodeName, crate::placement::NodeRecord>>,
    /// When the node started.
    pub started: Instant,
    /// When this node last took an `Offer` or a `Transfer` (hand-off's,
    /// a leave's streams, or anti-entropy's sends: whatever fills it), in
    /// milliseconds since `started`; 0 if never. Anti-entropy with a node
    /// still being filled this way waits (see `sync::HANDOFF_FIRST`).
    pub handoff_in: std::sync::atomic::AtomicU64,
    /// The client connections (CLIENT LIST and KILL, INFO).
    pub clients: Arc<crate::resp::conn::Clients>,
}

impl Shared {
    /// An owning handle to this node's shared state.
    pub fn arc(&self) -> Arc<Shared> {
        // `this` is set at construction and the value is only reachable
        // through an Arc, so the upgrade cannot fail while `self` lives.
        self.this
            .upgrade()
            .expect("Shared is always held in an Arc")
    }

    /// The membership table, locked.
    pub fn membership(&self) -> MutexGuard<'_, Membership> {
        // Membership updates never leave the table half-changed, so a panic
        // elsewhere while holding the lock does not poison its meaning.
        self.membership.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Logs membership events and, if the ring changed, publishes a new view.
    pub fn handle_events(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut ring_changed = false;
        for ev in &events {
            ring_changed |= ev.changes_ring();
            self.record_membership_event(ev);
            self.metrics
                .membership_changes
                .fetch_add(u64::from(ev.changes_ring()), Ordering::Relaxed);
            match ev {
                Event::Up { name, reason, away } => {
                    info!(node = %name, %reason, "node up");
                    if let Some(addr) = self.membership().peer_addr(name) {
                        self.net.nudge(addr);
                    }
                    let grace = std::time::Duration::from_secs(self.cfg.tombstone_grace_secs);
                    if away.is_some_and(|a| a > grace) {
                        warn!(node = %name, away_secs = away.map_or(0, |a| a.as_secs()), grace_secs = grace.as_secs(),
                            "node rejoins after longer than the tombstone grace period: deletes it missed may come back");
                    }
                }
                Event::Down { name, reason } => {
                    info!(node = %name, %reason, "node down");
                    self.forget_fence(name, false);
                    if let Some(addr) = self.membership().peer_addr(name) {
                        self.net.reset(addr);
                    }
                }
                Event::Restarted { name, old, new } => {
                    info!(node = %name, old_generation = old, new_generation = new, "node restarted");
                    self.forget_fence(name, true);
                }
                Event::Learned { name, via } => info!(node = %name, %via, "learned of node"),
                Event::NameClash { generation, peer } => warn!(
                    %generation, %peer,
                    "another process heartbeats with this node's name; names must be unique"
                ),
            }
        }
        if ring_changed {
            self.publish_view();
        }
    }

    /// Forgets `name`'s write fence: any fence when it restarted (its new
    /// process announces its own, if it has one), only a stopping one
    /// when it went down (see `node/drain.rs`). The caller publishes the
    /// new view.
    fn forget_fence(&self, name: &str, any: bool) {
        let mut fences = self.fences.lock().unwrap_or_else(|p| p.into_inner());
        if fences
            .get(name)
            .is_some_and(|why| any || why.starts_with(super::drain::STOPPING))
        {
            fences.remove(name);
        }
    }

    /// The nodes whose replicas stay where they are: this one, those up,
    /// and those down (after being heard) for less than
    /// `rebuild_delay_ms`.
    fn held_names(&self, m: &crate::membership::Membership) -> Vec<NodeName> {
        let delay = std::time::Duration::from_millis(self.cfg.rebuild_delay_ms);
        let now = crate::clock::instant();
        std::iter::once(self.me.clone())
            .chain(
                m.members()
                    .filter(|x| {
                        x.state == crate::membership::State::Up
                            || (x.last_heard.is_some()
                                && now.saturating_duration_since(x.since) < delay)
                    })
                    .map(|x| NodeName::from(x.info.name.as_str())),
            )
            .collect()
    }

    /// Whether the view is still forming: a node learned of (from another
    /// node's member list) has not been heard from directly, or (in the
    /// first failure timeout after start) a seed has not; either for less
    /// than the failure timeout. Reconciliation waits (see `sync`).
    pub fn view_settling(&self) -> bool {
        let timeout = self.cfg.failure_timeout();
        let now = crate::clock::instant();
        let m = self.membership();
        let starting = now.saturating_duration_since(self.started) < timeout;
        (starting && m.seeds_unheard())
            || m.members()
                .any(|x| x.last_heard.is_none() && now.saturating_duration_since(x.since) < timeout)
    }

    /// The identity of the counter shares this node writes now: its data
    /// incarnation, its generation and its share epoch, hashed. An owner
    /// may only write a share whose latest total it holds, so the identity
    /// changes whenever a copy it wrote may have left this node without a
    /// trace: at every start (the generation), and whenever hand-off drops
    /// strays (the epoch, moved before the drops). Otherwise a node that
    /// owned increments of a key it does not replicate, whose copy was
    /// then handed off and dropped, would start the same share again from
    /// zero with a newer version, and the merge would keep that total in
    /// place of the old one (found by `tests/simulation.rs`, seed 2959).
    /// A new identity starts a new share; the old ones keep counting.
    pub fn share_id(&self) -> u64 {
        let epoch = self.share_epoch.load(Ordering::SeqCst);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.generation.to_le_bytes());
        bytes[8..].copy_from_slice(&epoch.to_le_bytes());
        crate::encoding::stable_hash(self.incarnation, &bytes)
    }

    /// Notes that an `Offer` or a `Transfer` arrived.
    pub fn note_handoff_in(&self) {
        let now = crate::clock::since(self.started).as_millis() as u64;
        self.handoff_in.store(now.max(1), Ordering::Relaxed);
    }

    /// Whether one arrived within [`crate::sync::HANDOFF_FIRST`]:
    /// this node is being filled, and anti-entropy with it would find
    /// (and send again) what is on its way.
    pub fn taking_handoff(&self) -> bool {
        let last = self.handoff_in.load(Ordering::Relaxed);
        let now = crate::clock::since(self.started).as_millis() as u64;
        last != 0 && now.saturating_sub(last) < crate::sync::HANDOFF_FIRST.as_millis() as u64
    }

    /// Whether the view's replica ring holds other nodes than it should
    /// now: a down node's rebuild delay passed. The heartbeat loop then
    /// publishes a new view, whose reconciliation rebuilds its replicas.
    pub fn replica_ring_is_stale(&self) -> bool {
        let mut held = self.held_names(&self.membership());
        held.sort();
        let view = self.view.load();
        view.replica_ring.nodes() != held.as_slice()
    }

    /// Rebuilds the view from the membership table and publishes it.
    pub fn publish_view(&self) {
        // Before the membership lock: the placements and the metadata
        // record have locks of their own.
        let counts = self.token_counts();
        let leaving = self.leaving_nodes();
        let view = {
            let m = self.membership();
            let up = m.up();
            let known: Vec<NodeName> = std::iter::once(self.me.clone())
                .chain(m.members().map(|x| NodeName::from(x.info.name.as_str())))
                .collect();
            let held: Vec<NodeName> = self.held_names(&m);
            let mut addrs = HashMap::with_capacity_and_hasher(up.len(), Default::default());
            let mut generations = HashMap::with_capacity(up.len());
            let names: Vec<NodeName> = up
                .iter()
                .map(|(name, generation)| {
                    let n = NodeName::from(name.as_str());
                    addrs.insert(n.clone(), m.peer_addr(name).unwrap_or_default().to_string());
                    generations.insert(n.clone(), *generation);
                    n
                })
                .collect();
            let fences = self.fences.lock().unwrap_or_else(|p| p.into_inner());
            // A node leaving takes no writes either (see `node::departure`).
            let fenced: std::collections::BTreeMap<NodeName, String> = names
                .iter()
                .filter_map(|n| {
                    let why = match leaving.contains(n) {
                        true => "leaving the cluster".to_string(),
                        false => fences.get(n)?.clone(),
                    };
                    Some((n.clone(), why))
                })
                .collect();
            let writers: Vec<NodeName> = names
                .iter()
                .filter(|n| !fenced.contains_key(*n))
                .cloned()
                .collect();
            let deleters: Vec<NodeName> = names
                .iter()
                .filter(|n| fenced.get(*n).is_none_or(|why| why.starts_with(OOM_FENCE)))
                .cloned()
                .collect();
            drop(fences);
            let ring = |names: Vec<NodeName>| {
                Ring::build(names.into_iter().map(|n| {
                    let c = counts.get(&n).copied().unwrap_or(self.placement.tokens);
                    (n, c)
                }))
            };
            View {
                epoch: self.view.load().epoch + 1,
                ring: ring(names),
                write_ring: ring(writers),
                delete_ring: ring(deleters),
                home_ring: ring(known),
                replica_ring: ring(held),
                fenced,
                addrs,
                generations,
            }
        };
        let epoch = view.epoch;
        let alone = view.ring.nodes() == std::slice::from_ref(&self.me);
        self.alone
            .store(alone, std::sync::atomic::Ordering::Relaxed);
        self.view.store(Arc::new(view));
        self.view_tx.send_replace(epoch);
        // Waiting quorum requests retarget to the new preference lists.
        for request in self.pending.poke_all() {
            request.on_poke(self);
        }
    }

    /// Sends the request `make(id)` to `peer` and waits (up to the request
    /// timeout) for the one reply carrying that id.
    pub async fn ask(
        &self,
        view: &View,
        peer: &NodeName,
        make: impl FnOnce(u64) -> PeerMsg,
    ) -> crate::error::Result<PeerMsg> {
        use crate::error::Error;
        let (guard, replies) = self.pending.register();
        if !self.send_to(view, peer, make(guard.id)) {
            return Err(Error::Unavailable {
                op: "request",
                needed: 1,
                got: 0,
            });
        }
        match tokio::time::timeout(self.cfg.request_timeout(), replies.recv()).await {
            Ok((_, reply)) => Ok(reply),
            Err(_) => Err(Error::Timeout(format!("no answer from {peer}"))),
        }
    }

    /// [`Shared::send_to`] if the link to node `name` is believed to work
    /// (see [`Transport::reachable`]): `None`, nothing sent, when it is not
    /// or the node is not in the view.
    pub fn send_if_reachable(&self, view: &View, name: &NodeName, msg: PeerMsg) -> Option<bool> {
        let addr = view.addrs.get(name)?;
        self.net.send_if_reachable(addr, msg)
    }

    /// Sends `msg` to node `name` through the current view's address for
    /// it. Returns false if the node is not on the ring or the send dropped.
    pub fn send_to(&self, view: &View, name: &NodeName, msg: PeerMsg) -> bool {
        match view.addrs.get(name) {
            Some(addr) => self.net.send(addr, msg),
            None => false,
        }
    }
}
