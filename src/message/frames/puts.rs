//! Replica writes, [`PeerMsg::Put`] and [`PeerMsg::Puts`], and their
//! answers, [`PeerMsg::PutAck`] (when `Ok`) and [`PeerMsg::PutAcks`], by
//! hand (see the module above).

use bytes::{Bytes, BytesMut};

use super::{put_bytes, put_entry, put_head, read_each, read_entry, Reader};
use crate::error::Result;
use crate::message::{PeerMsg, PutResult};
use crate::store::Entry;

/// [`PeerMsg::Put`]'s variant index, as bincode writes it.
pub(super) const PUT: u32 = 1;

/// [`PeerMsg::Puts`]'s variant index.
pub(super) const PUTS: u32 = 15;

/// [`PeerMsg::PutAck`]'s variant index.
pub(super) const PUT_ACK: u32 = 2;

/// [`PeerMsg::PutAcks`]'s variant index.
pub(super) const PUT_ACKS: u32 = 13;

/// [`PutResult::Ok`]'s variant index.
const OK: u32 = 0;

/// Whether an answer is written here: `Ok` (a refusal is rare).
pub(super) fn ack_by_hand(result: &PutResult) -> bool {
    matches!(result, PutResult::Ok { .. })
}

pub(super) fn encode_ack(id: u64, result: &PutResult, dst: &mut BytesMut) {
    let PutResult::Ok { was_live } = result else {
        unreachable!("only Ok is written by hand")
    };
    let mut b = [0u8; 17];
    b[..4].copy_from_slice(&PUT_ACK.to_le_bytes());
    b[4..12].copy_from_slice(&id.to_le_bytes());
    b[12..16].copy_from_slice(&OK.to_le_bytes());
    b[16] = u8::from(*was_live);
    dst.extend_from_slice(&b);
}

pub(super) fn encode_acks(acks: &[(u64, bool)], dst: &mut BytesMut) {
    dst.reserve(12 + 9 * acks.len());
    put_head(PUT_ACKS, acks.len() as u64, dst);
    for (id, was_live) in acks {
        let mut b = [0u8; 9];
        b[..8].copy_from_slice(&id.to_le_bytes());
        b[8] = u8::from(*was_live);
        dst.extend_from_slice(&b);
    }
}

/// The rest of a `PutAck` frame, if it is `Ok`.
pub(super) fn decode_ack(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let id = r.u64()?;
    if r.u32()? != OK {
        return Ok(None);
    }
    let was_live = r.bool()?;
    Ok(Some(PeerMsg::PutAck {
        id,
        result: PutResult::Ok { was_live },
    }))
}

/// The rest of a `PutAcks` frame.
pub(super) fn decode_acks(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let acks = read_each(r, 9, |id, r| Ok((id, r.bool()?)))?;
    Ok(Some(PeerMsg::PutAcks { acks }))
}

/// The smallest item of a `Puts`: id, key length, version, state.
const MIN_ITEM: usize = 8 + 8 + 16 + 4;

pub(super) fn encode_one(id: u64, key: &Bytes, entry: &Entry, dst: &mut BytesMut) -> Result<()> {
    dst.reserve(12 + 8 + key.len() + super::entry_len(entry));
    put_head(PUT, id, dst);
    put_bytes(key, dst);
    put_entry(entry, dst)
}

pub(super) fn encode(items: &[(u64, Bytes, Entry)], dst: &mut BytesMut) -> Result<()> {
    let len: usize = items
        .iter()
        .map(|(_, key, e)| 16 + key.len() + super::entry_len(e))
        .sum();
    dst.reserve(12 + len);
    put_head(PUTS, items.len() as u64, dst);
    for (id, key, entry) in items {
        dst.extend_from_slice(&id.to_le_bytes());
        put_bytes(key, dst);
        put_entry(entry, dst)?;
    }
    Ok(())
}

/// The rest of a `Put` frame.
pub(super) fn decode_one(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let id = r.u64()?;
    let key = r.bytes()?;
    let entry = read_entry(r)?;
    Ok(Some(PeerMsg::Put { id, key, entry }))
}

/// The rest of a `Puts` frame.
pub(super) fn decode(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let items = read_each(r, MIN_ITEM, |id, r| {
        let key = r.bytes()?;
        Ok((id, key, read_entry(r)?))
    })?;
    Ok(Some(PeerMsg::Puts { items }))
}
