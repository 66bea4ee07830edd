//! What each kind of write puts under a key: the deltas commands send.
//!
//! A command never builds a rich state piece by piece; it asks for the
//! delta that says what it did, stamped with its write's version, and the
//! merge (`rich.rs`) does the rest. Each delta holds only what the write
//! touched, so it ships and logs small.

use bytes::Bytes;

use super::{Entry, Lww, Rich, Version};

impl Entry {
    /// A write of the whole value as a string (SET, SETEX, GETSET, APPEND
    /// and the other rewrites): everything older under the key dies
    /// (fields, members, counter shards, and the expiry), and the key then
    /// expires at `deadline` (ms since the epoch) if one is given.
    pub fn set_string(version: Version, value: Bytes, deadline: Option<u64>) -> Entry {
        let Some(deadline) = deadline else {
            return Entry::string(version, value);
        };
        Entry::rich(Rich {
            cleared: version.just_before(),
            string: Some(Lww { version, value }),
            ttl: Some(Lww {
                version,
                value: Some(deadline),
            }),
            ..Rich::default()
        })
    }

    /// A change of the key's expiry alone (EXPIRE, PERSIST, GETEX): the
    /// deadline register, and nothing of the value, so that a concurrent
    /// write of the value is not lost. `None` makes the key persistent.
    pub fn set_expiry(version: Version, deadline: Option<u64>) -> Entry {
        Entry::rich(Rich {
            ttl: Some(Lww {
                version,
                value: deadline,
            }),
            ..Rich::default()
        })
    }

    /// What an expired key is reduced to once no node's clock can still
    /// see it live: a delete at its newest version, which shadows every
    /// piece of it (and every older version of the key a lagging replica
    /// may hold), and is purged after the tombstone grace period like any
    /// delete. Kept separate from the expiry itself so that reads never
    /// depend on when this ran.
    pub fn reclaimed(&self) -> Entry {
        Entry::tombstone(self.version())
    }
}
