use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::{by_hand, decode, encode};
use crate::clock::Timestamp;
use crate::message::{ApplyReq, ApplyResult, PeerMsg, PutResult};
use crate::store::{Entry, Version};
use crate::values::{Check, Kind};

fn v(ts: u64, node: u64) -> Version {
    Version {
        ts: Timestamp(ts),
        node,
    }
}

fn serde_body(msg: &PeerMsg) -> Vec<u8> {
    crate::encoding::to_vec(msg).unwrap()
}

fn serde_decode(b: &[u8]) -> Option<PeerMsg> {
    crate::encoding::from_slice::<PeerMsg>(b).ok()
}

fn hand_body(msg: &PeerMsg) -> Option<Vec<u8>> {
    let mut b = BytesMut::new();
    let written = encode(msg, &mut b);
    assert_eq!(written.is_ok(), by_hand(msg));
    written.ok().map(|()| b.to_vec())
}

fn apply(id: u64, key: &[u8], entry: Entry, kind: Kind, names: &[&[u8]]) -> PeerMsg {
    PeerMsg::Apply(Box::new(ApplyReq {
        id,
        key: Bytes::copy_from_slice(key),
        entry,
        check: Check {
            kind,
            names: names.iter().map(|n| Bytes::copy_from_slice(n)).collect(),
        },
    }))
}

/// Two typed writes in one frame: a hash's and a set's.
fn applies() -> PeerMsg {
    let req = |msg: PeerMsg| match msg {
        PeerMsg::Apply(req) => *req,
        _ => unreachable!(),
    };
    let hash = Entry::hash_set(v(9, 2), &[("f".into(), "v".into())]);
    let set = Entry::set_members(v(10, 2), &["m".into()], true);
    PeerMsg::Applies {
        items: vec![
            req(apply(7, b"h", hash, Kind::Hash, &[b"f"])),
            req(apply(8, b"s", set, Kind::Set, &[b"m"])),
        ],
    }
}

/// HGET's answers from one replica: a part holding one field, and none.
fn read_replies() -> PeerMsg {
    let rich = Entry::hash_set(v(9, 2), &[("f".into(), "v".into())]).to_rich();
    let part = crate::values::Part {
        version: v(9, 2),
        digest: 7,
        rich,
        hash_newest: v(9, 2),
        set_newest: v(0, 0),
        fields: 1,
        members: 0,
    };
    PeerMsg::ReadReplies {
        replies: vec![(1, Some(Box::new(part))), (2, None)],
    }
}

#[test]
fn other_messages_are_left_to_serde() {
    let ack = PeerMsg::ApplyAck {
        id: 3,
        result: ApplyResult::WrongType,
    };
    let refused = PeerMsg::PutAck {
        id: 4,
        result: PutResult::Refused("clock".into()),
    };
    let keys = PeerMsg::Keys {
        id: 5,
        pattern: "*".into(),
    };
    for msg in [ack, refused, keys] {
        assert_eq!(hand_body(&msg), None);
        assert_eq!(decode(&Bytes::from(serde_body(&msg))).unwrap(), None);
    }
}

#[test]
fn every_cut_of_a_frame_is_an_error() {
    let msgs = [
        apply(
            7,
            b"h",
            Entry::hash_set(v(9, 2), &[("f".into(), "v".into())]),
            Kind::Hash,
            &[b"f"],
        ),
        PeerMsg::ApplyAck {
            id: 3,
            result: ApplyResult::Done {
                was_live: true,
                present: smallvec::smallvec![true, false],
            },
        },
        applies(),
        PeerMsg::ApplyAcks {
            acks: vec![
                (3, true, smallvec::smallvec![true, false]),
                (4, false, smallvec::smallvec![]),
            ],
        },
        read_replies(),
        PeerMsg::Read {
            id: 5,
            key: "h".into(),
            want: crate::values::Want::Fields(vec!["f".into()]),
        },
        PeerMsg::Puts {
            items: vec![
                (1, "a".into(), Entry::string(v(5, 1), "x".into())),
                (2, "b".into(), Entry::tombstone(v(6, 1))),
            ],
        },
        PeerMsg::PutAcks {
            acks: vec![(1, true), (2, false)],
        },
        PeerMsg::GetReplies {
            replies: vec![(1, Some(Entry::string(v(5, 1), "x".into()))), (2, None)],
        },
        PeerMsg::IncrCarry {
            id: 8,
            key: "c".into(),
            field: Some("f".into()),
            by: -4,
            w: 2,
            strict: false,
        },
        PeerMsg::IncrCarried {
            id: 8,
            value: 12,
            delta: Entry::hash_set(v(9, 2), &[("f".into(), "12".into())]),
        },
    ];
    for msg in msgs {
        let body = hand_body(&msg).unwrap();
        for cut in 4..body.len() {
            let cut_body = Bytes::copy_from_slice(&body[..cut]);
            assert!(decode(&cut_body).is_err(), "{} cut at {cut}", msg.kind());
        }
        let mut long = body.clone();
        long.push(0);
        assert!(decode(&Bytes::from(long)).is_err(), "{}", msg.kind());
    }
}

