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
//! Version 6 only appends variants; no existing variant changed shape, so
//! every message a version 5 peer can decode is sent to it unchanged. Of
//! the version 6 variants:
//!
//! - `PutRmw`, the write of a read-modify-write, is sent to a version 5
//!   replica as the plain `Put` it also is; the replica stores it alike
//!   and answers a plain `PutAck`, so the coordinator only misses that
//!   replica's conflict report.
//! - The metadata messages (`MetaPush`, `MetaAck`, `MetaDigest`) have no
//!   version 5 form: a version 5 node cannot hold the cluster-wide record,
//!   which is why FLUSHALL refuses to run while one is up.
//!
//! Of the version 13 variants, `IncrCarry` is sent to an older owner as the
//! `Incr` (or `IncrStrict`) it extends: that owner sends the coordinator
//! the delta as a replica and answers `IncrReply`, which the coordinator
//! takes as before. `IncrCarried` answers only an `IncrCarry`, so it has no
//! older form; were it ever dropped, the coordinator's increment would
//! time out as indeterminate, which it is.
//!
//! A future version that reshapes a message (a field added to `Put`, say)
//! adds its case here: the new variant, or the new shape, is rebuilt as
//! the old one when the link's version predates it, and the caller above
//! never needs to know which version it talks to.
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
    match msg {
        PeerMsg::PutRmw(put) if version >= 5 => {
            let super::RmwPut { id, key, entry, .. } = *put;
            Some(PeerMsg::Put { id, key, entry })
        }
        // The owner then sends the coordinator the delta as to any other
        // replica, and counts its acknowledgement: what it did before 13.
        PeerMsg::IncrCarry {
            id,
            key,
            field,
            by,
            w,
            strict: false,
        } if version >= 7 => Some(PeerMsg::Incr {
            id,
            key,
            field,
            by,
            w,
        }),
        PeerMsg::IncrCarry {
            id,
            key,
            field,
            by,
            w,
            strict: true,
        } if version >= super::PLACEMENT_SINCE => Some(PeerMsg::IncrStrict {
            id,
            key,
            field,
            by,
            w,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MIN_PROTOCOL_VERSION;

    #[test]
    fn a_read_modify_write_reaches_a_version_5_replica_as_a_plain_put() {
        let entry = crate::store::Entry::string(
            crate::store::Version::default(),
            bytes::Bytes::from_static(b"v"),
        );
        let msg = PeerMsg::PutRmw(Box::new(super::super::RmwPut {
            id: 7,
            key: bytes::Bytes::from_static(b"k"),
            entry: entry.clone(),
            read: None,
        }));
        assert_eq!(
            downgrade(msg, 5),
            Some(PeerMsg::Put {
                id: 7,
                key: bytes::Bytes::from_static(b"k"),
                entry
            })
        );
        let digest = PeerMsg::MetaDigest { digest: 1 };
        assert_eq!(downgrade(digest, 5), None);
        let old = PeerMsg::TransferAck { id: 1 };
        assert_eq!(old.since(), MIN_PROTOCOL_VERSION);
        assert_eq!(downgrade(old, MIN_PROTOCOL_VERSION - 1), None);
    }

    /// An `IncrCarry` reaches an older owner as the increment that owner
    /// knows (strict only from protocol 9), and no older peer is ever
    /// sent an `IncrCarried`.
    #[test]
    fn a_carried_increment_reaches_an_older_owner_as_a_plain_one() {
        let k = bytes::Bytes::from_static(b"k");
        let carry = |strict| PeerMsg::IncrCarry {
            id: 3,
            key: k.clone(),
            field: None,
            by: -2,
            w: 2,
            strict,
        };
        let plain = PeerMsg::Incr {
            id: 3,
            key: k.clone(),
            field: None,
            by: -2,
            w: 2,
        };
        let strict = PeerMsg::IncrStrict {
            id: 3,
            key: k.clone(),
            field: None,
            by: -2,
            w: 2,
        };
        assert_eq!(downgrade(carry(false), 12), Some(plain.clone()));
        assert_eq!(downgrade(carry(false), 7), Some(plain));
        assert_eq!(downgrade(carry(false), 6), None);
        assert_eq!(downgrade(carry(true), 12), Some(strict.clone()));
        assert_eq!(downgrade(carry(true), 9), Some(strict));
        assert_eq!(downgrade(carry(true), 8), None);
        let carried = PeerMsg::IncrCarried {
            id: 3,
            value: 1,
            delta: crate::store::Entry::string(crate::store::Version::default(), k),
        };
        assert_eq!(downgrade(carried, 12), None);
    }
}
