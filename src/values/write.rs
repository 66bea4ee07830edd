//! What each kind of write puts under a key: the deltas commands send.
//!
//! A command never builds a rich state piece by piece; it asks for the
//! delta that says what it did, stamped with its write's version, and the
//! merge (`rich.rs`) does the rest. Each delta holds only what the write
//! touched, so it ships and logs small.

use std::borrow::Cow;

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
    /// The hash field holds a value that is not an integer.
    FieldNotInteger,
}

impl Entry {
    /// An increment by `by` of the share of counter identity `identity`
    /// (see `rich.rs`) in the key's own counter (`field` `None`: INCR) or
    /// in a hash field's (HINCRBY), made by that share's owner on its own
    /// copy of the key, `current`, at `now_ms` and stamped `version`
    /// (newer than anything in `current`): the delta to merge and
    /// replicate, and the counter's value after it as this copy has it.
    ///
    /// A live string (or field value) that is an integer is the counter's
    /// starting value; an absent one starts at zero. A key that does not
    /// exist but holds something (expired, removed) is started over: the
    /// delta clears what was left of it, its deadline and old shares too.
    pub fn increment(
        current: Option<super::EntryRef<'_>>,
        field: Option<&Bytes>,
        identity: u64,
        by: i64,
        version: Version,
        now_ms: u64,
    ) -> Result<(Entry, i64), IncrError> {
        let mut delta = Rich::default();
        let want = if field.is_some() {
            super::Kind::Hash
        } else {
            super::Kind::String
        };
        // No counter yet: no string and no shares.
        let none = || (Cow::Owned(None), Cow::Owned(super::Shards::new()));
        let (string, shards) = match current {
            Some(c) if c.exists(now_ms) => {
                if c.kind(now_ms) != Some(want) {
                    return Err(IncrError::WrongType);
                }
                match (field, c.body) {
                    // The key's own counter is read where it lies.
                    (None, super::Body::Rich(cell)) => {
                        let (string, shards) = cell.counter();
                        (Cow::Borrowed(string), Cow::Borrowed(shards))
                    }
                    (None, super::Body::Simple(_)) => {
                        let rich = c.to_entry().to_rich();
                        (Cow::Owned(rich.string), Cow::Owned(rich.shards))
                    }
                    (Some(name), super::Body::Rich(cell)) => match cell.field(name) {
                        Some(f) => (Cow::Owned(f.value), Cow::Owned(f.shards)),
                        None => none(),
                    },
                    (Some(_), super::Body::Simple(_)) => none(),
                }
            }
            Some(c) => {
                delta.cleared = c.version.min(version.just_before());
                none()
            }
            None => none(),
        };
        let value = match super::counted(&string, &shards) {
            super::Counted::Int(n) => n,
            super::Counted::NotInteger if field.is_some() => {
                return Err(IncrError::FieldNotInteger)
            }
            super::Counted::NotInteger => return Err(IncrError::NotInteger),
        };
        let mine = shards.get(&identity);
        let value = value.checked_add(by).ok_or(IncrError::Overflow)?;
        let total = mine
            .map_or(0, |s| s.total)
            .checked_add(by)
            .ok_or(IncrError::Overflow)?;
        let shard = match mine {
            Some(s) => s.then(total, version),
            None => super::Shard::first(total, version),
        };
        let mut new = super::Shards::new();
        new.insert(identity, shard);
        match field {
            None => delta.shards = new,
            Some(name) => {
                delta.fields.insert(
                    name.clone(),
                    super::Field {
                        shards: new,
                        ..super::Field::default()
                    },
                );
            }
        }
        Ok((Entry::rich(delta), value))
    }
}

/// For each element a typed write checks, whether a replica held it live
/// before the write (see [`Check`]). Inline up to eight: a write of one
/// field or member, the usual case, allocates nothing for it on any node.
/// Encoded as a list, as a `Vec<bool>` is.
pub type Present = smallvec::SmallVec<[bool; 8]>;

