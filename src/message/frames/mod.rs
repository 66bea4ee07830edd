//! The hot frames, written and read by hand: replica writes ([`PeerMsg::Put`],
//! [`PeerMsg::Puts`]), typed writes ([`PeerMsg::Apply`],
//! [`PeerMsg::Applies`]), replica reads ([`PeerMsg::Get`]) and their answers
//! ([`PeerMsg::PutAck`], [`PeerMsg::PutAcks`], [`PeerMsg::ApplyAck`],
//! [`PeerMsg::ApplyAcks`], [`PeerMsg::GetReply`], [`PeerMsg::GetReplies`]),
//! reads of part of a key ([`PeerMsg::Read`]) and theirs
//! ([`PeerMsg::ReadReply`], [`PeerMsg::ReadReplies`]), and carried
//! increments ([`PeerMsg::IncrCarry`], [`PeerMsg::IncrCarried`]).
//!
//! Every SET sends a `Put` (coalesced into `Puts`) to each replica, every
//! HSET or SADD an `Apply` (coalesced into `Applies` from protocol 11 on)
//! and brings back an `ApplyAck`. Through serde
//! each entry's rich state was encoded once per replica and once more for
//! the log, and each replica encoded it again for its log after decoding
//! it; serde's generic path also cost more than these loops. Here an
//! entry's rich state is written from its encoding made once
//! ([`Entry::rich_bytes`]), and a replica keeps the bytes a rich state came
//! in ([`Entry::rich_from_frame`]) for its own log; keys, values and names
//! are slices of the frame, not copies.
//!
//! The bytes are exactly those serde writes for the same message (the
//! tests check it on random messages, both ways): no protocol version
//! changes, and either side may still use serde. Any other frame, and an
//! answer other than `Done`, is left to serde. Damaged frames are errors,
//! never panics, and a count the frame cannot hold is refused before
//! anything is allocated for it.

mod apply;
mod incr;
mod parts;
mod puts;
mod reads;

use bytes::{Bytes, BytesMut};

use super::PeerMsg;
use crate::error::{Error, Result};
use crate::store::Entry;
use crate::values::wire::{Reader, Source};

/// Whether `msg` is written here.
pub fn by_hand(msg: &PeerMsg) -> bool {
    match msg {
        PeerMsg::Apply(_)
        | PeerMsg::Applies { .. }
        | PeerMsg::ApplyAcks { .. }
        | PeerMsg::Put { .. }
        | PeerMsg::Puts { .. }
        | PeerMsg::PutAcks { .. }
        | PeerMsg::Get { .. }
        | PeerMsg::GetReply { .. }
        | PeerMsg::GetReplies { .. }
        | PeerMsg::Read { .. }
        | PeerMsg::ReadReply { .. }
        | PeerMsg::ReadReplies { .. }
        | PeerMsg::IncrCarry { .. }
        | PeerMsg::IncrCarried { .. } => true,
        PeerMsg::ApplyAck { result, .. } => apply::ack_by_hand(result),
        PeerMsg::PutAck { result, .. } => puts::ack_by_hand(result),
        _ => false,
    }
}

/// Writes the body of `msg`'s frame (without its length) onto `dst`; an
/// error for a message that is not [`by_hand`].
pub fn encode(msg: &PeerMsg, dst: &mut BytesMut) -> Result<()> {
    match msg {
        PeerMsg::Apply(req) => apply::encode(req, dst),
        PeerMsg::Applies { items } => apply::encode_many(items, dst),
        PeerMsg::ApplyAcks { acks } => {
            apply::encode_acks(acks, dst);
            Ok(())
        }
        PeerMsg::ApplyAck { id, result } if apply::ack_by_hand(result) => {
            apply::encode_ack(*id, result, dst);
            Ok(())
        }
        PeerMsg::Put { id, key, entry } => puts::encode_one(*id, key, entry, dst),
        PeerMsg::Puts { items } => puts::encode(items, dst),
        PeerMsg::PutAck { id, result } if puts::ack_by_hand(result) => {
            puts::encode_ack(*id, result, dst);
            Ok(())
        }
        PeerMsg::PutAcks { acks } => {
            puts::encode_acks(acks, dst);
            Ok(())
        }
        PeerMsg::Get { id, key } => {
            reads::encode_get(*id, key, dst);
            Ok(())
        }
        PeerMsg::GetReply { id, entry } => reads::encode_reply(*id, entry, dst),
        PeerMsg::GetReplies { replies } => reads::encode_replies(replies, dst),
        PeerMsg::Read { id, key, want } => {
            parts::encode_read(*id, key, want, dst);
            Ok(())
        }
        PeerMsg::ReadReply { id, part } => {
            parts::encode_reply(*id, part, dst);
            Ok(())
        }
        PeerMsg::ReadReplies { replies } => {
            parts::encode_replies(replies, dst);
            Ok(())
        }
        PeerMsg::IncrCarry { .. } => {
            incr::encode_carry(msg, dst);
            Ok(())
        }
        PeerMsg::IncrCarried { id, value, delta } => incr::encode_carried(*id, *value, delta, dst),
        _ => Err(Error::Protocol(format!(
            "encode: a {} frame is not written by hand",
            msg.kind()
        ))),
    }
}

