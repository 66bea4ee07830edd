//! How commands read a key whole and write what they computed from it:
//! the helpers every read-modify-write shares.
//!
//! A command reads a key with a quorum read ([`read_key`]), which answers
//! the merged entry as the replicas hold it, expired or deleted ones
//! included: a write computed from it is stamped after the version read
//! (see `Shared::write_with`), which a deleted or expired key has too. The
//! command looks at the key as it is *now* ([`Found::live`]), by this
//! node's wall clock, read once per command so that every check in it
//! agrees.

use bytes::Bytes;

use super::{error_reply, wrong_type};
use crate::coordinator::{Quorum, WriteOutcome};
use crate::node::shared::Shared;
use crate::resp::codec::Reply;
use crate::store::{Entry, Version};

/// What a quorum read found of a key.
#[derive(Debug)]
pub struct Found {
    /// The merged entry, tombstones and expired keys included.
    pub entry: Option<Entry>,
    /// This node's wall clock when the read returned (ms since the epoch).
    pub now: u64,
}

impl Found {
    /// The entry if the key exists now.
    pub fn live(&self) -> Option<&Entry> {
        self.entry.as_ref().filter(|e| e.exists(self.now))
    }

    /// The version read, for a write computed from it.
    pub fn seen(&self) -> Option<Version> {
        self.entry.as_ref().map(Entry::version)
    }

    /// The key's expiry deadline now, if it exists and has one.
    pub fn deadline(&self) -> Option<u64> {
        self.live().and_then(Entry::deadline)
    }

    /// The string the key holds now, or WRONGTYPE.
    pub fn string(&self) -> Result<Option<Bytes>, Reply> {
        match &self.entry {
            None => Ok(None),
            Some(e) => e.string_value(self.now).map_err(|_| wrong_type()),
        }
    }
}

/// A quorum read of `key` (see the module doc).
pub async fn read_key(shared: &Shared, key: Bytes, q: Quorum) -> Result<Found, Reply> {
    let entry = shared.read(key, q).await.map_err(|e| error_reply(&e))?;
    Ok(Found {
        entry,
        now: crate::clock::wall_millis(),
    })
}

/// The write of a read-modify-write: what `build` makes of the write's
/// version, stamped after what `found` read.
pub async fn write_after(
    shared: &Shared,
    key: Bytes,
    q: Quorum,
    found: &Found,
    build: impl FnOnce(Version) -> Entry,
) -> Result<WriteOutcome, Reply> {
    shared
        .write_with(key, q, Some(found.seen()), build)
        .await
        .map_err(|e| error_reply(&e))
}
