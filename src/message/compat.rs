//! What a message becomes on a link whose peer speaks an older protocol
//! version than the message.
//!
//! Every [`PeerMsg`] variant names the version that introduced it
//! ([`PeerMsg::since`]). A link encodes for the version its handshake
//! settled on (the transport's batch compares the two, one integer per
//! message), and hands a message newer than that to [`downgrade`], the one
//! place that knows how an older peer could be told the same thing. What
//! comes back is sent instead; `None` means the older peer cannot be told
//! at all, and the link drops the message, counts it
//! (`ringkv_peer_messages_unsupported_total`) and logs it at debug.
//!
//! Today nothing is translated: version 6 only appends variants, and no
//! existing variant changed shape, so every message a version 5 peer can
//! decode is sent to it unchanged, and a version 6 variant has no version 5
//! equivalent. A future version that reshapes a message (a field added to
//! `Put`, say) adds its case here: the new variant, or the new shape, is
//! rebuilt as the old one when the link's version predates it, and the
//! caller above never needs to know which version it talks to.
//!
//! Deliberately left out: translating on the reading side. A node decodes
//! what it receives with its own, newest, enum; that works as long as
//! versions only append variants, and a version that changes an existing
//! variant's encoding will have to decode by the connection's version
//! (which the accepting side knows: `transport::Peer::version`).

use super::PeerMsg;

/// `msg`, which a peer of protocol `version` cannot decode
/// (`msg.since() > version`), in a shape that peer can decode, or `None`
/// when there is none and the message is not to be sent.
pub fn downgrade(msg: PeerMsg, version: u32) -> Option<PeerMsg> {
    debug_assert!(
        msg.since() > version,
        "{} is already understood by version {version}",
        msg.kind()
    );
    // Version 6 added variants only: none has an older equivalent yet.
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MIN_PROTOCOL_VERSION;

    #[test]
    fn nothing_has_an_older_shape_yet() {
        let msg = PeerMsg::TransferAck { id: 1 };
        assert_eq!(msg.since(), MIN_PROTOCOL_VERSION);
        assert_eq!(downgrade(msg, MIN_PROTOCOL_VERSION - 1), None);
    }
}
