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
//! A key holding a rich state (an expiry, a counter, a hash, a set) is in
//! a second table of the same bucket, as a [`Cell`], which merges one hash
//! field or set member at a time without rewriting the rest; a key is in
//! one table or the other, never both, and moves when its state changes
//! shape (a SET over a hash makes it a plain string again).
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
//! The merge itself is in `store/apply.rs`; purges, flushes and hand-off
//! removals in `store/maintain.rs`; the expiry index in `store/expiry.rs`.
//!
//! Deliberately left out: ordered iteration and range scans (the ring hashes
//! keys, so key order means nothing here), and shrinking a bucket's table
//! after deletes (a purge frees the entries, not the slots).

mod apply;
mod expiry;
mod maintain;
mod packed;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use hashbrown::HashTable;

use crate::ring::Token;
use crate::values::{Body, Cell, Part, Want};
use packed::Packed;

pub use crate::values::{Entry, EntryRef, NodeId, Version};

/// What [`Store::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The incoming entry won and is now stored.
    pub changed: bool,
    /// The store already held exactly this version.
    pub duplicate: bool,
    /// The key existed before, as a client sees it by this node's wall
    /// clock (not expired, not hidden by a newer removal).
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

/// A rich entry of more than this many bytes is copied out of its bucket
/// before a long pass writes it out ([`Store::for_each_copying_large`]):
/// copying 1 MiB takes a fraction of a millisecond, encoding it 1 to 2 ms
/// (BENCHMARKS.md, stop 37).
const LARGE_CELL: usize = 1 << 20;

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

/// The digest contribution of one entry: a hash of its key, its version
/// and its body's summary ([`EntryRef::digest_part`]). Leaf digests are
/// the XOR of their entries' hashes, so a write updates its leaf with two
/// XORs (out with the old, in with the new).
pub fn entry_hash(pos: &Token, e: EntryRef<'_>) -> u64 {
    let key_part = u64::from_be_bytes(pos.0[8..16].try_into().expect("8 bytes"));
    let body = e.digest_part();
    mix(key_part ^ mix(e.version.ts.0 ^ mix(e.version.node ^ mix(body))))
}

/// A bucket's two tables: plain strings and tombstones packed, rich
/// states in cells. A key is in one of them at most.
#[derive(Debug, Default)]
struct Tables {
    simple: HashTable<Packed>,
    rich: HashTable<Box<Cell>>,
}

#[derive(Debug, Default)]
struct Bucket {
    tables: RwLock<Tables>,
    digest: AtomicU64,
}

impl Bucket {
    fn read(&self) -> RwLockReadGuard<'_, Tables> {
        // Every write leaves the tables consistent, so a poisoned lock is safe to use.
        self.tables.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A cell's entry view.
fn cell_ref(c: &Cell) -> EntryRef<'_> {
    EntryRef {
        version: c.version(),
        body: Body::Rich(c),
    }
}

