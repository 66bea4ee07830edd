//! A running node: wiring the pieces together, and shutting them down.
//!
//! [`Node::start`] binds the three listeners (client, peer, admin), reads
//! the node's generation from its data dir and bumps it, and spawns one task
//! per job: the client server, the peer transport, the admin server, the
//! heartbeat-and-sweep loop, the sweeper of request deadlines, hand-off,
//! and the tombstone purge. Every task
//! selects on one `CancellationToken`; [`Node::shutdown`] cancels it and
//! waits (bounded) for all of them.
//!
//! [`Node::start_on`] does the same with the peer traffic on another
//! [`Network`]: a simulated cluster's in-memory one (`transport::mem`).
//!
//! - [`shared`]: the state the tasks share and the routing view.
//! - [`pending`]: requests waiting for peer replies, and their wake-ups.
//! - [`replica`]: the answers to peer messages.
//! - [`meta`]: the node's copy of the cluster-wide metadata record, and
//!   FLUSHALL.

mod announced;
mod apply;
mod backup;
pub mod departure;
pub mod drain;
mod incarnation;
mod loops;
pub mod meta;
pub mod network;
pub mod pending;
mod placed;
pub mod replica;
pub mod shared;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::Hlc;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::log::CommitLog;
use crate::membership::{MemberInfo, Membership};
use crate::message::{Hello, MAGIC};
use crate::metadata::Metadata;
use crate::metrics::Metrics;
use crate::ring::{NodeName, Token};
use crate::store::Store;
use crate::transport::fault::Faults;
use crate::transport::tcp::{TcpConfig, TcpTransport};
use crate::transport::{PeerHandler, Versions};
use loops::{compaction_loop, heartbeat_loop, purge_loop, reclaim_loop, sweep_loop};
pub use network::Network;
use shared::{from_record, Pending, Shared, View};

/// A running node.
pub struct Node {
    /// The state its tasks share.
    pub shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

async fn bind(key: &str, addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::config(key, format!("cannot listen on {addr}: {e}")))
}

/// Reads the generation stored in `dir`, and stores and returns a higher
/// one: the later of (stored + 1) and the wall clock in seconds, so a node
/// whose data dir was lost still comes back with a generation above its old
/// one.
fn next_generation(dir: &Path) -> Result<u64> {
    let path = dir.join("generation");
    let stored = match std::fs::read_to_string(&path) {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e.into()),
    };
    let now = crate::clock::wall_micros() / 1_000_000;
    let generation = (stored + 1).max(now);
    let tmp = dir.join("generation.tmp");
    let stored = std::fs::write(&tmp, format!("{generation}\n"))
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &path));
    // A full disk must not keep the node from serving reads: the
    // generation is then kept in memory (the wall clock keeps the next
    // one above it), and the commit log starts fenced anyway.
    if let Err(e) = stored {
        warn!(error = %e, generation, "cannot store the generation; keeping it in memory");
    }
    Ok(generation)
}

impl Node {
    /// Starts a node with `cfg`. Fails (before anything runs) on a bad
    /// config or an address that cannot be bound.
    pub async fn start(cfg: Config) -> Result<Node> {
        Node::start_on(cfg, Network::Tcp).await
    }

