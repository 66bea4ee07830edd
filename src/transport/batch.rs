//! One socket write being assembled by a peer link.
//!
//! A link drains its queue into a [`Batch`] and writes it with one system
//! call. The small messages of the hot path are not encoded one by one:
//! replica writes, successful write acknowledgements and read replies are
//! held back and coalesced into one `Puts`, `PutAcks` and `GetReplies`,
//! encoded before the next message of another kind or at the end of the
//! batch, so a burst of requests costs one frame header and one dispatch on
//! the other side instead of one each. From protocol 11 on, typed writes,
//! their successful answers and the answers to reads of part of a key are
//! held back too, into one `Applies`, `ApplyAcks` and `ReadReplies`. Replica
//! writes and typed writes are the two held kinds that
//! can touch the same key in one direction, and a replica must see them in
//! the order they were sent (its type check of a typed write depends on what
//! came before), so holding one of them first sends what is held of the
//! other. The batch lives as long as its link:
//! the buffer and the held-back vectors keep their capacity from one write
//! to the next.
//!
//! A batch encodes for the protocol version its connection settled on: a
//! message introduced by a newer version ([`PeerMsg::since`]) is handed to
//! [`compat::downgrade`] and sent in the older shape it returns, or, when
//! there is none, not sent, counted (`NetStats::unsupported`) and logged at
//! debug. On the hot path that costs one integer comparison per message.

use std::sync::atomic::Ordering;

use bytes::BytesMut;
use tracing::{debug, warn};

use super::tcp::NetStats;
use crate::encoding::FrameCodec;
use crate::message::v6::{self, PeerMsg6};
use crate::message::{compat, frames, ApplyResult, PeerMsg, PutResult, APPLIES_SINCE};
use crate::store::Entry;

/// One socket write being assembled by a link.
pub(super) struct Batch {
    codec: FrameCodec<PeerMsg>,
    /// The codec of the shapes protocols 5 and 6 used (`message::v6`).
    legacy: FrameCodec<PeerMsg6>,
    /// The protocol version of the link's connection.
    version: u32,
    /// The bytes of the write being assembled.
    pub(super) buf: BytesMut,
    /// Successful acknowledgements held back to be coalesced.
    acks: Vec<(u64, bool)>,
    /// Read replies held back to be coalesced.
    replies: Vec<(u64, Option<Entry>)>,
    /// Replica writes held back to be coalesced.
    puts: Vec<(u64, bytes::Bytes, Entry)>,
    /// Typed writes held back to be coalesced (protocol 11 on).
    applies: Vec<crate::message::ApplyReq>,
    /// Successful typed write answers held back (protocol 11 on).
    apply_acks: Vec<(u64, bool, crate::values::Present)>,
    /// Answers to reads of part of a key held back (protocol 11 on).
    parts: Vec<(u64, Option<Box<crate::values::Part>>)>,
    /// Messages encoded since the count was last reset.
    pub(super) count: u64,
}

impl Batch {
    /// An empty batch for a connection speaking protocol `version`.
    pub(super) fn new(max_frame: usize, version: u32) -> Self {
        Batch {
            codec: FrameCodec::new(max_frame),
            legacy: FrameCodec::new(max_frame),
            version,
            buf: BytesMut::with_capacity(64 * 1024),
            acks: Vec::new(),
            replies: Vec::new(),
            puts: Vec::new(),
            applies: Vec::new(),
            apply_acks: Vec::new(),
            parts: Vec::new(),
            count: 0,
        }
    }

    /// The protocol version of the link's connection.
    pub(super) fn version(&self) -> u32 {
        self.version
    }

    /// Holds `msg` back if it is of a coalesced kind; otherwise encodes
    /// what is held back, then `msg`. A message the connection's version
    /// cannot carry goes through [`compat::downgrade`] first.
    pub(super) fn add(&mut self, mut msg: PeerMsg, stats: &NetStats, peer: &str) {
        if msg.since() > self.version {
            match self.downgrade(msg, stats, peer) {
                Some(older) => msg = older,
                None => return,
            }
        }
        match msg {
            PeerMsg::PutAck {
                id,
                result: PutResult::Ok { was_live },
            } => self.acks.push((id, was_live)),
            PeerMsg::GetReply { id, entry } => self.replies.push((id, entry)),
            PeerMsg::Put { id, key, entry } => {
                if !self.applies.is_empty() {
                    self.flush_applies(stats, peer);
                }
                self.puts.push((id, key, entry));
            }
            PeerMsg::Apply(req) if self.version >= APPLIES_SINCE => {
                if !self.puts.is_empty() {
                    self.flush_puts(stats, peer);
                }
                self.applies.push(*req);
            }
            PeerMsg::ApplyAck {
                id,
                result: ApplyResult::Done { was_live, present },
            } if self.version >= APPLIES_SINCE => self.apply_acks.push((id, was_live, present)),
            PeerMsg::ReadReply { id, part } if self.version >= APPLIES_SINCE => {
                self.parts.push((id, part))
            }
            msg => {
                self.flush_held(stats, peer);
                self.encode(&msg, stats, peer);
            }
        }
    }

    /// `msg` in a shape the connection's version carries, or `None` (the
    /// message counted and logged) when there is none.
    #[cold]
    fn downgrade(&self, msg: PeerMsg, stats: &NetStats, peer: &str) -> Option<PeerMsg> {
        let kind = msg.kind();
        let older = compat::downgrade(msg, self.version);
        if older.is_none() {
            stats.unsupported.fetch_add(1, Ordering::Relaxed);
            debug!(
                peer,
                kind,
                version = self.version,
                "message not sent: the peer's protocol version predates it"
            );
        }
        older
    }

