//! A carried increment, [`PeerMsg::IncrCarry`], and its answer,
//! [`PeerMsg::IncrCarried`], by hand (see the module above): a coordinator
//! that is one of the key's replicas sends the first for two increments in
//! three on a 3-node cluster, and decodes the second, whose delta serde
//! decoded in about 1,700 instructions (callgrind), more than the rest of
//! the answer's handling.

use bytes::BytesMut;

use super::{entry_len, put_bytes, put_entry, put_head, read_entry, Reader};
use crate::error::Result;
use crate::message::PeerMsg;
use crate::store::Entry;

/// [`PeerMsg::IncrCarry`]'s variant index, as bincode writes it.
pub(super) const INCR_CARRY: u32 = 40;

/// [`PeerMsg::IncrCarried`]'s variant index.
pub(super) const INCR_CARRIED: u32 = 41;

/// Writes `msg`, an `IncrCarry`.
pub(super) fn encode_carry(msg: &PeerMsg, dst: &mut BytesMut) {
    let PeerMsg::IncrCarry {
        id,
        key,
        field,
        by,
        w,
        strict,
    } = msg
    else {
        unreachable!("only an IncrCarry is written here")
    };
    let field_len = field.as_ref().map_or(0, |f| 8 + f.len());
    dst.reserve(12 + 8 + key.len() + 1 + field_len + 13);
    put_head(INCR_CARRY, *id, dst);
    put_bytes(key, dst);
    match field {
        None => dst.extend_from_slice(&[0]),
        Some(f) => {
            dst.extend_from_slice(&[1]);
            put_bytes(f, dst);
        }
    }
    let mut tail = [0u8; 13];
    tail[..8].copy_from_slice(&by.to_le_bytes());
    tail[8..12].copy_from_slice(&w.to_le_bytes());
    tail[12] = u8::from(*strict);
    dst.extend_from_slice(&tail);
}

/// The rest of an `IncrCarry` frame.
pub(super) fn decode_carry(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let id = r.u64()?;
    let key = r.bytes()?;
    let field = match r.some()? {
        true => Some(r.bytes()?),
        false => None,
    };
    let by = r.u64()? as i64;
    let w = r.u32()?;
    let strict = r.bool()?;
    Ok(Some(PeerMsg::IncrCarry {
        id,
        key,
        field,
        by,
        w,
        strict,
    }))
}

pub(super) fn encode_carried(id: u64, value: i64, delta: &Entry, dst: &mut BytesMut) -> Result<()> {
    dst.reserve(12 + 8 + entry_len(delta));
    put_head(INCR_CARRIED, id, dst);
    dst.extend_from_slice(&value.to_le_bytes());
    put_entry(delta, dst)
}

/// The rest of an `IncrCarried` frame (the delta keeps the bytes its rich
/// state came in, for this node's log).
pub(super) fn decode_carried(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let id = r.u64()?;
    let value = r.u64()? as i64;
    let delta = read_entry(r)?;
    Ok(Some(PeerMsg::IncrCarried { id, value, delta }))
}
