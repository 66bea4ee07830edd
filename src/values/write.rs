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

/// Why a counter was not incremented (Redis's errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum IncrError {
    /// The key holds another type.
    WrongType,
    /// The key holds a string that is not an integer.
    NotInteger,
    /// The result would not fit in 64 bits.
    Overflow,
}

impl Entry {
    /// An increment by `by` of the share of counter identity `identity`
    /// (see `rich.rs`), made by that share's owner on its own copy of the
    /// key, `current`, at `now_ms` and stamped `version` (newer than
    /// anything in `current`): the delta to merge and replicate, and the
    /// counter's value after it as this copy has it.
    ///
    /// A live string that is an integer is the counter's starting value;
    /// an absent or expired key starts at zero, and the delta clears what
    /// was left of it (an expired value, its deadline, old shares).
    pub fn increment(
        current: Option<&Entry>,
        identity: u64,
        by: i64,
        version: Version,
        now_ms: u64,
    ) -> Result<(Entry, i64), IncrError> {
        let mut delta = Rich::default();
        let (value, mine) = match current {
            Some(e) if e.exists(now_ms) => {
                if e.kind(now_ms) != Some(super::Kind::String) {
                    return Err(IncrError::WrongType);
                }
                let rich = e.to_rich();
                let value = match super::counted(&rich.string, &rich.shards) {
                    super::Counted::Int(n) => n,
                    super::Counted::NotInteger => return Err(IncrError::NotInteger),
                };
                (value, rich.shards.get(&identity).map_or(0, |s| s.total))
            }
            Some(e) => {
                delta.cleared = e.version();
                (0, 0)
            }
            None => (0, 0),
        };
        let value = value.checked_add(by).ok_or(IncrError::Overflow)?;
        let total = mine.checked_add(by).ok_or(IncrError::Overflow)?;
        delta
            .shards
            .insert(identity, super::Shard { total, version });
        Ok((Entry::rich(delta), value))
    }
}
