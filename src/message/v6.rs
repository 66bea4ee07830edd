//! The peer messages as protocol versions 5 and 6 shaped them, for links to
//! peers that speak one of those.
//!
//! Version 7 changed the shape of an entry on the wire (a version and a
//! value that may be a rich state, where 5 and 6 had a version and an
//! optional string) and of anti-entropy's key summaries (a version and a
//! summary of the body, where they had a version). Every message carrying
//! one of those has a different encoding, so a link to an older peer
//! encodes [`PeerMsg6`], converted from the current message by [`to_v6`],
//! and a connection from one decodes it and converts back with
//! [`from_v6`]. The variants are declared in version 6's order, which
//! bincode's variant indexes depend on; version 5 is the first sixteen.
//!
//! What an older peer cannot hold is not sent to it: a rich state (an
//! expiry, a counter, a hash, a set) inside a message is left out, and a
//! message that would be left empty is not sent at all.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{PeerMsg, PutResult, RmwPut};
use crate::anti_entropy::digest::{Digest, Ranges};
use crate::membership::Heartbeat;
use crate::store::{Entry, Version};
use crate::values::{Simple, Summary};

/// The protocol version whose shapes replaced these: a link at an older
/// version encodes and decodes [`PeerMsg6`].
pub const REPLACED_IN: u32 = 7;

/// An entry as versions 5 and 6 sent it: a string, or `None` for a delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry6 {
    /// The write's version.
    pub version: Version,
    /// The value, or `None` for a delete.
    pub value: Option<Bytes>,
}

/// The write of a read-modify-write, as version 6 sent it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmwPut6 {
    /// Request id.
    pub id: u64,
    /// The key.
    pub key: Bytes,
    /// The value or tombstone.
    pub entry: Entry6,
    /// The version the coordinator read.
    pub read: Option<Version>,
}

/// [`PeerMsg`] as versions 5 and 6 shaped it (see the module doc; the
/// fields mean what the current message's do).
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMsg6 {
    Heartbeat(Box<Heartbeat>),
    Put {
        id: u64,
        key: Bytes,
        entry: Entry6,
    },
    PutAck {
        id: u64,
        result: PutResult,
    },
    Get {
        id: u64,
        key: Bytes,
    },
    GetReply {
        id: u64,
        entry: Option<Entry6>,
    },
    Transfer {
        id: u64,
        items: Vec<(Bytes, Entry6)>,
    },
    TransferAck {
        id: u64,
    },
    Keys {
        id: u64,
        pattern: Bytes,
    },
    KeysReply {
        id: u64,
        keys: Vec<Bytes>,
    },
    AeGroups {
        id: u64,
        ranges: Ranges,
        groups: Vec<Digest>,
    },
    AeGroupsReply {
        id: u64,
        leaves: Vec<(u32, Vec<Digest>)>,
    },
    AeKeys {
        id: u64,
        ranges: Ranges,
        leaves: Vec<u32>,
        keys: Vec<(Bytes, Version)>,
    },
    AeKeysReply {
        id: u64,
        push: Vec<(Bytes, Entry6)>,
        want: Vec<Bytes>,
    },
    PutAcks {
        acks: Vec<(u64, bool)>,
    },
    GetReplies {
        replies: Vec<(u64, Option<Entry6>)>,
    },
    Puts {
        items: Vec<(u64, Bytes, Entry6)>,
    },
    PutRmw(Box<RmwPut6>),
    PutRmwAck {
        id: u64,
        was_live: bool,
        conflict: bool,
    },
    MetaPush {
        id: u64,
        meta: Box<crate::metadata::Metadata>,
    },
    MetaAck {
        id: u64,
    },
    MetaDigest {
        digest: u64,
    },
}

impl crate::encoding::Wire for PeerMsg6 {}

/// An entry in its version 6 shape, if it has one (a rich state has none).
fn entry6(e: &Entry) -> Option<Entry6> {
    let value = match e.as_simple()? {
        Simple::Dead => None,
        Simple::Str(v) => Some(Bytes::copy_from_slice(v)),
    };
    Some(Entry6 {
        version: e.version(),
        value,
    })
}

