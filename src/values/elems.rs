//! A cell's fields or its members (`cell.rs`): every element's bytes in
//! one arena, found through a hash table of their offsets.
//!
//! Why not one heap block per element: each block sat behind a 16-byte
//! fat pointer in a table that is between 7/16 and 7/8 full, and a block
//! rounds up to its allocator's size class. A 1,000-member set cost about
//! 73 bytes a member that way, where Redis spends 49 (BENCHMARKS.md,
//! "Memory per element"). Here an element costs its bytes, a 1 or 2 byte
//! header and one 4-byte slot (8 bytes once one key's elements pass 4 GiB).
//!
//! An element is `varint(length << 1 | dead) | bytes`. A rewrite of the
//! same length (a member removed or added again, a field given a value of
//! the same size) overwrites the bytes in place. Otherwise the old bytes
//! are marked dead and the new ones appended, and once dead bytes are more
//! than half the arena it is compacted: live elements copied into a new
//! arena and the table rebuilt, a cost of one copy per element spread over
//! at least as many bytes of rewrites. Iteration walks the arena, skipping
//! the dead, so it needs no table.

use std::sync::OnceLock;

use hashbrown::HashTable;

use super::elem;
use crate::encoding::{read_varint, varint};

/// An element's name and the element ([`Elems::sorted`]).
pub type Named<'a> = (&'a [u8], &'a [u8]);

/// Hashes element names (one seed per process).
fn hasher() -> &'static foldhash::fast::RandomState {
    static H: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
    H.get_or_init(Default::default)
}

fn name_hash(name: &[u8]) -> u64 {
    std::hash::BuildHasher::hash_one(hasher(), name)
}

/// The arena size past which slots are 8 bytes. Small under test (as are
/// [`SCAN_MAX`] and [`COMPACT_MIN`]), so that the property and model
/// tests, whose collections are small, run every shape: no table, 4-byte
/// and 8-byte slots, and compactions.
#[cfg(not(test))]
const NARROW_MAX: usize = u32::MAX as usize;
#[cfg(test)]
const NARROW_MAX: usize = 160;

/// Arenas smaller than this grow by exactly what they need.
const SMALL_ARENA: usize = 512;

/// Arenas smaller than this are never compacted: too little to win.
#[cfg(not(test))]
const COMPACT_MIN: usize = 256;
#[cfg(test)]
const COMPACT_MIN: usize = 32;

/// An element's offset in the arena, 4 or 8 bytes.
trait Slot: Copy {
    fn at(self) -> usize;
    fn of(at: usize) -> Self;
}

impl Slot for u32 {
    fn at(self) -> usize {
        self as usize
    }
    fn of(at: usize) -> u32 {
        u32::try_from(at).expect("a narrow table holds offsets below NARROW_MAX")
    }
}

impl Slot for u64 {
    fn at(self) -> usize {
        self as usize
    }
    fn of(at: usize) -> u64 {
        at as u64
    }
}

/// How an arena's elements are found.
#[derive(Debug, Clone, Default)]
enum Slots {
    /// By walking the arena: no table while it holds at most
    /// [`SCAN_MAX`] elements (most hashes and sets are small).
    #[default]
    Scan,
    Narrow(HashTable<u32>),
    Wide(HashTable<u64>),
}

/// Up to this many elements, an arena has no table.
#[cfg(not(test))]
const SCAN_MAX: usize = 16;
#[cfg(test)]
const SCAN_MAX: usize = 2;

/// Runs `$body` with `$t` bound to the table, whichever its width, or
/// `$scan` when there is none.
macro_rules! on_slots {
    ($slots:expr, $t:ident => $body:expr, scan => $scan:expr) => {
        match $slots {
            Slots::Narrow($t) => $body,
            Slots::Wide($t) => $body,
            Slots::Scan => $scan,
        }
    };
}

