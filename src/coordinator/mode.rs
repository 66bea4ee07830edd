//! How a write reaches its replicas: the message each [`Mode`] sends.

use bytes::Bytes;

use crate::message::{ApplyReq, PeerMsg, RmwPut};
use crate::store::{Entry, Version};

/// How a write reaches its replicas.
pub(crate) enum Mode<'a> {
    /// A plain write ([`PeerMsg::Put`]).
    Plain,
    /// The write of a read-modify-write that read this version
    /// ([`PeerMsg::PutRmw`]): replicas report conflicts.
    Rmw(Option<Version>),
    /// A typed write ([`PeerMsg::Apply`]): replicas check the key's type
    /// and report the elements they held. If some refuse for the type and
    /// others apply it, the refusers are sent it as a plain write. With
    /// the wall clock (ms) read when the write was stamped, which judges
    /// expiry in this node's own copy.
    Checked(&'a crate::values::Check, u64),
}

impl Mode<'_> {
    pub(super) fn message(&self, id: u64, key: Bytes, entry: Entry) -> PeerMsg {
        match self {
            Mode::Plain => PeerMsg::Put { id, key, entry },
            Mode::Rmw(read) => PeerMsg::PutRmw(Box::new(RmwPut {
                id,
                key,
                entry,
                read: *read,
            })),
            Mode::Checked(check, _) => PeerMsg::Apply(Box::new(ApplyReq {
                id,
                key,
                entry,
                check: (*check).clone(),
            })),
        }
    }
}