fn entry7(e: Entry6) -> Entry {
    match e.value {
        Some(v) => Entry::string(e.version, v),
        None => Entry::tombstone(e.version),
    }
}

fn items6(items: Vec<(Bytes, Entry)>) -> Vec<(Bytes, Entry6)> {
    items
        .into_iter()
        .filter_map(|(k, e)| entry6(&e).map(|e| (k, e)))
        .collect()
}

/// `msg` as a peer of protocol 5 or 6 can decode it, or `None` when it has
/// nothing such a peer can hold. The caller has checked that the peer's
/// version knows the message's variant ([`PeerMsg::since`]).
pub fn to_v6(msg: PeerMsg) -> Option<PeerMsg6> {
    Some(match msg {
        PeerMsg::Heartbeat(hb) => PeerMsg6::Heartbeat(hb),
        PeerMsg::Put { id, key, entry } => PeerMsg6::Put {
            id,
            key,
            entry: entry6(&entry)?,
        },
        PeerMsg::PutAck { id, result } => PeerMsg6::PutAck { id, result },
        PeerMsg::Get { id, key } => PeerMsg6::Get { id, key },
        // A rich value is not there for an older peer: it reads nothing.
        PeerMsg::GetReply { id, entry } => PeerMsg6::GetReply {
            id,
            entry: entry.as_ref().and_then(entry6),
        },
        PeerMsg::Transfer { id, items } => PeerMsg6::Transfer {
            id,
            items: items6(items),
        },
        PeerMsg::TransferAck { id } => PeerMsg6::TransferAck { id },
        PeerMsg::Keys { id, pattern } => PeerMsg6::Keys { id, pattern },
        PeerMsg::KeysReply { id, keys } => PeerMsg6::KeysReply { id, keys },
        PeerMsg::AeGroups { id, ranges, groups } => PeerMsg6::AeGroups { id, ranges, groups },
        PeerMsg::AeGroupsReply { id, leaves } => PeerMsg6::AeGroupsReply { id, leaves },
        PeerMsg::AeKeys {
            id,
            ranges,
            leaves,
            keys,
        } => PeerMsg6::AeKeys {
            id,
            ranges,
            leaves,
            keys: keys.into_iter().map(|(k, s)| (k, s.version)).collect(),
        },
        PeerMsg::AeKeysReply { id, push, want } => PeerMsg6::AeKeysReply {
            id,
            push: items6(push),
            want,
        },
        PeerMsg::PutAcks { acks } => PeerMsg6::PutAcks { acks },
        PeerMsg::GetReplies { replies } => PeerMsg6::GetReplies {
            replies: replies
                .into_iter()
                .map(|(id, e)| (id, e.as_ref().and_then(entry6)))
                .collect(),
        },
        PeerMsg::Puts { items } => {
            let items: Vec<_> = items
                .into_iter()
                .filter_map(|(id, k, e)| entry6(&e).map(|e| (id, k, e)))
                .collect();
            if items.is_empty() {
                return None;
            }
            PeerMsg6::Puts { items }
        }
        PeerMsg::PutRmw(put) => {
            let RmwPut {
                id,
                key,
                entry,
                read,
            } = *put;
            PeerMsg6::PutRmw(Box::new(RmwPut6 {
                id,
                key,
                entry: entry6(&entry)?,
                read,
            }))
        }
        PeerMsg::PutRmwAck {
            id,
            was_live,
            conflict,
        } => PeerMsg6::PutRmwAck {
            id,
            was_live,
            conflict,
        },
        PeerMsg::MetaPush { id, meta } => PeerMsg6::MetaPush { id, meta },
        PeerMsg::MetaAck { id } => PeerMsg6::MetaAck { id },
        PeerMsg::MetaDigest { digest } => PeerMsg6::MetaDigest { digest },
        // Newer than version 6: never handed here (see `PeerMsg::since`).
        PeerMsg::Incr { .. }
        | PeerMsg::IncrReply { .. }
        | PeerMsg::Read { .. }
        | PeerMsg::ReadReply { .. }
        | PeerMsg::Apply(_)
        | PeerMsg::ApplyAck { .. }
        | PeerMsg::Applies { .. }
        | PeerMsg::ApplyAcks { .. }
        | PeerMsg::ReadReplies { .. }
        | PeerMsg::Clock { .. }
        | PeerMsg::WriteFence { .. }
        | PeerMsg::Placement { .. }
        | PeerMsg::IncrStrict { .. }
        | PeerMsg::Offer { .. }
        | PeerMsg::OfferReply { .. }
        | PeerMsg::AeRoot { .. }
        | PeerMsg::AeRootReply { .. }
        | PeerMsg::AeSections { .. }
        | PeerMsg::AeSectionsReply { .. }
        | PeerMsg::IncrCarry { .. }
        | PeerMsg::IncrCarried { .. } => return None,
    })
}