/// Every byte of a few frames in turn set to values that are no bool or
/// option tag (which random damage rarely hits where a tag is): read as
/// serde reads it, or left to it.
#[test]
fn each_byte_damaged_reads_as_serde() {
    let msgs = [
        PeerMsg::ApplyAck {
            id: 3,
            result: ApplyResult::Done {
                was_live: true,
                present: smallvec::smallvec![true, false],
            },
        },
        PeerMsg::GetReplies {
            replies: vec![(1, Some(Entry::string(v(5, 1), "x".into()))), (2, None)],
        },
        PeerMsg::PutAcks {
            acks: vec![(1, true), (2, false)],
        },
        PeerMsg::ApplyAcks {
            acks: vec![
                (3, true, smallvec::smallvec![true, false]),
                (4, false, smallvec::smallvec![false]),
            ],
        },
        applies(),
        read_replies(),
        apply(
            7,
            b"s",
            Entry::set_members(v(9, 2), &["m".into()], true),
            Kind::Set,
            &[b"m"],
        ),
    ];
    for msg in msgs {
        let b = serde_body(&msg);
        for i in 0..b.len() {
            for byte in [2, 0xff] {
                let mut d = b.clone();
                d[i] = byte;
                match decode(&Bytes::copy_from_slice(&d)) {
                    Ok(None) => {}
                    Ok(Some(hand)) => assert_eq!(Some(hand), serde_decode(&d), "{i} = {byte}"),
                    Err(_) => assert_eq!(serde_decode(&d), None, "{i} = {byte}"),
                }
            }
        }
    }
}

#[test]
fn a_huge_count_is_refused_before_allocating() {
    let puts = PeerMsg::Puts {
        items: vec![(1, "a".into(), Entry::tombstone(v(6, 1)))],
    };
    let acks = PeerMsg::ApplyAcks {
        acks: vec![(1, true, smallvec::smallvec![true])],
    };
    for msg in [puts, applies(), acks, read_replies()] {
        let mut body = hand_body(&msg).unwrap();
        body[4..12].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = decode(&Bytes::from(body)).unwrap_err().to_string();
        assert!(err.contains("cannot fit"), "{}: {err}", msg.kind());
    }
}

#[test]
fn a_decoded_delta_keeps_the_bytes_it_came_in() {
    let msg = apply(
        7,
        b"s",
        Entry::set_members(v(9, 2), &["m".into()], true),
        Kind::Set,
        &[b"m"],
    );
    let body = Bytes::from(hand_body(&msg).unwrap());
    let Some(PeerMsg::Apply(req)) = decode(&body).unwrap() else {
        panic!("not decoded")
    };
    let kept = req.entry.rich_bytes().unwrap().unwrap();
    let PeerMsg::Apply(sent) = &msg else {
        unreachable!()
    };
    assert_eq!(kept, sent.entry.rich_bytes().unwrap().unwrap());
    // Shared with the frame, not copied.
    assert!(body.as_ptr_range().contains(&kept.as_ptr()));
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(ts, n)| Entry::tombstone(v(ts, n))),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..8)
        )
            .prop_map(|(ts, n, b)| Entry::string(v(ts, n), b.into())),
        crate::values::tests::rich().prop_map(Entry::rich),
    ]
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..6)
}

/// A random typed write.
fn apply_req() -> impl Strategy<Value = ApplyReq> {
    let kind = prop_oneof![Just(Kind::String), Just(Kind::Hash), Just(Kind::Set)];
    (
        any::<u64>(),
        name(),
        entry(),
        kind,
        proptest::collection::vec(name(), 0..4),
    )
        .prop_map(|(id, key, entry, kind, names)| ApplyReq {
            id,
            key: key.into(),
            entry,
            check: Check {
                kind,
                names: names.into_iter().map(Bytes::from).collect(),
            },
        })
}

/// A random `Done` answer: (id, was live, present).
fn done() -> impl Strategy<Value = (u64, bool, crate::values::Present)> {
    (
        any::<u64>(),
        any::<bool>(),
        proptest::collection::vec(any::<bool>(), 0..6).prop_map(Into::into),
    )
}

