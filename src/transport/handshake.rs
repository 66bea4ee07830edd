//! The peer handshake every TCP connection opens with, both sides of it.
//!
//! It lives apart from the links and the accept loop in [`super::tcp`]
//! because it is the security boundary: what must be true before any
//! `PeerMsg` is read or written is all in this one file.
//!
//! The exchange (all within [`HANDSHAKE_TIMEOUT`], frames of at most 64 KiB):
//! `Hello(version offered)` ->, <- `Negotiated(version, nonce)` (or, when
//! the version settled on is 5, the `Challenge(nonce)` a version 5 node
//! expects), `HelloProof(nonce, proof)` ->, <- `Accept(proof)` or
//! `Reject(reason)`. Which version the connection speaks is decided by the
//! pure functions of [`super::negotiate`]: the newest both sides speak.
//! Each side proves the cluster secret over the other's fresh nonce (see
//! [`crate::auth`]; the proofs cover the hello, so its offered version
//! too); the acceptor reads no `PeerMsg` before the connector's proof
//! checks out, and the connector sends none before the acceptor's does.
//! Heartbeats only travel over such connections, so a peer with a wrong or
//! missing secret never appears up on either side.
//!
//! A version 5 acceptor refuses a newer offer outright, naming its version:
//! the connector then reports [`Connected::Retry`] and the link connects
//! once more offering 5, which is logged at debug, not counted as a
//! refusal (the old node counts and logs its own). Every other refusal
//! (bad magic, no version in common, wrong secret, garbage, silence) is
//! counted and logged, a few lines per ten seconds.
//!
//! Deliberately left out: TLS (peers authenticate with the cluster secret;
//! the traffic itself is not encrypted), and binding the settled version
//! into the proofs (a version 5 node could not check it; the hello's offer
//! is covered, and the traffic after the handshake is not authenticated
//! anyway).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::stream::PeerStream;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};
use tracing::{debug, warn};