    /// Encodes the messages held back, each kind as one message, and keeps
    /// the emptied vectors for the next batch. (`Puts`, `PutAcks` and
    /// `GetReplies` are as old as the oldest version spoken; `Applies`,
    /// `ApplyAcks` and `ReadReplies` are only ever held on a link that
    /// speaks them.) At most one of `puts` and `applies` holds anything:
    /// see [`Batch::add`].
    pub(super) fn flush_held(&mut self, stats: &NetStats, peer: &str) {
        let replies = coalesce(
            &mut self.replies,
            |(id, entry)| PeerMsg::GetReply { id, entry },
            |replies| PeerMsg::GetReplies { replies },
        );
        let acks = coalesce(
            &mut self.acks,
            |(id, was_live)| PeerMsg::PutAck {
                id,
                result: PutResult::Ok { was_live },
            },
            |acks| PeerMsg::PutAcks { acks },
        );
        let apply_acks = coalesce(
            &mut self.apply_acks,
            |(id, was_live, present)| PeerMsg::ApplyAck {
                id,
                result: ApplyResult::Done { was_live, present },
            },
            |acks| PeerMsg::ApplyAcks { acks },
        );
        let parts = coalesce(
            &mut self.parts,
            |(id, part)| PeerMsg::ReadReply { id, part },
            |replies| PeerMsg::ReadReplies { replies },
        );
        for msg in [replies, acks, apply_acks, parts].into_iter().flatten() {
            self.send_held(msg, stats, peer);
        }
        self.flush_puts(stats, peer);
        self.flush_applies(stats, peer);
    }

    /// Encodes the replica writes held back.
    fn flush_puts(&mut self, stats: &NetStats, peer: &str) {
        let puts = coalesce(
            &mut self.puts,
            |(id, key, entry)| PeerMsg::Put { id, key, entry },
            |items| PeerMsg::Puts { items },
        );
        if let Some(msg) = puts {
            self.send_held(msg, stats, peer);
        }
    }

    /// Encodes the typed writes held back.
    fn flush_applies(&mut self, stats: &NetStats, peer: &str) {
        let applies = coalesce(
            &mut self.applies,
            |req| PeerMsg::Apply(Box::new(req)),
            |items| PeerMsg::Applies { items },
        );
        if let Some(msg) = applies {
            self.send_held(msg, stats, peer);
        }
    }

    /// Encodes a message made of held ones, and takes its emptied vector
    /// back for the next batch.
    fn send_held(&mut self, msg: PeerMsg, stats: &NetStats, peer: &str) {
        self.encode(&msg, stats, peer);
        match msg {
            PeerMsg::GetReplies { replies } => self.replies = emptied(replies),
            PeerMsg::Puts { items } => self.puts = emptied(items),
            PeerMsg::PutAcks { acks } => self.acks = emptied(acks),
            PeerMsg::Applies { items } => self.applies = emptied(items),
            PeerMsg::ApplyAcks { acks } => self.apply_acks = emptied(acks),
            PeerMsg::ReadReplies { replies } => self.parts = emptied(replies),
            _ => {}
        }
    }

    fn encode(&mut self, msg: &PeerMsg, stats: &NetStats, peer: &str) {
        let before = self.buf.len();
        let encoded = if self.version >= v6::REPLACED_IN {
            if frames::by_hand(msg) {
                self.codec
                    .encode_with(&mut self.buf, |dst| frames::encode(msg, dst))
            } else {
                self.codec.encode_sized(msg, body_hint(msg), &mut self.buf)
            }
        } else {
            match v6::to_v6(msg.clone()) {
                Some(older) => self.legacy.encode_sized(&older, 0, &mut self.buf),
                None => {
                    stats.unsupported.fetch_add(1, Ordering::Relaxed);
                    debug!(
                        peer,
                        kind = msg.kind(),
                        version = self.version,
                        "message not sent: it holds only values the peer's protocol version cannot"
                    );
                    return;
                }
            }
        };
        match encoded {
            Ok(()) => {
                stats.by_kind.sent(msg, self.buf.len() - before);
                self.count += 1;
            }
            Err(e) => {
                warn!(peer, kind = msg.kind(), error = %e, "message not sent");
            }
        }
    }
}

/// About how many bytes `msg` encodes to, for the coalesced kinds that can
/// be large (the others fit the codec's first small attempt).
fn body_hint(msg: &PeerMsg) -> usize {
    let entry = |e: &crate::store::Entry| e.payload_len() + 8;
    match msg {
        PeerMsg::Puts { items } => {
            items
                .iter()
                .map(|(_, key, e)| key.len() + entry(e) + 16)
                .sum::<usize>()
                + 16
        }
        PeerMsg::GetReplies { replies } => {
            replies
                .iter()
                .map(|(_, e)| e.as_ref().map_or(0, entry) + 12)
                .sum::<usize>()
                + 16
        }
        PeerMsg::PutAcks { acks } => acks.len() * 11 + 16,
        _ => 0,
    }
}

/// `v` cleared, keeping its capacity for the next batch.
fn emptied<T>(mut v: Vec<T>) -> Vec<T> {
    v.clear();
    v
}

/// The messages `held` back as one: none, the single message itself, or
/// the coalesced kind carrying them all. Leaves `held` empty.
fn coalesce<T>(
    held: &mut Vec<T>,
    one: impl FnOnce(T) -> PeerMsg,
    many: impl FnOnce(Vec<T>) -> PeerMsg,
) -> Option<PeerMsg> {
    match held.len() {
        0 => None,
        1 => held.pop().map(one),
        _ => Some(many(std::mem::take(held))),
    }
}

#[cfg(test)]
mod tests;
