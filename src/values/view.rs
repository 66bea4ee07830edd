//! What a key reads as: the interpretation commands need.
//!
//! A key is absent when it holds nothing live (deleted, never written, or
//! only removals left) or when its expiry deadline has passed by this
//! node's wall clock (`now_ms`, milliseconds since the epoch), as in
//! Cassandra: an expired key reads as absent at once on every node whose
//! clock has passed the deadline, with no sweep needed first, and nodes
//! disagree about it only for as long as their clocks do.
//!
//! A key has one type, as in Redis. If writes of different types met
//! (two sides of a partition created the key as a string and as a hash),
//! the type of the newest piece wins (a removal counts: a hash whose last
//! field was removed is absent) and the other pieces are not shown.
//!
//! A read that needs only some of a large hash or set asks the replicas
//! for a [`Part`] of it ([`Want`]): the head, the elements named, and
//! what a reader must know of the whole.

use bytes::Bytes;

use super::{Entry, Field, Rich, Shards, State, Version};

/// The type of a key, as TYPE names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// A string (counters included).
    String,
    /// A hash.
    Hash,
    /// A set.
    Set,
}

impl Kind {
    /// The name TYPE answers.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::Set => "set",
        }
    }
}

/// A command met a key of another type (Redis's `WRONGTYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrongType;

/// The sum of a string's integer and its counter shards, or why there is
/// none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// The counter's value.
    Int(i64),
    /// The string is not an integer (and increments cannot apply).
    NotInteger,
}

impl Entry {
    /// Whether the key's expiry has passed at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.deadline().is_some_and(|d| d <= now_ms)
    }

    /// The key's expiry deadline (ms since the epoch), if it has one.
    pub fn deadline(&self) -> Option<u64> {
        match &self.state {
            State::Rich(r) => r.ttl.as_ref().and_then(|t| t.value),
            _ => None,
        }
    }

    /// The key's type at `now_ms`, or `None` when it is absent.
    pub fn kind(&self, now_ms: u64) -> Option<Kind> {
        match &self.state {
            State::Dead => None,
            State::Str(_) => Some(Kind::String),
            State::Rich(r) if self.expired(now_ms) => {
                let _ = r;
                None
            }
            State::Rich(r) => kind_of(r),
        }
    }

    /// Whether the key exists at `now_ms`.
    pub fn exists(&self, now_ms: u64) -> bool {
        self.kind(now_ms).is_some()
    }

    /// [`Entry::string_value`] at the time `now_ms` gives, asked only for
    /// a state that can expire (a plain string or a tombstone needs no
    /// clock: the hot path of GET). Takes the entry, so a plain string's
    /// bytes are moved out: a clone of bytes just read from the store
    /// would allocate a shared header for them.
    pub fn into_string_value_with(
        self,
        now_ms: impl FnOnce() -> u64,
    ) -> Result<Option<Bytes>, WrongType> {
        match self.state {
            State::Str(v) => Ok(Some(v)),
            State::Dead => Ok(None),
            State::Rich(_) => self.string_value(now_ms()),
        }
    }

    /// The string the key holds at `now_ms` (a counter's decimal text),
    /// `None` when absent, [`WrongType`] when it is not a string.
    pub fn string_value(&self, now_ms: u64) -> Result<Option<Bytes>, WrongType> {
        match (&self.state, self.kind(now_ms)) {
            (State::Str(v), _) => Ok(Some(v.clone())),
            (_, None) => Ok(None),
            (State::Rich(r), Some(Kind::String)) => Ok(Some(text_of(&r.string, &r.shards))),
            _ => Err(WrongType),
        }
    }
}

impl super::EntryRef<'_> {
    /// Whether the key holds a rich state with nothing live in it and no
    /// expiry (a set whose members were all removed, a hash whose fields
    /// were all deleted): a typed write can go on from it as it is, since
    /// there is nothing to clear (see `Check::apply_to`).
    pub fn is_bare(&self) -> bool {
        match self.body {
            super::Body::Rich(c) => c.is_tombstone() && c.deadline().is_none(),
            super::Body::Simple(_) => false,
        }
    }

    /// Whether the key exists at `now_ms` ([`Entry::exists`]).
    pub fn exists(&self, now_ms: u64) -> bool {
        self.kind(now_ms).is_some()
    }

    /// The key's type at `now_ms` ([`Entry::kind`]).
    pub fn kind(&self, now_ms: u64) -> Option<Kind> {
        match self.body {
            super::Body::Simple(super::Simple::Dead) => None,
            super::Body::Simple(super::Simple::Str(_)) => Some(Kind::String),
            super::Body::Rich(c) => c.kind(now_ms),
        }
    }

    /// Whether the key, which the caller found to be of type `kind` (live,
    /// at its time), holds the live element `name` (a hash field or a set
    /// member). The type is not looked at again: it costs as much as the
    /// lookup.
    pub fn has_element_of(&self, kind: Kind, name: &[u8]) -> bool {
        match self.body {
            super::Body::Rich(c) => match kind {
                Kind::Hash => c.has_field(name),
                Kind::Set => c.has_member(name),
                Kind::String => false,
            },
            _ => false,
        }
    }
}

