//! Node-to-node messages and the protocol versions.
//!
//! A peer connection opens with a handshake: the connecting side sends a
//! [`Hello`] offering the newest protocol version it speaks, the accepting
//! side a [`HelloReply::Negotiated`] (the version both will speak, and its
//! nonce) or, when that version is 5, the [`HelloReply::Challenge`] a
//! version 5 node knows; the connector a [`HelloProof`] (its nonce and its
//! proof of the cluster secret, see [`crate::auth`]), and the acceptor a
//! [`HelloReply::Accept`] carrying its own proof, or a
//! [`HelloReply::Reject`] with the reason. Only after that does the
//! connector send [`PeerMsg`] frames. The decisions of the negotiation are
//! in `transport/negotiate.rs`.
//!
//! `Hello` never changes shape and `HelloReply::Reject` stays variant 1 with
//! its one string, so a node of any version can read the other's version
//! number and refuse it cleanly with a reason the other can read; new
//! `HelloReply` variants are appended, so the ones an older node knows keep
//! their index.
//!
//! A node speaks every version from [`MIN_PROTOCOL_VERSION`] to
//! [`PROTOCOL_VERSION`] (capped by its `peer_protocol_max` setting), and a
//! connection speaks one of them. A version may append [`PeerMsg`]
//! variants; [`PeerMsg::since`] names the version that introduced each, and
//! a link whose peer speaks an older version hands such a message to
//! [`compat`], the one place where it could be rebuilt in an older shape.
//! Version 7 reshaped existing variants (an entry on the wire may hold a
//! rich value; anti-entropy summaries carry a body summary), so a
//! connection at version 5 or 6 encodes and decodes the older shapes,
//! [`v6::PeerMsg6`], on both sides; what an older peer cannot hold is not
//! sent to it.
//!
//! Requests carry an `id` chosen by the coordinator; replies echo it. There
//! is no request/reply pairing in the transport: a reply is just another
//! message, routed back to the waiting request by its id.
//!
//! Deliberately left out: streaming of very large transfers (a transfer is
//! cut into batches that each fit in one frame instead).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::anti_entropy::digest::{Digest, Ranges};
use crate::membership::Heartbeat;
use crate::store::{Entry, Version};

pub mod compat;
pub mod frames;
mod handshake;
mod kinds;
pub mod v6;
mod versions;

pub use handshake::{Hello, HelloProof, HelloReply, MAGIC};
pub use kinds::KINDS;
pub use versions::*;

/// The write of a read-modify-write ([`PeerMsg::PutRmw`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmwPut {
    /// Request id.
    pub id: u64,
    /// The key.
    pub key: Bytes,
    /// The versioned value or tombstone.
    pub entry: Entry,
    /// The version the coordinator read, `None` if it found nothing.
    pub read: Option<Version>,
}

/// A replica's answer to a write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PutResult {
    /// Stored (or already superseded by a newer version, which is success
    /// too under last-writer-wins). `was_live` says whether the key held a
    /// live value before.
    Ok {
        /// The key held a live value before this write.
        was_live: bool,
    },
    /// Refused, with the reason (for example a clock too far ahead).
    Refused(String),
}

impl crate::encoding::Wire for PeerMsg {}

