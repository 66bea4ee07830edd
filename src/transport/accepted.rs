//! The accepting side of a peer connection: the handshake's outcome, then
//! every frame the peer sends, decoded and handed to the node.
//!
//! An accepted connection only reads (see the `tcp` module): replies go
//! back over this node's own link. Kept apart from the link side, which
//! only writes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use futures::{FutureExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use super::counters::PeerDecoder;
use super::fault::Verdict;
use super::handshake::{HANDSHAKE_TIMEOUT, REFUSED};
use super::stream::PeerStream;
use super::tcp::Inner;
use super::{Peer, PeerHandler};
use crate::error::{Error, Result};
use crate::message::PeerMsg;

impl Inner {
    pub(super) async fn read_connection(
        &self,
        stream: TcpStream,
        addr: SocketAddr,
        handler: Arc<dyn PeerHandler>,
    ) -> Result<()> {
        let mut stream = match PeerStream::accepted(stream, self.cfg.tls.as_deref()).await {
            Ok(stream) => stream,
            Err(reason) => {
                self.refused(addr, "?", &reason);
                return Err(Error::Protocol(reason));
            }
        };
        let mut buf = BytesMut::new();
        let handshake = self.accept_handshake(&mut stream, &mut buf, addr);
        let peer = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(Some(peer))) => peer,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => {
                // A refusal the handshake decided on was counted and logged
                // there; anything else (garbage, a broken frame) is counted here.
                if !matches!(&e, Error::Protocol(m) if m.starts_with(REFUSED)) {
                    self.refused(addr, "?", &e.to_string());
                }
                return Err(e);
            }
            Err(_) => {
                let reason = format!("no complete handshake within {HANDSHAKE_TIMEOUT:?}");
                self.refused(addr, "?", &reason);
                return Err(Error::Protocol(reason));
            }
        };
        let (read, _write) = stream.into_split();
        let mut reader = FramedRead::new(read, PeerDecoder::new(peer.version, self.cfg.max_frame));
        reader.read_buffer_mut().extend_from_slice(&buf);
        // Silence is checked once per idle_timeout (a connection is closed
        // after between one and two periods without a message) rather than
        // with a timer per message; the timer is made once, not on every
        // turn of the loop. (Shutdown aborts this task: see `serve`.)
        let idle = tokio::time::sleep(self.cfg.idle_timeout);
        tokio::pin!(idle);
        let mut heard = false;
        // Whether the node refused the peer at its last clocks.
        let mut refused = false;
        loop {
            let next = tokio::select! {
                _ = &mut idle => {
                    if !std::mem::take(&mut heard) {
                        return Err(Error::Protocol(format!(
                            "{} silent for {:?}",
                            peer.name, self.cfg.idle_timeout
                        )));
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + self.cfg.idle_timeout);
                    continue;
                }
                n = reader.next() => n,
            };
            heard = true;
            let Some(msg) = next else { return Ok(()) };
            self.receive(&peer, msg?, handler.as_ref(), &mut refused);
            // Whatever else is already buffered is handled without another
            // trip through the select above.
            while let Some(next) = reader.next().now_or_never() {
                let Some(msg) = next else { return Ok(()) };
                self.receive(&peer, msg?, handler.as_ref(), &mut refused);
            }
        }
    }

    /// One message read from `peer`: through fault injection, then to the
    /// node. The clocks a write opens with go to [`PeerHandler::on_clock`],
    /// whose verdict decides whether the messages after them are accepted
    /// (`refused`, all but the peer's placement); they pass splits only,
    /// and use up no drop rule.
    fn receive(&self, peer: &Peer, msg: PeerMsg, handler: &dyn PeerHandler, refused: &mut bool) {
        if let PeerMsg::Clock { wall_micros, hlc } = msg {
            if self
                .faults
                .as_ref()
                .is_some_and(|f| f.split_from(&peer.name))
            {
                self.stats.faulted.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            self.stats.by_kind.received(&msg);
            *refused = !handler.on_clock(peer, wall_micros, hlc);
            return;
        }
        // A refused peer's placement still passes: it may be what
        // refused the peer, and what takes it back.
        if *refused && !matches!(msg, PeerMsg::Placement { .. }) {
            self.stats.skew_refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some(f) = &self.faults {
            if f.incoming(&peer.name) != Verdict::Pass {
                self.stats.faulted.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        self.stats.by_kind.received(&msg);
        handler.on_message(peer, msg);
    }
}
