//! The message enum's size and wire numbers, pinned.

/// Every message moves through the link queues and inboxes by value; a
/// variant that grows the enum past this makes every hop copy more (box
/// it, as `Heartbeat` is).
#[test]
fn a_message_stays_small() {
    assert!(std::mem::size_of::<super::PeerMsg>() <= 96);
}
/// A variant's number on the wire is its place in the enum, and peers
/// of older versions read those numbers: a variant added anywhere but
/// last renumbers the ones after it (0.3.0's first build did, and its
/// nodes could not talk to 0.2.0's). These numbers never change.
#[test]
fn wire_numbers_never_change() {
    use super::PeerMsg;
    let number = |m: &PeerMsg| {
        let bytes = crate::encoding::to_vec(m).unwrap();
        u32::from_le_bytes(bytes[..4].try_into().unwrap())
    };
    let clock = PeerMsg::Clock {
        wall_micros: 1,
        hlc: crate::clock::Timestamp(1),
    };
    let placement = PeerMsg::Placement {
        tokens: 1,
        replication: 3,
        data_id: 1,
    };
    let root = PeerMsg::AeRoot {
        id: 1,
        ranges: [0; 8],
        root: [0; 8],
    };
    let reply = PeerMsg::AeRootReply {
        id: 1,
        agree: true,
        filling: false,
    };
    let applies = PeerMsg::Applies { items: Vec::new() };
    let apply_acks = PeerMsg::ApplyAcks { acks: Vec::new() };
    let read_replies = PeerMsg::ReadReplies {
        replies: Vec::new(),
    };
    let sections = PeerMsg::AeSections {
        id: 1,
        key: bytes::Bytes::new(),
        digests: Vec::new(),
    };
    let sections_reply = PeerMsg::AeSectionsReply {
        id: 1,
        push: None,
        want: Vec::new(),
    };
    let carry = PeerMsg::IncrCarry {
        id: 1,
        key: bytes::Bytes::new(),
        field: None,
        by: 1,
        w: 2,
        strict: false,
    };
    let carried = PeerMsg::IncrCarried {
        id: 1,
        value: 1,
        delta: crate::store::Entry::string(
            crate::store::Version::default(),
            bytes::Bytes::from_static(b"1"),
        ),
    };
    assert_eq!(
        [
            &clock,
            &placement,
            &root,
            &reply,
            &applies,
            &apply_acks,
            &read_replies,
            &sections,
            &sections_reply,
            &carry,
            &carried
        ]
        .map(number),
        [27, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41]
    );
}