/// A message from a peer of protocol 5 or 6, in the current shape. Its
/// anti-entropy summaries name versions only: they read as strings'.
pub fn from_v6(msg: PeerMsg6) -> PeerMsg {
    let items7 = |items: Vec<(Bytes, Entry6)>| -> Vec<(Bytes, Entry)> {
        items.into_iter().map(|(k, e)| (k, entry7(e))).collect()
    };
    match msg {
        PeerMsg6::Heartbeat(hb) => PeerMsg::Heartbeat(hb),
        PeerMsg6::Put { id, key, entry } => PeerMsg::Put {
            id,
            key,
            entry: entry7(entry),
        },
        PeerMsg6::PutAck { id, result } => PeerMsg::PutAck { id, result },
        PeerMsg6::Get { id, key } => PeerMsg::Get { id, key },
        PeerMsg6::GetReply { id, entry } => PeerMsg::GetReply {
            id,
            entry: entry.map(entry7),
        },
        PeerMsg6::Transfer { id, items } => PeerMsg::Transfer {
            id,
            items: items7(items),
        },
        PeerMsg6::TransferAck { id } => PeerMsg::TransferAck { id },
        PeerMsg6::Keys { id, pattern } => PeerMsg::Keys { id, pattern },
        PeerMsg6::KeysReply { id, keys } => PeerMsg::KeysReply { id, keys },
        PeerMsg6::AeGroups { id, ranges, groups } => PeerMsg::AeGroups { id, ranges, groups },
        PeerMsg6::AeGroupsReply { id, leaves } => PeerMsg::AeGroupsReply { id, leaves },
        PeerMsg6::AeKeys {
            id,
            ranges,
            leaves,
            keys,
        } => PeerMsg::AeKeys {
            id,
            ranges,
            leaves,
            keys: keys
                .into_iter()
                .map(|(k, version)| (k, Summary { version, body: 0 }))
                .collect(),
        },
        PeerMsg6::AeKeysReply { id, push, want } => PeerMsg::AeKeysReply {
            id,
            push: items7(push),
            want,
        },
        PeerMsg6::PutAcks { acks } => PeerMsg::PutAcks { acks },
        PeerMsg6::GetReplies { replies } => PeerMsg::GetReplies {
            replies: replies
                .into_iter()
                .map(|(id, e)| (id, e.map(entry7)))
                .collect(),
        },
        PeerMsg6::Puts { items } => PeerMsg::Puts {
            items: items
                .into_iter()
                .map(|(id, k, e)| (id, k, entry7(e)))
                .collect(),
        },
        PeerMsg6::PutRmw(put) => {
            let RmwPut6 {
                id,
                key,
                entry,
                read,
            } = *put;
            PeerMsg::PutRmw(Box::new(RmwPut {
                id,
                key,
                entry: entry7(entry),
                read,
            }))
        }
        PeerMsg6::PutRmwAck {
            id,
            was_live,
            conflict,
        } => PeerMsg::PutRmwAck {
            id,
            was_live,
            conflict,
        },
        PeerMsg6::MetaPush { id, meta } => PeerMsg::MetaPush { id, meta },
        PeerMsg6::MetaAck { id } => PeerMsg::MetaAck { id },
        PeerMsg6::MetaDigest { digest } => PeerMsg::MetaDigest { digest },
    }
}
