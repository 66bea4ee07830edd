//! The general state of a key: expiry, counters, hash fields, set members.
//!
//! A [`Rich`] is a state-based CRDT made of independent pieces, each merged
//! by its own rule, so that two replicas that took different writes (two
//! sides of a partition) merge into the same state whatever the order, and
//! lose nothing one of them acknowledged:
//!
//! - `cleared`: a version; every piece written at or before it is dead
//!   (DEL writes it at its own version, SET just below its own, a write
//!   that re-creates an expired key at the newest version it saw). Merged
//!   by maximum.
//! - `ttl`: a last-writer-wins register of the expiry deadline (ms since
//!   the epoch, or none); apart from the value, so that changing only the
//!   TTL never loses a concurrent write of the value.
//! - `string`: a last-writer-wins register of the string value.
//! - `shards`: the counter. Each identity (an incarnation of a node's
//!   data) owns one shard, `(total, version)`, the sum of the increments it
//!   applied since the last reset; only its owner writes it, with rising
//!   versions, so shards merge by keeping the newest version per identity,
//!   and a counter reads as the string's integer plus every live shard.
//!   Increments on both sides of a partition are in different shards and
//!   all count.
//! - `fields`: a hash, one [`Field`] per name; a field is itself a small
//!   string state (its own `cleared`, value register and shards), so
//!   HINCRBY counts like INCR.
//! - `members`: a set, one last-writer-wins register per member (present
//!   or removed): the later of an add and a remove wins (by version:
//!   timestamp, then node id). Two writes never share a version; if one
//!   were seen with both values, present would win (the greater value).
//!
//! Every merge keeps the maximum of a total order per piece, so it is
//! commutative, associative and idempotent; after a merge, pieces at or
//! before `cleared` are dropped (`normalize`), which keeps states equal
//! whenever they mean the same.

use super::sorted::SortedMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Version;

/// A last-writer-wins register.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lww<T> {
    /// The write that set it.
    pub version: Version,
    /// What it holds.
    pub value: T,
}

impl<T: Ord + Clone> Lww<T> {
    /// The winner of two registers: the higher version; for the same
    /// version (one write seen twice, or a broken peer), the greater value,
    /// so the choice never depends on the order.
    fn merge(a: &mut Option<Lww<T>>, b: &Option<Lww<T>>) -> bool {
        match (a.as_ref(), b) {
            (_, None) => false,
            (Some(x), Some(y)) if (x.version, &x.value) >= (y.version, &y.value) => false,
            (_, Some(y)) => {
                *a = Some(y.clone());
                true
            }
        }
    }
}

/// How many earlier increments a share remembers (besides its latest).
pub const MARKS: usize = 8;

/// How far back, from its latest increment, a share remembers earlier ones
/// (microseconds of the hybrid clock): a SET or DEL made concurrently with
/// increments within this window discards exactly those made before it.
pub const MARK_WINDOW_MICROS: u64 = 60_000_000;

/// One identity's share of a counter.
///
/// Only the identity's owner writes it, each increment a new state of the
/// whole share with a newer version, so replicas keep the newest state.
/// Besides the running total, a share remembers its first increment
/// (`since`) and up to [`MARKS`] earlier ones with the total after each
/// (`marks`, within [`MARK_WINDOW_MICROS`] of the latest), so that a SET or
/// DEL the owner had not seen (made on the other side of a partition) can
/// cut the share exactly where it was made: see [`Shard::cut`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shard {
    /// The sum of the increments this identity applied since the counter
    /// was last reset (as far as it knew).
    pub total: i64,
    /// The version of the last of them.
    pub version: Version,
    /// The version of the first of them.
    pub since: Version,
    /// Earlier increments, oldest first: each one's version and the total
    /// right after it (all older than `version`).
    pub marks: Vec<(Version, i64)>,
}

impl Shard {
    /// A share of one increment, `by`, at `version`.
    pub fn first(by: i64, version: Version) -> Shard {
        Shard {
            total: by,
            version,
            since: version,
            marks: Vec::new(),
        }
    }

    /// This share after one more increment, to `total` at `version`.
    pub fn then(&self, total: i64, version: Version) -> Shard {
        let mut marks = self.marks.clone();
        marks.push((self.version, self.total));
        let keep_from = version.ts.micros().saturating_sub(MARK_WINDOW_MICROS);
        marks.retain(|(v, _)| v.ts.micros() >= keep_from);
        if marks.len() > MARKS {
            marks.drain(..marks.len() - MARKS);
        }
        Shard {
            total,
            version,
            since: self.since,
            marks,
        }
    }

