//! The client listener and the per-connection pipeline.
//!
//! Each connection is one task. It reads commands as they arrive and starts
//! each one at once, up to `max_inflight_per_conn` at a time, so a pipelined
//! batch (redis-benchmark `-P 16`) runs its quorum requests concurrently;
//! replies are written strictly in command order, and every reply that is
//! ready is written with one system call. A protocol error gets an `-ERR`
//! reply and closes the connection, as Redis does; a bad *command* gets an
//! error reply and the connection goes on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::node::shared::Shared;
use crate::resp::codec::{Limits, Reply, RespDecoder};
use crate::resp::commands::{dispatch, ConnState};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Serves RESP clients on `listener` until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, addr)) => {
                shared
                    .metrics
                    .client_connections
                    .fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, shared, shutdown).await {
                        debug!(%addr, error = %e, "client connection ended");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "accepting a client connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let limits = Limits {
        max_bulk_len: shared.cfg.max_value_bytes.max(shared.cfg.max_key_bytes),
        ..Limits::default()
    };
    let mut reader = FramedRead::new(read, RespDecoder::new(limits));
    let mut conn = ConnState {
        authed: shared.cfg.requirepass.is_none(),
        quorum: shared.default_quorum(),
        name: None,
        closing: false,
        id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
    };
    let max_inflight = shared.cfg.max_inflight_per_conn;
    let mut inflight = FuturesOrdered::new();
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut reading = true;
    loop {
        if !reading && inflight.is_empty() {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            frame = reader.next(), if reading && inflight.len() < max_inflight => match frame {
                Some(Ok(args)) => {
                    shared.metrics.commands.fetch_add(1, Ordering::Relaxed);
                    inflight.push_back(dispatch(&shared, &mut conn, args));
                    reading = !conn.closing;
                }
                Some(Err(e)) => {
                    inflight.push_back(Box::pin(std::future::ready(Reply::err(&e))) as _);
                    reading = false;
                }
                None => reading = false,
            },
            Some(reply) = inflight.next(), if !inflight.is_empty() => {
                encode(&shared, &reply, &mut out);
                // Everything else already finished goes out in the same write.
                while let Some(Some(reply)) = inflight.next().now_or_never() {
                    encode(&shared, &reply, &mut out);
                }
                write.write_all(&out).await?;
                out.clear();
            }
        }
    }
    write.shutdown().await
}

fn encode(shared: &Shared, reply: &Reply, out: &mut BytesMut) {
    if matches!(reply, Reply::Error(_)) {
        shared
            .metrics
            .command_errors
            .fetch_add(1, Ordering::Relaxed);
    }
    reply.encode(out);
}
