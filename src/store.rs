//! The local store: the entries a node holds, merged as `values` says.
//!
//! What an entry is and how two versions of it merge (last-writer-wins for
//! strings and tombstones, CRDT merges for the rest) is
//! [`crate::values`]'s business; the store only holds entries, merges what
//! arrives into what it holds through [`Entry::merge_in`], and keeps the
//! counters and digests that go with them.
//!
//! The map is split into [`LEAVES`] buckets by the top bits of each key's
//! ring position (SHA-1 of the key), each behind its own lock, so writers to
//! different buckets never wait for each other and no lock is held across an
//! await. A bucket is a contiguous slice of the ring, which makes it the leaf
//! of the anti-entropy digest tree: each bucket keeps the XOR of a hash of
//! (key, version, tombstone) over its entries, updated on every write, so
//! comparing two replicas never needs a rescan. Tombstones are purged only
//! after a grace period, long enough that every replica has seen them.
//!
//! **Memory.** A node holds millions of small entries, so the per-entry
//! overhead decides its footprint. Each entry is packed into one allocation
//! (version, tombstone flag, key and value: see `store/packed.rs`), and a
//! bucket is a `hashbrown` [`HashTable`] of those, 16 bytes a slot, looked
//! up by the packed key. With a map of separate `Bytes` keys and `Entry`
//! values, the slots alone took 80 bytes and every entry two allocations.
//! The tables hash keys with foldhash (`hashbrown`'s own default hasher),
//! seeded at random once per store: a fraction of SipHash's cost on short
//! keys. The SHA-1 ring position only picks the bucket; callers that have
//! already computed it pass it to the `_at` methods, so the store does not
//! compute it again.
//!
//! [`Entry`] (version and an owned value) stays the currency of the API:
//! [`Store::get`] copies the value out of the table. Iteration lends
//! [`EntryRef`] views instead, so a scan allocates nothing per entry.
//!
//! Deliberately left out: ordered iteration and range scans (the ring hashes
//! keys, so key order means nothing here), in-place updates of large rich
//! states (a merge into one decodes and re-encodes it), and shrinking a
//! bucket's table after deletes (a purge frees the entries, not the slots).

mod expiry;
mod packed;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use hashbrown::HashTable;

use crate::clock::Timestamp;
use crate::ring::Token;
use crate::values::Body;
use packed::Packed;

pub use crate::values::{Entry, EntryRef, NodeId, Version};

/// What [`Store::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The incoming entry won and is now stored.
    pub changed: bool,
    /// The store already held exactly this version.
    pub duplicate: bool,
    /// The key held a live (non-tombstone) value before.
    pub was_live: bool,
    /// The version the key held before, if any.
    pub prior: Option<Version>,
}

impl Applied {
    /// For the write of a read-modify-write computed from `read` (the
    /// version a quorum read found, `None` for none): whether this replica
    /// held something newer than that read (a write that came in between,
    /// or one the read missed), or something newer than the write itself,
    /// which then lost here.
    pub fn conflicts_with(&self, read: Option<Version>) -> bool {
        let newer_than_read = match (self.prior, read) {
            (Some(prior), Some(read)) => prior > read,
            (Some(_), None) => true,
            (None, _) => false,
        };
        newer_than_read || !self.needs_log()
    }

    /// Whether the incoming entry must be made durable before it is
    /// acknowledged: it is now the stored version (new, or a duplicate
    /// whose first copy may still be on its way to the log). An entry that
    /// lost to a strictly newer version needs no log record.
    pub fn needs_log(&self) -> bool {
        self.changed || self.duplicate
    }
}

/// Bytes an entry is counted as in [`Store::bytes`]: key, body and a
/// fixed allowance for the version, the length and the table slot (about
/// what a packed entry really takes beyond its key and value).
fn weight(key: &[u8], e: EntryRef<'_>) -> usize {
    key.len() + e.body_len() + 32
}

/// Leaves of the digest tree: keys are bucketed by the top bits of their
/// ring position, so a leaf is a contiguous slice of the ring.
pub const LEAF_BITS: u32 = 16;
/// Number of leaves.
pub const LEAVES: usize = 1 << LEAF_BITS;

