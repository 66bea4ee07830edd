//! Reads of part of a key (HGET, SISMEMBER, HLEN...), [`PeerMsg::Read`],
//! and their answers, [`PeerMsg::ReadReply`] and [`PeerMsg::ReadReplies`],
//! by hand (see the module above).

use bytes::{Bytes, BytesMut};

use super::{put_bytes, put_head, read_each, Reader};
use crate::error::Result;
use crate::message::PeerMsg;
use crate::values::wire;
use crate::values::{Part, Want};

/// [`PeerMsg::Read`]'s variant index, as bincode writes it.
pub(super) const READ: u32 = 23;

/// [`PeerMsg::ReadReply`]'s variant index.
pub(super) const READ_REPLY: u32 = 24;

/// [`PeerMsg::ReadReplies`]'s variant index.
pub(super) const READ_REPLIES: u32 = 37;

/// The smallest answer in a `ReadReplies`: id, and no part.
const MIN_REPLY: usize = 8 + 1;

pub(super) fn encode_read(id: u64, key: &Bytes, want: &Want, dst: &mut BytesMut) {
    let names = match want {
        Want::Head => None,
        Want::Fields(names) => Some((1u32, names)),
        Want::Members(names) => Some((2u32, names)),
    };
    let len: usize = names.map_or(0, |(_, n)| n.iter().map(|n| n.len() + 8).sum());
    dst.reserve(32 + key.len() + len);
    put_head(READ, id, dst);
    put_bytes(key, dst);
    match names {
        None => dst.extend_from_slice(&0u32.to_le_bytes()),
        Some((tag, names)) => {
            let mut head = [0u8; 12];
            head[..4].copy_from_slice(&tag.to_le_bytes());
            head[4..].copy_from_slice(&(names.len() as u64).to_le_bytes());
            dst.extend_from_slice(&head);
            for name in names {
                put_bytes(name, dst);
            }
        }
    }
}

pub(super) fn encode_reply(id: u64, part: &Option<Box<Part>>, dst: &mut BytesMut) {
    put_head(READ_REPLY, id, dst);
    put_part(part, dst);
}

pub(super) fn encode_replies(replies: &[(u64, Option<Box<Part>>)], dst: &mut BytesMut) {
    dst.reserve(12 + replies.len() * 128);
    put_head(READ_REPLIES, replies.len() as u64, dst);
    for (id, part) in replies {
        dst.extend_from_slice(&id.to_le_bytes());
        put_part(part, dst);
    }
}

fn put_part(part: &Option<Box<Part>>, dst: &mut BytesMut) {
    let Some(p) = part else {
        dst.extend_from_slice(&[0]);
        return;
    };
    let mut head = [0u8; 25];
    head[0] = 1;
    head[1..9].copy_from_slice(&p.version.ts.0.to_le_bytes());
    head[9..17].copy_from_slice(&p.version.node.to_le_bytes());
    head[17..].copy_from_slice(&p.digest.to_le_bytes());
    dst.extend_from_slice(&head);
    wire::encode_into(&p.rich, dst);
    let mut tail = [0u8; 48];
    tail[..8].copy_from_slice(&p.hash_newest.ts.0.to_le_bytes());
    tail[8..16].copy_from_slice(&p.hash_newest.node.to_le_bytes());
    tail[16..24].copy_from_slice(&p.set_newest.ts.0.to_le_bytes());
    tail[24..32].copy_from_slice(&p.set_newest.node.to_le_bytes());
    tail[32..40].copy_from_slice(&p.fields.to_le_bytes());
    tail[40..].copy_from_slice(&p.members.to_le_bytes());
    dst.extend_from_slice(&tail);
}

/// The rest of a `Read` frame.
pub(super) fn decode_read(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let id = r.u64()?;
    let key = r.bytes()?;
    let want = match r.u32()? {
        0 => Want::Head,
        1 => Want::Fields(names(r)?),
        2 => Want::Members(names(r)?),
        w => return Err(r.bad(&format!("no part to read {w}"))),
    };
    Ok(Some(PeerMsg::Read { id, key, want }))
}

fn names(r: &mut Reader<'_>) -> Result<Vec<Bytes>> {
    let count = r.count(8)?;
    (0..count).map(|_| r.bytes()).collect()
}

/// The rest of a `ReadReply` frame.
pub(super) fn decode_reply(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let id = r.u64()?;
    let part = read_part(r)?;
    Ok(Some(PeerMsg::ReadReply { id, part }))
}

/// The rest of a `ReadReplies` frame.
pub(super) fn decode_replies(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let replies = read_each(r, MIN_REPLY, |id, r| Ok((id, read_part(r)?)))?;
    Ok(Some(PeerMsg::ReadReplies { replies }))
}

fn read_part(r: &mut Reader<'_>) -> Result<Option<Box<Part>>> {
    if !r.some()? {
        return Ok(None);
    }
    let version = r.version()?;
    let digest = r.u64()?;
    let rich = r.rich()?;
    Ok(Some(Box::new(Part {
        version,
        digest,
        rich,
        hash_newest: r.version()?,
        set_newest: r.version()?,
        fields: r.u64()?,
        members: r.u64()?,
    })))
}
