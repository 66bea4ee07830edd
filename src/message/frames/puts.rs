//! Replica writes, [`PeerMsg::Put`] and [`PeerMsg::Puts`], by hand (see
//! the module above).

use bytes::{Bytes, BytesMut};

use super::{put_bytes, put_entry, Reader};
use crate::error::Result;
use crate::message::PeerMsg;
use crate::store::Entry;

/// [`PeerMsg::Put`]'s variant index, as bincode writes it.
pub(super) const PUT: u32 = 1;

/// [`PeerMsg::Puts`]'s variant index.
pub(super) const PUTS: u32 = 15;

/// The smallest item of a `Puts`: id, key length, version, state.
const MIN_ITEM: usize = 8 + 8 + 16 + 4;

pub(super) fn encode_one(id: u64, key: &Bytes, entry: &Entry, dst: &mut BytesMut) -> Result<()> {
    dst.reserve(12 + 8 + key.len() + super::entry_len(entry));
    let mut head = [0u8; 12];
    head[..4].copy_from_slice(&PUT.to_le_bytes());
    head[4..].copy_from_slice(&id.to_le_bytes());
    dst.extend_from_slice(&head);
    put_bytes(key, dst);
    put_entry(entry, dst)
}

pub(super) fn encode(items: &[(u64, Bytes, Entry)], dst: &mut BytesMut) -> Result<()> {
    let len: usize = items
        .iter()
        .map(|(_, key, e)| 16 + key.len() + super::entry_len(e))
        .sum();
    dst.reserve(12 + len);
    let mut head = [0u8; 12];
    head[..4].copy_from_slice(&PUTS.to_le_bytes());
    head[4..].copy_from_slice(&(items.len() as u64).to_le_bytes());
    dst.extend_from_slice(&head);
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
    let entry = r.entry()?;
    Ok(Some(PeerMsg::Put { id, key, entry }))
}

/// The rest of a `Puts` frame.
pub(super) fn decode(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let count = r.count(MIN_ITEM)?;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let id = r.u64()?;
        let key = r.bytes()?;
        items.push((id, key, r.entry()?));
    }
    Ok(Some(PeerMsg::Puts { items }))
}
