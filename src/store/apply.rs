//! Merging an entry into the store: the one path every write takes (a
//! client's, a replica's, a hand-off's, anti-entropy's, the log replay's).
//!
//! Plain strings and tombstones meeting each other are merged packed, by
//! comparing versions ([`crate::values::simple_wins`]): the hot path, with
//! no entry built. Anything rich is merged by its cell
//! ([`crate::values::Cell::merge`]); a packed entry that receives a rich
//! delta becomes a cell, and a cell whose state is simple again (a SET
//! over a hash) is packed again.

use std::sync::atomic::Ordering;

use super::{cell_ref, Applied, Bucket, Store, Tables};
use crate::ring::Token;
use crate::store::Entry;
use crate::values::{simple_wins, Cell, Rich, Simple};

/// What is under a key, moved out of its table to be replaced.
enum Old {
    Absent,
    Simple(Entry),
    Rich(Box<Cell>),
}

impl Store {
    /// Merges `entry` into the store (see [`Entry::merge_in`]).
    ///
    /// Key and value are copied into the store's own allocation, so a
    /// stored value never pins a whole network read buffer in memory.
    pub fn apply(&self, key: &[u8], entry: Entry) -> Applied {
        self.apply_at(&Token::of(key), key, &entry)
    }

    /// [`Store::apply`] for a caller that already has `pos`, the key's ring
    /// position ([`Token::of`] the key), and so spares the store a SHA-1.
    pub fn apply_at(&self, pos: &Token, key: &[u8], entry: &Entry) -> Applied {
        let bucket = self.bucket_at(pos, key);
        let mut tables = bucket.write();
        self.apply_locked(bucket, &mut tables, pos, key, entry, None)
    }

