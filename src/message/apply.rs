//! A typed write's frame ([`PeerMsg::Apply`]), written and read by hand.
//!
//! Every HSET, SADD, HDEL or SREM sends one to each replica, and the
//! delta inside is the same for all of them and for the coordinator's own
//! log record. Through serde the delta was encoded once per replica and
//! once more for the log, and each replica encoded it again for its log
//! after decoding it. Here the frame is put together from the delta's
//! encoding made once ([`Entry::rich_bytes`]), and a replica keeps the
//! bytes the delta came in ([`Entry::rich_from_frame`]) for its log.
//!
//! Its answer, [`PeerMsg::ApplyAck`], comes back one frame per write, and
//! the usual one (`Done`) is written and read here too.
//!
//! The bytes are exactly those serde writes for the same message (the
//! tests check it on random messages): no protocol version changes, and
//! either side may still use serde. Any other frame (an `Apply` whose
//! delta is only a string or a delete, an answer other than `Done`) is
//! left to serde.

use bytes::{Bytes, BytesMut};

use super::{ApplyReq, ApplyResult, PeerMsg};
use crate::error::{Error, Result};
use crate::store::{Entry, Version};
use crate::values::{Check, Kind};

/// [`PeerMsg::Apply`]'s variant index, as bincode writes it.
const APPLY: u32 = 25;

/// [`PeerMsg::ApplyAck`]'s variant index.
const APPLY_ACK: u32 = 26;

/// [`ApplyResult::Done`]'s variant index.
const DONE: u32 = 0;

/// The entry state's variant index of a rich state (`values::State`).
const STATE_RICH: u32 = 2;

/// Whether `msg` is written here: an `Apply` of a rich delta, or an
/// `ApplyAck` that is `Done`.
pub fn by_hand(msg: &PeerMsg) -> bool {
    match msg {
        PeerMsg::Apply(req) => req.entry.as_simple().is_none(),
        PeerMsg::ApplyAck { result, .. } => matches!(result, ApplyResult::Done { .. }),
        _ => false,
    }
}

/// Writes the body of `msg`'s frame (without its length) onto `dst`; an
/// error for a message that is not [`by_hand`].
pub fn encode(msg: &PeerMsg, dst: &mut BytesMut) -> Result<()> {
    if let PeerMsg::ApplyAck {
        id,
        result: ApplyResult::Done { was_live, present },
    } = msg
    {
        let mut head = [0u8; 25];
        head[..4].copy_from_slice(&APPLY_ACK.to_le_bytes());
        head[4..12].copy_from_slice(&id.to_le_bytes());
        head[12..16].copy_from_slice(&DONE.to_le_bytes());
        head[16] = u8::from(*was_live);
        head[17..].copy_from_slice(&(present.len() as u64).to_le_bytes());
        dst.extend_from_slice(&head);
        dst.extend(present.iter().map(|&p| u8::from(p)));
        return Ok(());
    }
    let (PeerMsg::Apply(req), true) = (msg, by_hand(msg)) else {
        return Err(Error::Protocol(format!(
            "encode: a {} frame is not written by hand",
            msg.kind()
        )));
    };
    let rich = req
        .entry
        .rich_bytes()?
        .expect("a delta that is not simple is rich");
    let names: usize = req.check.names.iter().map(|n| n.len() + 8).sum();
    dst.reserve(20 + req.key.len() + 20 + rich.len() + 12 + names);
    // Few appends, each of a run of fixed-width fields: every append
    // checks for room.
    let mut head = [0u8; 20];
    head[..4].copy_from_slice(&APPLY.to_le_bytes());
    head[4..12].copy_from_slice(&req.id.to_le_bytes());
    head[12..].copy_from_slice(&(req.key.len() as u64).to_le_bytes());
    dst.extend_from_slice(&head);
    dst.extend_from_slice(&req.key);
    let version = req.entry.version();
    let mut entry = [0u8; 20];
    entry[..8].copy_from_slice(&version.ts.0.to_le_bytes());
    entry[8..16].copy_from_slice(&version.node.to_le_bytes());
    entry[16..].copy_from_slice(&STATE_RICH.to_le_bytes());
    dst.extend_from_slice(&entry);
    dst.extend_from_slice(rich);
    let kind: u32 = match req.check.kind {
        Kind::String => 0,
        Kind::Hash => 1,
        Kind::Set => 2,
    };
    let mut check = [0u8; 12];
    check[..4].copy_from_slice(&kind.to_le_bytes());
    check[4..].copy_from_slice(&(req.check.names.len() as u64).to_le_bytes());
    dst.extend_from_slice(&check);
    for name in &req.check.names {
        dst.extend_from_slice(&(name.len() as u64).to_le_bytes());
        dst.extend_from_slice(name);
    }
    Ok(())
}