/// A string state's value: the string, or with live shards the counter's
/// decimal text (a string that is not an integer shows as it is; see
/// [`counted`]).
pub(super) fn text_of(string: &Option<super::Lww<Bytes>>, shards: &Shards) -> Bytes {
    if shards.is_empty() {
        return string.as_ref().map(|s| s.value.clone()).unwrap_or_default();
    }
    match counted(string, shards) {
        Counted::Int(n) => Bytes::from(n.to_string()),
        Counted::NotInteger => string.as_ref().map(|s| s.value.clone()).unwrap_or_default(),
    }
}

/// A counter's value: the string's integer (0 without a string) plus every
/// shard, saturating at the ends of 64 bits (increments that each fit but
/// overflow only once merged from two sides of a partition read as the
/// nearest end).
pub fn counted(string: &Option<super::Lww<Bytes>>, shards: &Shards) -> Counted {
    let base = match string {
        None => 0,
        Some(s) => match crate::resp::cmd::parse_int(&s.value) {
            Some(n) => n,
            None => return Counted::NotInteger,
        },
    };
    let sum: i128 = i128::from(base) + shards.values().map(|s| i128::from(s.total)).sum::<i128>();
    Counted::Int(sum.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// The newest version of a state's string pieces (its value and its
/// counter shares), if it has any.
pub(super) fn string_newest(r: &Rich) -> Option<super::Version> {
    string_newest_of(&r.string, &r.shards)
}

/// [`string_newest`] of the string register and the shards alone.
pub(super) fn string_newest_of(
    string: &Option<super::Lww<Bytes>>,
    shards: &super::Shards,
) -> Option<super::Version> {
    let register = string.as_ref().map(|s| s.version);
    // A hash's or a set's cell, and a plain string's, have no shards: every
    // typed write asks this (through `Cell::kind`), so they skip the walk.
    if shards.is_empty() {
        return register;
    }
    register
        .into_iter()
        .chain(shards.values().map(|s| s.version))
        .max()
}

/// The type of a key from the newest version of each type's pieces
/// (removals included) and whether each type has a live piece: the type
/// of the newest piece, if that type has a live one. A key whose last
/// field or member was removed is absent, even if a partition left older
/// pieces of another type under it (those stay hidden; DEL removes them).
#[inline]
pub(super) fn kind_from(
    string: Option<super::Version>,
    hash: Option<super::Version>,
    set: Option<super::Version>,
    live: (bool, bool, bool),
) -> Option<Kind> {
    // Written out, not as a `max_by_key` over the three: this runs twice
    // for every typed write on every node, and the iterator cost about 120
    // instructions a call. Of equal versions the later type wins, as
    // `max_by_key` chose (the test `kind_from_matches_max_by_key` checks).
    type Newest = Option<(super::Version, Kind)>;
    fn newer(best: Newest, v: Option<super::Version>, k: Kind) -> Newest {
        match (best, v) {
            (Some((b, _)), Some(v)) if v < b => best,
            (_, Some(v)) => Some((v, k)),
            (_, None) => best,
        }
    }
    let newest = newer(
        newer(newer(None, string, Kind::String), hash, Kind::Hash),
        set,
        Kind::Set,
    )?;
    let has_live = match newest.1 {
        Kind::String => live.0,
        Kind::Hash => live.1,
        Kind::Set => live.2,
    };
    has_live.then_some(newest.1)
}

/// The type of a rich state (see [`kind_from`]).
fn kind_of(r: &Rich) -> Option<Kind> {
    // As in a cell: pieces at or below `cleared` were removed by it.
    let alive = |v: super::Version| (v > r.cleared).then_some(v);
    kind_from(
        string_newest(r),
        r.fields.values().map(Field::newest).max().and_then(alive),
        r.members.values().map(|m| m.version).max().and_then(alive),
        (
            r.string.is_some() || !r.shards.is_empty(),
            r.fields.values().any(Field::is_live),
            r.members.values().any(|m| m.value),
        ),
    )
}

/// What a read asks a replica for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Want {
    /// The head only (type, deadline, string, counts).
    Head,
    /// The head and these hash fields.
    Fields(Vec<Bytes>),
    /// The head and these set members.
    Members(Vec<Bytes>),
}

/// A part of a key's state, with what a reader needs to know of the
/// whole: enough to answer HGET, HLEN, SISMEMBER, TYPE... without shipping
/// the whole of a large hash or set. Two parts from replicas whose
/// `digest` and `version` agree describe equal wholes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Part {
    /// The whole state's newest version.
    pub version: Version,
    /// The whole state's digest.
    pub digest: u64,
    /// The head and the elements asked for (those present).
    pub rich: Rich,
    /// The newest version of any hash field, removed ones included.
    pub hash_newest: Version,
    /// The newest version of any set member, removed ones included.
    pub set_newest: Version,
    /// Live hash fields.
    pub fields: u64,
    /// Members present.
    pub members: u64,
}

