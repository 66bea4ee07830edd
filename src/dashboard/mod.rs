//! The live dashboard on every node's admin port.
//!
//! `GET /` serves one HTML page (with its CSS and JavaScript, embedded in
//! the binary with `include_str!`: no build step, nothing fetched from
//! elsewhere). The page polls `GET /api/cluster` twice a second and draws
//! the ring as this node sees it: each node at its token's angle (token
//! fraction = first 8 bytes of SHA-1 / 2^64, 0 at the top, clockwise),
//! coloured up, suspected (up but silent for more than two heartbeat
//! intervals) or down, the arc each up node owns, key counts, and the feed
//! of recent membership and hand-off events. A key typed into the box is
//! looked up with `GET /preflist?key=...`.
//!
//! Deliberately left out: drawing every virtual node's label (with
//! `vnodes > 1` the arcs are drawn per token, the dot at the first token).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::admin::{status, Status};
use crate::events::EventRecord;
use crate::node::shared::Shared;
use crate::ring::Token;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

/// The arc of the circle ending at one token, owned by `node`.
#[derive(Clone, Debug, Serialize)]
pub struct OwnedArc {
    /// The owner.
    pub node: String,
    /// Where the arc starts (exclusive), as a fraction of the circle.
    pub start: f64,
    /// Where it ends (inclusive): the owner's token.
    pub end: f64,
}

/// The body of `/api/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    /// `/status`.
    pub status: Status,
    /// Every token of every node up, with the arc it owns, by position.
    pub arcs: Vec<OwnedArc>,
    /// Replication factor N.
    pub replication: usize,
    /// Routing view epoch.
    pub epoch: u64,
    /// Events after `since`.
    pub events: Vec<EventRecord>,
}

/// The body of `/preflist`.
#[derive(Debug, Serialize)]
pub struct Preflist {
    /// The key asked about.
    pub key: String,
    /// Its position on the circle, as a fraction.
    pub position: f64,
    /// 40 hex digits of SHA-1(key).
    pub token: String,
    /// Owner first, then the next distinct nodes clockwise, over the nodes up.
    pub nodes: Vec<String>,
}

/// The routes of the dashboard.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/",
            get(|| async { ([("content-type", "text/html; charset=utf-8")], INDEX) }),
        )
        .route(
            "/dashboard.js",
            get(|| async { ([("content-type", "text/javascript; charset=utf-8")], SCRIPT) }),
        )
        .route(
            "/dashboard.css",
            get(|| async { ([("content-type", "text/css; charset=utf-8")], STYLE) }),
        )
        .route("/api/cluster", get(cluster))
        .route("/preflist", get(preflist))
}

/// The arcs of the ring in `shared`'s current view.
pub fn arcs(shared: &Shared) -> Vec<OwnedArc> {
    let view = shared.view.load();
    let mut points: Vec<(f64, String)> = view
        .ring
        .nodes()
        .iter()
        .flat_map(|n| {
            view.ring
                .tokens_of(n)
                .into_iter()
                .map(move |t| (t.fraction(), n.to_string()))
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let len = points.len();
    (0..len)
        .map(|i| OwnedArc {
            node: points[i].1.clone(),
            start: points[(i + len - 1) % len].0,
            end: points[i].0,
        })
        .collect()
}

async fn cluster(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let since = q.get("since").and_then(|v| v.parse().ok()).unwrap_or(0);
    Json(ClusterView {
        status: status(&s),
        arcs: arcs(&s),
        replication: s.cfg.replication,
        epoch: s.view.load().epoch,
        events: s.events.since(since),
    })
}

async fn preflist(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let key = q.get("key").cloned().unwrap_or_default();
    let token = Token::of(key.as_bytes());
    let nodes = s
        .view
        .load()
        .ring
        .preference_list(&token, s.cfg.replication)
        .iter()
        .map(|n| n.to_string())
        .collect();
    Json(Preflist {
        key,
        position: token.fraction(),
        token: token.hex(),
        nodes,
    })
}
