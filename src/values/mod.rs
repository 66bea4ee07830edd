//! What a value is, and how two versions of it merge: the one place that
//! knows.
//!
//! Every key a node holds is an [`Entry`]: a [`Version`] and what the key
//! holds. Three shapes, chosen by what the key needs, never by the caller:
//!
//! - a **tombstone** (a delete), which takes part in merges so that the
//!   delete wins over every older write instead of letting a replica that
//!   missed it bring the value back;
//! - a **plain string** written at the entry's version: the common case,
//!   kept as small and as fast as a version and a byte string;
//! - a **rich** state ([`Rich`], in `rich.rs`), for everything else:
//!   an expiry, a counter, a hash, a set. Rich states are CRDTs: writes
//!   ship as *deltas* (a rich state holding only what changed, such as one
//!   hash field), and merging a delta, or a whole state, keeps every
//!   acknowledged update.
//!
//! A tombstone and a plain string are rich states too (a tombstone is
//! `cleared` at its version; a string is a string register with `cleared`
//! just before it), and two entries merge as their rich forms would. The
//! result is brought back to the simplest shape that means the same
//! ([`Entry::canonical`]), so equal states compare equal and hash alike.
//! Two plain strings or tombstones merge as last-writer-wins on
//! `(timestamp, writer)`, without building rich forms: that is the hot path.
//!
//! The merge laws, property-tested in `tests.rs`: commutative, associative,
//! idempotent, and a tombstone is a value like any other. They hold because
//! every piece of a rich state is merged by the maximum of a total order.
//!
//! An entry's version is the newest version in it: for a plain string or a
//! tombstone, its write; for a rich state, its newest piece. It orders
//! entries for anti-entropy summaries and decides what a FLUSHALL marker
//! removes; it is not enough to merge two rich states, which is why
//! nothing outside this module compares versions to decide a merge.
//!
//! Deliberately left out: lists, sorted sets and streams.

mod cell;
#[cfg(test)]
mod check_tests;
pub mod codec;
mod elem;
mod elems;
pub mod float;
#[cfg(test)]
mod model_tests;
mod rich;
pub mod sections;
mod sink;
pub mod sorted;
#[cfg(test)]
pub(crate) mod tests;
mod view;
pub mod wire;
mod write;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
pub use cell::{rich_digest, Cell};
pub use rich::{Field, Lww, Rich, Shard, Shards, MARKS, MARK_WINDOW_MICROS};
pub use view::{counted, Counted, Kind, Part, Want, WrongType};
pub use write::{Check, IncrError, Present};

/// A node's numeric id: the first 8 bytes of SHA-1(name), big-endian.
pub type NodeId = u64;

/// The version of a write: timestamp first, writer id as the tie-break.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version {
    /// When the write happened, by the coordinator's hybrid logical clock.
    pub ts: Timestamp,
    /// Which node coordinated the write.
    pub node: NodeId,
}

impl Version {
    /// Older than every write.
    pub const ZERO: Version = Version {
        ts: Timestamp(0),
        node: 0,
    };

    /// The greatest version below this one: what a write that replaces a
    /// whole key clears, so that everything before it dies but the write
    /// itself does not. (Not defined for [`Version::ZERO`], which is no
    /// write's version: the clock starts above it.)
    pub fn just_before(self) -> Version {
        match self.node.checked_sub(1) {
            Some(node) => Version { ts: self.ts, node },
            None => Version {
                ts: Timestamp(self.ts.0.saturating_sub(1)),
                node: NodeId::MAX,
            },
        }
    }
}

/// What a key holds, in its simplest shape (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum State {
    /// Nothing: a delete at the entry's version.
    Dead,
    /// A string written at the entry's version.
    Str(Bytes),
    /// Anything else. Shared: a write sends its delta to each replica,
    /// and a copy of the entry must not copy every field or member.
    Rich(std::sync::Arc<codec::Shared>),
}

/// A key's versioned state on one replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    version: Version,
    state: State,
}

/// An entry in its simple shapes, borrowed: what the store packs without
/// encoding and the commit log writes as its classic records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simple<'a> {
    /// A tombstone.
    Dead,
    /// A plain string.
    Str(&'a [u8]),
}

