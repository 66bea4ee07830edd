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
use crate::message::{compat, frames, PeerMsg, PutResult};
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
            PeerMsg::Put { id, key, entry } => self.puts.push((id, key, entry)),
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
    /// the emptied vectors for the next batch. (The coalesced kinds are as
    /// old as the oldest version spoken, so they need no version check.)
    pub(super) fn flush_held(&mut self, stats: &NetStats, peer: &str) {
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
mod tests {
    use bytes::Bytes;
    use tokio_util::codec::Decoder;

    use super::*;
    use crate::anti_entropy::digest::Ranges;
    use crate::clock::Timestamp;
    use crate::membership::{Heartbeat, MemberInfo};
    use crate::message::{KINDS, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
    use crate::store::Version;

    /// One message of every kind.
    fn one_of_each() -> Vec<PeerMsg> {
        let b = Bytes::from_static;
        let version = Version {
            ts: Timestamp::from_micros(1),
            node: 2,
        };
        let entry = Entry::string(version, b(b"v"));
        let info = MemberInfo {
            name: "n1".into(),
            generation: 1,
            peer: "p".into(),
            client: "c".into(),
            admin: "a".into(),
        };
        let ranges = Ranges(Vec::new());
        vec![
            PeerMsg::Heartbeat(Box::new(Heartbeat {
                from: info,
                members: Vec::new(),
                keys: 3,
            })),
            PeerMsg::Put {
                id: 1,
                key: b(b"k"),
                entry: entry.clone(),
            },
            PeerMsg::PutAck {
                id: 1,
                result: PutResult::Ok { was_live: true },
            },
            PeerMsg::Get {
                id: 2,
                key: b(b"k"),
            },
            PeerMsg::GetReply { id: 2, entry: None },
            PeerMsg::Transfer {
                id: 3,
                items: vec![(b(b"k"), entry.clone())],
            },
            PeerMsg::TransferAck { id: 3 },
            PeerMsg::Keys {
                id: 4,
                pattern: b(b"*"),
            },
            PeerMsg::KeysReply {
                id: 4,
                keys: vec![b(b"k")],
            },
            PeerMsg::AeGroups {
                id: 5,
                ranges: ranges.clone(),
                groups: vec![[1; 8]],
            },
            PeerMsg::AeGroupsReply {
                id: 5,
                leaves: vec![(0, vec![[2; 8]])],
            },
            PeerMsg::AeKeys {
                id: 6,
                ranges,
                leaves: vec![0],
                keys: vec![(b(b"k"), crate::values::Summary { version, body: 0 })],
            },
            PeerMsg::AeKeysReply {
                id: 6,
                push: Vec::new(),
                want: vec![b(b"k")],
            },
            PeerMsg::PutAcks {
                acks: vec![(7, false), (8, true)],
            },
            PeerMsg::GetReplies {
                replies: vec![(9, None), (10, Some(entry.clone()))],
            },
            PeerMsg::Puts {
                items: vec![(11, b(b"a"), entry.clone()), (12, b(b"b"), entry.clone())],
            },
            PeerMsg::PutRmw(Box::new(crate::message::RmwPut {
                id: 13,
                key: b(b"k"),
                entry,
                read: Some(version),
            })),
            PeerMsg::PutRmwAck {
                id: 13,
                was_live: true,
                conflict: true,
            },
            PeerMsg::MetaPush {
                id: 14,
                meta: Box::default(),
            },
            PeerMsg::MetaAck { id: 14 },
            PeerMsg::MetaDigest { digest: 15 },
            PeerMsg::Incr {
                id: 16,
                key: b(b"k"),
                field: Some(b(b"f")),
                by: -3,
                w: 2,
            },
            PeerMsg::IncrReply {
                id: 16,
                result: crate::message::IncrResult::Value(7),
            },
            PeerMsg::Read {
                id: 17,
                key: b(b"k"),
                want: crate::values::Want::Fields(vec![b(b"f")]),
            },
            PeerMsg::ReadReply { id: 17, part: None },
            PeerMsg::Apply(Box::new(crate::message::ApplyReq {
                id: 18,
                key: b(b"k"),
                entry: Entry::hash_set(version, &[(b(b"f"), b(b"v"))]),
                check: crate::values::Check {
                    kind: crate::values::Kind::Hash,
                    names: vec![b(b"f")],
                },
            })),
            PeerMsg::ApplyAck {
                id: 18,
                result: crate::message::ApplyResult::Done {
                    was_live: true,
                    present: vec![false],
                },
            },
            PeerMsg::Clock {
                wall_micros: 19,
                hlc: Timestamp::from_micros(20),
            },
            PeerMsg::WriteFence {
                reason: Some("No space left on device".into()),
            },
            PeerMsg::Placement {
                tokens: 128,
                replication: 3,
                data_id: 9,
            },
            PeerMsg::IncrStrict {
                id: 21,
                key: b(b"c"),
                field: None,
                by: 2,
                w: 2,
            },
            PeerMsg::Offer {
                id: 22,
                keys: vec![(b(b"k"), Entry::string(version, b(b"v")).summary())],
            },
            PeerMsg::OfferReply {
                id: 23,
                want: vec![0],
            },
            PeerMsg::AeRoot {
                id: 24,
                ranges: [3; 8],
                root: [4; 8],
            },
            PeerMsg::AeRootReply {
                id: 24,
                agree: true,
                filling: false,
            },
        ]
    }

    /// What `msg` comes out as on a link of `version`: the messages
    /// decoded from the batch's bytes.
    fn through(msg: &PeerMsg, version: u32, stats: &NetStats) -> Vec<PeerMsg> {
        let mut batch = Batch::new(1 << 20, version);
        batch.add(msg.clone(), stats, "peer");
        batch.flush_held(stats, "peer");
        let mut codec = super::super::counters::PeerDecoder::new(version, 1 << 20);
        let mut out = Vec::new();
        while let Some(m) = codec.decode(&mut batch.buf).unwrap() {
            out.push(m);
        }
        assert_eq!(batch.count, out.len() as u64);
        out
    }

    /// Every kind of message is sent on a link of the version that
    /// introduced it, and on a link one version older is sent as
    /// `compat::downgrade` rewrites it, or counted and not sent when it has
    /// no older form.
    #[test]
    fn a_message_newer_than_the_link_is_counted_not_sent() {
        let all = one_of_each();
        let mut kinds: Vec<_> = all.iter().map(PeerMsg::kind).collect();
        kinds.dedup();
        assert_eq!(kinds, KINDS, "one sample of every kind, in order");
        for msg in &all {
            let since = msg.since();
            assert!((MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&since));
            let stats = NetStats::default();
            assert_eq!(
                through(msg, since, &stats),
                std::slice::from_ref(msg),
                "{}",
                msg.kind()
            );
            assert_eq!(stats.unsupported.load(Ordering::Relaxed), 0);
            let older = through(msg, since - 1, &stats);
            match compat::downgrade(msg.clone(), since - 1) {
                Some(rewritten) => {
                    assert_eq!(older, [rewritten], "{}", msg.kind());
                    assert_eq!(stats.unsupported.load(Ordering::Relaxed), 0);
                }
                None => {
                    assert!(older.is_empty(), "{}", msg.kind());
                    assert_eq!(stats.unsupported.load(Ordering::Relaxed), 1);
                }
            }
        }
    }
}
