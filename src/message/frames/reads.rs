//! Replica reads, [`PeerMsg::Get`], and their answers, [`PeerMsg::GetReply`]
//! and [`PeerMsg::GetReplies`], by hand (see the module above).

use bytes::{Bytes, BytesMut};

use super::{put_bytes, put_entry, put_head, read_each, read_entry, Reader};
use crate::error::Result;
use crate::message::PeerMsg;
use crate::store::Entry;

/// [`PeerMsg::Get`]'s variant index, as bincode writes it.
pub(super) const GET: u32 = 3;

/// [`PeerMsg::GetReply`]'s variant index.
pub(super) const GET_REPLY: u32 = 4;

/// [`PeerMsg::GetReplies`]'s variant index.
pub(super) const GET_REPLIES: u32 = 14;

/// The smallest answer in a `GetReplies`: id, and an absent entry.
const MIN_REPLY: usize = 8 + 1;

pub(super) fn encode_get(id: u64, key: &Bytes, dst: &mut BytesMut) {
    put_head(GET, id, dst);
    put_bytes(key, dst);
}

pub(super) fn encode_reply(id: u64, entry: &Option<Entry>, dst: &mut BytesMut) -> Result<()> {
    put_head(GET_REPLY, id, dst);
    put_option(entry, dst)
}

pub(super) fn encode_replies(replies: &[(u64, Option<Entry>)], dst: &mut BytesMut) -> Result<()> {
    let len: usize = replies
        .iter()
        .map(|(_, e)| 9 + e.as_ref().map_or(0, super::entry_len))
        .sum();
    dst.reserve(12 + len);
    put_head(GET_REPLIES, replies.len() as u64, dst);
    for (id, entry) in replies {
        dst.extend_from_slice(&id.to_le_bytes());
        put_option(entry, dst)?;
    }
    Ok(())
}

fn put_option(entry: &Option<Entry>, dst: &mut BytesMut) -> Result<()> {
    match entry {
        None => {
            dst.extend_from_slice(&[0]);
            Ok(())
        }
        Some(e) => {
            dst.extend_from_slice(&[1]);
            put_entry(e, dst)
        }
    }
}

/// The rest of a `Get` frame.
pub(super) fn decode_get(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let id = r.u64()?;
    let key = r.bytes()?;
    Ok(Some(PeerMsg::Get { id, key }))
}

/// The rest of a `GetReply` frame.
pub(super) fn decode_reply(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let id = r.u64()?;
    let entry = read_option(r)?;
    Ok(Some(PeerMsg::GetReply { id, entry }))
}

/// The rest of a `GetReplies` frame.
pub(super) fn decode_replies(r: &mut Reader<'_>) -> Result<Option<PeerMsg>> {
    let replies = read_each(r, MIN_REPLY, |id, r| Ok((id, read_option(r)?)))?;
    Ok(Some(PeerMsg::GetReplies { replies }))
}

fn read_option(r: &mut Reader<'_>) -> Result<Option<Entry>> {
    if r.some()? {
        read_entry(r).map(Some)
    } else {
        Ok(None)
    }
}
