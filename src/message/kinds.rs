//! Each [`PeerMsg`] type's name, index and the protocol version that
//! introduced it: the tables every new variant extends, kept apart from
//! the message definitions so both stay readable.

use super::{
    PeerMsg, AE_ROOT_SINCE, APPLIES_SINCE, CARRY_SINCE, CLOCK_SINCE, PLACEMENT_SINCE,
    SECTIONS_SINCE,
};

/// The name of every [`PeerMsg`] type, in [`PeerMsg::kind_index`] order
/// (logs, and the per-kind traffic metrics).
pub const KINDS: [&str; 42] = [
    "heartbeat",
    "put",
    "put_ack",
    "get",
    "get_reply",
    "transfer",
    "transfer_ack",
    "keys",
    "keys_reply",
    "ae_groups",
    "ae_groups_reply",
    "ae_keys",
    "ae_keys_reply",
    "put_acks",
    "get_replies",
    "puts",
    "put_rmw",
    "put_rmw_ack",
    "meta_push",
    "meta_ack",
    "meta_digest",
    "incr",
    "incr_reply",
    "read",
    "read_reply",
    "apply",
    "apply_ack",
    "clock",
    "write_fence",
    "placement",
    "incr_strict",
    "offer",
    "offer_reply",
    "ae_root",
    "ae_root_reply",
    "applies",
    "apply_acks",
    "read_replies",
    "ae_sections",
    "ae_sections_reply",
    "incr_carry",
    "incr_carried",
];

impl PeerMsg {
    /// The protocol version that introduced this message type: a link
    /// whose peer speaks an older version does not send it (see
    /// [`super::compat`]). Every variant names its version here, without a
    /// catch-all, so a new variant cannot be added without saying.
    pub fn since(&self) -> u32 {
        match self {
            PeerMsg::Heartbeat(_)
            | PeerMsg::Put { .. }
            | PeerMsg::PutAck { .. }
            | PeerMsg::Get { .. }
            | PeerMsg::GetReply { .. }
            | PeerMsg::Transfer { .. }
            | PeerMsg::TransferAck { .. }
            | PeerMsg::Keys { .. }
            | PeerMsg::KeysReply { .. }
            | PeerMsg::AeGroups { .. }
            | PeerMsg::AeGroupsReply { .. }
            | PeerMsg::AeKeys { .. }
            | PeerMsg::AeKeysReply { .. }
            | PeerMsg::PutAcks { .. }
            | PeerMsg::GetReplies { .. }
            | PeerMsg::Puts { .. } => 5,
            PeerMsg::PutRmw(_)
            | PeerMsg::PutRmwAck { .. }
            | PeerMsg::MetaPush { .. }
            | PeerMsg::MetaAck { .. }
            | PeerMsg::MetaDigest { .. } => 6,
            PeerMsg::Incr { .. }
            | PeerMsg::IncrReply { .. }
            | PeerMsg::Read { .. }
            | PeerMsg::ReadReply { .. }
            | PeerMsg::Apply(_)
            | PeerMsg::ApplyAck { .. } => 7,
            PeerMsg::Clock { .. } | PeerMsg::WriteFence { .. } => CLOCK_SINCE,
            PeerMsg::Placement { .. }
            | PeerMsg::IncrStrict { .. }
            | PeerMsg::Offer { .. }
            | PeerMsg::OfferReply { .. } => PLACEMENT_SINCE,
            PeerMsg::AeRoot { .. } | PeerMsg::AeRootReply { .. } => AE_ROOT_SINCE,
            PeerMsg::Applies { .. } | PeerMsg::ApplyAcks { .. } | PeerMsg::ReadReplies { .. } => {
                APPLIES_SINCE
            }
            PeerMsg::AeSections { .. } | PeerMsg::AeSectionsReply { .. } => SECTIONS_SINCE,
            PeerMsg::IncrCarry { .. } | PeerMsg::IncrCarried { .. } => CARRY_SINCE,
        }
    }

    /// The index of the message's type in [`KINDS`].
    pub fn kind_index(&self) -> usize {
        match self {
            PeerMsg::Heartbeat(_) => 0,
            PeerMsg::Put { .. } => 1,
            PeerMsg::PutAck { .. } => 2,
            PeerMsg::Get { .. } => 3,
            PeerMsg::GetReply { .. } => 4,
            PeerMsg::Transfer { .. } => 5,
            PeerMsg::TransferAck { .. } => 6,
            PeerMsg::Keys { .. } => 7,
            PeerMsg::KeysReply { .. } => 8,
            PeerMsg::AeGroups { .. } => 9,
            PeerMsg::AeGroupsReply { .. } => 10,
            PeerMsg::AeKeys { .. } => 11,
            PeerMsg::AeKeysReply { .. } => 12,
            PeerMsg::PutAcks { .. } => 13,
            PeerMsg::GetReplies { .. } => 14,
            PeerMsg::Puts { .. } => 15,
            PeerMsg::PutRmw(_) => 16,
            PeerMsg::PutRmwAck { .. } => 17,
            PeerMsg::MetaPush { .. } => 18,
            PeerMsg::MetaAck { .. } => 19,
            PeerMsg::MetaDigest { .. } => 20,
            PeerMsg::Incr { .. } => 21,
            PeerMsg::IncrReply { .. } => 22,
            PeerMsg::Read { .. } => 23,
            PeerMsg::ReadReply { .. } => 24,
            PeerMsg::Apply(_) => 25,
            PeerMsg::ApplyAck { .. } => 26,
            PeerMsg::Clock { .. } => 27,
            PeerMsg::WriteFence { .. } => 28,
            PeerMsg::Placement { .. } => 29,
            PeerMsg::IncrStrict { .. } => 30,
            PeerMsg::Offer { .. } => 31,
            PeerMsg::OfferReply { .. } => 32,
            PeerMsg::AeRoot { .. } => 33,
            PeerMsg::AeRootReply { .. } => 34,
            PeerMsg::Applies { .. } => 35,
            PeerMsg::ApplyAcks { .. } => 36,
            PeerMsg::ReadReplies { .. } => 37,
            PeerMsg::AeSections { .. } => 38,
            PeerMsg::AeSectionsReply { .. } => 39,
            PeerMsg::IncrCarry { .. } => 40,
            PeerMsg::IncrCarried { .. } => 41,
        }
    }
}