    /// The share once everything at or before `cleared` is dead: `None`
    /// when its latest increment is; itself when its first one is newer;
    /// else only the increments after the last one it remembers at or
    /// before `cleared`. When it remembers none that far back (`cleared`
    /// falls before its oldest mark), the whole share is kept: an
    /// acknowledged increment after the clear is never dropped, and older
    /// ones may count with it.
    pub fn cut(&self, cleared: Version) -> Option<Shard> {
        if self.version <= cleared {
            return None;
        }
        if self.since > cleared {
            return Some(self.clone());
        }
        let Some(j) = self.marks.iter().rposition(|(v, _)| *v <= cleared) else {
            return Some(self.clone());
        };
        let base = self.marks[j].1;
        let rest = &self.marks[j + 1..];
        Some(Shard {
            total: self.total.wrapping_sub(base),
            version: self.version,
            since: rest.first().map_or(self.version, |(v, _)| *v),
            marks: rest
                .iter()
                .map(|(v, t)| (*v, t.wrapping_sub(base)))
                .collect(),
        })
    }

    /// The order that picks one of two states of a share: the newer; for
    /// one version (one state, cut by different clears), the more cut
    /// (the later `since`), then a fixed order of the rest.
    fn key(&self) -> (Version, Version, i64, &[(Version, i64)]) {
        (self.version, self.since, self.total, &self.marks)
    }
}

/// Counter shards by identity.
pub type Shards = SortedMap<u64, Shard>;

/// Merges the shards of `b`, cut by `cleared`, into `a` (already cut by
/// it).
fn merge_shards(a: &mut Shards, b: &Shards, cleared: Version) -> bool {
    let mut changed = false;
    for (id, shard) in b {
        let Some(shard) = shard.cut(cleared) else {
            continue;
        };
        match a.get(id) {
            Some(mine) if mine.key() >= shard.key() => {}
            _ => {
                a.insert(*id, shard);
                changed = true;
            }
        }
    }
    changed
}

/// Cuts every shard by `cleared` (see [`Shard::cut`]).
fn cut_shards(shards: &mut Shards, cleared: Version) {
    let cut: Shards = std::mem::take(shards)
        .into_iter()
        .filter_map(|(id, s)| s.cut(cleared).map(|s| (id, s)))
        .collect();
    *shards = cut;
}

/// One field of a hash: a string state of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Field {
    /// Pieces of this field at or before this version are dead (HDEL,
    /// HSET over it).
    pub cleared: Version,
    /// The field's value register.
    pub value: Option<Lww<Bytes>>,
    /// HINCRBY's shards on top of it.
    pub shards: Shards,
}

impl Field {
    /// Merges `other` in, under a key whose pieces at or before `outer`
    /// are dead. Returns whether anything changed.
    pub(super) fn merge(&mut self, other: &Field, outer: Version) -> bool {
        let mut changed = false;
        // A field's clear that the key's covers means nothing.
        if other.cleared > self.cleared && other.cleared > outer {
            self.cleared = other.cleared;
            cut_shards(&mut self.shards, self.cleared);
            changed = true;
        }
        let cleared = self.cleared.max(outer);
        if other.value.as_ref().is_some_and(|v| v.version > cleared) {
            changed |= Lww::merge(&mut self.value, &other.value);
        }
        changed |= merge_shards(&mut self.shards, &other.shards, cleared);
        self.prune_with(outer);
        changed
    }

    /// Whether [`Field::prune_with`] under `outer` would leave it as it is,
    /// and it would be kept (it clears or holds something after `outer`).
    /// Checked cheaply, so it may answer `false` for a field that would be
    /// kept as it is (one with counter shares).
    pub(super) fn survives_as_is(&self, outer: Version) -> bool {
        self.cleared > outer
            && self.shards.is_empty()
            && self.value.as_ref().is_none_or(|v| v.version > self.cleared)
    }

    /// Drops the pieces at or before this field's `cleared` or the key's
    /// (`outer`), and forgets a `cleared` the key's own covers.
    pub(super) fn prune_with(&mut self, outer: Version) {
        let cleared = self.cleared.max(outer);
        if self.value.as_ref().is_some_and(|v| v.version <= cleared) {
            self.value = None;
        }
        cut_shards(&mut self.shards, cleared);
        if self.cleared <= outer {
            self.cleared = Version::ZERO;
        }
    }

    /// Whether anything of it is live.
    pub fn is_live(&self) -> bool {
        self.value.is_some() || !self.shards.is_empty()
    }