impl Part {
    /// The key's type at `now_ms`, or `None` when it is absent (as
    /// [`super::Cell::kind`] says of the whole).
    pub fn kind(&self, now_ms: u64) -> Option<Kind> {
        let r = &self.rich;
        if r.ttl
            .as_ref()
            .and_then(|t| t.value)
            .is_some_and(|d| d <= now_ms)
        {
            return None;
        }
        let alive = |v: Version| (v > r.cleared).then_some(v);
        kind_from(
            string_newest(r),
            alive(self.hash_newest),
            alive(self.set_newest),
            (
                r.string.is_some() || !r.shards.is_empty(),
                self.fields > 0,
                self.members > 0,
            ),
        )
    }

    /// The value of hash field `name`, if it holds one (a counter's
    /// decimal text).
    pub fn field(&self, name: &[u8]) -> Option<Bytes> {
        let f = self.rich.fields.get(name).filter(|f| f.is_live())?;
        Some(text_of(&f.value, &f.shards))
    }

    /// Whether set member `name` is present.
    pub fn has_member(&self, name: &[u8]) -> bool {
        self.rich.members.get(name).is_some_and(|m| m.value)
    }
}

impl super::Entry {
    /// The live fields of a hash and their values, in field order.
    pub fn hash_fields(&self) -> Vec<(Bytes, Bytes)> {
        self.to_rich()
            .fields
            .into_iter()
            .filter(|(_, f)| f.is_live())
            .map(|(n, f)| {
                let v = text_of(&f.value, &f.shards);
                (n, v)
            })
            .collect()
    }

    /// The members of a set, in order.
    pub fn set_members_present(&self) -> Vec<Bytes> {
        self.to_rich()
            .members
            .into_iter()
            .filter(|(_, m)| m.value)
            .map(|(n, _)| n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::values::Version;

    /// `kind_from`, written out by hand for speed, picks what the
    /// `max_by_key` over the three types it replaced picked, ties included:
    /// every combination of absent, older, equal and newer versions, and of
    /// live flags.
    #[test]
    fn kind_from_matches_max_by_key() {
        fn reference(
            string: Option<Version>,
            hash: Option<Version>,
            set: Option<Version>,
            live: (bool, bool, bool),
        ) -> Option<Kind> {
            let newest = [(string, Kind::String), (hash, Kind::Hash), (set, Kind::Set)]
                .into_iter()
                .filter_map(|(v, k)| v.map(|v| (v, k)))
                .max_by_key(|(v, _)| *v)?;
            let has_live = match newest.1 {
                Kind::String => live.0,
                Kind::Hash => live.1,
                Kind::Set => live.2,
            };
            has_live.then_some(newest.1)
        }
        let versions: Vec<Option<Version>> = std::iter::once(None)
            .chain([(1, 0), (1, 1), (2, 0)].map(|(ts, node)| {
                Some(Version {
                    ts: Timestamp(ts),
                    node,
                })
            }))
            .collect();
        let mut checked = 0;
        for &s in &versions {
            for &h in &versions {
                for &m in &versions {
                    for flags in 0..8u8 {
                        let live = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
                        assert_eq!(
                            kind_from(s, h, m, live),
                            reference(s, h, m, live),
                            "string {s:?} hash {h:?} set {m:?} live {live:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 4 * 4 * 4 * 8);
    }
}
