//! The HTTP admin port: health, status, metrics, and fault commands.
//!
//! - `GET /health`: 200 "ok" while the node serves (reads too: a node
//!   whose commit log is fenced still answers 200; `/status` says why it
//!   takes no writes).
//! - `GET /status`: the routing table as this node sees it, as JSON (the
//!   fields CONTRACT names, plus generation, share, keys and the peer
//!   protocol version of this node's link per node, and the range of
//!   protocol versions this node speaks).
//! - `GET /metrics`: Prometheus text, every name prefixed `ringkv_`.
//! - `GET /`: the live dashboard, and `GET /api/cluster`, `GET /preflist`
//!   behind it (see [`crate::dashboard`]).
//! - `POST /fault`: a [`FaultCommand`] as JSON, for the scenario runner;
//!   refused with 403 unless the node runs with fault injection on.
//! - `POST /leave`, `POST /forget`, `POST /backup`: see the CLI commands.
//!
//! With `tls_admin = true` the port speaks HTTPS (`tls/admin.rs`), and
//! the four POST routes, which act on the cluster or copy its data, answer
//! 403 to a client without a certificate from the cluster's CA unless
//! `tls_auth_clients = no`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::membership::State as MemberState;
use crate::metrics::Sampled;
use crate::node::shared::Shared;
use crate::ring::{node_tokens, Token};
use crate::tls::admin::{AdminPeer, HttpsListener};
use crate::transport::fault::FaultCommand;

/// One row of `/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// 40 hex digits of SHA-1 of its name (its only token when it has
    /// one).
    pub token: String,
    /// Every token it has on the ring, 40 hex digits each, in ring order
    /// (empty when its placement is not known yet).
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Its share of the replicas in this node's view, as a multiple of the
    /// mean (1.0 on a perfectly balanced ring; 0 when down).
    #[serde(default)]
    pub balance: f64,
    /// Its peer address.
    pub peer: String,
    /// Its client address.
    pub client: String,
    /// Its admin address.
    #[serde(default)]
    pub admin: String,
    /// "up" or "down".
    pub state: MemberState,
    /// Milliseconds since its last heartbeat (0 for this node; null if never heard).
    pub last_heartbeat_ms: Option<u64>,
    /// Its generation.
    #[serde(default)]
    pub generation: u64,
    /// The identity of its data directory (16 hex digits; null while its
    /// placement is unknown): a restore compares these to tell clusters
    /// apart.
    #[serde(default)]
    pub data_id: Option<String>,
    /// Share of the ring it owns in this node's view (0 when down).
    #[serde(default)]
    pub share: f64,
    /// Live keys it holds (as it last reported).
    #[serde(default)]
    pub keys: u64,
    /// Up, but silent for more than two heartbeat intervals: it may be about
    /// to be marked down.
    #[serde(default)]
    pub suspect: bool,
    /// The peer protocol version this node's link to it settled on; null
    /// while the link is not connected. For this node itself, its own
    /// `protocol_max` (it needs no link to itself).
    #[serde(default)]
    pub protocol: Option<u32>,
    /// Why it takes no writes (its commit log cannot be written, or it is
    /// past `maxmemory`), as its heartbeats last said; null while it takes
    /// writes. A fenced node
    /// still serves reads, and coordinators write around it.
    #[serde(default)]
    pub write_fenced: Option<String>,
}

/// The body of `/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// This node's name.
    pub name: String,
    /// The release this node runs (`ringkv --version`; empty from a node
    /// of 0.2.0 or older): what a rolling upgrade watches.
    #[serde(default)]
    pub release: String,
    /// This node's token.
    pub token: String,
    /// This node's generation.
    pub generation: u64,
    /// Live keys this node holds, owned or replicated.
    pub keys: u64,
    /// Every node known, this one included, sorted by name.
    pub nodes: Vec<NodeStatus>,
    /// Anti-entropy counters per peer (rounds, keys and bytes each way,
    /// last full agreement).
    #[serde(default)]
    pub anti_entropy: std::collections::BTreeMap<String, crate::anti_entropy::PeerStats>,
    /// This node's heartbeat interval.
    #[serde(default)]
    pub heartbeat_interval_ms: u64,
    /// This node's failure timeout.
    #[serde(default)]
    pub failure_timeout_ms: u64,
    /// The oldest peer protocol version this node speaks (0 from a node
    /// older than this field).
    #[serde(default)]
    pub protocol_min: u32,
    /// The newest peer protocol version this node speaks and offers
    /// (`peer_protocol_max`; 0 from a node older than this field).
    #[serde(default)]
    pub protocol_max: u32,
    /// Every peer whose clocks this node has heard, by name: the
    /// estimated offset of its wall clock and where that stands.
    #[serde(default)]
    pub clocks: std::collections::BTreeMap<String, PeerClock>,
    /// The offset fault injection put on this node's own wall clock
    /// (0 unless injected).
    #[serde(default)]
    pub clock_injected_offset_ms: i64,
    /// What `ringkv leave` is doing on this node, if it was asked to.
    #[serde(default)]
    pub leaving: Option<crate::node::departure::Progress>,
    /// Strays this node holds for a replica that is down (the hand-off
    /// backlog).
    #[serde(default)]
    pub handoff_backlog: u64,
    /// Routing view changes since start.
    #[serde(default)]
    pub view_epoch: u64,
    /// The newest view epoch whose anti-entropy round completed: equal to
    /// `view_epoch` once this node has reconciled with the peers its
    /// latest view change concerns (`ringkv scenario`'s `settle` waits
    /// for it on every node).
    #[serde(default)]
    pub view_epoch_reconciled: u64,
}