/// The element at `at`: its header's length, its bytes, and whether it
/// is live.
fn read_at(arena: &[u8], at: usize) -> (usize, &[u8], bool) {
    let (tag, n) = read_varint(&arena[at..]);
    let len = (tag >> 1) as usize;
    (n, &arena[at + n..at + n + len], tag & 1 == 0)
}

fn bytes_at(arena: &[u8], at: usize) -> &[u8] {
    read_at(arena, at).1
}

/// Where an element is in its [`Elems`] (valid until the next change).
#[derive(Clone, Copy, Debug)]
pub struct At(usize);

/// Elements by name (see the module doc). Boxed, and only while it holds
/// any: a cell is often a counter or a hash without a set's members, and
/// an empty `Elems` is one pointer, not an arena and a table.
#[derive(Debug, Clone, Default)]
pub struct Elems(Option<Box<Arena>>);

impl Elems {
    /// How many elements it holds.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |a| a.len())
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// About how many bytes of heap it takes.
    pub fn mem_bytes(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |a| std::mem::size_of::<Arena>() + a.mem_bytes())
    }

    /// The element named `name`.
    pub fn find(&self, name: &[u8]) -> Option<&[u8]> {
        self.0.as_ref()?.find(name)
    }

    /// Where the element named `name` is, for [`Elems::get`],
    /// [`Elems::replace`] and [`Elems::remove`] (until the next change).
    pub fn locate(&self, name: &[u8]) -> Option<At> {
        self.0.as_ref()?.locate(name)
    }

    /// The element at `at`.
    pub fn get(&self, at: At) -> &[u8] {
        self.0.as_ref().expect("located in it").get(at)
    }

    /// Every element, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().flat_map(|a| a.iter())
    }

    /// Every element with its name, in the order of the names (a
    /// [`super::Rich`]'s map order).
    pub fn sorted(&self) -> Vec<Named<'_>> {
        let mut v: Vec<Named<'_>> = self.iter().map(|e| (elem::name(e), e)).collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Puts `e` in, in place of the element of the same name if there is
    /// one.
    #[cfg(test)]
    pub fn put(&mut self, e: &[u8]) {
        match self.locate(elem::name(e)) {
            Some(at) => self.replace(at, e),
            None => self.insert_new(e),
        }
    }

    /// Adds `e`, whose name it does not hold.
    pub fn insert_new(&mut self, e: &[u8]) {
        self.0.get_or_insert_with(Default::default).insert_new(e);
    }

    /// Replaces the element at `at` with `e`, which has the same name.
    pub fn replace(&mut self, at: At, e: &[u8]) {
        self.0.as_mut().expect("located in it").replace(at, e);
    }

    /// Takes the element at `at` out; frees everything with the last one.
    pub fn remove(&mut self, at: At) {
        let arena = self.0.as_mut().expect("located in it");
        arena.remove(at);
        if arena.len() == 0 {
            self.0 = None;
        }
    }
}

/// The arena and its table.
#[derive(Debug, Clone, Default)]
struct Arena {
    arena: Vec<u8>,
    slots: Slots,
    /// Live elements.
    live: usize,
    /// Bytes of the arena that hold dead elements.
    dead: usize,
}

impl Arena {
    /// How many elements it holds.
    pub fn len(&self) -> usize {
        self.live
    }

    /// About how many bytes of heap it takes.
    pub fn mem_bytes(&self) -> usize {
        let slots = match &self.slots {
            Slots::Scan => 0,
            Slots::Narrow(t) => t.capacity() * 5,
            Slots::Wide(t) => t.capacity() * 9,
        };
        self.arena.capacity() + slots
    }

    pub fn find(&self, name: &[u8]) -> Option<&[u8]> {
        self.locate(name).map(|at| self.get(at))
    }