    /// The newest version in it.
    pub fn newest(&self) -> Version {
        let v = self.value.as_ref().map_or(Version::ZERO, |v| v.version);
        self.shards
            .values()
            .map(|s| s.version)
            .fold(v.max(self.cleared), Version::max)
    }
}

/// The general state of a key (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rich {
    /// Every piece at or before this version is dead.
    pub cleared: Version,
    /// The expiry deadline register (ms since the epoch; `None` inside:
    /// persistent).
    pub ttl: Option<Lww<Option<u64>>>,
    /// The string value register.
    pub string: Option<Lww<Bytes>>,
    /// The counter's shards over the string.
    pub shards: Shards,
    /// Hash fields.
    pub fields: SortedMap<Bytes, Field>,
    /// Set members: present (`true`) or removed.
    pub members: SortedMap<Bytes, Lww<bool>>,
}

impl Rich {
    /// Drops the markers of removed hash fields and set members whose
    /// removal is older than `before` (the tombstone grace period, as for a
    /// whole key's tombstone: a replica away for longer could bring such
    /// an element back). Returns whether any was dropped.
    pub fn purge_removed(&mut self, before: crate::clock::Timestamp) -> bool {
        let n = self.fields.len() + self.members.len();
        self.fields
            .retain(|_, f| f.is_live() || f.newest().ts >= before);
        self.members
            .retain(|_, m| m.value || m.version.ts >= before);
        n != self.fields.len() + self.members.len()
    }

    /// Merges `other` in. Returns whether anything changed.
    pub fn merge(&mut self, other: &Rich) -> bool {
        let mut changed = false;
        if other.cleared > self.cleared {
            self.cleared = other.cleared;
            self.normalize();
            changed = true;
        }
        let cleared = self.cleared;
        let alive = |v: Version| v > cleared;
        if other.ttl.as_ref().is_some_and(|t| alive(t.version)) {
            changed |= Lww::merge(&mut self.ttl, &other.ttl);
        }
        if other.string.as_ref().is_some_and(|s| alive(s.version)) {
            changed |= Lww::merge(&mut self.string, &other.string);
        }
        changed |= merge_shards(&mut self.shards, &other.shards, cleared);
        for (name, field) in &other.fields {
            match self.fields.get_mut(name) {
                Some(mine) => changed |= mine.merge(field, cleared),
                None => {
                    let mut field = field.clone();
                    field.prune_with(cleared);
                    if field.is_live() || field.cleared > cleared {
                        self.fields.insert(name.clone(), field);
                        changed = true;
                    }
                }
            }
        }
        self.fields
            .retain(|_, f| f.is_live() || f.cleared > cleared);
        for (member, reg) in other.members.iter().filter(|(_, m)| alive(m.version)) {
            let mut mine = self.members.get(member).cloned();
            if Lww::merge(&mut mine, &Some(reg.clone())) {
                self.members.insert(member.clone(), reg.clone());
                changed = true;
            }
        }
        changed
    }

    /// Drops every piece at or before `cleared`, and fields left with
    /// nothing that could matter later (no live piece and a `cleared` that
    /// the key's own covers).
    pub fn normalize(&mut self) {
        let cleared = self.cleared;
        if self.ttl.as_ref().is_some_and(|t| t.version <= cleared) {
            self.ttl = None;
        }
        if self.string.as_ref().is_some_and(|s| s.version <= cleared) {
            self.string = None;
        }
        cut_shards(&mut self.shards, cleared);
        self.fields.retain(|_, f| {
            f.prune_with(cleared);
            f.is_live() || f.cleared > cleared
        });
        self.members.retain(|_, m| m.version > cleared);
    }

    /// The newest version of any piece (or `cleared`).
    pub fn newest(&self) -> Version {
        let mut v = self.cleared;
        for reg in [
            self.ttl.as_ref().map(|t| t.version),
            self.string.as_ref().map(|s| s.version),
        ]
        .into_iter()
        .flatten()
        {
            v = v.max(reg);
        }
        v = self
            .shards
            .values()
            .map(|s| s.version)
            .fold(v, Version::max);
        v = self
            .fields
            .values()
            .map(Field::newest)
            .fold(v, Version::max);
        self.members
            .values()
            .map(|m| m.version)
            .fold(v, Version::max)
    }

    /// Makes every piece at or before `version` dead (a FLUSHALL marker,
    /// say). Returns whether anything changed.
    pub fn clear_up_to(&mut self, version: Version) -> bool {
        if version <= self.cleared {
            return false;
        }
        self.cleared = version;
        self.normalize();
        true
    }
}