/// Messages after the handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMsg {
    /// Liveness and membership. Boxed: it is the largest variant (five
    /// strings), and every message moves through queues by value, so the
    /// enum's size is paid on each hop (136 bytes unboxed, over the size
    /// that moves inline).
    Heartbeat(Box<Heartbeat>),
    /// Store this version of a key (replica write).
    Put {
        /// Request id.
        id: u64,
        /// The key.
        key: Bytes,
        /// The versioned value or tombstone.
        entry: Entry,
    },
    /// Answer to [`PeerMsg::Put`].
    PutAck {
        /// Request id.
        id: u64,
        /// Outcome.
        result: PutResult,
    },
    /// Read the local version of a key.
    Get {
        /// Request id.
        id: u64,
        /// The key.
        key: Bytes,
    },
    /// Answer to [`PeerMsg::Get`]: the local entry, tombstones included.
    GetReply {
        /// Request id.
        id: u64,
        /// What the replica holds.
        entry: Option<Entry>,
    },
    /// A batch of entries to merge (hand-off after a ring change).
    Transfer {
        /// Request id.
        id: u64,
        /// Keys and their entries.
        items: Vec<(Bytes, Entry)>,
    },
    /// Answer to [`PeerMsg::Transfer`]: all items merged.
    TransferAck {
        /// Request id.
        id: u64,
    },
    /// List the live keys held locally that match a glob pattern.
    Keys {
        /// Request id.
        id: u64,
        /// Redis glob pattern.
        pattern: Bytes,
    },
    /// Answer to [`PeerMsg::Keys`].
    KeysReply {
        /// Request id.
        id: u64,
        /// Matching live keys.
        keys: Vec<Bytes>,
    },
    /// Anti-entropy step 1: the initiator's group digests over `ranges`.
    AeGroups {
        /// Request id.
        id: u64,
        /// The ranges both sides replicate.
        ranges: Ranges,
        /// The digest of every group the ranges touch, in group order.
        groups: Vec<Digest>,
    },
    /// Anti-entropy step 2: the answerer's leaf digests in differing groups.
    AeGroupsReply {
        /// Request id.
        id: u64,
        /// (group, digests of its leaves in leaf order) per differing group.
        leaves: Vec<(u32, Vec<Digest>)>,
    },
    /// Anti-entropy step 3: the initiator's (key, version) pairs in
    /// differing leaves.
    AeKeys {
        /// Request id.
        id: u64,
        /// The ranges both sides replicate.
        ranges: Ranges,
        /// The differing leaves these summaries cover.
        leaves: Vec<u32>,
        /// (key, summary) of every initiator entry in them.
        keys: Vec<(Bytes, crate::values::Summary)>,
    },
    /// Anti-entropy step 4: entries the answerer holds newer, and the keys
    /// it wants sent (as a `Transfer`).
    AeKeysReply {
        /// Request id.
        id: u64,
        /// Newer (or only) entries of the answerer.
        push: Vec<(Bytes, Entry)>,
        /// Keys where the initiator is newer or alone.
        want: Vec<Bytes>,
    },
    /// Several successful [`PeerMsg::PutAck`]s to one coordinator, coalesced
    /// by the replica's link when they were queued together: under a
    /// pipelined write load one frame carries dozens, instead of one frame
    /// (and one decode) each.
    PutAcks {
        /// (request id, whether the replica held a live value before).
        acks: Vec<(u64, bool)>,
    },
    /// Several [`PeerMsg::GetReply`]s to one coordinator, coalesced the
    /// same way.
    GetReplies {
        /// (request id, what the replica holds).
        replies: Vec<(u64, Option<Entry>)>,
    },
    /// Several [`PeerMsg::Put`]s to one replica, coalesced by the
    /// coordinator's link; the replica logs them as one unit.
    Puts {
        /// (request id, key, entry) of each write.
        items: Vec<(u64, Bytes, Entry)>,
    },
    /// The write of a read-modify-write (APPEND, SETNX, SET NX...): stored
    /// as a [`PeerMsg::Put`] is, and acknowledged with whether the replica
    /// held a version newer than `read`, the one the coordinator's quorum
    /// read found (since protocol 6; a link to an older peer sends it as a
    /// plain `Put`). Boxed, so that it does not grow every message.
    PutRmw(Box<RmwPut>),
    /// Answer to [`PeerMsg::PutRmw`].
    PutRmwAck {
        /// Request id.
        id: u64,
        /// The key held a live value before this write.
        was_live: bool,
        /// The replica held a version newer than the one read, or one
        /// newer than this write.
        conflict: bool,
    },
    /// The sender's whole cluster-wide metadata record, to merge (since
    /// protocol 6). With an id, the receiver answers [`PeerMsg::MetaAck`]
    /// once the merged record is on its disk; id 0 wants no answer (the
    /// reply to a [`PeerMsg::MetaDigest`] that differed).
    MetaPush {
        /// Request id, or 0.
        id: u64,
        /// The record.
        meta: Box<crate::metadata::Metadata>,
    },
    /// Answer to [`PeerMsg::MetaPush`]: merged and durable.
    MetaAck {
        /// Request id.
        id: u64,
    },
    /// The digest of the sender's metadata record, sent with every
    /// heartbeat (since protocol 6): a receiver whose digest differs sends
    /// its record back, so records converge within a heartbeat interval.
    MetaDigest {
        /// [`crate::metadata::Metadata::digest`] of the sender's record.
        digest: u64,
    },
    /// An increment of a counter, to the replica that owns its share of
    /// it for this request (the first replica up, see
    /// `coordinator::counter`): it applies the increment to its own share,
    /// replicates the delta and answers [`PeerMsg::IncrReply`] (since
    /// protocol 7).
    Incr {
        /// Request id.
        id: u64,
        /// The key.
        key: Bytes,
        /// The hash field whose counter it is (HINCRBY), or `None` for the
        /// key's own (INCR).
        field: Option<Bytes>,
        /// How much to add.
        by: i64,
        /// Acknowledgements the owner waits for, itself included.
        w: u32,
    },
    /// Answer to [`PeerMsg::Incr`].
    IncrReply {
        /// Request id.
        id: u64,
        /// The counter's value after the increment, or why there is none.
        result: IncrResult,
    },
    /// A read of part of a key: the elements `want` names and what a
    /// reader needs of the whole (since protocol 7).
    Read {
        /// Request id.
        id: u64,
        /// The key.
        key: Bytes,
        /// What to read.
        want: crate::values::Want,
    },
    /// Answer to [`PeerMsg::Read`]: `None` when the replica holds nothing.
    ReadReply {
        /// Request id.
        id: u64,
        /// The part.
        part: Option<Box<crate::values::Part>>,
    },
    /// A typed write (since protocol 7). Boxed, so that it does not grow
    /// every message.
    Apply(Box<ApplyReq>),
    /// Answer to [`PeerMsg::Apply`].
    ApplyAck {
        /// Request id.
        id: u64,
        /// What the replica did.
        result: ApplyResult,
    },
    /// The sender's clocks, first in every socket write of a link at
    /// protocol 8 or later, so every message (heartbeats, acknowledgements,
    /// replies) comes with them. The receiver moves its hybrid clock past
    /// `hlc`, so every node's clock follows the newest in the cluster
    /// within a heartbeat whether or not it replicates the others' writes,
    /// and estimates the offset between the wall clocks from `wall_micros`
    /// (see [`crate::skew`]).
    Clock {
        /// The sender's wall clock, microseconds since the Unix epoch.
        wall_micros: u64,
        /// The sender's hybrid clock.
        hlc: crate::clock::Timestamp,
    },
    /// Whether the sender's commit log takes writes, sent with every
    /// heartbeat (since protocol 8): `Some(reason)` while it does not (a
    /// full disk, an I/O error). Coordinators then leave the sender out
    /// of writes, as if it were down, and still read from it.
    WriteFence {
        /// Why the sender takes no writes, or `None` when it does.
        reason: Option<String>,
    },
    /// [`PeerMsg::Incr`] under strict quorums (since protocol 9): the
    /// owner counts only the key's home replicas (see
    /// `coordinator/strict.rs`). Answered with [`PeerMsg::IncrReply`].
    IncrStrict {
        /// Request id.
        id: u64,
        /// The key.
        key: Bytes,
        /// The hash field whose counter it is, or `None` for the key's own.
        field: Option<Bytes>,
        /// How much to add.
        by: i64,
        /// Home replicas the owner waits for, itself included.
        w: u32,
    },
    /// Hand-off's question before a `Transfer` (since protocol 9): which
    /// of these entries, by key and summary, does the receiver lack (or
    /// hold older)? Answered with [`PeerMsg::OfferReply`], so a stray is
    /// sent only to the replicas that need it.
    Offer {
        /// Request id.
        id: u64,
        /// (key, summary) of each entry offered.
        keys: Vec<(Bytes, crate::values::Summary)>,
    },
    /// Answer to [`PeerMsg::Offer`]: the positions, in the offer, of the
    /// entries the receiver wants.
    OfferReply {
        /// Request id.
        id: u64,
        /// Indexes into the offer's `keys`.
        want: Vec<u32>,
    },
    /// The sender's placement, sent before every heartbeat (since protocol
    /// 9): its number of tokens (the tokens follow from its name, see
    /// [`crate::ring::node_tokens`]) and the replication factor it places
    /// keys with. A receiver whose N differs refuses the sender (see
    /// [`crate::placement`]).
    Placement {
        /// Tokens on the ring.
        tokens: u32,
        /// Replicas per key (N).
        replication: u32,
        /// The identity of the sender's data directory, drawn when it was
        /// made: a node that left or was forgotten is refused under it (see
        /// `node::departure`).
        data_id: u64,
    },
    // Variants are numbered on the wire by their place in this enum: a
    // new one goes last, or a peer of an older version misreads every
    // message after it (`tests::wire_numbers_never_change` pins them).
    /// Anti-entropy's first step (since protocol 10): one digest of
    /// everything the initiator holds in the ranges it shares with the
    /// answerer, and a fingerprint of those ranges
    /// ([`Ranges::fingerprint`]). The answerer works the ranges out from
    /// its own view; if they match and so does the digest, the round is
    /// over after this one exchange. Otherwise the round goes on as before,
    /// with [`PeerMsg::AeGroups`].
    AeRoot {
        /// Request id.
        id: u64,
        /// The fingerprint of the ranges both sides replicate.
        ranges: Digest,
        /// The digest of the initiator's entries in them.
        root: Digest,
    },
    /// Answer to [`PeerMsg::AeRoot`]: whether the answerer works out the
    /// same ranges and holds the same in them.
    AeRootReply {
        /// Request id.
        id: u64,
        /// Same ranges, same digest.
        agree: bool,
        /// The answerer took a hand-off within the last
        /// [`crate::sync::HANDOFF_FIRST`]: it is being filled, and the
        /// initiator asks again a moment later rather than send what is
        /// on its way.
        filling: bool,
    },
    /// Several [`PeerMsg::Apply`]s to one replica, coalesced by the
    /// coordinator's link (since protocol 11); the replica logs them as
    /// one unit, as it does a [`PeerMsg::Puts`].
    Applies {
        /// The typed writes, in the order they were sent.
        items: Vec<ApplyReq>,
    },
    /// Several successful [`PeerMsg::ApplyAck`]s to one coordinator,
    /// coalesced by the replica's link (since protocol 11).
    ApplyAcks {
        /// (request id, the key was live before, which checked elements
        /// were): each one's [`ApplyResult::Done`].
        acks: Vec<(u64, bool, crate::values::Present)>,
    },
    /// Several [`PeerMsg::ReadReply`]s to one coordinator, coalesced by
    /// the replica's link (since protocol 11).
    ReadReplies {
        /// (request id, the part, `None` when the replica holds nothing).
        replies: Vec<(u64, Option<Box<crate::values::Part>>)>,
    },
    /// Anti-entropy by sections (since protocol 12): the initiator's
    /// digests of a large rich key's sections and head
    /// ([`crate::values::sections::digests`]), for a key the answerer
    /// asked for in its [`PeerMsg::AeKeysReply`].
    AeSections {
        /// Request id.
        id: u64,
        /// The key.
        key: Bytes,
        /// One digest per section, then the head's.
        digests: Vec<u64>,
    },
    /// Answer to [`PeerMsg::AeSections`]: the answerer's piece of the key
    /// for the sections that differ, and those sections, which the
    /// initiator sends its own piece of (as a `Transfer`).
    AeSectionsReply {
        /// Request id.
        id: u64,
        /// The answerer's head and elements of the differing sections (its
        /// whole entry if it holds no rich state); `None`: nothing to send.
        push: Option<Entry>,
        /// The differing sections (and the head's index).
        want: Vec<u16>,
    },
    /// [`PeerMsg::Incr`] (or, `strict`, [`PeerMsg::IncrStrict`]) from a
    /// coordinator that is one of the key's replicas (since protocol 13):
    /// the owner counts the sender as one of the `w` instead of sending it
    /// the delta, and answers [`PeerMsg::IncrCarried`], with the delta for
    /// the sender to log (see `coordinator/counter.rs`).
    IncrCarry {
        /// Request id.
        id: u64,
        /// The key.
        key: Bytes,
        /// The hash field whose counter it is, or `None` for the key's own.
        field: Option<Bytes>,
        /// How much to add.
        by: i64,
        /// Acknowledgements needed, the owner's and the sender's included.
        w: u32,
        /// Count only the key's home replicas, as `IncrStrict`.
        strict: bool,
    },
    /// Answer to [`PeerMsg::IncrCarry`] once the increment is applied,
    /// logged and replicated; any other outcome is an `IncrReply`.
    IncrCarried {
        /// Request id.
        id: u64,
        /// The counter's value after it, as the owner's copy has it.
        value: i64,
        /// The owner's share of the counter, as it wrote it.
        delta: Entry,
    },
}