/// The node-local versioned map, bucketed by ring position.
#[derive(Debug)]
pub struct Store {
    buckets: Box<[Bucket]>,
    /// Hashes keys inside a bucket's tables (one seed for every bucket).
    hasher: foldhash::fast::RandomState,
    live: AtomicUsize,
    entries: AtomicUsize,
    bytes: AtomicUsize,
    /// One past the FLUSHALL marker's timestamp: every version stamped
    /// before this is dead (0: no flush). See [`Store::flush_before`].
    flushed: AtomicU64,
    /// The `flushed` value the last finished [`Store::sweep_flushed`]
    /// started from: below `flushed` while a sweep is still to finish, and
    /// the counters still hold what it will remove.
    swept: AtomicU64,
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
            swept: AtomicU64::new(0),
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
        let tables = bucket.read();
        self.get_locked(&tables, key)
    }

    /// [`Store::get_at`] on a bucket's tables, already locked.
    fn get_locked(&self, tables: &Tables, key: &[u8]) -> Option<Entry> {
        let hash = self.hash(key);
        if let Some(p) = tables.simple.find(hash, |p| p.key() == key) {
            return self.unflushed(p.view());
        }
        let cell = tables.rich.find(hash, |c| c.key() == key)?;
        self.unflushed(cell_ref(cell))
    }

    /// The part of `key`'s entry that `want` asks for (a read of a few
    /// hash fields or set members, or of a large state's head and counts),
    /// without copying the rest out.
    pub fn part_at(&self, pos: &Token, key: &[u8], want: &Want) -> Option<Part> {
        let bucket = self.bucket_at(pos, key);
        let tables = bucket.read();
        let hash = self.hash(key);
        if let Some(cell) = tables.rich.find(hash, |c| c.key() == key) {
            let marker = self.flush_marker();
            if marker.is_none_or(|m| cell.version() > m) {
                let part = cell.part(want);
                // A flush newer than some of its pieces: take them out.
                return match marker {
                    Some(m) if part.rich.cleared < m => {
                        let entry = Entry::rich(cell.to_rich()).cleared_up_to(m)?;
                        Some(entry.part(want))
                    }
                    _ => Some(part),
                };
            }
            return None;
        }
        drop(tables);
        self.get_at(pos, key).map(|e| e.part(want))
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

    /// Takes an entry out of the digest and the byte count (it is being
    /// replaced or removed).
    fn unaccount(&self, bucket: &Bucket, pos: &Token, key: &[u8], e: EntryRef<'_>) {
        bucket
            .digest
            .fetch_xor(entry_hash(pos, e), Ordering::Relaxed);
        self.bytes.fetch_sub(weight(key, e), Ordering::Relaxed);
    }

    /// Puts an entry into the digest and the byte count.
    fn account(&self, bucket: &Bucket, pos: &Token, key: &[u8], e: EntryRef<'_>) {
        bucket
            .digest
            .fetch_xor(entry_hash(pos, e), Ordering::Relaxed);
        self.bytes.fetch_add(weight(key, e), Ordering::Relaxed);
    }

    /// Takes a removed entry out of the digest and the counters.
    fn forget(&self, bucket: &Bucket, pos: &Token, key: &[u8], e: EntryRef<'_>) {
        self.unaccount(bucket, pos, key, e);
        self.entries.fetch_sub(1, Ordering::Relaxed);
        if !e.is_tombstone() {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Approximate bytes held: keys, values and a fixed overhead per entry.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Live (non-tombstone) keys held. Right after a FLUSHALL, before its
    /// sweep has removed what it made dead, they are counted one by one
    /// (what iteration shows), so INFO and `/status` show an empty store
    /// at once, as Redis does.
    pub fn live_len(&self) -> usize {
        if self.swept.load(Ordering::Acquire) >= self.flushed.load(Ordering::Acquire) {
            return self.live.load(Ordering::Relaxed);
        }
        let mut live = 0;
        self.for_each(|_, e| live += usize::from(!e.is_tombstone()));
        live
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
            let tables = bucket.read();
            for p in tables.simple.iter() {
                let (key, entry) = p.split();
                if !self.is_dead(entry.version) {
                    f(key, entry);
                }
            }
            for c in tables.rich.iter() {
                if !self.is_dead(c.version()) {
                    f(c.key(), cell_ref(c));
                }
            }
        }
    }

    /// [`Store::for_each`] for a long pass that writes out what it is lent
    /// (a snapshot, a backup): a rich entry of more than `LARGE_CELL`
    /// bytes is copied under its bucket's lock and lent to `f` once the
    /// lock is released, so that encoding and writing a hash of a million
    /// fields does not hold up every write to its slice of the ring.
    pub fn for_each_copying_large(&self, mut f: impl FnMut(&[u8], EntryRef<'_>)) {
        for leaf in 0..LEAVES {
            self.for_each_in_leaf_copying_large(leaf, &mut f);
        }
    }

    /// [`Store::for_each_copying_large`] for leaf `leaf`.
    pub fn for_each_in_leaf_copying_large(
        &self,
        leaf: usize,
        mut f: impl FnMut(&[u8], EntryRef<'_>),
    ) {
        let mut large = Vec::new();
        self.for_each_in_leaf(leaf, |key, entry| match entry.body {
            Body::Rich(c) if c.mem_bytes() > LARGE_CELL => large.push(c.clone()),
            _ => f(key, entry),
        });
        for c in &large {
            f(c.key(), cell_ref(c));
        }
    }

    /// Calls `f` with the rich state `key` holds, if it holds one that a
    /// FLUSHALL did not remove (`pos` is the key's ring position). A state
    /// of more than `LARGE_CELL` bytes is copied and lent once its bucket
    /// is unlocked, as in [`Store::for_each_copying_large`].
    pub fn with_cell_at<R>(
        &self,
        pos: &Token,
        key: &[u8],
        f: impl FnOnce(&Cell) -> R,
    ) -> Option<R> {
        let tables = self.bucket_at(pos, key).read();
        let cell = tables.rich.find(self.hash(key), |c| c.key() == key)?;
        if self.is_dead(cell.version()) {
            return None;
        }
        if cell.mem_bytes() > LARGE_CELL {
            let copy = cell.clone();
            drop(tables);
            return Some(f(&copy));
        }
        Some(f(cell))
    }

    /// The bytes of the rich state `key` holds ([`Cell::mem_bytes`]), if
    /// it holds one that a FLUSHALL did not remove; nothing is copied.
    pub fn rich_bytes_at(&self, pos: &Token, key: &[u8]) -> Option<usize> {
        let tables = self.bucket_at(pos, key).read();
        let cell = tables.rich.find(self.hash(key), |c| c.key() == key)?;
        (!self.is_dead(cell.version())).then(|| cell.mem_bytes())
    }

    /// The piece of `key`'s entry that anti-entropy's sections `wanted`
    /// name ([`crate::values::sections`]): of a rich state, its head and
    /// those sections' elements; any other entry whole. What a FLUSHALL
    /// removed is left out; `None` when nothing is left.
    pub fn piece_at(&self, pos: &Token, key: &[u8], wanted: &[u16]) -> Option<Entry> {
        let piece = self.with_cell_at(pos, key, |c| crate::values::sections::piece(c, wanted));
        match piece {
            Some(piece) => self.unflushed_entry(Entry::rich(piece?)),
            None => self.get_at(pos, key),
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