    pub fn locate(&self, name: &[u8]) -> Option<At> {
        let arena = &self.arena;
        on_slots!(&self.slots, t => t
            .find(name_hash(name), |s| elem::name(bytes_at(arena, s.at())) == name)
            .map(|s| At(s.at())),
            scan => self.walk().find(|&(_, e)| elem::name(e) == name).map(|(at, _)| At(at)))
    }

    pub fn get(&self, at: At) -> &[u8] {
        bytes_at(&self.arena, at.0)
    }

    /// Every live element and its offset, in arena order.
    fn walk(&self) -> impl Iterator<Item = (usize, &[u8])> {
        let mut at = 0;
        std::iter::from_fn(move || loop {
            if at >= self.arena.len() {
                return None;
            }
            let (n, bytes, live) = read_at(&self.arena, at);
            let this = at;
            at += n + bytes.len();
            if live {
                return Some((this, bytes));
            }
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.walk().map(|(_, e)| e)
    }

    pub fn insert_new(&mut self, e: &[u8]) {
        let name = elem::name(e);
        debug_assert!(self.locate(name).is_none(), "a new name");
        self.room_for(e.len());
        let new = self.append(e);
        self.live += 1;
        let Arena { arena, slots, .. } = self;
        on_slots!(slots, t => {
            t.insert_unique(name_hash(name), Slot::of(new), |s| {
                name_hash(elem::name(bytes_at(arena, s.at())))
            });
        }, scan => {
            if self.live > SCAN_MAX {
                self.index();
            }
        });
    }

    pub fn replace(&mut self, at: At, e: &[u8]) {
        let at = at.0;
        let (n, old, _) = read_at(&self.arena, at);
        debug_assert_eq!(elem::name(old), elem::name(e), "the same name");
        if old.len() == e.len() {
            self.arena[at + n..at + n + e.len()].copy_from_slice(e);
            return;
        }
        // Widened (if it must be) while the old element is still live, so
        // that the new table has its slot to point elsewhere.
        self.room_for(e.len());
        self.kill(at);
        let new = self.append(e);
        on_slots!(&mut self.slots, t => {
            let s = t
                .find_mut(name_hash(elem::name(e)), |s| s.at() == at)
                .expect("a located element has a slot");
            *s = Slot::of(new);
        }, scan => {});
        self.maybe_compact();
    }

    pub fn remove(&mut self, at: At) {
        let h = name_hash(elem::name(self.get(at)));
        let at = at.0;
        on_slots!(&mut self.slots, t => {
            t.find_entry(h, |s| s.at() == at)
                .expect("a located element has a slot")
                .remove();
        }, scan => {});
        self.kill(at);
        self.live -= 1;
        self.maybe_compact();
    }

    /// Marks the element at `at` dead.
    fn kill(&mut self, at: usize) {
        let (n, bytes, live) = read_at(&self.arena, at);
        debug_assert!(live, "an element is killed once");
        self.dead += n + bytes.len();
        self.arena[at] |= 1;
    }

    /// Widens a narrow table when an element of `len` bytes appended now
    /// would end past what 4-byte offsets address. Called before anything
    /// changes: widening rebuilds the table from the live elements.
    fn room_for(&mut self, len: usize) {
        let need = varint((len as u64) << 1).1 + len;
        if self.arena.len() + need > NARROW_MAX && matches!(self.slots, Slots::Narrow(_)) {
            self.index_wide();
        }
    }

    /// Appends `e` with its header; returns its offset. A large arena
    /// grows by a quarter, not double: it is most of a large collection's
    /// memory, and 1.25x leaves 12 % of it unused on average where 1.5x
    /// leaves 24 %. The price is copying: an arena built by appends is
    /// copied about four times its final size in all, not twice.
    fn append(&mut self, e: &[u8]) -> usize {
        let (h, h_len) = varint((e.len() as u64) << 1);
        let at = self.arena.len();
        let need = h_len + e.len();
        debug_assert!(
            at + need <= NARROW_MAX || !matches!(self.slots, Slots::Narrow(_)),
            "room_for widened the table first"
        );
        if self.arena.capacity() - at < need {
            // Small arenas grow to the byte (the allocator reallocates in
            // place within its size class), large ones by a quarter.
            let cap = self.arena.capacity();
            let grow = if cap < SMALL_ARENA {
                need
            } else {
                (cap / 4).max(need)
            };
            self.arena.reserve_exact(grow);
        }
        self.arena.extend_from_slice(&h[..h_len]);
        self.arena.extend_from_slice(e);
        at
    }

    /// Builds the table (it had none, or a narrow one), of the width the
    /// arena needs.
    fn index(&mut self) {
        self.slots = if self.arena.len() > NARROW_MAX {
            Slots::Wide(self.table())
        } else {
            Slots::Narrow(self.table())
        };
    }

    fn index_wide(&mut self) {
        self.slots = Slots::Wide(self.table());
    }

    /// A table of every live element's offset.
    fn table<S: Slot>(&self) -> HashTable<S> {
        let mut t = HashTable::with_capacity(self.live);
        for (at, e) in self.walk() {
            t.insert_unique(name_hash(elem::name(e)), S::of(at), |s: &S| {
                name_hash(elem::name(bytes_at(&self.arena, s.at())))
            });
        }
        t
    }

    fn maybe_compact(&mut self) {
        if self.arena.len() >= COMPACT_MIN && self.dead * 2 > self.arena.len() {
            self.compact();
        }
    }

    /// Copies the live elements into a new arena and rebuilds the table
    /// (none, if few enough are left).
    fn compact(&mut self) {
        let old = std::mem::take(self);
        self.arena = Vec::with_capacity(old.arena.len() - old.dead);
        for e in old.iter() {
            self.insert_new(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{Lww, Version};

    fn member(name: &str, present: bool, ts: u64) -> Box<[u8]> {
        let version = Version {
            ts: crate::clock::Timestamp(ts),
            node: 1,
        };
        elem::member(
            name.as_bytes(),
            &Lww {
                version,
                value: present,
            },
        )
    }

    fn arena(e: &Elems) -> &Arena {
        e.0.as_deref().expect("not empty")
    }

    fn names(e: &Elems) -> Vec<String> {
        let mut v: Vec<String> = e
            .iter()
            .map(|b| String::from_utf8_lossy(elem::name(b)).into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn put_find_replace_and_remove() {
        let mut e = Elems::default();
        assert!(e.is_empty());
        e.put(&member("a", true, 1));
        e.put(&member("b", true, 2));
        assert_eq!(e.len(), 2);
        assert_eq!(e.find(b"a"), Some(&member("a", true, 1)[..]));
        // Same length: in place, nothing dead.
        e.put(&member("a", false, 3));
        assert_eq!(e.find(b"a"), Some(&member("a", false, 3)[..]));
        assert_eq!(arena(&e).dead, 0);
        assert!(matches!(arena(&e).slots, Slots::Scan), "few: no table");
        assert_eq!(e.len(), 2);
        e.remove(e.locate(b"a").expect("a is there"));
        assert!(e.locate(b"a").is_none());
        e.remove(e.locate(b"b").expect("b is there"));
        assert!(e.is_empty() && e.iter().next().is_none());
        assert_eq!(e.mem_bytes(), 0, "the last one frees the arena");
        e.put(&member("b", true, 2));
        assert_eq!(e.find(b"a"), None);
        assert_eq!(names(&e), ["b"]);
    }

    #[test]
    fn a_longer_rewrite_moves_and_dead_bytes_are_compacted_away() {
        let mut e = Elems::default();
        let field = |name: &str, value: &[u8]| {
            let f = crate::values::Field {
                value: Some(Lww {
                    version: Version::ZERO,
                    value: bytes::Bytes::copy_from_slice(value),
                }),
                ..Default::default()
            };
            elem::field(name.as_bytes(), &f)
        };
        for i in 0..100 {
            e.put(&field(&format!("f{i}"), b"x"));
        }
        for round in 1..40 {
            for i in 0..100 {
                e.put(&field(&format!("f{i}"), &vec![b'v'; round % 7 + 1]));
            }
            assert_eq!(e.len(), 100);
            let a = arena(&e);
            assert!(
                a.dead * 2 <= a.arena.len(),
                "compacted: {} dead of {}",
                a.dead,
                a.arena.len()
            );
            for i in 0..100 {
                let want = field(&format!("f{i}"), &vec![b'v'; round % 7 + 1]);
                assert_eq!(e.find(format!("f{i}").as_bytes()), Some(&want[..]));
            }
        }
        assert_eq!(e.iter().count(), 100);
        assert!(!matches!(arena(&e).slots, Slots::Scan), "many: a table");
        let keep = 100 - SCAN_MAX;
        for i in 0..keep {
            let at = e.locate(format!("f{i}").as_bytes()).expect("there");
            e.remove(at);
        }
        assert_eq!(e.len(), SCAN_MAX);
        let a = arena(&e);
        assert!(a.dead * 2 <= a.arena.len(), "compacted as it went");
        e.0.as_mut().expect("not empty").compact();
        let a = arena(&e);
        assert_eq!(a.dead, 0);
        assert!(
            matches!(a.slots, Slots::Scan),
            "compacted down to few: no table"
        );
        for i in 0..100 {
            assert_eq!(
                e.find(format!("f{i}").as_bytes()).is_some(),
                i >= keep,
                "f{i}"
            );
        }
    }

    /// A rewrite that moves its element past the 4-byte limit widens the
    /// table while the old element still has its slot (the property tests
    /// found the slot missing when the widening came after the kill).
    #[test]
    fn a_longer_rewrite_that_crosses_the_narrow_limit_widens_first() {
        let field = |name: &str, len: usize| {
            let f = crate::values::Field {
                value: Some(Lww {
                    version: Version::ZERO,
                    value: bytes::Bytes::from(vec![b'v'; len]),
                }),
                ..Default::default()
            };
            elem::field(name.as_bytes(), &f)
        };
        let mut e = Elems::default();
        let mut n = 0;
        while e.0.as_ref().map_or(0, |a| a.arena.len()) + 30 < NARROW_MAX {
            e.put(&field(&format!("f{n}"), 1));
            n += 1;
        }
        assert!(matches!(arena(&e).slots, Slots::Narrow(_)));
        e.put(&field("f0", 60));
        assert!(matches!(arena(&e).slots, Slots::Wide(_)));
        assert_eq!(e.find(b"f0"), Some(&field("f0", 60)[..]));
        for i in 1..n {
            assert_eq!(
                e.find(format!("f{i}").as_bytes()),
                Some(&field(&format!("f{i}"), 1)[..])
            );
        }
        assert_eq!(e.len(), n);
    }

    #[test]
    fn slots_widen_past_the_narrow_limit_and_keep_every_element() {
        let mut e = Elems::default();
        let mut i = 0;
        while e.0.as_ref().map_or(0, |a| a.arena.len()) <= NARROW_MAX {
            e.put(&member(&format!("member-{i}"), true, i));
            i += 1;
        }
        assert!(matches!(arena(&e).slots, Slots::Wide(_)));
        for j in 0..i {
            assert!(e.find(format!("member-{j}").as_bytes()).is_some(), "{j}");
        }
        for j in (0..i).step_by(2) {
            let at = e.locate(format!("member-{j}").as_bytes()).expect("there");
            e.remove(at);
        }
        assert_eq!(e.len() as u64, i / 2);
        assert_eq!(e.iter().count() as u64, i / 2);
        for j in 0..i {
            assert_eq!(
                e.find(format!("member-{j}").as_bytes()).is_some(),
                j % 2 == 1
            );
        }
    }
}