    /// Lends `key`'s entry as stored (`None` when there is none, or a
    /// flush removed it) to `f`, which decides from it what to merge in,
    /// and merges that, all under the key's bucket lock, so no other write
    /// to the key comes in between: the read-modify-write of a counter's
    /// owner, or of a replica checking a typed write. Returns what `f`
    /// made and returned, and what the merge did. `now_ms` is the caller's
    /// reading of the wall clock, which judges expiry here too.
    pub fn update_at<T, E>(
        &self,
        pos: &Token,
        key: &[u8],
        now_ms: u64,
        f: impl FnOnce(Option<crate::store::EntryRef<'_>>) -> Result<(Entry, T), E>,
    ) -> Result<(Entry, T, Applied), E> {
        let bucket = self.bucket_at(pos, key);
        let mut tables = bucket.write();
        let hash = self.hash(key);
        let current = match tables.simple.find(hash, |p| p.key() == key) {
            Some(p) => Some(p.view()),
            None => tables
                .rich
                .find(hash, |c| c.key() == key)
                .map(|c| cell_ref(c)),
        };
        let current = current.filter(|e| !self.is_dead(e.version));
        let (delta, out) = f(current)?;
        let applied = self.apply_locked(bucket, &mut tables, pos, key, &delta, Some(now_ms));
        Ok((delta, out, applied))
    }

    /// [`Store::apply_at`] on the bucket's tables, already locked; `now_ms`
    /// the wall clock if the caller read it (else it is read when needed).
    fn apply_locked(
        &self,
        bucket: &Bucket,
        tables: &mut Tables,
        pos: &Token,
        key: &[u8],
        entry: &Entry,
        now_ms: Option<u64>,
    ) -> Applied {
        let mut applied = Applied {
            changed: true,
            duplicate: false,
            was_live: false,
            prior: None,
        };
        if self.is_dead(entry.version()) {
            // Older than a flush: superseded, as by any newer write.
            applied.changed = false;
            return applied;
        }
        // A rich state may hold pieces older than a flush under a newer
        // one: those are dead too.
        let unflushed;
        let entry = match self.flush_marker() {
            Some(marker) if entry.as_simple().is_none() => {
                match entry.clone().cleared_up_to(marker) {
                    Some(e) => {
                        unflushed = e;
                        &unflushed
                    }
                    None => {
                        applied.changed = false;
                        return applied;
                    }
                }
            }
            _ => entry,
        };
        let hash = self.hash(key);
        let at = At {
            bucket,
            pos,
            key,
            hash,
        };
        // The hot path: a string or tombstone over a string or tombstone.
        // (The packed table is probed only for a simple entry.)
        if let Some((new, slot)) = entry.as_simple().and_then(|new| {
            let slot = tables.simple.find_mut(hash, |p| p.key() == key)?;
            Some((new, slot))
        }) {
            let (old_version, old) = slot.simple();
            let old_live = old != Simple::Dead;
            if !self.is_dead(old_version) {
                applied.was_live = old_live;
                applied.prior = Some(old_version);
            }
            if !simple_wins((entry.version(), new), (old_version, old)) {
                applied.changed = false;
                applied.duplicate = old_version == entry.version();
                return applied;
            }
            self.unaccount(bucket, pos, key, slot.view());
            slot.set(entry.version(), new);
            self.account(bucket, pos, key, slot.view());
            self.count_transition(old_live, new != Simple::Dead);
            return applied;
        }
        // Anything into a live cell (a typed write to a key of its type,
        // a SET or a DEL over a hash): merged where the cell lies.
        if let Some(applied) = self.merge_in_place(&at, tables, entry, now_ms) {
            return applied;
        }
        // Anything else (nothing there, a packed entry under a rich delta,
        // a cell older than a flush): take what is there out of its table,
        // merge, and put the result where its shape belongs.
        let old = self.take(&at, tables);
        let (old_live, old_deadline) = match &old {
            Old::Absent => (false, None),
            Old::Simple(e) => (!e.is_tombstone(), None),
            Old::Rich(c) => (!c.is_tombstone(), c.deadline()),
        };
        let old_version = match &old {
            Old::Absent => None,
            Old::Simple(e) => Some(e.version()),
            Old::Rich(c) => Some(c.version()),
        };
        if let Some(v) = old_version.filter(|v| !self.is_dead(*v)) {
            // (A live cell was merged in place: what is here is packed.)
            applied.was_live = old_live;
            applied.prior = Some(v);
        }
        let (merged, changed) = match old {
            Old::Absent => (Shape::of(key, entry), true),
            Old::Simple(e) if self.is_dead(e.version()) => (Shape::of(key, entry), true),
            Old::Simple(mut e) => {
                let changed = e.merge_in(entry);
                (Shape::of(key, &e), changed)
            }
            Old::Rich(c) => {
                // Older than a flush (a live cell was merged in place, and
                // the flush marker only moves forward): superseded.
                debug_assert!(self.is_dead(c.version()), "a live cell merges in place");
                (Shape::of(key, entry), true)
            }
        };
        if !changed {
            applied.changed = false;
            applied.duplicate = true;
        }
        let (new_live, new_deadline) = match &merged {
            Shape::Simple(_, s) => (*s != OwnedSimple::Dead, None),
            Shape::Rich(c) => (!c.is_tombstone(), c.deadline()),
        };
        self.expiry.note(key, old_deadline, new_deadline);
        self.put(&at, tables, merged);
        if old_version.is_none() {
            self.entries.fetch_add(1, Ordering::Relaxed);
        }
        self.count_transition(old_live, new_live);
        applied
    }

    /// [`Store::apply_locked`]'s merge of `entry` into the live cell of
    /// the key at `at`, where it lies in its table, keeping the digest, the
    /// byte count, the expiry index and the live count. A cell whose state
    /// becomes a plain string or a tombstone moves to the packed table.
    /// `None` when the key has no live cell.
    fn merge_in_place(
        &self,
        at: &At<'_>,
        tables: &mut Tables,
        entry: &Entry,
        now_ms: Option<u64>,
    ) -> Option<Applied> {
        let c = tables
            .rich
            .find_mut(at.hash, |c| c.key() == at.key)
            .filter(|c| !self.is_dead(c.version()))?;
        // Live to a client: an expired key, or one whose newest piece is a
        // removal, is not (DEL of it counts nothing, as in Redis).
        let mut applied = Applied {
            changed: true,
            duplicate: false,
            was_live: c
                .kind(now_ms.unwrap_or_else(crate::clock::wall_millis))
                .is_some(),
            prior: Some(c.version()),
        };
        let (old_live, old_deadline) = (!c.is_tombstone(), c.deadline());
        self.unaccount(at.bucket, at.pos, at.key, cell_ref(c));
        if let Some(marker) = self.flush_marker() {
            // What an unswept flush left in the cell dies first.
            c.merge(&Rich {
                cleared: marker,
                ..Rich::default()
            });
        }
        if !entry.merge_into(c) {
            applied.changed = false;
            applied.duplicate = true;
        }
        let (new_live, new_deadline) = (!c.is_tombstone(), c.deadline());
        self.expiry.note(at.key, old_deadline, new_deadline);
        self.count_transition(old_live, new_live);
        match c.simple() {
            None => self.account(at.bucket, at.pos, at.key, cell_ref(c)),
            // A plain string or a tombstone again: packed in its table.
            Some(simple) => {
                if let Ok(slot) = tables.rich.find_entry(at.hash, |c| c.key() == at.key) {
                    slot.remove();
                }
                self.put(at, tables, Shape::of(at.key, &simple));
            }
        }
        Some(applied)
    }

    /// Drops the old markers of removed elements from the cell of `key`
    /// (see `Cell::purge_removed`), keeping the digest, the byte count and
    /// the table the result belongs in right.
    pub(super) fn purge_removed_in(
        &self,
        bucket: &Bucket,
        tables: &mut Tables,
        key: &[u8],
        before: crate::clock::Timestamp,
    ) {
        let pos = Token::of(key);
        let at = At {
            bucket,
            pos: &pos,
            key,
            hash: self.hash(key),
        };
        match self.take(&at, tables) {
            Old::Rich(mut c) => {
                c.purge_removed(before);
                self.put(&at, tables, Shape::from_cell(c));
            }
            Old::Simple(e) => self.put(&at, tables, Shape::of(key, &e)),
            Old::Absent => {}
        }
    }

    /// Removes what the key at `at` holds from its table (out of the digest and the
    /// byte count; still counted as an entry and as live).
    fn take(&self, at: &At<'_>, tables: &mut Tables) -> Old {
        if let Ok(slot) = tables.simple.find_entry(at.hash, |p| p.key() == at.key) {
            let (p, _) = slot.remove();
            self.unaccount(at.bucket, at.pos, at.key, p.view());
            let (version, simple) = p.simple();
            return Old::Simple(Entry::simple(version, simple));
        }
        if let Ok(slot) = tables.rich.find_entry(at.hash, |c| c.key() == at.key) {
            let (c, _) = slot.remove();
            self.unaccount(at.bucket, at.pos, at.key, cell_ref(&c));
            return Old::Rich(c);
        }
        Old::Absent
    }

    /// Stores `shape` under the key at `at`, in the table it belongs in, into the
    /// digest and the byte count.
    fn put(&self, at: &At<'_>, tables: &mut Tables, shape: Shape) {
        match shape {
            Shape::Simple(version, s) => {
                let p = super::Packed::new(at.key, version, s.as_simple());
                self.account(at.bucket, at.pos, at.key, p.view());
                tables
                    .simple
                    .insert_unique(at.hash, p, |p| self.hash(p.key()));
            }
            Shape::Rich(c) => {
                self.account(at.bucket, at.pos, at.key, cell_ref(&c));
                tables
                    .rich
                    .insert_unique(at.hash, c, |c| self.hash(c.key()));
            }
        }
    }
}

/// Where a key's entry lies: its bucket, its ring position (for the
/// bucket's digest), the key and its hash in the bucket's tables.
#[derive(Clone, Copy)]
struct At<'a> {
    bucket: &'a Bucket,
    pos: &'a Token,
    key: &'a [u8],
    hash: u64,
}