/// The message in `frame` if it is an `Apply` of a rich delta, its key and
/// names sharing the frame's bytes and its delta keeping them; `None` for
/// any other frame (serde reads those).
pub fn decode(frame: &Bytes) -> Result<Option<PeerMsg>> {
    let mut r = Reader { frame, at: 0 };
    match r.u32()? {
        APPLY => {}
        APPLY_ACK => return decode_ack(r),
        _ => return Ok(None),
    }
    let id = r.u64()?;
    let key = r.bytes()?;
    let version = Version {
        ts: crate::clock::Timestamp(r.u64()?),
        node: r.u64()?,
    };
    if r.u32()? != STATE_RICH {
        return Ok(None);
    }
    let (entry, used) = Entry::rich_from_frame(version, &frame.slice(r.at..))?;
    r.at += used;
    let kind = match r.u32()? {
        0 => Kind::String,
        1 => Kind::Hash,
        2 => Kind::Set,
        k => return Err(r.bad(&format!("no key type {k}"))),
    };
    let count = r.u64()?;
    // Each name takes at least its 8-byte length: a count the frame cannot
    // hold is refused before anything is allocated for it.
    if count > ((frame.len() - r.at) / 8) as u64 {
        return Err(r.bad("more names than the frame holds"));
    }
    let names = (0..count).map(|_| r.bytes()).collect::<Result<Vec<_>>>()?;
    if r.at != frame.len() {
        return Err(r.bad(&format!(
            "{} trailing bytes after the message",
            frame.len() - r.at
        )));
    }
    Ok(Some(PeerMsg::Apply(Box::new(ApplyReq {
        id,
        key,
        entry,
        check: Check { kind, names },
    }))))
}

/// The rest of an `ApplyAck` frame, if it is `Done`.
fn decode_ack(mut r: Reader<'_>) -> Result<Option<PeerMsg>> {
    let id = r.u64()?;
    if r.u32()? != DONE {
        return Ok(None);
    }
    let was_live = r.bool()?;
    let count = r.u64()?;
    if count != (r.frame.len() - r.at) as u64 {
        return Err(r.bad(&format!(
            "{count} answers in {} bytes",
            r.frame.len() - r.at
        )));
    }
    let present = (0..count).map(|_| r.bool()).collect::<Result<Vec<_>>>()?;
    Ok(Some(PeerMsg::ApplyAck {
        id,
        result: ApplyResult::Done { was_live, present },
    }))
}

