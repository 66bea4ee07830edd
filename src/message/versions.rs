//! The peer protocol's versions: the newest and oldest this build
//! speaks, and the version each later feature came in, which a link
//! compares with the version its handshake settled on.

#[allow(unused_imports)] // for the doc links
use super::{HelloReply, PeerMsg};

/// The newest version of the peer protocol this build speaks. Bumped on
/// any change to [`PeerMsg`] or to the handshake. Version 2 added the
/// cluster-secret proofs, version 3 the anti-entropy messages, version 4
/// coalesced `PutAcks`, `GetReplies` and `Puts`, version 5 fixed-width
/// integers after the handshake (see [`crate::encoding::Wire`]), version 6
/// the version negotiation ([`HelloReply::Negotiated`]) and the
/// [`PeerMsg`] variants appended after `Puts`, version 7 entries that may
/// hold rich values (expiry, counters, hashes, sets) and anti-entropy
/// summaries of entries' bodies ([`super::v6`] keeps the older shapes), version
/// 8 the sender's clocks at the start of every socket write
/// ([`PeerMsg::Clock`]) and its write fence ([`PeerMsg::WriteFence`]),
/// version 9 the sender's placement ([`PeerMsg::Placement`]) and
/// hand-off's offers, version 10 anti-entropy's first step by one root
/// digest ([`PeerMsg::AeRoot`]), version 11 typed writes, their answers
/// and the answers to reads of part of a key coalesced
/// ([`PeerMsg::Applies`], [`PeerMsg::ApplyAcks`], [`PeerMsg::ReadReplies`]),
/// version 12 anti-entropy of a large rich key by sections
/// ([`PeerMsg::AeSections`]), version 13 increments whose coordinator holds
/// a copy ([`PeerMsg::IncrCarry`], [`PeerMsg::IncrCarried`]).
pub const PROTOCOL_VERSION: u32 = 13;

/// The protocol version from which every socket write opens with the
/// sender's clocks ([`PeerMsg::Clock`]), and heartbeats come with the
/// sender's write fence ([`PeerMsg::WriteFence`]).
pub const CLOCK_SINCE: u32 = 8;

/// The protocol version from which heartbeats come with the sender's
/// placement ([`PeerMsg::Placement`]).
pub const PLACEMENT_SINCE: u32 = 9;

/// The protocol version from which an anti-entropy round opens with one
/// root digest ([`PeerMsg::AeRoot`]).
pub const AE_ROOT_SINCE: u32 = 10;

/// The protocol version from which a link coalesces typed writes
/// ([`PeerMsg::Applies`]), their successful answers
/// ([`PeerMsg::ApplyAcks`]) and the answers to reads of part of a key
/// ([`PeerMsg::ReadReplies`]), as it coalesces `Puts`, `PutAcks` and
/// `GetReplies`.
pub const APPLIES_SINCE: u32 = 11;

/// The protocol version from which anti-entropy compares and sends a large
/// rich key by sections ([`PeerMsg::AeSections`]) instead of whole.
pub const SECTIONS_SINCE: u32 = 12;

/// The protocol version from which a coordinator that is one of a key's
/// replicas has the owner bring an increment's delta back with its answer
/// ([`PeerMsg::IncrCarry`]).
pub const CARRY_SINCE: u32 = 13;

/// The oldest version of the peer protocol this build still speaks: a
/// node of any version from this one to [`PROTOCOL_VERSION`] can join a
/// cluster of this build's nodes (a rolling upgrade). Version 5 is the last
/// one released before the negotiation, so it is served with the
/// handshake it knows.
pub const MIN_PROTOCOL_VERSION: u32 = 5;