/// What a typed write (HSET, SADD, HDEL, SREM...) asks each replica to
/// check before applying it, and to report.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Check {
    /// The type the key must have (or be absent).
    pub kind: super::Kind,
    /// Elements (hash fields or set members, as `kind` says) whose
    /// presence before the write is reported. Shared: the coordinator
    /// sends one check to every replica, and cloning it for each message
    /// costs a reference count, not a list (encoded as a list).
    pub names: std::sync::Arc<[Bytes]>,
}

impl Check {
    /// The delta a replica holding `current` applies for the typed write
    /// `delta`, and which of the checked elements it held live, or
    /// [`super::WrongType`] when the key holds another type (then nothing
    /// is applied).
    ///
    /// A key that does not exist here, but holds something (expired,
    /// deleted, or pieces of another type hidden by a newer removal), is
    /// cleared by the delta up to its newest version, so that the write
    /// starts it over as Redis would, instead of reviving what is left.
    /// A rich state with nothing live and no expiry (every member removed)
    /// is not: nothing in it can revive, and clearing it would also clear
    /// what other replicas added concurrently.
    pub fn apply_to(
        &self,
        delta: &Entry,
        current: Option<super::EntryRef<'_>>,
        now_ms: u64,
    ) -> Result<(Entry, Present), super::WrongType> {
        let Some(current) = current else {
            return Ok((delta.clone(), smallvec::smallvec![false; self.names.len()]));
        };
        match current.kind(now_ms) {
            Some(k) if k != self.kind => Err(super::WrongType),
            // A set whose members were all removed (or a hash whose fields
            // were): the delta applies as to a live one. Starting over
            // would clear, up to this replica's newest removal, the
            // elements other replicas added meanwhile, which this one has
            // not seen yet: acknowledged SADDs lost (found by the
            // simulated cluster).
            None if current.is_bare() => {
                Ok((delta.clone(), smallvec::smallvec![false; self.names.len()]))
            }
            Some(_) => {
                let present = self
                    .names
                    .iter()
                    .map(|n| current.has_element_of(self.kind, n))
                    .collect();
                Ok((delta.clone(), present))
            }
            None => {
                let cleared = current.version.min(delta.version().just_before());
                let start_over = Entry::rich(Rich {
                    cleared,
                    ..Rich::default()
                });
                Ok((
                    delta.clone().merge(&start_over),
                    smallvec::smallvec![false; self.names.len()],
                ))
            }
        }
    }
}

impl Entry {
    /// HSET's delta: each field replaced by its new value (its old value
    /// and counter shares die), stamped `version`.
    pub fn hash_set(version: Version, pairs: &[(Bytes, Bytes)]) -> Entry {
        let mut r = Rich::default();
        for (name, value) in pairs {
            r.fields.insert(
                name.clone(),
                super::Field {
                    cleared: version.just_before(),
                    value: Some(super::Lww {
                        version,
                        value: value.clone(),
                    }),
                    shards: super::Shards::new(),
                },
            );
        }
        Entry::rich_stamped(r, version)
    }

    /// HDEL's delta: each field removed (everything in it up to `version`).
    pub fn hash_delete(version: Version, names: &[Bytes]) -> Entry {
        let mut r = Rich::default();
        for name in names {
            r.fields.insert(
                name.clone(),
                super::Field {
                    cleared: version,
                    ..super::Field::default()
                },
            );
        }
        Entry::rich_stamped(r, version)
    }

    /// SADD's (`present`) or SREM's delta: each member's register set at
    /// `version`.
    pub fn set_members(version: Version, members: &[Bytes], present: bool) -> Entry {
        let mut r = Rich::default();
        for m in members {
            r.members.insert(
                m.clone(),
                super::Lww {
                    version,
                    value: present,
                },
            );
        }
        Entry::rich_stamped(r, version)
    }

    /// A whole new set under the key (SINTERSTORE and the other STORE
    /// forms): everything older dies, these members are added. An empty
    /// set is a delete, as in Redis.
    pub fn replace_set(version: Version, members: &[Bytes]) -> Entry {
        if members.is_empty() {
            return Entry::tombstone(version);
        }
        let mut e = Entry::set_members(version, members, true).to_rich();
        e.cleared = version.just_before();
        Entry::rich(e)
    }
}