    /// Starts a node with `cfg` whose peer traffic goes over `network`
    /// (see [`Network`]).
    pub async fn start_on(cfg: Config, network: Network) -> Result<Node> {
        cfg.validate()?;
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| Error::config("data_dir", format!("{}: {e}", cfg.data_dir.display())))?;
        crate::backup::restore::check_restored_name(&cfg.data_dir, &cfg.name)?;
        let existed = cfg.data_dir.join("generation").exists();
        let (placement, data_id) = crate::placement::Placement::settle(
            &cfg.data_dir,
            cfg.vnodes,
            cfg.replication,
            existed,
        )?;
        let generation = next_generation(&cfg.data_dir)?;
        let incarnation = incarnation::open(
            &cfg.data_dir,
            matches!(cfg.fsync, crate::config::FsyncMode::Always),
        )?;
        // Bad TLS files stop the node here, before it binds a port.
        let client_tls = crate::tls::ServerTls::from_config(&cfg)?;
        let peer_tls = crate::tls::peer::PeerTls::from_config(&cfg)?;
        let admin_tls = crate::tls::ServerTls::admin_from_config(&cfg)?;
        let certificate_to_act = cfg.tls_auth_clients == "yes";
        let client = bind("client", &cfg.client).await?;
        let peer = match network {
            Network::Tcp => Some(bind("peer", &cfg.peer).await?),
            Network::Mem(_) => None,
        };
        let admin = bind("admin", &cfg.admin).await?;
        let local = |l: &TcpListener, configured: &str| {
            l.local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| configured.to_string())
        };
        let me = MemberInfo {
            name: cfg.name.clone(),
            generation,
            peer: cfg.advertise.clone().unwrap_or_else(|| match &peer {
                Some(peer) => local(peer, &cfg.peer),
                None => cfg.peer.clone(),
            }),
            client: local(&client, &cfg.client),
            admin: local(&admin, &cfg.admin),
        };
        if cfg.cluster_secret.is_none() {
            warn!(
                "no cluster secret set: any host that reaches the peer port can join this cluster"
            );
        }
        let shutdown = CancellationToken::new();
        let faults = cfg
            .fault_injection
            .then(|| Arc::new(Faults::new(cfg.name.clone())));
        let clock = Arc::new(Hlc::new(cfg.max_clock_skew_ms * 1000));
        let transport = match &network {
            Network::Tcp => Some(TcpTransport::new(
                TcpConfig {
                    hello: Hello {
                        magic: MAGIC,
                        version: cfg.peer_protocol_max,
                        name: cfg.name.clone(),
                        generation,
                        reply_to: me.peer.clone(),
                    },
                    versions: Versions::up_to(cfg.peer_protocol_max),
                    key: crate::auth::ClusterKey::new(cfg.cluster_secret.as_deref()),
                    max_frame: cfg.max_frame_bytes,
                    queue_len: cfg.peer_queue_len,
                    idle_timeout: (cfg.failure_timeout() * 3).max(Duration::from_secs(5)),
                    write_timeout: cfg.failure_timeout().max(Duration::from_secs(1)),
                    clock: Some(clock.clone()),
                    tls: peer_tls.clone(),
                },
                faults.clone(),
                shutdown.clone(),
            )),
            Network::Mem(_) => None,
        };
        let (net, net_stats): (Arc<dyn crate::transport::Transport>, _) =
            match (&transport, &network) {
                (Some(t), _) => (Arc::new(t.clone()), t.stats()),
                (None, Network::Mem(mem)) => {
                    let t = mem.transport(&cfg.name, generation, &me.peer, Some(clock.clone()));
                    let stats = t.stats();
                    (Arc::new(t), stats)
                }
                (None, Network::Tcp) => unreachable!("a TCP node has its transport"),
            };
        let store = Store::new();
        // The metadata record first: a flush it holds must hide what the
        // log replays of before it.
        let meta = Metadata::load(&cfg.data_dir.join("metadata"))?;
        // A data directory that left the cluster (its own record says so:
        // `leave` writes it before the node stops) must not serve again:
        // the others write around it and would never read what it took.
        // A supervisor that restarts it (the kubelet, systemd) gets this.
        if let Some(d) = crate::placement::departure_of(&meta, &cfg.name, data_id) {
            if d.is_gone() {
                return Err(Error::config(
                    "data_dir",
                    format!(
                        "{}: this data directory {} the cluster; to bring {} back, start it with an empty data directory (it is refilled)",
                        cfg.data_dir.display(),
                        if d == crate::placement::Departure::Left { "left" } else { "was forgotten by" },
                        cfg.name
                    ),
                ));
            }
        }
        if let Some(marker) = meta.flush_marker() {
            clock.advance_past(marker.ts);
            store.flush_before(marker.ts);
            // Nothing is stored yet, so there is nothing to sweep: the
            // sweep only records that, or the live count would be worked
            // out key by key for as long as the node runs.
            store.sweep_flushed();
        }
        let log = open_log(&cfg, &store, &clock)?;
        let me_name = NodeName::from(cfg.name.as_str());
        let id = u64::from_be_bytes(
            Token::of(cfg.name.as_bytes()).0[..8]
                .try_into()
                .expect("8 bytes"),
        );
        let mut meta = meta;
        record_placement(&cfg, &mut meta, placement, data_id, &clock, id)?;
        let membership = Membership::new(me.clone(), cfg.seeds.clone(), cfg.failure_timeout());
        let (view_tx, _) = watch::channel(0);
        let shared = Arc::new_cyclic(|this| Shared {
            this: this.clone(),
            meta_digest: AtomicU64::new(meta.digest()),
            acl: crate::acl::Acl::new(&meta, cfg.requirepass.clone()),
            meta: Mutex::new(meta),
            meta_persist: Default::default(),
            meta_synced: watch::channel(false).0,
            me: me_name,
            id,
            generation,
            incarnation,
            share_epoch: AtomicU64::new(0),
            store,
            log,
            clock,
            membership: Mutex::new(membership),
            view: ArcSwap::from_pointee(View::default()),
            alone: Default::default(),
            view_tx,
            net,
            net_stats,
            pending: Pending::default(),
            faults,
            metrics: Metrics::default(),
            events: Default::default(),
            ae_stats: Default::default(),
            reconciled_epoch: AtomicU64::new(0),
            fences: Default::default(),
            maxmemory_reclaimed_at: AtomicU64::new(0),
            skew: Mutex::new(crate::skew::Skew::new(
                cfg.clock_warn_ms * 1000,
                cfg.max_clock_skew_ms * 1000,
            )),
            placement,
            data_id,
            placements: Default::default(),
            handoff_turn: Default::default(),
            refused: Default::default(),
            refusals_logged: Default::default(),
            stream: crate::throttle::Throttle::new(cfg.stream_bytes_per_sec),
            leaving: Default::default(),
            stop_requested: Default::default(),
            draining: Default::default(),
            started: crate::clock::instant(),
            handoff_in: Default::default(),
            clients: Default::default(),
            cfg,
        });
        shared.publish_view();
        info!(name = %me.name, generation, client = %me.client, peer = %me.peer, admin = %me.admin, "node started");

        let mut tasks = JoinSet::new();
        // A simulated node's tasks keep its wall clock (`clock::inherit`).
        use crate::clock::inherit;
        let handler: Arc<dyn PeerHandler> = shared.clone();
        match (transport, peer, &network) {
            (Some(transport), Some(peer), _) => {
                tasks.spawn(transport.serve(peer, handler));
            }
            (_, _, Network::Mem(mem)) => mem.attach(&me.peer, &me.name, Arc::downgrade(&handler)),
            _ => unreachable!("a TCP node has its transport and its peer listener"),
        }
        let mut reloaded: Vec<Arc<dyn crate::tls::Reload>> = Vec::new();
        if let Some(tls) = &client_tls {
            reloaded.push(tls.clone());
        }
        if let Some(tls) = &peer_tls {
            reloaded.push(tls.clone());
        }
        if let Some(tls) = &admin_tls {
            reloaded.push(tls.clone());
        }
        if !reloaded.is_empty() {
            tasks.spawn(crate::tls::reload_loop(reloaded, shutdown.clone()));
        }
        tasks.spawn(crate::resp::server::serve(
            client,
            shared.clone(),
            client_tls,
            shutdown.clone(),
        ));
        let (s, t) = (shared.clone(), shutdown.clone());
        let admin_tls = admin_tls.map(|tls| crate::admin::AdminTls {
            tls,
            certificate_to_act,
        });
        tasks.spawn(async move {
            if let Err(e) = crate::admin::serve(admin, admin_tls, s, t).await {
                warn!(error = %e, "admin server stopped");
            }
        });
        tasks.spawn(inherit(heartbeat_loop(shared.clone(), shutdown.clone())));
        tasks.spawn(inherit(sweep_loop(shared.clone(), shutdown.clone())));
        tasks.spawn(inherit(crate::sync::run(shared.clone(), shutdown.clone())));
        tasks.spawn(inherit(crate::handoff::backlog_loop(
            shared.clone(),
            shutdown.clone(),
        )));
        tasks.spawn(inherit(purge_loop(shared.clone(), shutdown.clone())));
        tasks.spawn(inherit(reclaim_loop(shared.clone(), shutdown.clone())));
        tasks.spawn(inherit(compaction_loop(shared.clone(), shutdown.clone())));
        Ok(Node {
            shared,
            shutdown,
            tasks,
        })
    }

    /// Drains (see `drain`: peers stop sending it writes, what is in
    /// flight finishes), then stops every task; waits at most 4 s for them.
    pub async fn shutdown(mut self) {
        self.shared.drain().await;
        self.shutdown.cancel();
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(4), all)
            .await
            .is_err()
        {
            warn!("some tasks did not stop within 4 s; aborting them");
            self.tasks.abort_all();
        }
        match self.shared.log.shutdown().await {
            Ok(()) => {
                if let Err(e) = incarnation::mark_clean_stop(&self.shared.cfg.data_dir) {
                    warn!(error = %e, "could not mark the stop clean");
                }
            }
            Err(e) => warn!(error = %e, "commit log did not close cleanly"),
        }
        info!("node stopped");
    }
}

