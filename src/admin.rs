//! The HTTP admin port: health, status, metrics, and fault commands.
//!
//! - `GET /health`: 200 "ok" while the node serves.
//! - `GET /status`: the routing table as this node sees it, as JSON (the
//!   fields CONTRACT names, plus generation, share and keys per node).
//! - `GET /metrics`: Prometheus text, every name prefixed `ringkv_`.
//! - `POST /fault`: a [`FaultCommand`] as JSON, for the scenario runner;
//!   refused with 403 unless the node runs with fault injection on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::membership::State as MemberState;
use crate::metrics::{counter, gauge};
use crate::node::shared::Shared;
use crate::ring::Token;
use crate::transport::fault::FaultCommand;

/// One row of `/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// 40 hex digits of its (first) token.
    pub token: String,
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
    /// Share of the ring it owns in this node's view (0 when down).
    #[serde(default)]
    pub share: f64,
    /// Live keys it holds (as it last reported).
    #[serde(default)]
    pub keys: u64,
}

/// The body of `/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// This node's name.
    pub name: String,
    /// This node's token.
    pub token: String,
    /// This node's generation.
    pub generation: u64,
    /// Live keys this node holds, owned or replicated.
    pub keys: u64,
    /// Every node known, this one included, sorted by name.
    pub nodes: Vec<NodeStatus>,
}

/// Builds the status document.
pub fn status(shared: &Shared) -> Status {
    let view = shared.view.load();
    let now = Instant::now();
    let token = |name: &str| Token::of(name.as_bytes()).hex();
    let m = shared.membership();
    let me = m.me();
    let mut nodes = vec![NodeStatus {
        name: me.name.clone(),
        token: token(&me.name),
        peer: me.peer.clone(),
        client: me.client.clone(),
        admin: me.admin.clone(),
        state: MemberState::Up,
        last_heartbeat_ms: Some(0),
        generation: me.generation,
        share: view.ring.share(&me.name),
        keys: shared.store.live_len() as u64,
    }];
    nodes.extend(m.members().map(|x| {
        NodeStatus {
            name: x.info.name.clone(),
            token: token(&x.info.name),
            peer: x.info.peer.clone(),
            client: x.info.client.clone(),
            admin: x.info.admin.clone(),
            state: x.state,
            last_heartbeat_ms: x
                .last_heard
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            generation: x.info.generation,
            share: if x.state == MemberState::Up {
                view.ring.share(&x.info.name)
            } else {
                0.0
            },
            keys: x.keys,
        }
    }));
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Status {
        name: shared.me.to_string(),
        token: token(&shared.me),
        generation: shared.generation,
        keys: shared.store.live_len() as u64,
        nodes,
    }
}

/// Serves the admin HTTP API on `listener` until shutdown.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route(
            "/status",
            get(|State(s): State<Arc<Shared>>| async move { Json(status(&s)) }),
        )
        .route("/metrics", get(metrics))
        .route("/fault", post(fault))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let mut out = String::with_capacity(4096);
    s.metrics.render(&mut out);
    let n = &s.net_stats;
    let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    counter(
        &mut out,
        "peer_messages_sent_total",
        "Peer messages written to sockets.",
        c(&n.sent),
    );
    counter(
        &mut out,
        "peer_bytes_sent_total",
        "Peer bytes written to sockets.",
        c(&n.bytes_sent),
    );
    counter(
        &mut out,
        "peer_messages_received_total",
        "Peer messages received.",
        c(&n.received),
    );
    counter(
        &mut out,
        "peer_messages_dropped_total",
        "Peer messages dropped (queue full or peer unreachable).",
        c(&n.dropped),
    );
    counter(
        &mut out,
        "peer_messages_faulted_total",
        "Peer messages dropped or delayed by fault injection.",
        c(&n.faulted),
    );
    counter(
        &mut out,
        "peer_handshakes_refused_total",
        "Peer handshakes refused.",
        c(&n.refused),
    );
    let log = s.log.stats();
    gauge(
        &mut out,
        "log_bytes",
        "Commit log bytes on disk.",
        log.total_bytes as f64,
    );
    gauge(
        &mut out,
        "log_segments",
        "Commit log segment files.",
        log.segments as f64,
    );
    counter(
        &mut out,
        "log_records_total",
        "Records appended to the commit log.",
        log.records_appended,
    );
    counter(
        &mut out,
        "log_batches_total",
        "Commit log write system calls (group commits).",
        log.batches,
    );
    counter(
        &mut out,
        "log_fsyncs_total",
        "Commit log fsyncs.",
        log.fsyncs,
    );
    counter(
        &mut out,
        "log_compactions_total",
        "Commit log compactions.",
        log.compactions,
    );
    gauge(
        &mut out,
        "keys",
        "Live keys held.",
        s.store.live_len() as f64,
    );
    gauge(
        &mut out,
        "entries",
        "Entries held, tombstones included.",
        s.store.len() as f64,
    );
    let view = s.view.load();
    gauge(
        &mut out,
        "nodes_up",
        "Nodes up in this node's view, itself included.",
        view.ring.nodes().len() as f64,
    );
    gauge(
        &mut out,
        "view_epoch",
        "Routing view changes since start.",
        view.epoch as f64,
    );
    ([("content-type", "text/plain; version=0.0.4")], out)
}

async fn fault(State(s): State<Arc<Shared>>, Json(cmd): Json<FaultCommand>) -> impl IntoResponse {
    match &s.faults {
        Some(f) => {
            tracing::info!(?cmd, "fault injection");
            f.apply(cmd);
            (StatusCode::OK, "ok\n".to_string())
        }
        None => (
            StatusCode::FORBIDDEN,
            "fault injection is off on this node (start it with --fault-injection)\n".to_string(),
        ),
    }
}