use super::negotiate::{self, LEGACY_VERSION};
use super::tcp::Inner;
use super::Peer;
use crate::auth::{Role, Transcript};
use crate::encoding::FrameCodec;
use crate::error::{Error, Result};
use crate::message::{Hello, HelloProof, HelloReply, MAGIC};

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
        stream: &mut PeerStream,
        buf: &mut BytesMut,
        addr: SocketAddr,
    ) -> Result<Option<Peer>> {
        let Some(hello) = recv_frame::<Hello>(stream, buf).await? else {
            return Ok(None);
        };
        let version = match self.check_hello(&hello) {
            Ok(version) => version,
            Err(reason) => return Err(self.reject(stream, addr, &hello.name, reason).await),
        };
        let key = &self.cfg.key;
        let (nonce, secured) = (crate::auth::nonce(), key.is_set());
        // The Challenge is all a version 5 connector can decode, and it
        // needs no version in it: the connection settled on 5 only if 5 is
        // the most the connector offered or the most this node speaks.
        let challenge = if version == LEGACY_VERSION {
            HelloReply::Challenge { nonce, secured }
        } else {
            HelloReply::Negotiated {
                version,
                nonce,
                secured,
            }
        };
        send_frame(stream, &challenge).await?;
        let Some(answer) = recv_frame::<HelloProof>(stream, buf).await? else {
            return Err(Error::Protocol("closed during the handshake".into()));
        };
        let me = &self.cfg.hello;
        let t = Transcript {
            hello: &hello,
            acceptor_nonce: &nonce,
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
            version,
        }))
    }

    /// Tells the peer why it is refused, logs it, and returns the error.
    async fn reject(
        &self,
        stream: &mut PeerStream,
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

    /// The version the connection will speak, or why the hello is refused.
    fn check_hello(&self, hello: &Hello) -> std::result::Result<u32, String> {
        if hello.magic != MAGIC {
            return Err("not a ringkv peer (bad magic)".into());
        }
        negotiate::accept(self.cfg.versions, hello.version)
    }

    /// The connector's half of the handshake, offering protocol versions up
    /// to `offer`: the acceptor's name and the version settled on, or the
    /// version to offer on a fresh connection when the acceptor is an older
    /// node that refused the offer (see [`negotiate::retry_with`]).
    pub(super) async fn connect_handshake(
        &self,
        stream: &mut PeerStream,
        addr: &str,
        offer: u32,
    ) -> Result<Connected> {
        let hello = &Hello {
            version: offer,
            ..self.cfg.hello.clone()
        };
        let key = &self.cfg.key;
        let mut buf = BytesMut::new();
        send_frame(stream, hello).await?;
        let (acceptor_nonce, chosen) = match recv_frame(stream, &mut buf).await? {
            Some(HelloReply::Challenge { nonce, .. }) => (nonce, LEGACY_VERSION),
            Some(HelloReply::Negotiated { version, nonce, .. }) => (nonce, version),
            Some(HelloReply::Reject { reason }) => {
                if let Some(older) = negotiate::retry_with(self.cfg.versions, offer, &reason) {
                    debug!(%addr, offered = offer, retry = older, %reason, "peer speaks an older protocol; reconnecting");
                    return Ok(Connected::Retry(older));
                }
                return Err(self.refused_by(addr, &reason));
            }
            Some(other) => return Err(unexpected(addr, &other)),
            None => return Err(closed(addr)),
        };
        let version = negotiate::settle(self.cfg.versions, offer, chosen).map_err(|reason| {
            self.refused(addr, addr, &reason);
            Error::Protocol(format!("{addr}: {reason}"))
        })?;
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
        match recv_frame(stream, &mut buf).await? {
            Some(HelloReply::Accept {
                name,
                generation,
                proof,
            }) => {
                t.acceptor = (&name, generation);
                if !key.verify(Role::Acceptor, &t, &proof) {
                    let reason = "peer failed to prove the cluster secret";
                    self.refused(addr, &name, reason);
                    return Err(Error::Protocol(format!("{addr}: {reason}")));
                }
                Ok(Connected::Linked { name, version })
            }
            Some(HelloReply::Reject { reason }) => Err(self.refused_by(addr, &reason)),
            Some(other) => Err(unexpected(addr, &other)),
            None => Err(closed(addr)),
        }
    }

    /// Counts and logs (rate-limited) a refusal of our handshake by the
    /// peer at `addr`, and returns the error.
    fn refused_by(&self, addr: &str, reason: &str) -> Error {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        if let Some(held_back) = self.refusals.check(addr, Instant::now()) {
            warn!(%addr, %reason, held_back, "peer refused our handshake");
        }
        Error::Protocol(format!("{addr} refused the handshake: {reason}"))
    }
}

/// How the connector's half of the handshake ended, short of an error.
#[derive(Debug)]
pub(super) enum Connected {
    /// Both sides proved the secret: the acceptor's name, and the protocol
    /// version the connection speaks.
    Linked {
        /// The acceptor's name.
        name: String,
        /// The version settled on.
        version: u32,
    },
    /// An older acceptor refused our offer, naming a version we speak
    /// too: connect again offering it.
    Retry(u32),
}

fn closed(addr: &str) -> Error {
    Error::Protocol(format!("{addr} closed during the handshake"))
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
pub(super) async fn send_frame<T: serde::Serialize + crate::encoding::Wire>(
    stream: &mut (impl tokio::io::AsyncWrite + Unpin),
    msg: &T,
) -> Result<()> {
    let mut out = BytesMut::new();
    FrameCodec::<T>::new(HANDSHAKE_FRAME).encode(msg, &mut out)?;
    stream.write_all(&out).await?;
    Ok(())
}

/// Reads one handshake frame (at most [`HANDSHAKE_FRAME`] bytes), keeping
/// whatever arrives after it in `buf`. `None` on a clean close before it.
pub(super) async fn recv_frame<T: serde::de::DeserializeOwned + crate::encoding::Wire>(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
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