/// A cursor over a frame.
struct Reader<'a> {
    frame: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.frame.len())
            .ok_or_else(|| self.bad("frame ends early"))?;
        let b = &self.frame[self.at..end];
        self.at = end;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn bool(&mut self) -> Result<bool> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.bad(&format!("{b} is not a bool"))),
        }
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn bytes(&mut self) -> Result<Bytes> {
        let len = usize::try_from(self.u64()?).map_err(|_| self.bad("length too large"))?;
        let start = self.at;
        self.take(len)?;
        Ok(self.frame.slice(start..self.at))
    }

    fn bad(&self, why: &str) -> Error {
        Error::Protocol(format!("decode: apply frame: {why} (at byte {})", self.at))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::clock::Timestamp;
    use crate::values::Rich;

    fn v(ts: u64, node: u64) -> Version {
        Version {
            ts: Timestamp(ts),
            node,
        }
    }

    fn serde_body(msg: &PeerMsg) -> Vec<u8> {
        crate::encoding::to_vec(msg).unwrap()
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

    #[test]
    fn a_plain_delta_or_another_message_is_left_to_serde() {
        let plain = apply(1, b"k", Entry::string(v(5, 1), "x".into()), Kind::Hash, &[]);
        assert_eq!(hand_body(&plain), None);
        let frame = Bytes::from(serde_body(&plain));
        assert_eq!(decode(&frame).unwrap(), None);
        let ack = PeerMsg::ApplyAck {
            id: 3,
            result: ApplyResult::WrongType,
        };
        assert_eq!(hand_body(&ack), None);
        assert_eq!(decode(&Bytes::from(serde_body(&ack))).unwrap(), None);
    }

    #[test]
    fn damaged_frames_are_errors_not_panics() {
        let msg = apply(
            7,
            b"h",
            Entry::hash_set(v(9, 2), &[("f".into(), "v".into())]),
            Kind::Hash,
            &[b"f"],
        );
        let body = hand_body(&msg).unwrap();
        for cut in 4..body.len() {
            assert!(
                decode(&Bytes::copy_from_slice(&body[..cut])).is_err(),
                "cut at {cut}"
            );
        }
        let mut long = body.clone();
        long.push(0);
        assert!(decode(&Bytes::from(long)).is_err());
        // A name count far past what the frame holds.
        let mut huge = body.clone();
        let at = body.len() - (8 + 1) - 8;
        huge[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&Bytes::from(huge)).is_err());
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

    #[test]
    fn a_damaged_answer_is_an_error() {
        let ack = PeerMsg::ApplyAck {
            id: 3,
            result: ApplyResult::Done {
                was_live: true,
                present: vec![true, false],
            },
        };
        let body = hand_body(&ack).unwrap();
        for cut in 4..body.len() {
            assert!(
                decode(&Bytes::copy_from_slice(&body[..cut])).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad = body.clone();
        *bad.last_mut().unwrap() = 2;
        assert!(decode(&Bytes::from(bad)).is_err());
    }

    fn arb_rich() -> impl Strategy<Value = Rich> {
        crate::values::tests::rich()
    }

    proptest! {
        #[test]
        fn frames_are_serdes_bytes_both_ways(
            id in any::<u64>(),
            key in proptest::collection::vec(any::<u8>(), 0..20),
            rich in arb_rich(),
            kind in 0..3u8,
            names in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..6), 0..4),
        ) {
            let kind = [Kind::String, Kind::Hash, Kind::Set][kind as usize];
            let names: Vec<&[u8]> = names.iter().map(|n| &n[..]).collect();
            let msg = apply(id, &key, Entry::rich(rich), kind, &names);
            let serde = serde_body(&msg);
            match hand_body(&msg) {
                Some(hand) => {
                    prop_assert_eq!(&hand, &serde);
                    let back = decode(&Bytes::from(hand)).unwrap();
                    prop_assert_eq!(back.as_ref(), Some(&msg));
                }
                // A state that is only a string or a delete.
                None => prop_assert_eq!(decode(&Bytes::from(serde)).unwrap(), None),
            }
        }

        #[test]
        fn answers_are_serdes_bytes_both_ways(
            id in any::<u64>(),
            which in 0..3u8,
            was_live in any::<bool>(),
            present in proptest::collection::vec(any::<bool>(), 0..6),
        ) {
            let result = match which {
                0 => ApplyResult::Done { was_live, present },
                1 => ApplyResult::WrongType,
                _ => ApplyResult::Refused("disk full".into()),
            };
            let msg = PeerMsg::ApplyAck { id, result };
            let serde = serde_body(&msg);
            match hand_body(&msg) {
                Some(hand) => {
                    prop_assert_eq!(&hand, &serde);
                    let back = decode(&Bytes::from(hand)).unwrap();
                    prop_assert_eq!(back.as_ref(), Some(&msg));
                }
                None => prop_assert_eq!(decode(&Bytes::from(serde)).unwrap(), None),
            }
        }
    }
}
