//! The peer handshake every TCP connection opens with, both sides of it.
//!
//! It lives apart from the links and the accept loop in [`super::tcp`]
//! because it is the security boundary: what must be true before any
//! `PeerMsg` is read or written is all in this one file.
//!
//! The exchange (all within [`HANDSHAKE_TIMEOUT`], frames of at most 64 KiB):
//! `Hello` ->, <- `Challenge(nonce)`, `HelloProof(nonce, proof)` ->,
//! <- `Accept(proof)` or `Reject(reason)`. Each side proves the cluster
//! secret over the other's fresh nonce (see [`crate::auth`]); the acceptor
//! reads no `PeerMsg` before the connector's proof checks out, and the
//! connector sends none before the acceptor's does. Heartbeats only travel
//! over such connections, so a peer with a wrong or missing secret never
//! appears up on either side. Every refusal (bad magic, wrong version,
//! wrong secret, garbage, silence) is counted and logged, a few lines per
//! ten seconds.
//!
//! Deliberately left out: TLS (peers authenticate with the cluster secret;
//! the traffic itself is not encrypted).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};
use tracing::{debug, warn};

use super::tcp::Inner;
use super::Peer;
use crate::auth::{Role, Transcript};
use crate::encoding::FrameCodec;
use crate::error::{Error, Result};
use crate::message::{Hello, HelloProof, HelloReply, MAGIC, PROTOCOL_VERSION};

const HANDSHAKE_FRAME: usize = 64 * 1024;
/// How long either side may take over the whole exchange.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How the error of a refusal this side decided on begins (it was counted
/// and logged when it was decided).
pub(super) const REFUSED: &str = "refused: ";

impl Inner {
    /// The acceptor's half of the handshake: check the hello, challenge,
    /// check the connector's proof, then prove ourselves. `Ok(None)` if the
    /// other side closed before saying anything. A refusal has already been
    /// sent and logged when this returns `Err`.
    pub(super) async fn accept_handshake(
        &self,
        stream: &mut TcpStream,
        buf: &mut BytesMut,
        addr: SocketAddr,
    ) -> Result<Option<Peer>> {
        let Some(hello) = recv_frame::<Hello>(stream, buf).await? else {
            return Ok(None);
        };
        if let Err(reason) = self.check_hello(&hello) {
            return Err(self.reject(stream, addr, &hello.name, reason).await);
        }
        let key = &self.cfg.key;
        let acceptor_nonce = crate::auth::nonce();
        let challenge = HelloReply::Challenge {
            nonce: acceptor_nonce,
            secured: key.is_set(),
        };
        send_frame(stream, &challenge).await?;
        let Some(answer) = recv_frame::<HelloProof>(stream, buf).await? else {
            return Err(Error::Protocol("closed during the handshake".into()));
        };
        let me = &self.cfg.hello;
        let t = Transcript {
            hello: &hello,
            acceptor_nonce: &acceptor_nonce,
            connector_nonce: &answer.nonce,
            acceptor: (&me.name, me.generation),
        };
        if !key.verify(Role::Connector, &t, &answer.proof) {
            let reason = key.mismatch_reason(answer.secured).to_string();
            return Err(self.reject(stream, addr, &hello.name, reason).await);
        }
        let accept = HelloReply::Accept {
            name: me.name.clone(),
            generation: me.generation,
            proof: key.prove(Role::Acceptor, &t),
        };
        send_frame(stream, &accept).await?;
        Ok(Some(Peer {
            name: hello.name.into(),
            generation: hello.generation,
            reply_to: hello.reply_to.into(),
        }))
    }

    /// Tells the peer why it is refused, logs it, and returns the error.
    async fn reject(
        &self,
        stream: &mut TcpStream,
        addr: SocketAddr,
        name: &str,
        reason: String,
    ) -> Error {
        self.refused(addr, name, &reason);
        let reply = HelloReply::Reject {
            reason: reason.clone(),
        };
        // The refusal is a courtesy: the connection closes either way.
        if let Err(e) = send_frame(stream, &reply).await {
            debug!(%addr, error = %e, "could not send the refusal");
        }
        Error::Protocol(format!("{REFUSED}{reason}"))
    }