/// An entry as a store holds it: a simple shape, or a rich state in a
/// [`Cell`].
#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    /// A tombstone or a plain string.
    Simple(Simple<'a>),
    /// A rich state.
    Rich(&'a Cell),
}

/// An entry borrowed from where it is stored: what the store's iteration
/// lends out without copying.
#[derive(Clone, Copy, Debug)]
pub struct EntryRef<'a> {
    /// The entry's version (its newest piece).
    pub version: Version,
    /// Its body.
    pub body: Body<'a>,
}

impl EntryRef<'_> {
    /// Whether it holds nothing live ([`Entry::is_tombstone`]).
    pub fn is_tombstone(&self) -> bool {
        match self.body {
            Body::Simple(Simple::Dead) => true,
            Body::Simple(Simple::Str(_)) => false,
            Body::Rich(c) => c.is_tombstone(),
        }
    }

    /// About the bytes it takes in the store beyond its key.
    pub fn body_len(&self) -> usize {
        match self.body {
            Body::Simple(Simple::Dead) => 0,
            Body::Simple(Simple::Str(v)) => v.len(),
            Body::Rich(c) => c.mem_bytes(),
        }
    }

    /// What anti-entropy compares of it with another replica's copy.
    pub fn summary(&self) -> Summary {
        Summary {
            version: self.version,
            body: self.digest_part(),
        }
    }

    /// A hash of its contents for anti-entropy digests: for the simple
    /// shapes, of the tombstone flag (a string's bytes are named by its
    /// version); for a rich state, its [`rich_digest`] with bit 1 set.
    pub fn digest_part(&self) -> u64 {
        match self.body {
            Body::Simple(Simple::Dead) => 1,
            Body::Simple(Simple::Str(_)) => 0,
            Body::Rich(c) => c.digest() | 2,
        }
    }

    /// An owned copy.
    pub fn to_entry(&self) -> Entry {
        match self.body {
            Body::Simple(simple) => Entry::simple(self.version, simple),
            Body::Rich(c) => Entry::rich(c.to_rich()),
        }
    }
}

/// What two replicas compare of a key's entries to find out whether, and
/// which way, to send it: the version, and a summary of the body (0 a
/// string, 1 a tombstone, a hash of a rich state's encoding with bit 1
/// set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Summary {
    /// The entry's version (its newest piece).
    pub version: Version,
    /// The body's summary.
    pub body: u64,
}

impl Summary {
    /// Whether it summarizes a rich state.
    pub fn is_rich(self) -> bool {
        self.body & 2 != 0
    }

    /// Whether this side should send its entry to the other, and ask for
    /// theirs, given both summaries. Simple entries go one way, the newer
    /// to the older; when either is rich, neither version says everything
    /// the other lacks (a replica may have missed an older delta and hold
    /// a newer one), so both go, and both sides merge.
    pub fn reconcile(mine: Summary, theirs: Summary) -> (bool, bool) {
        if mine == theirs {
            return (false, false);
        }
        if mine.is_rich() || theirs.is_rich() || mine.version == theirs.version {
            return (true, true);
        }
        (mine.version > theirs.version, theirs.version > mine.version)
    }
}

/// For two simple entries (strings or tombstones), whether `new` wins over
/// `old`: the higher version, and for one version the greater payload (a
/// delete over a string), as [`Entry::merge_in`] decides. Lets the store
/// merge the common case without building entries.
pub fn simple_wins(new: (Version, Simple<'_>), old: (Version, Simple<'_>)) -> bool {
    fn rank(s: Simple<'_>) -> (u8, &[u8]) {
        match s {
            Simple::Str(v) => (0, v),
            Simple::Dead => (1, &[]),
        }
    }
    (new.0, rank(new.1)) > (old.0, rank(old.1))
}

impl Entry {
    /// What anti-entropy compares of it ([`EntryRef::summary`] of the
    /// same entry in a store).
    pub fn summary(&self) -> Summary {
        let body = match &self.state {
            State::Dead => 1,
            State::Str(_) => 0,
            State::Rich(r) => rich_digest(r) | 2,
        };
        Summary {
            version: self.version,
            body,
        }
    }

