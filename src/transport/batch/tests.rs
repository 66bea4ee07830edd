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
                names: [b(b"f")].into(),
            },
        })),
        PeerMsg::ApplyAck {
            id: 18,
            result: crate::message::ApplyResult::Done {
                was_live: true,
                present: smallvec::smallvec![false],
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
        PeerMsg::Applies {
            items: vec![typed(25, b"h"), typed(26, b"i")],
        },
        PeerMsg::ApplyAcks {
            acks: vec![
                (25, true, smallvec::smallvec![false]),
                (26, false, smallvec::smallvec![true]),
            ],
        },
        PeerMsg::ReadReplies {
            replies: vec![(27, None), (28, None)],
        },
        PeerMsg::AeSections {
            id: 29,
            key: Bytes::from_static(b"k"),
            digests: vec![0; 257],
        },
        PeerMsg::AeSectionsReply {
            id: 29,
            push: None,
            want: vec![3, 256],
        },
        PeerMsg::IncrCarry {
            id: 30,
            key: b(b"c"),
            field: Some(b(b"f")),
            by: 5,
            w: 2,
            strict: true,
        },
        PeerMsg::IncrCarried {
            id: 30,
            value: 12,
            delta: Entry::string(version, b(b"12")),
        },
    ]
}

/// An HSET's typed write of field `f` to `key`.
fn typed(id: u64, key: &'static [u8]) -> crate::message::ApplyReq {
    let version = Version {
        ts: Timestamp::from_micros(id),
        node: 2,
    };
    let f = Bytes::from_static(b"f");
    crate::message::ApplyReq {
        id,
        key: Bytes::from_static(key),
        entry: Entry::hash_set(version, &[(f.clone(), Bytes::from_static(b"v"))]),
        check: crate::values::Check {
            kind: crate::values::Kind::Hash,
            names: [f].into(),
        },
    }
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

/// The messages of one batch that got `msgs` on a link of `version`.
fn batched(msgs: Vec<PeerMsg>, version: u32) -> Vec<PeerMsg> {
    let stats = NetStats::default();
    let mut batch = Batch::new(1 << 20, version);
    for msg in msgs {
        batch.add(msg, &stats, "peer");
    }
    batch.flush_held(&stats, "peer");
    let mut codec = super::super::counters::PeerDecoder::new(version, 1 << 20);
    let mut out = Vec::new();
    while let Some(m) = codec.decode(&mut batch.buf).unwrap() {
        out.push(m);
    }
    out
}

/// From protocol 11 on, typed writes, their answers and the answers to
/// reads of part of a key travel coalesced; on an older link each goes
/// alone, as before.
#[test]
fn typed_writes_and_their_answers_are_coalesced_from_protocol_11() {
    let done = |id, was_live| PeerMsg::ApplyAck {
        id,
        result: crate::message::ApplyResult::Done {
            was_live,
            present: smallvec::smallvec![!was_live],
        },
    };
    let apply = |id, key| PeerMsg::Apply(Box::new(typed(id, key)));
    let part = |id| PeerMsg::ReadReply { id, part: None };
    let sent = vec![
        apply(1, b"a"),
        done(7, true),
        part(9),
        apply(2, b"b"),
        done(8, false),
        part(10),
    ];
    assert_eq!(
        batched(sent.clone(), crate::message::APPLIES_SINCE),
        [
            PeerMsg::ApplyAcks {
                acks: vec![
                    (7, true, smallvec::smallvec![false]),
                    (8, false, smallvec::smallvec![true])
                ],
            },
            PeerMsg::ReadReplies {
                replies: vec![(9, None), (10, None)],
            },
            PeerMsg::Applies {
                items: vec![typed(1, b"a"), typed(2, b"b")],
            },
        ]
    );
    let older = batched(sent, crate::message::APPLIES_SINCE - 1);
    let kinds: Vec<_> = older.iter().map(PeerMsg::kind).collect();
    assert_eq!(
        kinds,
        [
            "apply",
            "apply_ack",
            "read_reply",
            "apply",
            "apply_ack",
            "read_reply"
        ]
    );
}

/// A replica sees replica writes and typed writes in the order they
/// were sent (a SET then an HSET of one key must not arrive swapped),
/// each run of one kind still coalesced.
#[test]
fn replica_writes_and_typed_writes_keep_their_order() {
    let b = Bytes::from_static;
    let version = Version {
        ts: Timestamp::from_micros(1),
        node: 2,
    };
    let put = |id| PeerMsg::Put {
        id,
        key: b(b"k"),
        entry: Entry::string(version, b(b"v")),
    };
    let apply = |id| PeerMsg::Apply(Box::new(typed(id, b"k")));
    let sent = vec![put(1), put(2), apply(3), apply(4), put(5), apply(6)];
    let got = batched(sent, crate::message::APPLIES_SINCE);
    let ids: Vec<Vec<u64>> = got
        .iter()
        .map(|m| match m {
            PeerMsg::Put { id, .. } => vec![*id],
            PeerMsg::Puts { items } => items.iter().map(|i| i.0).collect(),
            PeerMsg::Apply(req) => vec![req.id],
            PeerMsg::Applies { items } => items.iter().map(|i| i.id).collect(),
            m => panic!("unexpected {}", m.kind()),
        })
        .collect();
    assert_eq!(ids, [vec![1, 2], vec![3, 4], vec![5], vec![6]]);
    let kinds: Vec<_> = got.iter().map(PeerMsg::kind).collect();
    assert_eq!(kinds, ["puts", "applies", "put", "apply"]);
}