/// A random part of a key, as a replica answers a read.
fn part() -> impl Strategy<Value = Option<Box<crate::values::Part>>> {
    let version = || (any::<u64>(), any::<u64>()).prop_map(|(ts, n)| v(ts, n));
    proptest::option::of(
        (
            version(),
            any::<u64>(),
            crate::values::tests::rich(),
            version(),
            version(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(
                |(version, digest, rich, hash_newest, set_newest, fields, members)| {
                    Box::new(crate::values::Part {
                        version,
                        digest,
                        rich,
                        hash_newest,
                        set_newest,
                        fields,
                        members,
                    })
                },
            ),
    )
}

/// What a read of part of a key asks for.
fn want() -> impl Strategy<Value = crate::values::Want> {
    use crate::values::Want;
    let names = || proptest::collection::vec(name().prop_map(Bytes::from), 0..4);
    prop_oneof![
        Just(Want::Head),
        names().prop_map(Want::Fields),
        names().prop_map(Want::Members),
    ]
}

fn message() -> impl Strategy<Value = PeerMsg> {
    prop_oneof![
        (any::<u64>(), name(), want()).prop_map(|(id, key, want)| PeerMsg::Read {
            id,
            key: key.into(),
            want,
        }),
        (any::<u64>(), part()).prop_map(|(id, part)| PeerMsg::ReadReply { id, part }),
        proptest::collection::vec((any::<u64>(), part()), 0..4)
            .prop_map(|replies| PeerMsg::ReadReplies { replies }),
        apply_req().prop_map(|req| PeerMsg::Apply(Box::new(req))),
        proptest::collection::vec(apply_req(), 0..4).prop_map(|items| PeerMsg::Applies { items }),
        done().prop_map(|(id, was_live, present)| PeerMsg::ApplyAck {
            id,
            result: ApplyResult::Done { was_live, present },
        }),
        proptest::collection::vec(done(), 0..4).prop_map(|acks| PeerMsg::ApplyAcks { acks }),
        (any::<u64>(), name(), entry()).prop_map(|(id, key, entry)| PeerMsg::Put {
            id,
            key: key.into(),
            entry,
        }),
        proptest::collection::vec((any::<u64>(), name(), entry()), 0..4).prop_map(|items| {
            PeerMsg::Puts {
                items: items
                    .into_iter()
                    .map(|(i, k, e)| (i, k.into(), e))
                    .collect(),
            }
        }),
        (any::<u64>(), any::<bool>()).prop_map(|(id, was_live)| PeerMsg::PutAck {
            id,
            result: PutResult::Ok { was_live },
        }),
        proptest::collection::vec((any::<u64>(), any::<bool>()), 0..5)
            .prop_map(|acks| PeerMsg::PutAcks { acks }),
        (any::<u64>(), name()).prop_map(|(id, key)| PeerMsg::Get {
            id,
            key: key.into()
        }),
        (any::<u64>(), proptest::option::of(entry()))
            .prop_map(|(id, entry)| PeerMsg::GetReply { id, entry }),
        proptest::collection::vec((any::<u64>(), proptest::option::of(entry())), 0..4)
            .prop_map(|replies| PeerMsg::GetReplies { replies }),
        (
            any::<u64>(),
            name(),
            proptest::option::of(name()),
            any::<i64>(),
            any::<u32>(),
            any::<bool>()
        )
            .prop_map(|(id, key, field, by, w, strict)| PeerMsg::IncrCarry {
                id,
                key: key.into(),
                field: field.map(Bytes::from),
                by,
                w,
                strict,
            }),
        (any::<u64>(), any::<i64>(), entry()).prop_map(|(id, value, delta)| PeerMsg::IncrCarried {
            id,
            value,
            delta
        }),
    ]
}

proptest! {
    #[test]
    fn frames_are_serdes_bytes_both_ways(msg in message()) {
        let serde = serde_body(&msg);
        let hand = hand_body(&msg).unwrap();
        prop_assert_eq!(&hand, &serde);
        let back = decode(&Bytes::from(hand)).unwrap();
        prop_assert_eq!(back.as_ref(), Some(&msg));
    }

    /// Damaged frames: refused wherever serde refuses them, and read as
    /// serde reads them otherwise (or left to serde).
    #[test]
    fn damaged_frames_as_serde(
        msg in message(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = serde_body(&msg);
        let i = at.index(b.len());
        b[i] = byte;
        let b = &b[..cut.index(b.len() + 1)];
        match decode(&Bytes::copy_from_slice(b)) {
            Ok(None) => {}
            Ok(Some(hand)) => prop_assert_eq!(Some(hand), serde_decode(b)),
            Err(_) => prop_assert_eq!(serde_decode(b), None),
        }
    }
}
