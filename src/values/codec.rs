//! Rich states as bytes: how the store packs them and the commit log
//! writes them.
//!
//! A rich state is encoded with the peer encoding ([`crate::encoding`],
//! bincode with fixed-width integers): one format for the wire, the store
//! and the log, and one place that knows bincode. A plain string or a
//! tombstone is never encoded here: the store and the log keep their own,
//! smaller, simple forms for those.
//!
//! An entry's rich state keeps its encoding once something has made it
//! ([`Shared`]): a typed write's delta is encoded once, for the
//! coordinator's log record and every replica's frame, and a replica
//! that decoded a delta from a frame keeps the bytes it came in for its
//! own log. The bytes are exactly the state's encoding: a rich state is
//! never changed in place (a merge builds a new one), and one decoded
//! from bytes that are not its canonical encoding (which no node sends)
//! would only be logged as it came, and read back as the same state.

use std::sync::OnceLock;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Entry, Rich, Version};
use crate::error::{Error, Result};

/// A rich state as entries share it: the state, and its encoding once
/// made (see the module doc). Compared, hashed and encoded as the state
/// alone.
#[derive(Debug, Default)]
pub struct Shared {
    rich: Rich,
    encoded: OnceLock<Bytes>,
}

impl Shared {
    /// `rich`, not yet encoded.
    pub(super) fn new(rich: Rich) -> Shared {
        Shared {
            rich,
            encoded: OnceLock::new(),
        }
    }

    /// `rich` with `encoded`, which must be its encoding.
    fn with_bytes(rich: Rich, encoded: Bytes) -> Shared {
        Shared {
            rich,
            encoded: OnceLock::from(encoded),
        }
    }

    /// Its encoding, made on the first call.
    fn encoded(&self) -> Result<&Bytes> {
        if let Some(b) = self.encoded.get() {
            return Ok(b);
        }
        let bytes = Bytes::from(encode(&self.rich)?);
        Ok(self.encoded.get_or_init(|| bytes))
    }
}

impl std::ops::Deref for Shared {
    type Target = Rich;

    fn deref(&self) -> &Rich {
        &self.rich
    }
}

impl PartialEq for Shared {
    fn eq(&self, other: &Shared) -> bool {
        self.rich == other.rich
    }
}

impl Eq for Shared {}

impl std::hash::Hash for Shared {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.rich.hash(state);
    }
}

impl Serialize for Shared {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.rich.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Shared {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Shared, D::Error> {
        Rich::deserialize(d).map(Shared::new)
    }
}

impl crate::encoding::Wire for Rich {}

/// The bytes of a rich state (written by hand: `wire.rs`).
pub fn encode(rich: &Rich) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(super::wire::encoded_len(rich));
    super::wire::encode_into(rich, &mut out);
    Ok(out)
}

/// A rich state from its bytes, which must hold exactly one; damage is
/// [`Error::Corrupt`].
pub fn decode(bytes: &[u8]) -> Result<Rich> {
    let corrupt = |why: String| Error::Corrupt(format!("rich value: {why}"));
    let (rich, used) = super::wire::decode(super::wire::Source::Slice(bytes))
        .map_err(|e| corrupt(e.to_string()))?;
    if used != bytes.len() {
        return Err(corrupt(format!(
            "{} trailing bytes after the value",
            bytes.len() - used
        )));
    }
    Ok(rich)
}

/// An entry's body, owned: what a commit log record holds, read back
/// into an entry on replay.
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
    /// The entry an owned body stands for.
    pub fn from_owned_body(version: Version, body: OwnedBody) -> Result<Entry> {
        Ok(match body {
            OwnedBody::Dead => Entry::tombstone(version),
            OwnedBody::Str(v) => Entry::string(version, v),
            OwnedBody::Rich(r) => Entry::rich(decode(&r)?),
        })
    }

    /// Its body as bytes, for the commit log (a rich state's encoding,
    /// made once).
    pub fn encoded(&self) -> Result<Encoded<'_>> {
        Ok(match &self.state {
            super::State::Dead => Encoded::Dead,
            super::State::Str(v) => Encoded::Str(v),
            super::State::Rich(r) => Encoded::Rich(r.encoded()?),
        })
    }

    /// Its rich state's encoding (made once), or `None` for a plain
    /// string or a tombstone: what a typed write's frame carries.
    pub fn rich_bytes(&self) -> Result<Option<&Bytes>> {
        match &self.state {
            super::State::Rich(r) => r.encoded().map(Some),
            _ => Ok(None),
        }
    }

    /// The entry of a frame: `version`, and the rich state `r` reads next,
    /// keeping the bytes it was read from. As the frame's entry would
    /// decode: its version as sent, not recomputed.
    pub fn rich_from_frame(version: Version, r: &mut super::wire::Reader<'_>) -> Result<Entry> {
        let (rich, bytes) = r.rich_kept()?;
        let state = super::State::Rich(std::sync::Arc::new(Shared::with_bytes(rich, bytes)));
        Ok(Entry { version, state })
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