/// The leaf holding ring position `pos`.
pub fn leaf_of(pos: &Token) -> usize {
    usize::from(u16::from_be_bytes([pos.0[0], pos.0[1]]))
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finalizer: a fixed, well-distributed 64-bit mix.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The digest contribution of one entry (an [`&Entry`](Entry) or an
/// [`EntryRef`]): a hash of (key, version, tombstone). Leaf digests are the
/// XOR of their entries' hashes, so a write updates its leaf with two XORs
/// (out with the old, in with the new).
pub fn entry_hash(pos: &Token, e: EntryRef<'_>) -> u64 {
    let key_part = u64::from_be_bytes(pos.0[8..16].try_into().expect("8 bytes"));
    let body = e.digest_part();
    mix(key_part ^ mix(e.version.ts.0 ^ mix(e.version.node ^ mix(body))))
}

#[derive(Debug, Default)]
struct Bucket {
    table: RwLock<HashTable<Packed>>,
    digest: AtomicU64,
}

impl Bucket {
    fn read(&self) -> RwLockReadGuard<'_, HashTable<Packed>> {
        // Every write leaves the table consistent, so a poisoned lock is safe to use.
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashTable<Packed>> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The node-local versioned map, bucketed by ring position.
#[derive(Debug)]
pub struct Store {
    buckets: Box<[Bucket]>,
    /// Hashes keys inside a bucket's table (one seed for every bucket).
    hasher: foldhash::fast::RandomState,
    live: AtomicUsize,
    entries: AtomicUsize,
    bytes: AtomicUsize,
    /// One past the FLUSHALL marker's timestamp: every version stamped
    /// before this is dead (0: no flush). See [`Store::flush_before`].
    flushed: AtomicU64,
    /// The keys with an expiry deadline, by deadline.
    expiry: expiry::ExpiryIndex,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            buckets: (0..LEAVES).map(|_| Bucket::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
            live: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            flushed: AtomicU64::new(0),
            expiry: expiry::ExpiryIndex::default(),
        }
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bucket of `key`, whose ring position the caller says is `pos`.
    fn bucket_at(&self, pos: &Token, key: &[u8]) -> &Bucket {
        debug_assert!(*pos == Token::of(key), "pos must be Token::of(key)");
        &self.buckets[leaf_of(pos)]
    }

    /// The table hash of a key. Every lookup and every rehash goes through
    /// here, so a table never sees two hashes for one key.
    fn hash(&self, key: &[u8]) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, key)
    }

    /// The stored entry for `key`, tombstones included.
    pub fn get(&self, key: &[u8]) -> Option<Entry> {
        self.get_at(&Token::of(key), key)
    }

    /// [`Store::get`] for a caller that already has `pos`, the key's ring
    /// position ([`Token::of`] the key), and so spares the store a SHA-1.
    pub fn get_at(&self, pos: &Token, key: &[u8]) -> Option<Entry> {
        let bucket = self.bucket_at(pos, key);
        let hash = self.hash(key);
        let table = bucket.read();
        let found = table.find(hash, |p| p.key() == key)?.view();
        self.unflushed(found)
    }

    /// An owned copy of a stored entry, with what a FLUSHALL marker
    /// removed taken out (all of it, or the older pieces of a rich state).
    fn unflushed(&self, e: EntryRef<'_>) -> Option<Entry> {
        if self.is_dead(e.version) {
            return None;
        }
        let entry = e.to_entry();
        match self.flush_marker() {
            Some(marker) if matches!(e.body, Body::Rich(_)) => entry.cleared_up_to(marker),
            _ => Some(entry),
        }
    }

    /// `entry` (from elsewhere) with what this store's FLUSHALL marker
    /// removed taken out; `None` if nothing is left.
    pub fn unflushed_entry(&self, entry: Entry) -> Option<Entry> {
        match self.flush_marker() {
            Some(marker) => entry.cleared_up_to(marker),
            None => Some(entry),
        }
    }

    /// The greatest version a FLUSHALL marker removes, if there is one.
    fn flush_marker(&self) -> Option<Version> {
        match self.flushed.load(Ordering::Relaxed) {
            0 => None,
            next => Some(Version {
                ts: Timestamp(next - 1),
                node: NodeId::MAX,
            }),
        }
    }

    /// Whether a version is dead by the FLUSHALL marker: stamped at or
    /// before it. On a tie the flush wins (a delete beats a write of the
    /// same instant), so every node judges an entry alike.
    pub fn is_dead(&self, version: Version) -> bool {
        version.ts.0 < self.flushed.load(Ordering::Relaxed)
    }

    /// Makes every version stamped at or before `marker` dead at once: it
    /// reads as absent, is never merged in again, and is left out of
    /// iteration (so out of snapshots and anti-entropy). Its memory is
    /// reclaimed by [`Store::sweep_flushed`]. The marker only moves
    /// forward; returns whether it moved.
    pub fn flush_before(&self, marker: Timestamp) -> bool {
        let next = marker.0.saturating_add(1);
        self.flushed.fetch_max(next, Ordering::AcqRel) < next
    }

    /// Removes the entries [`Store::flush_before`] made dead, one bucket at
    /// a time (writers to the others go on). Returns how many went.
    pub fn sweep_flushed(&self) -> usize {
        let mut swept = 0;
        for bucket in self.buckets.iter() {
            let mut table = bucket.write();
            table.retain(|p| {
                let (key, e) = p.split();
                let dead = self.is_dead(e.version);
                if dead {
                    self.forget(bucket, &Token::of(key), key, e);
                    swept += 1;
                }
                !dead
            });
        }
        swept
    }

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
        let mut table = bucket.write();
        self.apply_locked(bucket, &mut table, pos, key, entry)
    }

    /// Reads `key`'s entry (as [`Store::get_at`] would), lets `f` decide
    /// from it what to merge in, and merges that, all under the key's
    /// bucket lock, so no other write to the key comes in between: the
    /// read-modify-write of a counter's owner. Returns what `f` returned
    /// and what the merge did.
    pub fn update_at<T, E>(
        &self,
        pos: &Token,
        key: &[u8],
        f: impl FnOnce(Option<Entry>) -> Result<(Entry, T), E>,
    ) -> Result<(Entry, T, Applied), E> {
        let bucket = self.bucket_at(pos, key);
        let hash = self.hash(key);
        let mut table = bucket.write();
        let current = table
            .find(hash, |p| p.key() == key)
            .and_then(|p| self.unflushed(p.view()));
        let (delta, out) = f(current)?;
        let applied = self.apply_locked(bucket, &mut table, pos, key, &delta);
        Ok((delta, out, applied))
    }

    /// [`Store::apply_at`] on the bucket's table, already locked.
    fn apply_locked(
        &self,
        bucket: &Bucket,
        table: &mut HashTable<Packed>,
        pos: &Token,
        key: &[u8],
        entry: &Entry,
    ) -> Applied {
        let hash = self.hash(key);
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
        let mut scratch = Vec::new();
        let new = match entry.as_ref(&mut scratch) {
            Ok(new) => new,
            Err(e) => {
                tracing::error!(error = %e, "a value could not be encoded for the store");
                applied.changed = false;
                return applied;
            }
        };
        // Look up before inserting rather than through `HashTable::entry`,
        // which makes room for an insert first and so would grow a full
        // table on a mere overwrite.
        if let Some(slot) = table.find_mut(hash, |p| p.key() == key) {
            let old = slot.view();
            // A flushed entry (not yet swept) is absent to the caller, but
            // still counted until it is replaced.
            let old_live = !old.is_tombstone();
            if !self.is_dead(old.version) {
                applied.was_live = old_live;
                applied.prior = Some(old.version);
            }
            let merged;
            let mut merged_scratch = Vec::new();
            let stored = match (old.body, new.body) {
                (Body::Simple(_), Body::Simple(_)) => {
                    if !crate::values::simple_wins(new, old) {
                        applied.changed = false;
                        applied.duplicate = old.version == new.version;
                        return applied;
                    }
                    new
                }
                _ => {
                    // A rich state on either side: merge them. A delta
                    // already contained is still logged (its first copy
                    // may not be on disk yet).
                    let mut state = self.unflushed(old).unwrap_or_else(|| old.to_entry());
                    let old_deadline = state.deadline();
                    if !state.merge_in(entry) {
                        applied.changed = false;
                        applied.duplicate = true;
                        return applied;
                    }
                    self.expiry.note(key, old_deadline, state.deadline());
                    merged = state;
                    match merged.as_ref(&mut merged_scratch) {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::error!(error = %e, "a merged value could not be encoded");
                            applied.changed = false;
                            return applied;
                        }
                    }
                }
            };
            bucket
                .digest
                .fetch_xor(entry_hash(pos, old), Ordering::Relaxed);
            self.bytes.fetch_sub(weight(key, old), Ordering::Relaxed);
            let is_live = !stored.is_tombstone();
            slot.set(stored.version, stored.body);
            self.count_transition(old_live, is_live);
            self.bytes.fetch_add(weight(key, stored), Ordering::Relaxed);
            bucket
                .digest
                .fetch_xor(entry_hash(pos, stored), Ordering::Relaxed);
        } else {
            self.entries.fetch_add(1, Ordering::Relaxed);
            self.expiry.note(key, None, entry.deadline());
            let packed = Packed::new(key, new.version, new.body);
            table.insert_unique(hash, packed, |p| self.hash(p.key()));
            self.count_transition(false, !new.is_tombstone());
            self.bytes.fetch_add(weight(key, new), Ordering::Relaxed);
            bucket
                .digest
                .fetch_xor(entry_hash(pos, new), Ordering::Relaxed);
        }
        applied
    }

    fn count_transition(&self, was_live: bool, is_live: bool) {
        match (was_live, is_live) {
            (false, true) => {
                self.live.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.live.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Takes a removed entry out of the digest and the counters.
    fn forget(&self, bucket: &Bucket, pos: &Token, key: &[u8], e: EntryRef<'_>) {
        bucket
            .digest
            .fetch_xor(entry_hash(pos, e), Ordering::Relaxed);
        self.bytes.fetch_sub(weight(key, e), Ordering::Relaxed);
        self.entries.fetch_sub(1, Ordering::Relaxed);
        if !e.is_tombstone() {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Removes `key` if it still holds exactly `version` (used after its
    /// copy was handed to the nodes that should hold it). Returns whether it
    /// was removed.
    pub fn remove_if_version(&self, key: &[u8], version: Version) -> bool {
        let pos = Token::of(key);
        let bucket = self.bucket_at(&pos, key);
        let hash = self.hash(key);
        let mut table = bucket.write();
        match table.find_entry(hash, |p| p.key() == key) {
            Ok(slot) if slot.get().view().version == version => {
                let (gone, _) = slot.remove();
                self.forget(bucket, &pos, key, gone.view());
                true
            }
            _ => false,
        }
    }

    /// Purges tombstones written before `before`. Returns how many went.
    pub fn purge_tombstones(&self, before: Timestamp) -> usize {
        let mut purged = 0;
        for bucket in self.buckets.iter() {
            let mut table = bucket.write();
            table.retain(|p| {
                let (key, e) = p.split();
                let purge = e.is_tombstone() && e.version.ts < before;
                if purge {
                    self.forget(bucket, &Token::of(key), key, e);
                    purged += 1;
                }
                !purge
            });
        }
        purged
    }

    /// Approximate bytes held: keys, values and a fixed overhead per entry.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Live (non-tombstone) keys held.
    pub fn live_len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// All entries held, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// Whether the store holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with every key and entry (flushed ones left out). Holds
    /// one bucket's read lock at a time, so writers to other buckets go on;
    /// `f` must not write to the store.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], EntryRef<'_>)) {
        for leaf in 0..LEAVES {
            self.for_each_in_leaf(leaf, &mut f);
        }
    }

    /// Calls `f` for every entry in leaf `leaf` (a slice of the ring).
    pub fn for_each_in_leaf(&self, leaf: usize, mut f: impl FnMut(&[u8], EntryRef<'_>)) {
        if let Some(bucket) = self.buckets.get(leaf) {
            for p in bucket.read().iter() {
                let (key, entry) = p.split();
                if !self.is_dead(entry.version) {
                    f(key, entry);
                }
            }
        }
    }

    /// The XOR of [`entry_hash`] over every entry of leaf `leaf`.
    pub fn leaf_digest(&self, leaf: usize) -> u64 {
        self.buckets
            .get(leaf)
            .map_or(0, |b| b.digest.load(Ordering::Relaxed))
    }

    /// Keys that exist at `now_ms` (ms since the epoch: expired ones are
    /// left out) and match `pred`, copied out.
    pub fn live_keys(&self, now_ms: u64, mut pred: impl FnMut(&[u8]) -> bool) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.for_each(|k, e| {
            if e.exists(now_ms) && pred(k) {
                out.push(Bytes::copy_from_slice(k));
            }
        });
        out
    }
}