/// A simple body, owned.
#[derive(Debug, PartialEq, Eq)]
enum OwnedSimple {
    Dead,
    Str(bytes::Bytes),
}

impl OwnedSimple {
    fn as_simple(&self) -> Simple<'_> {
        match self {
            OwnedSimple::Dead => Simple::Dead,
            OwnedSimple::Str(v) => Simple::Str(v),
        }
    }
}

/// A merged state in the shape it is stored in.
enum Shape {
    Simple(crate::store::Version, OwnedSimple),
    Rich(Box<Cell>),
}

impl Shape {
    fn of(key: &[u8], e: &Entry) -> Shape {
        match e.as_simple() {
            Some(Simple::Dead) => Shape::Simple(e.version(), OwnedSimple::Dead),
            Some(Simple::Str(v)) => Shape::Simple(
                e.version(),
                OwnedSimple::Str(bytes::Bytes::copy_from_slice(v)),
            ),
            None => e.with_rich(|r| Shape::Rich(Box::new(Cell::new(key, r)))),
        }
    }

    /// A cell, packed again if its state became a plain string or a
    /// tombstone.
    fn from_cell(c: Box<Cell>) -> Shape {
        match c.simple() {
            Some(e) => Shape::of(c.key(), &e),
            None => Shape::Rich(c),
        }
    }
}