/// One peer's clock, as `/status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerClock {
    /// Estimated offset of its wall clock from this node's, peer minus
    /// this node, in milliseconds.
    pub offset_ms: f64,
    /// `ok`, `skewed` (past `clock_warn_ms`) or `refused` (past
    /// `max_clock_skew_ms`: its messages are dropped).
    pub standing: String,
}

/// Builds the status document.
pub fn status(shared: &Shared) -> Status {
    let view = shared.view.load();
    let now = crate::clock::instant();
    let token = |name: &str| Token::of(name.as_bytes()).hex();
    let tokens = |name: &str| -> Vec<String> {
        let Some(p) = shared.placement_of(name) else {
            return Vec::new();
        };
        let mut all = node_tokens(name, p.tokens);
        all.sort();
        all.iter().map(Token::hex).collect()
    };
    let balance: std::collections::HashMap<_, _> = view
        .ring
        .replica_balance(shared.cfg.replication)
        .into_iter()
        .collect();
    let data_id = |name: &str| {
        shared
            .record_of_node(name)
            .map(|r| format!("{:016x}", r.data_id))
    };
    let balance_of = |name: &str| balance.get(name).copied().unwrap_or(0.0);
    let leaving = shared.leaving_nodes();
    let departed = shared.departures_shown();
    let shown = |name: &str, state: MemberState| {
        if leaving.iter().any(|n| &**n == name) {
            MemberState::Leaving
        } else {
            state
        }
    };
    let m = shared.membership();
    let me = m.me();
    let mut nodes = vec![NodeStatus {
        name: me.name.clone(),
        token: token(&me.name),
        tokens: tokens(&me.name),
        balance: balance_of(&me.name),
        peer: me.peer.clone(),
        client: me.client.clone(),
        admin: me.admin.clone(),
        state: shown(&me.name, MemberState::Up),
        last_heartbeat_ms: Some(0),
        generation: me.generation,
        data_id: data_id(&me.name),
        share: view.ring.share(&me.name),
        keys: shared.store.live_len() as u64,
        suspect: false,
        protocol: Some(shared.cfg.peer_protocol_max),
        write_fenced: shared.write_fence(),
    }];
    let fences = shared
        .fences
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let suspect_after = shared.cfg.heartbeat_interval() * 2;
    nodes.extend(m.members().map(|x| {
        NodeStatus {
            name: x.info.name.clone(),
            token: token(&x.info.name),
            tokens: tokens(&x.info.name),
            balance: balance_of(&x.info.name),
            peer: x.info.peer.clone(),
            client: x.info.client.clone(),
            admin: x.info.admin.clone(),
            state: shown(&x.info.name, x.state),
            last_heartbeat_ms: x
                .last_heard
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            generation: x.info.generation,
            data_id: data_id(&x.info.name),
            share: if x.state == MemberState::Up {
                view.ring.share(&x.info.name)
            } else {
                0.0
            },
            keys: x.keys,
            suspect: x.state == MemberState::Up
                && x.last_heard
                    .is_none_or(|t| now.saturating_duration_since(t) > suspect_after),
            protocol: shared.net.peer_version(&x.info.peer),
            write_fenced: fences.get(x.info.name.as_str()).cloned(),
        }
    }));
    drop(m);
    // Nodes that left or were forgotten, for a while after (see
    // `node::departure`).
    for (name, departure, _) in departed {
        if !departure.is_gone() || nodes.iter().any(|n| n.name == name) {
            continue;
        }
        nodes.push(NodeStatus {
            token: token(&name),
            tokens: Vec::new(),
            balance: 0.0,
            peer: String::new(),
            client: String::new(),
            admin: String::new(),
            state: MemberState::Left,
            last_heartbeat_ms: None,
            generation: 0,
            data_id: None,
            share: 0.0,
            keys: 0,
            suspect: false,
            protocol: None,
            write_fenced: None,
            name,
        });
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Status {
        name: shared.me.to_string(),
        release: env!("CARGO_PKG_VERSION").to_string(),
        token: token(&shared.me),
        generation: shared.generation,
        keys: shared.store.live_len() as u64,
        nodes,
        anti_entropy: shared.ae_stats.snapshot(),
        heartbeat_interval_ms: shared.cfg.heartbeat_interval_ms,
        failure_timeout_ms: shared.cfg.failure_timeout_ms,
        protocol_min: crate::message::MIN_PROTOCOL_VERSION,
        protocol_max: shared.cfg.peer_protocol_max,
        clocks: shared
            .clock_offsets()
            .into_iter()
            .map(|c| {
                let clock = PeerClock {
                    offset_ms: c.offset_micros as f64 / 1000.0,
                    standing: c.standing.as_str().to_string(),
                };
                (c.peer.to_string(), clock)
            })
            .collect(),
        leaving: shared
            .leaving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        handoff_backlog: shared.metrics.handoff_backlog.load(Ordering::Relaxed),
        clock_injected_offset_ms: crate::clock::offset_micros() / 1000,
        view_epoch: view.epoch,
        view_epoch_reconciled: shared.reconciled_epoch.load(Ordering::Relaxed),
    }
}

/// How the admin port is served: plain HTTP, or HTTPS (`tls_admin`) with
/// or without a client certificate required for the routes that act.
pub struct AdminTls {
    /// The server's TLS config.
    pub tls: Arc<crate::tls::ServerTls>,
    /// `tls_auth_clients = yes`: leave, forget, backup and fault need a
    /// certificate from the cluster's CA.
    pub certificate_to_act: bool,
}

/// Serves the admin HTTP API on `listener` until shutdown (HTTPS if `tls`).
pub async fn serve(
    listener: TcpListener,
    tls: Option<AdminTls>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let certificate_to_act = tls.as_ref().is_some_and(|t| t.certificate_to_act);
    let acts = Router::new()
        .route("/fault", post(fault))
        .route("/leave", post(leave))
        .route("/forget", post(forget))
        .route("/backup", post(backup))
        .route_layer(axum::middleware::from_fn(
            move |ConnectInfo(peer): ConnectInfo<AdminPeer>, req, next: Next| async move {
                if certificate_to_act && !peer.certified {
                    return (
                        StatusCode::FORBIDDEN,
                        "this route needs a client certificate from the cluster's CA \
                         (tls_auth_clients = yes)\n",
                    )
                        .into_response();
                }
                next.run(req).await
            },
        ));
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route(
            "/status",
            get(|State(s): State<Arc<Shared>>| async move { Json(status(&s)) }),
        )
        .route("/metrics", get(metrics))
        .merge(acts)
        .merge(crate::dashboard::routes())
        .with_state(shared);
    let stop = shutdown.clone();
    let stopped = async move { stop.cancelled().await };
    match tls {
        None => {
            let app = app.into_make_service_with_connect_info::<AdminPeer>();
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
        Some(t) => {
            let listener = HttpsListener::new(listener, t.tls, shutdown)?;
            let app = app.into_make_service_with_connect_info::<AdminPeer>();
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
    }
}

/// Streams a backup of this node (see [`crate::backup`]).
async fn backup(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let rx = s.backup_stream();
    let chunks =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        axum::body::Body::from_stream(chunks),
    )
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let n = &s.net_stats;
    let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let log = s.log.stats();
    let view = s.view.load();
    let (live, all) = (s.store.live_len() as f64, s.store.len() as f64);
    let leave = s.leaving.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let sampled = Sampled {
        counters: vec![
            (
                "peer_messages_sent",
                "Peer messages written to sockets.",
                c(&n.sent),
            ),
            (
                "peer_bytes_sent",
                "Peer bytes written to sockets.",
                c(&n.bytes_sent),
            ),
            (
                "peer_messages_received",
                "Peer messages received.",
                c(&n.received),
            ),
            (
                "peer_messages_dropped",
                "Peer messages dropped (queue full or peer unreachable).",
                c(&n.dropped),
            ),
            (
                "peer_messages_faulted",
                "Peer messages dropped or delayed by fault injection.",
                c(&n.faulted),
            ),
            (
                "peer_messages_unsupported",
                "Peer messages not sent: the peer's protocol version predates them.",
                c(&n.unsupported),
            ),
            (
                "peer_handshakes_refused",
                "Peer handshakes refused.",
                c(&n.refused),
            ),
            (
                "log_records",
                "Records appended to the commit log.",
                log.records_appended,
            ),
            (
                "log_batches",
                "Commit log write system calls (group commits).",
                log.batches,
            ),
            ("log_fsyncs", "Commit log fsyncs.", log.fsyncs),
            (
                "log_compactions",
                "Commit log compactions.",
                log.compactions,
            ),
        ],
        gauges: vec![
            (
                "log_bytes",
                "Commit log bytes on disk.",
                log.total_bytes as f64,
            ),
            (
                "log_segments",
                "Commit log segment files.",
                log.segments as f64,
            ),
            ("keys", "Live keys held.", live),
            ("entries", "Entries held, tombstones included.", all),
            ("tombstones", "Tombstones held.", (all - live).max(0.0)),
            (
                "nodes_up",
                "Nodes up in this node's view, itself included.",
                view.ring.nodes().len() as f64,
            ),
            (
                "view_epoch",
                "Routing view changes since start.",
                view.epoch as f64,
            ),
            (
                "leaving",
                "1 while `ringkv leave` runs on this node (see leave_leaves_done).",
                f64::from(u8::from(leave.is_some())),
            ),
            (
                "leave_leaves_done",
                "Leaves of 65,536 that this node's leave has streamed in its current pass.",
                leave.as_ref().map_or(0.0, |p| f64::from(p.leaves_done)),
            ),
            (
                "leave_bytes_left",
                "About how many bytes the current pass of this node's leave has still to look at.",
                leave.as_ref().map_or(0.0, |p| p.bytes_left as f64),
            ),
            (
                "leave_bytes_sent",
                "Bytes this node's leave has handed to the new replicas.",
                leave.as_ref().map_or(0.0, |p| p.bytes_sent as f64),
            ),
            (
                "view_epoch_reconciled",
                "The newest view epoch whose anti-entropy round completed.",
                s.reconciled_epoch
                    .load(std::sync::atomic::Ordering::Relaxed) as f64,
            ),
        ],
        peer: Some(&n.by_kind),
        fsync: Some(s.log.fsync_latency()),
        anti_entropy: s.ae_stats.snapshot().into_iter().collect(),
        clock_offsets: s
            .clock_offsets()
            .into_iter()
            .map(|c| (c.peer.to_string(), c.offset_micros as f64 / 1e6))
            .collect(),
        balance: view
            .ring
            .replica_balance(s.cfg.replication)
            .into_iter()
            .map(|(n, b)| (n.to_string(), b))
            .collect(),
    };
    let out = crate::metrics::render(&s.metrics, sampled);
    ([("content-type", crate::metrics::CONTENT_TYPE)], out)
}

/// `POST /leave`: `ringkv leave` on this node. Answers when it is done:
/// the report as JSON, after which the node stops (the admin server
/// finishes this answer first), or 409 with why it could not leave (it
/// stays, taking no writes). `/status`'s `leaving` shows its progress
/// meanwhile.
async fn leave(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    if s.leaving
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_some_and(|p| !p.phase.starts_with("failed"))
    {
        return (
            StatusCode::CONFLICT,
            "this node is already leaving\n".to_string(),
        );
    }
    match s.leave().await {
        Ok(report) => {
            tracing::info!(?report, "left: stopping");
            s.stop_requested.cancel();
            (
                StatusCode::OK,
                serde_json::to_string(&report).unwrap_or_default() + "\n",
            )
        }
        Err(e) => (StatusCode::CONFLICT, format!("{e}\n")),
    }
}

/// The body of `POST /forget`.
#[derive(Debug, Deserialize)]
struct ForgetBody {
    name: String,
}

/// `POST /forget {"name": NAME}`: forgets a node that is down for good,
/// through this node (see `node::departure`). Answers the report as JSON,
/// or 409 with the reason.
async fn forget(State(s): State<Arc<Shared>>, Json(body): Json<ForgetBody>) -> impl IntoResponse {
    match s.forget(&body.name).await {
        Ok(report) => (
            StatusCode::OK,
            serde_json::to_string(&report).unwrap_or_default() + "\n",
        ),
        Err(e) => (StatusCode::CONFLICT, format!("{e}\n")),
    }
}

async fn fault(State(s): State<Arc<Shared>>, Json(cmd): Json<FaultCommand>) -> impl IntoResponse {
    match &s.faults {
        Some(f) => {
            tracing::info!(?cmd, "fault injection");
            match &cmd {
                FaultCommand::Disk { fail, count, errno } => {
                    s.log.inject_disk_fault(*fail, *count, *errno)
                }
                FaultCommand::Clear => s.log.clear_disk_faults(),
                _ => {}
            }
            f.apply(cmd);
            (StatusCode::OK, "ok\n".to_string())
        }
        None => (
            StatusCode::FORBIDDEN,
            "fault injection is off on this node (start it with --fault-injection)\n".to_string(),
        ),
    }
}