/// The message in `frame` if it is one written by hand, `None` for any
/// other (serde reads those).
pub fn decode(frame: &Bytes) -> Result<Option<PeerMsg>> {
    let mut r = Reader::new(Source::Shared(frame));
    let msg = match r.u32()? {
        apply::APPLY => apply::decode(&mut r)?,
        apply::APPLY_ACK => apply::decode_ack(&mut r)?,
        apply::APPLIES => apply::decode_many(&mut r)?,
        apply::APPLY_ACKS => apply::decode_acks(&mut r)?,
        puts::PUT => puts::decode_one(&mut r)?,
        puts::PUTS => puts::decode(&mut r)?,
        puts::PUT_ACK => puts::decode_ack(&mut r)?,
        puts::PUT_ACKS => puts::decode_acks(&mut r)?,
        reads::GET => reads::decode_get(&mut r)?,
        reads::GET_REPLY => reads::decode_reply(&mut r)?,
        reads::GET_REPLIES => reads::decode_replies(&mut r)?,
        parts::READ => parts::decode_read(&mut r)?,
        parts::READ_REPLY => parts::decode_reply(&mut r)?,
        parts::READ_REPLIES => parts::decode_replies(&mut r)?,
        incr::INCR_CARRY => incr::decode_carry(&mut r)?,
        incr::INCR_CARRIED => incr::decode_carried(&mut r)?,
        _ => return Ok(None),
    };
    if msg.is_some() && r.at() != frame.len() {
        return Err(r.bad(&format!(
            "{} trailing bytes after the message",
            frame.len() - r.at()
        )));
    }
    Ok(msg)
}

/// The items of a coalesced frame: a count (each item taking at least
/// `min` bytes, so a count the frame cannot hold is refused before
/// anything is allocated), then each item's id and the rest of it, which
/// `item` reads and builds.
fn read_each<T>(
    r: &mut Reader<'_>,
    min: usize,
    mut item: impl FnMut(u64, &mut Reader<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let count = r.count(min)?;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let id = r.u64()?;
        items.push(item(id, r)?);
    }
    Ok(items)
}

/// An entry state's variant index (`values::State`): a delete.
const DEAD: u32 = 0;
/// A plain string.
const STR: u32 = 1;
/// A rich state.
const RICH: u32 = 2;

/// Appends `entry` (its version and state) to `dst`.
fn put_entry(entry: &Entry, dst: &mut BytesMut) -> Result<()> {
    let version = entry.version();
    let mut head = [0u8; 20];
    head[..8].copy_from_slice(&version.ts.0.to_le_bytes());
    head[8..16].copy_from_slice(&version.node.to_le_bytes());
    if let Some(rich) = entry.rich_bytes()? {
        head[16..].copy_from_slice(&RICH.to_le_bytes());
        dst.extend_from_slice(&head);
        dst.extend_from_slice(rich);
        return Ok(());
    }
    match entry.as_simple() {
        Some(crate::values::Simple::Str(v)) => {
            head[16..].copy_from_slice(&STR.to_le_bytes());
            dst.extend_from_slice(&head);
            put_bytes(v, dst);
        }
        _ => {
            head[16..].copy_from_slice(&DEAD.to_le_bytes());
            dst.extend_from_slice(&head);
        }
    }
    Ok(())
}

/// Appends a message's variant index and its first 8-byte word (an id or
/// a count): how every frame written here opens.
fn put_head(tag: u32, word: u64, dst: &mut BytesMut) {
    let mut head = [0u8; 12];
    head[..4].copy_from_slice(&tag.to_le_bytes());
    head[4..].copy_from_slice(&word.to_le_bytes());
    dst.extend_from_slice(&head);
}

/// Appends a byte string (its length, then it).
fn put_bytes(b: &[u8], dst: &mut BytesMut) {
    dst.extend_from_slice(&(b.len() as u64).to_le_bytes());
    dst.extend_from_slice(b);
}

/// About how many bytes `entry` takes in a frame (a rich state's
/// encoding is made here if it was not yet, and kept).
fn entry_len(entry: &Entry) -> usize {
    match entry.rich_bytes() {
        Ok(Some(rich)) => 20 + rich.len(),
        _ => entry.payload_len() + 12,
    }
}

/// An entry `r` reads next: its version and state (a rich state keeping
/// the bytes it came in).
fn read_entry(r: &mut Reader<'_>) -> Result<Entry> {
    let version = r.version()?;
    match r.u32()? {
        DEAD => Ok(Entry::tombstone(version)),
        STR => Ok(Entry::string(version, r.bytes()?)),
        RICH => Entry::rich_from_frame(version, r),
        s => Err(r.bad(&format!("no entry state {s}"))),
    }
}

#[cfg(test)]
mod tests;
