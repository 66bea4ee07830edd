//! Rich states as bytes: how the store packs them and the commit log
//! writes them.
//!
//! A rich state is encoded with the peer encoding ([`crate::encoding`],
//! bincode with fixed-width integers): one format for the wire, the store
//! and the log, and one place that knows bincode. A plain string or a
//! tombstone is never encoded here: the store and the log keep their own,
//! smaller, simple forms for those.

use super::{Entry, Rich, Simple, Version};
use crate::error::{Error, Result};

impl crate::encoding::Wire for Rich {}

/// The bytes of a rich state.
pub fn encode(rich: &Rich) -> Result<Vec<u8>> {
    crate::encoding::to_vec_sized(rich, super::rich_len(rich) + 16)
}

/// A rich state from its bytes; damage is [`Error::Corrupt`].
pub fn decode(bytes: &[u8]) -> Result<Rich> {
    crate::encoding::from_slice(bytes).map_err(|e| Error::Corrupt(format!("rich value: {e}")))
}

/// An entry's body, owned: what the commit log writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedBody {
    /// A delete.
    Dead,
    /// A plain string.
    Str(bytes::Bytes),
    /// A rich state's encoding.
    Rich(bytes::Bytes),
}

impl Entry {
    /// The version and body, owned, taking the string without a copy.
    pub fn into_owned_body(self) -> Result<(Version, OwnedBody)> {
        let version = self.version;
        let body = match self.state {
            super::State::Dead => OwnedBody::Dead,
            super::State::Str(v) => OwnedBody::Str(v),
            super::State::Rich(r) => OwnedBody::Rich(encode(&r)?.into()),
        };
        Ok((version, body))
    }

    /// The entry an owned body stands for.
    pub fn from_owned_body(version: Version, body: OwnedBody) -> Result<Entry> {
        Ok(match body {
            OwnedBody::Dead => Entry::tombstone(version),
            OwnedBody::Str(v) => Entry::string(version, v),
            OwnedBody::Rich(r) => Entry::rich(decode(&r)?),
        })
    }

    /// Its body as bytes, for the commit log: a rich state is encoded
    /// into `scratch`, which the result borrows.
    pub fn encoded<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<Encoded<'a>> {
        Ok(match self.as_simple() {
            Some(Simple::Dead) => Encoded::Dead,
            Some(Simple::Str(v)) => Encoded::Str(v),
            None => {
                // Borrowed: `to_rich` would copy every field and member.
                *scratch = self.with_rich(encode)?;
                Encoded::Rich(scratch)
            }
        })
    }
}

/// An entry's body as bytes (see [`Entry::encoded`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoded<'a> {
    /// A delete.
    Dead,
    /// A plain string.
    Str(&'a [u8]),
    /// A rich state's encoding.
    Rich(&'a [u8]),
}