/// Opens the commit log in `data_dir/log`, replaying it into the store and
/// moving the clock past every timestamp it holds.
fn open_log(cfg: &Config, store: &Store, clock: &Hlc) -> Result<CommitLog> {
    let dir = cfg.data_dir.join("log");
    let mut undecodable = 0u64;
    let (log, report) = CommitLog::open(&dir, cfg.log_options(), |rec| match from_record(rec) {
        Ok((key, entry)) => {
            clock.advance_past(entry.version().ts);
            store.apply(&key, entry);
        }
        Err(e) => {
            // A record whose frame checked out but whose rich body does not
            // decode: skipped, like a corrupt frame, and reported below.
            undecodable += 1;
            if undecodable == 1 {
                warn!(error = %e, "skipped a commit log record whose value does not decode");
            }
        }
    })?;
    if undecodable > 1 {
        warn!(
            records = undecodable,
            "skipped commit log records whose values do not decode"
        );
    }
    if let Some(d) = &report.torn_tail {
        warn!(file = %d.file.display(), offset = d.offset, bytes_dropped = d.bytes, reason = %d.reason, "cut a torn commit log tail");
    }
    for d in &report.corruptions {
        warn!(file = %d.file.display(), offset = d.offset, bytes = d.bytes, reason = %d.reason, "skipped corrupt commit log bytes");
    }
    info!(
        records = report.records,
        keys = store.live_len(),
        elapsed_ms = report.elapsed.as_millis() as u64,
        "store rebuilt from the commit log"
    );
    Ok(log)
}

/// Keeps this node's placement in its `node/NAME` entry of the metadata
/// record (written at once; on a full disk, kept in memory and written
/// with the record's next change).
fn record_placement(
    cfg: &Config,
    meta: &mut Metadata,
    placement: crate::placement::Placement,
    data_id: u64,
    clock: &Hlc,
    id: u64,
) -> Result<()> {
    use crate::placement::{record_name, NodeRecord};
    let name = record_name(&cfg.name);
    let value = NodeRecord { placement, data_id }.encode()?;
    if meta.get(&name).is_some_and(|r| r.value == value) {
        return Ok(());
    }
    let version = crate::store::Version {
        ts: clock.now(),
        node: id,
    };
    meta.set(&name, version, value);
    if let Err(e) = meta.store(&cfg.data_dir.join("metadata")) {
        warn!(error = %e, "cannot store this node's placement in the metadata record yet");
    }
    Ok(())
}