/// A typed write (HSET, SADD, HDEL, SREM...): the replica checks the
/// key's type and reports which elements it held before applying it (see
/// [`crate::values::Check`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReq {
    /// Request id.
    pub id: u64,
    /// The key.
    pub key: Bytes,
    /// The delta.
    pub entry: Entry,
    /// What to check and report.
    pub check: crate::values::Check,
}

/// What a replica answers a typed write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyResult {
    /// Applied (and logged).
    Done {
        /// The key was live before.
        was_live: bool,
        /// Which checked elements were live before.
        present: crate::values::Present,
    },
    /// Not applied: the key holds another type here.
    WrongType,
    /// Not applied, for this reason.
    Refused(String),
}

/// What an increment's owner answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncrResult {
    /// Applied and replicated: the counter's value after it.
    Value(i64),
    /// Not applied: Redis's error applies.
    Refused(crate::values::IncrError),
    /// Not applied, for a reason the client is told (`ERR`).
    Invalid(String),
    /// Applied by the owner, but not acknowledged by enough replicas, or
    /// its answer lost: the reason. The increment may or may not count.
    Failed(String),
}

impl PeerMsg {
    /// The id of a reply message, if it is one.
    pub fn reply_id(&self) -> Option<u64> {
        match self {
            PeerMsg::PutAck { id, .. }
            | PeerMsg::GetReply { id, .. }
            | PeerMsg::TransferAck { id }
            | PeerMsg::KeysReply { id, .. }
            | PeerMsg::AeGroupsReply { id, .. }
            | PeerMsg::AeKeysReply { id, .. }
            | PeerMsg::PutRmwAck { id, .. }
            | PeerMsg::MetaAck { id }
            | PeerMsg::IncrReply { id, .. }
            | PeerMsg::ReadReply { id, .. }
            | PeerMsg::ApplyAck { id, .. }
            | PeerMsg::OfferReply { id, .. }
            | PeerMsg::AeRootReply { id, .. }
            | PeerMsg::AeSectionsReply { id, .. }
            | PeerMsg::IncrCarried { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// A short name for the message type (logs and metrics).
    pub fn kind(&self) -> &'static str {
        KINDS[self.kind_index()]
    }
}

#[cfg(test)]
mod tests;