    /// The part of it `want` asks for ([`Cell::part`] of the same state).
    pub fn part(&self, want: &Want) -> Part {
        Cell::new(b"", &self.to_rich()).part(want)
    }

    /// A plain string written at `version`.
    pub fn string(version: Version, value: Bytes) -> Entry {
        Entry {
            version,
            state: State::Str(value),
        }
    }

    /// A delete at `version`.
    pub fn tombstone(version: Version) -> Entry {
        Entry {
            version,
            state: State::Dead,
        }
    }

    /// A plain string or a tombstone from its simple form.
    pub fn simple(version: Version, value: Simple<'_>) -> Entry {
        match value {
            Simple::Dead => Entry::tombstone(version),
            Simple::Str(v) => Entry::string(version, Bytes::copy_from_slice(v)),
        }
    }

    /// The entry for a rich state, in its simplest shape.
    pub fn rich(rich: Rich) -> Entry {
        Entry {
            version: rich.newest(),
            state: State::Rich(std::sync::Arc::new(codec::Shared::new(rich))),
        }
        .canonical()
    }

    /// [`Entry::rich`] for a typed write's delta, whose every element is
    /// stamped `version`: spares the walk that finds its newest piece, on
    /// the path of every HSET, HDEL, SADD and SREM.
    pub(super) fn rich_stamped(rich: Rich, version: Version) -> Entry {
        if rich.fields.is_empty() && rich.members.is_empty() {
            return Entry::rich(rich);
        }
        debug_assert_eq!(rich.newest(), version, "every element at the version");
        Entry {
            version,
            state: State::Rich(std::sync::Arc::new(codec::Shared::new(rich))),
        }
    }

    /// [`Rich::purge_removed`] on a rich state (the entry's version may
    /// drop to its newest remaining piece). Returns whether anything was
    /// dropped.
    pub fn purge_removed(&mut self, before: crate::clock::Timestamp) -> bool {
        let State::Rich(r) = &mut self.state else {
            return false;
        };
        let mut rich = Rich::clone(r);
        if !rich.purge_removed(before) {
            return false;
        }
        *self = Entry::rich(rich);
        true
    }

    /// The newest version in this entry (see the module doc).
    pub fn version(&self) -> Version {
        self.version
    }

