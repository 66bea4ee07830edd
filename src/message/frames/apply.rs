//! Typed writes, [`PeerMsg::Apply`] and [`PeerMsg::Applies`], and their
//! answers, [`PeerMsg::ApplyAck`] (when `Done`) and [`PeerMsg::ApplyAcks`],
//! by hand (see the module above).

use bytes::BytesMut;

use super::{put_bytes, put_entry, put_head, read_each, read_entry, Reader};
use crate::error::Result;
use crate::message::{ApplyReq, ApplyResult, PeerMsg};
use crate::values::{Check, Kind};

/// [`PeerMsg::Apply`]'s variant index, as bincode writes it.
pub(super) const APPLY: u32 = 25;

/// [`PeerMsg::ApplyAck`]'s variant index.
pub(super) const APPLY_ACK: u32 = 26;

/// [`PeerMsg::Applies`]'s variant index.
pub(super) const APPLIES: u32 = 35;

/// [`PeerMsg::ApplyAcks`]'s variant index.
pub(super) const APPLY_ACKS: u32 = 36;

/// [`ApplyResult::Done`]'s variant index.
const DONE: u32 = 0;

/// The smallest typed write: id, key length, version, state, key type,
/// name count.
const MIN_REQ: usize = 8 + 8 + 16 + 4 + 4 + 8;

/// The smallest answer in an `ApplyAcks`: id, was live, count.
const MIN_ACK: usize = 8 + 1 + 8;

/// Whether an answer is written here: `Done` (the others are rare).
pub(super) fn ack_by_hand(result: &ApplyResult) -> bool {
    matches!(result, ApplyResult::Done { .. })
}

pub(super) fn encode(req: &ApplyReq, dst: &mut BytesMut) -> Result<()> {
    dst.reserve(4 + req_len(req));
    // Few appends, each of a run of fixed-width fields: every append
    // checks for room.
    put_head(APPLY, req.id, dst);
    put_req(req, dst)
}

pub(super) fn encode_many(items: &[ApplyReq], dst: &mut BytesMut) -> Result<()> {
    dst.reserve(12 + items.iter().map(req_len).sum::<usize>());
    put_head(APPLIES, items.len() as u64, dst);
    for req in items {
        dst.extend_from_slice(&req.id.to_le_bytes());
        put_req(req, dst)?;
    }
    Ok(())
}

/// About how many bytes `req` takes, its id included.
fn req_len(req: &ApplyReq) -> usize {
    let names: usize = req.check.names.iter().map(|n| n.len() + 8).sum();
    16 + req.key.len() + super::entry_len(&req.entry) + 12 + names
}

/// Appends what follows a typed write's id.
fn put_req(req: &ApplyReq, dst: &mut BytesMut) -> Result<()> {
    put_bytes(&req.key, dst);
    put_entry(&req.entry, dst)?;
    let kind: u32 = match req.check.kind {
        Kind::String => 0,
        Kind::Hash => 1,
        Kind::Set => 2,
    };
    let mut check = [0u8; 12];
    check[..4].copy_from_slice(&kind.to_le_bytes());
    check[4..].copy_from_slice(&(req.check.names.len() as u64).to_le_bytes());
    dst.extend_from_slice(&check);
    for name in req.check.names.iter() {
        put_bytes(name, dst);
    }
    Ok(())
}

pub(super) fn encode_acks(acks: &[(u64, bool, crate::values::Present)], dst: &mut BytesMut) {
    let len: usize = acks.iter().map(|(_, _, p)| MIN_ACK + p.len()).sum();
    dst.reserve(12 + len);
    put_head(APPLY_ACKS, acks.len() as u64, dst);
    for (id, was_live, present) in acks {
        let mut head = [0u8; MIN_ACK];
        head[..8].copy_from_slice(&id.to_le_bytes());
        head[8] = u8::from(*was_live);
        head[9..].copy_from_slice(&(present.len() as u64).to_le_bytes());
        dst.extend_from_slice(&head);
        dst.extend(present.iter().map(|&p| u8::from(p)));
    }
}

pub(super) fn encode_ack(id: u64, result: &ApplyResult, dst: &mut BytesMut) {
    let ApplyResult::Done { was_live, present } = result else {
        unreachable!("only Done is written by hand")
    };
    let mut head = [0u8; 25];
    head[..4].copy_from_slice(&APPLY_ACK.to_le_bytes());
    head[4..12].copy_from_slice(&id.to_le_bytes());
    head[12..16].copy_from_slice(&DONE.to_le_bytes());
    head[16] = u8::from(*was_live);
    head[17..].copy_from_slice(&(present.len() as u64).to_le_bytes());
    dst.extend_from_slice(&head);
    dst.extend(present.iter().map(|&p| u8::from(p)));
}

/// The rest of an `Apply` frame.
pub(super) fn decode(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let id = r.u64()?;
    Ok(Some(PeerMsg::Apply(Box::new(read_req(id, r)?))))
}

/// The rest of an `Applies` frame.
pub(super) fn decode_many(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let items = read_each(r, MIN_REQ, read_req)?;
    Ok(Some(PeerMsg::Applies { items }))
}

/// Typed write `id`, which `r` reads next from after its id.
fn read_req(id: u64, r: &mut Reader<'_>) -> Result<ApplyReq> {
    let key = r.bytes()?;
    let entry = read_entry(r)?;
    let kind = match r.u32()? {
        0 => Kind::String,
        1 => Kind::Hash,
        2 => Kind::Set,
        k => return Err(r.bad(&format!("no key type {k}"))),
    };
    let count = r.count(8)?;
    let names = (0..count).map(|_| r.bytes()).collect::<Result<_>>()?;
    Ok(ApplyReq {
        id,
        key,
        entry,
        check: Check { kind, names },
    })
}

/// The rest of an `ApplyAck` frame, if it is `Done`.
pub(super) fn decode_ack(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let id = r.u64()?;
    if r.u32()? != DONE {
        return Ok(None);
    }
    let (was_live, present) = read_done(r)?;
    Ok(Some(PeerMsg::ApplyAck {
        id,
        result: ApplyResult::Done { was_live, present },
    }))
}

/// The rest of an `ApplyAcks` frame.
pub(super) fn decode_acks(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let acks = read_each(r, MIN_ACK, |id, r| {
        let (was_live, present) = read_done(r)?;
        Ok((id, was_live, present))
    })?;
    Ok(Some(PeerMsg::ApplyAcks { acks }))
}

/// What a `Done` answer holds: whether the key was live, and which
/// checked elements were.
fn read_done(r: &mut Reader<'_>) -> Result<(bool, crate::values::Present)> {
    let was_live = r.bool()?;
    let count = r.count(1)?;
    let present = (0..count).map(|_| r.bool()).collect::<Result<_>>()?;
    Ok((was_live, present))
}
