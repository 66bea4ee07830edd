//! The frames of a peer connection's handshake (see the `message` module
//! doc): their shapes must stay readable by every version that negotiates.

use serde::{Deserialize, Serialize};

use crate::auth::{Nonce, Proof};

/// Marks a ringkv peer connection ("RKV1").
pub const MAGIC: u32 = 0x524b_5631;

/// The first frame on a peer connection, from the side that connected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`MAGIC`]; anything else is not a ringkv peer.
    pub magic: u32,
    /// The highest protocol version the sender offers (its
    /// `peer_protocol_max`, or a lower one when it retries an older node).
    pub version: u32,
    /// The sender's node name.
    pub name: String,
    /// The sender's generation.
    pub generation: u64,
    /// Where replies to the sender should go (its advertised peer address).
    pub reply_to: String,
}

/// The accepting side's frames during the handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Handshake accepted (the connector's proof checked out): the
    /// acceptor's name and generation, and its own proof of the secret.
    Accept {
        /// The acceptor's node name.
        name: String,
        /// The acceptor's generation.
        generation: u64,
        /// HMAC proof of the secret (role acceptor).
        proof: Proof,
    },
    /// Handshake refused, with the reason (the connection then closes).
    /// Must stay variant 1 with this one field, whatever the version.
    Reject {
        /// Why.
        reason: String,
    },
    /// The [`Hello`] was acceptable and the connection speaks protocol
    /// version 5: prove the secret over this nonce. The only challenge a
    /// version 5 node knows, so it must keep this shape and index.
    Challenge {
        /// The acceptor's fresh nonce.
        nonce: Nonce,
        /// Whether the acceptor has a secret (only to word a refusal).
        secured: bool,
    },
    /// The [`Hello`] was acceptable and the connection speaks `version`
    /// (6 or later, at most what the hello offered): prove the secret over
    /// this nonce. (Version 5 nodes cannot decode this variant; they are
    /// sent a [`HelloReply::Challenge`] instead.)
    Negotiated {
        /// The protocol version both sides speak from now on.
        version: u32,
        /// The acceptor's fresh nonce.
        nonce: Nonce,
        /// Whether the acceptor has a secret (only to word a refusal).
        secured: bool,
    },
}

/// The connector's answer to a [`HelloReply::Challenge`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloProof {
    /// The connector's fresh nonce, which the acceptor's proof must cover.
    pub nonce: Nonce,
    /// Whether the connector has a secret (only to word a refusal).
    pub secured: bool,
    /// HMAC proof of the secret (role connector).
    pub proof: Proof,
}

impl crate::encoding::Wire for Hello {
    const FIXED_INTS: bool = false;
}

impl crate::encoding::Wire for HelloReply {
    const FIXED_INTS: bool = false;
}

impl crate::encoding::Wire for HelloProof {
    const FIXED_INTS: bool = false;
}
