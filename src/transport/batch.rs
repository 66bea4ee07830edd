//! One socket write being assembled by a peer link.
//!
//! A link drains its queue into a [`Batch`] and writes it with one system
//! call. The small messages of the hot path are not encoded one by one:
//! replica writes, successful write acknowledgements and read replies are
//! held back and coalesced into one `Puts`, `PutAcks` and `GetReplies`,
//! encoded before the next message of another kind or at the end of the
//! batch, so a burst of requests costs one frame header and one dispatch on
//! the other side instead of one each. The batch lives as long as its link:
//! the buffer and the held-back vectors keep their capacity from one write
//! to the next.

use bytes::BytesMut;
use tracing::warn;

use crate::encoding::FrameCodec;
use crate::message::{PeerMsg, PutResult};
use crate::metrics::PeerCounters;
use crate::store::Entry;

/// One socket write being assembled by a link.
pub(super) struct Batch {
    codec: FrameCodec<PeerMsg>,
    /// The bytes of the write being assembled.
    pub(super) buf: BytesMut,
    /// Successful acknowledgements held back to be coalesced.
    acks: Vec<(u64, bool)>,
    /// Read replies held back to be coalesced.
    replies: Vec<(u64, Option<Entry>)>,
    /// Replica writes held back to be coalesced.
    puts: Vec<(u64, bytes::Bytes, Entry)>,
    /// Messages encoded since the count was last reset.
    pub(super) count: u64,
}

impl Batch {
    pub(super) fn new(codec: FrameCodec<PeerMsg>) -> Self {
        Batch {
            codec,
            buf: BytesMut::with_capacity(64 * 1024),
            acks: Vec::new(),
            replies: Vec::new(),
            puts: Vec::new(),
            count: 0,
        }
    }

    /// Holds `msg` back if it is of a coalesced kind; otherwise encodes
    /// what is held back, then `msg`.
    pub(super) fn add(&mut self, msg: PeerMsg, stats: &PeerCounters, peer: &str) {
        match msg {
            PeerMsg::PutAck {
                id,
                result: PutResult::Ok { was_live },
            } => self.acks.push((id, was_live)),
            PeerMsg::GetReply { id, entry } => self.replies.push((id, entry)),
            PeerMsg::Put { id, key, entry } => self.puts.push((id, key, entry)),
            msg => {
                self.flush_held(stats, peer);
                self.encode(&msg, stats, peer);
            }
        }
    }

    /// Encodes the messages held back, each kind as one message, and keeps
    /// the emptied vectors for the next batch.
    pub(super) fn flush_held(&mut self, stats: &PeerCounters, peer: &str) {
        let replies = coalesce(
            &mut self.replies,
            |(id, entry)| PeerMsg::GetReply { id, entry },
            |replies| PeerMsg::GetReplies { replies },
        );
        let puts = coalesce(
            &mut self.puts,
            |(id, key, entry)| PeerMsg::Put { id, key, entry },
            |items| PeerMsg::Puts { items },
        );
        let acks = coalesce(
            &mut self.acks,
            |(id, was_live)| PeerMsg::PutAck {
                id,
                result: PutResult::Ok { was_live },
            },
            |acks| PeerMsg::PutAcks { acks },
        );
        for msg in [replies, puts, acks].into_iter().flatten() {
            self.encode(&msg, stats, peer);
            match msg {
                PeerMsg::GetReplies { replies } => self.replies = emptied(replies),
                PeerMsg::Puts { items } => self.puts = emptied(items),
                PeerMsg::PutAcks { acks } => self.acks = emptied(acks),
                _ => {}
            }
        }
    }

    fn encode(&mut self, msg: &PeerMsg, stats: &PeerCounters, peer: &str) {
        let before = self.buf.len();
        match self.codec.encode_sized(msg, body_hint(msg), &mut self.buf) {
            Ok(()) => {
                stats.sent(msg, self.buf.len() - before);
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
    let entry = |e: &crate::store::Entry| e.value.as_ref().map_or(0, |v| v.len()) + 24;
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