    /// The simple form, or `None` for a rich state.
    pub fn as_simple(&self) -> Option<Simple<'_>> {
        match &self.state {
            State::Dead => Some(Simple::Dead),
            State::Str(v) => Some(Simple::Str(v)),
            State::Rich(_) => None,
        }
    }

    /// Merges this entry into the cell `c`, as [`Cell::merge`] of its rich
    /// form. Returns whether `c` changed. A rich entry's version is its
    /// state's newest piece, which spares the merge a walk to find it; a
    /// simple one's rich form can differ (a string at version zero is
    /// cleared just before it, at a greater version), so it is walked.
    pub fn merge_into(&self, c: &mut Cell) -> bool {
        match &self.state {
            State::Rich(r) => c.merge_newest(r, self.version),
            _ => c.merge(&self.to_rich()),
        }
    }

    /// Calls `f` with the rich form of this entry, borrowed when it is
    /// rich (built for a simple one).
    pub fn with_rich<R>(&self, f: impl FnOnce(&Rich) -> R) -> R {
        match &self.state {
            State::Rich(r) => f(r),
            _ => f(&self.to_rich()),
        }
    }

    /// The rich form of this entry (built for a simple one).
    pub fn to_rich(&self) -> Rich {
        match &self.state {
            State::Dead => Rich {
                cleared: self.version,
                ..Rich::default()
            },
            State::Str(v) => Rich {
                cleared: self.version.just_before(),
                string: Some(Lww {
                    version: self.version,
                    value: v.clone(),
                }),
                ..Rich::default()
            },
            State::Rich(r) => Rich::clone(r),
        }
    }

    /// The same state in its simplest shape: a rich state that is only a
    /// delete, or only a string over a clear just below it, becomes a
    /// tombstone or a plain string.
    pub fn canonical(self) -> Entry {
        let State::Rich(r) = &self.state else {
            return self;
        };
        let only_cleared =
            r.ttl.is_none() && r.shards.is_empty() && r.fields.is_empty() && r.members.is_empty();
        if !only_cleared {
            return self;
        }
        match &r.string {
            None => Entry::tombstone(r.cleared),
            Some(s) if r.cleared == s.version.just_before() => {
                Entry::string(s.version, s.value.clone())
            }
            Some(_) => self,
        }
    }

    /// Merges `other` into this entry. Returns whether anything changed.
    pub fn merge_in(&mut self, other: &Entry) -> bool {
        if let (Some(_), Some(_)) = (self.as_simple(), other.as_simple()) {
            // Last writer wins; for one version with two payloads (which no
            // correct node writes), the greater payload, so the outcome
            // never depends on the order.
            if (other.version, other.payload_rank()) > (self.version, self.payload_rank()) {
                *self = other.clone();
                return true;
            }
            return false;
        }
        // Equal states merge to themselves (idempotence): two replicas'
        // equal answers to a read are compared, not copied and merged.
        if self.version == other.version && self == other {
            return false;
        }
        let mut mine = self.to_rich();
        // `other` is read in place: a reply holding a whole hash is not
        // copied to be merged.
        let changed = other.with_rich(|o| mine.merge(o));
        if changed {
            *self = Entry::rich(mine);
        }
        changed
    }

    /// The merge of two entries.
    pub fn merge(mut self, other: &Entry) -> Entry {
        self.merge_in(other);
        self
    }

    /// The merge of an optional pair, absent counting as nothing.
    pub fn merge_options(a: Option<Entry>, b: Option<&Entry>) -> Option<Entry> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.merge(b)),
            (a, b) => a.or_else(|| b.cloned()),
        }
    }

    /// Orders the payloads of simple entries of one version: a delete
    /// beats a write of the same version (dead beats live, as the rich
    /// merge has it), and of two strings the greater wins.
    fn payload_rank(&self) -> (u8, &[u8]) {
        match &self.state {
            State::Str(v) => (0, v),
            State::Dead => (1, &[]),
            State::Rich(_) => (2, &[]),
        }
    }

    /// Whether this entry holds nothing live, expiry aside: a delete, or a
    /// rich state with nothing left but removals. Kept until the tombstone
    /// grace period, then purged.
    pub fn is_tombstone(&self) -> bool {
        match &self.state {
            State::Dead => true,
            State::Str(_) => false,
            State::Rich(r) => {
                r.string.is_none()
                    && r.shards.is_empty()
                    && !r.fields.values().any(Field::is_live)
                    && !r.members.values().any(|m| m.value)
            }
        }
    }

    /// Makes every piece at or before `version` dead (a FLUSHALL marker).
    /// Returns `None` when nothing of the entry is left.
    pub fn cleared_up_to(self, version: Version) -> Option<Entry> {
        if self.version <= version {
            return None;
        }
        if self.as_simple().is_some() {
            return Some(self);
        }
        let mut rich = self.to_rich();
        rich.clear_up_to(version);
        Some(Entry::rich(rich))
    }

    /// Approximate bytes this entry occupies on the wire and in memory.
    pub fn payload_len(&self) -> usize {
        16 + match &self.state {
            State::Dead => 0,
            State::Str(v) => v.len(),
            State::Rich(r) => rich_len(r),
        }
    }
}

/// About how many bytes a rich state takes.
fn rich_len(r: &Rich) -> usize {
    let reg = |b: &Option<Lww<Bytes>>| b.as_ref().map_or(0, |l| l.value.len() + 16);
    48 + reg(&r.string)
        + r.shards.len() * 32
        + r.fields
            .iter()
            .map(|(k, f)| k.len() + 16 + reg(&f.value) + f.shards.len() * 32)
            .sum::<usize>()
        + r.members.keys().map(|m| m.len() + 20).sum::<usize>()
}