    /// Counts a refused handshake and logs it, a few lines per window and
    /// peer name.
    pub(super) fn refused(&self, addr: impl std::fmt::Display, name: &str, reason: &str) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        if let Some(held_back) = self.refusals.check(name, Instant::now()) {
            warn!(%addr, peer = name, %reason, held_back, "refused a peer handshake");
        }
    }

    fn check_hello(&self, hello: &Hello) -> std::result::Result<(), String> {
        if hello.magic != MAGIC {
            return Err("not a ringkv peer (bad magic)".into());
        }
        if hello.version != PROTOCOL_VERSION {
            return Err(format!(
                "protocol version {} not supported (this node speaks {PROTOCOL_VERSION})",
                hello.version
            ));
        }
        Ok(())
    }

    /// The connector's half of the handshake; the acceptor's name on success.
    pub(super) async fn connect_handshake(
        &self,
        stream: &mut TcpStream,
        addr: &str,
    ) -> Result<String> {
        let hello = &self.cfg.hello;
        let key = &self.cfg.key;
        let mut buf = BytesMut::new();
        send_frame(stream, hello).await?;
        let acceptor_nonce = match self.reply(stream, &mut buf, addr).await? {
            HelloReply::Challenge { nonce, .. } => nonce,
            other => return Err(unexpected(addr, &other)),
        };
        let connector_nonce = crate::auth::nonce();
        let mut t = Transcript {
            hello,
            acceptor_nonce: &acceptor_nonce,
            connector_nonce: &connector_nonce,
            acceptor: ("", 0),
        };
        let answer = HelloProof {
            nonce: connector_nonce,
            secured: key.is_set(),
            proof: key.prove(Role::Connector, &t),
        };
        send_frame(stream, &answer).await?;
        match self.reply(stream, &mut buf, addr).await? {
            HelloReply::Accept {
                name,
                generation,
                proof,
            } => {
                t.acceptor = (&name, generation);
                if !key.verify(Role::Acceptor, &t, &proof) {
                    let reason = "peer failed to prove the cluster secret";
                    self.refused(addr, &name, reason);
                    return Err(Error::Protocol(format!("{addr}: {reason}")));
                }
                Ok(name)
            }
            other => Err(unexpected(addr, &other)),
        }
    }

    /// Reads one handshake reply; a refusal is logged and becomes an error.
    async fn reply(
        &self,
        stream: &mut TcpStream,
        buf: &mut BytesMut,
        addr: &str,
    ) -> Result<HelloReply> {
        match recv_frame::<HelloReply>(stream, buf).await? {
            Some(HelloReply::Reject { reason }) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                if let Some(held_back) = self.refusals.check(addr, Instant::now()) {
                    warn!(%addr, %reason, held_back, "peer refused our handshake");
                }
                Err(Error::Protocol(format!(
                    "{addr} refused the handshake: {reason}"
                )))
            }
            Some(reply) => Ok(reply),
            None => Err(Error::Protocol(format!(
                "{addr} closed during the handshake"
            ))),
        }
    }
}

fn unexpected(addr: &str, reply: &HelloReply) -> Error {
    let what = match reply {
        HelloReply::Accept { .. } => "an accept before our proof",
        HelloReply::Reject { .. } => "a refusal",
        HelloReply::Challenge { .. } | HelloReply::Negotiated { .. } => "a second challenge",
    };
    Error::Protocol(format!("{addr} sent {what} during the handshake"))
}

/// Writes one handshake frame.
async fn send_frame<T: serde::Serialize + crate::encoding::Wire>(
    stream: &mut TcpStream,
    msg: &T,
) -> Result<()> {
    let mut out = BytesMut::new();
    FrameCodec::<T>::new(HANDSHAKE_FRAME).encode(msg, &mut out)?;
    stream.write_all(&out).await?;
    Ok(())
}

/// Reads one handshake frame (at most [`HANDSHAKE_FRAME`] bytes), keeping
/// whatever arrives after it in `buf`. `None` on a clean close before it.
async fn recv_frame<T: serde::de::DeserializeOwned + crate::encoding::Wire>(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<Option<T>> {
    let mut codec = FrameCodec::<T>::new(HANDSHAKE_FRAME);
    loop {
        if let Some(msg) = codec.decode(buf)? {
            return Ok(Some(msg));
        }
        if stream.read_buf(buf).await? == 0 {
            return match buf.is_empty() {
                true => Ok(None),
                false => Err(Error::Protocol("truncated handshake frame".into())),
            };
        }
    }
}
