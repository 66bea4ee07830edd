//! One stored entry packed into a single heap allocation.
//!
//! This module exists to keep the byte layout of a stored entry, and every
//! offset computation it needs, in one small place that can be tested to
//! the byte, apart from the locking and counting in `store.rs`.
//!
//! A million keys with small values is the common case, so the overheads
//! that matter are per entry: a hash table slot and an allocation each for
//! the key and the value cost more than the data. A [`Packed`] is one boxed
//! byte slice (a 16-byte table slot) laid out as
//!
//! ```text
//! ts u64 LE (8) | node u64 LE (8) | varint(key_len << 2 | kind) | key | body
//! ```
//!
//! The varint is LEB128: one byte for keys under 32 bytes. `kind` is 0 for
//! a tombstone (no body bytes) and 1 for a plain string (the body is the
//! value), so an empty value and a delete stay different things. (Rich
//! states are kept apart, in cells: see `values::Cell`.)
//! A 14-byte key with a 64-byte value takes 95 bytes, one allocation.
//!
//! Deliberately left out: sharing or compressing keys, and any `unsafe`
//! (a thin pointer with the length inside the allocation would save 8 more
//! bytes a slot, but needs raw allocation code).

use std::fmt;

use super::{EntryRef, Version};
use crate::clock::Timestamp;
use crate::encoding::{read_varint, varint};
use crate::values::{Body, Simple};

/// Bytes before the varint: ts and node.
const VERSION_LEN: usize = 16;

/// A stored entry: version, tombstone flag, key and value in one allocation.
/// Its identity in a table is its key; see [`Packed::key`].
pub(super) struct Packed(Box<[u8]>);

impl Packed {
    /// Packs `key` with a version and a body.
    pub(super) fn new(key: &[u8], version: Version, body: Simple<'_>) -> Packed {
        let (kind, value) = kind_of(body);
        let tag = tag(key.len(), kind);
        let (varint, n) = varint(tag);
        let mut buf = Vec::with_capacity(VERSION_LEN + n + key.len() + value.len());
        buf.extend_from_slice(&version.ts.0.to_le_bytes());
        buf.extend_from_slice(&version.node.to_le_bytes());
        buf.extend_from_slice(&varint[..n]);
        buf.extend_from_slice(key);
        buf.extend_from_slice(value);
        // Capacity was exact, so this does not reallocate.
        Packed(buf.into_boxed_slice())
    }

    /// Where the key starts, its length, and the body's kind.
    ///
    /// This and the accessors below are on every SET and GET, called from
    /// other modules: `#[inline]`, so that whether they are inlined does
    /// not depend on how the build happens to split the crate.
    #[inline]
    fn layout(&self) -> (usize, usize, u8) {
        let (tag, n) = read_varint(&self.0[VERSION_LEN..]);
        (VERSION_LEN + n, (tag >> 2) as usize, (tag & 3) as u8)
    }

    /// The key: what the table hashes and compares.
    #[inline]
    pub(super) fn key(&self) -> &[u8] {
        let (start, len, _) = self.layout();
        &self.0[start..start + len]
    }

    /// The version and value, borrowed.
    #[inline]
    pub(super) fn view(&self) -> EntryRef<'_> {
        self.split().1
    }

    /// The version and value in their simple shape.
    #[inline]
    pub(super) fn simple(&self) -> (Version, Simple<'_>) {
        let (_, e) = self.split();
        match e.body {
            Body::Simple(s) => (e.version, s),
            Body::Rich(_) => unreachable!("a packed entry is simple"),
        }
    }

    /// The key and the entry, borrowed, for one parse of the layout.
    #[inline]
    pub(super) fn split(&self) -> (&[u8], EntryRef<'_>) {
        let (start, len, kind) = self.layout();
        let (key, value) = self.0[start..].split_at(len);
        let version = Version {
            ts: Timestamp(read_u64(&self.0[0..8])),
            node: read_u64(&self.0[8..16]),
        };
        let body = match kind {
            KIND_DEAD => Simple::Dead,
            _ => Simple::Str(value),
        };
        (
            key,
            EntryRef {
                version,
                body: Body::Simple(body),
            },
        )
    }

    /// Replaces the version and value, keeping the key. Writes in place
    /// when the new entry has the same size (an overwrite with a value of
    /// the same length, the usual case), else packs a new allocation.
    #[inline]
    pub(super) fn set(&mut self, version: Version, body: Simple<'_>) {
        let (start, len, _) = self.layout();
        let (kind, value) = kind_of(body);
        if start + len + value.len() != self.0.len() {
            *self = Packed::new(self.key(), version, body);
            return;
        }
        self.0[0..8].copy_from_slice(&version.ts.0.to_le_bytes());
        self.0[8..16].copy_from_slice(&version.node.to_le_bytes());
        // The kind is the varint's two lowest bits, so changing it never
        // changes the varint's length.
        let (varint, n) = varint(tag(len, kind));
        self.0[VERSION_LEN..start].copy_from_slice(&varint[..n]);
        self.0[start + len..].copy_from_slice(value);
    }

    /// Bytes of the allocation (not counting the table slot).
    #[cfg(test)]
    pub(super) fn allocated(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for Packed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.view();
        f.debug_struct("Packed")
            .field("key", &self.key())
            .field("version", &v.version)
            .field("body", &v.body)
            .finish()
    }
}

const KIND_DEAD: u8 = 0;
const KIND_STR: u8 = 1;

/// A body's kind and bytes.
fn kind_of(body: Simple<'_>) -> (u8, &[u8]) {
    match body {
        Simple::Dead => (KIND_DEAD, &[]),
        Simple::Str(v) => (KIND_STR, v),
    }
}

fn tag(key_len: usize, kind: u8) -> u64 {
    ((key_len as u64) << 2) | u64::from(kind)
}

fn read_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn version(ts: u64, node: u64) -> Version {
        Version {
            ts: Timestamp(ts),
            node,
        }
    }

    fn body(value: Option<&[u8]>) -> Simple<'_> {
        value.map_or(Simple::Dead, Simple::Str)
    }

    fn check(p: &Packed, key: &[u8], v: Version, value: Option<&[u8]>) {
        assert_eq!(p.key(), key);
        assert_eq!(p.simple(), (v, body(value)));
        assert_eq!(p.split().0, key);
    }

    #[test]
    fn a_small_entry_is_one_exact_allocation() {
        let p = Packed::new(b"key:0000001234", version(7, 9), body(Some(&[b'v'; 64])));
        assert_eq!(p.allocated(), 16 + 1 + 14 + 64);
        check(&p, b"key:0000001234", version(7, 9), Some(&[b'v'; 64]));
    }

    #[test]
    fn an_empty_value_is_not_a_tombstone() {
        let live = Packed::new(b"k", version(1, 1), body(Some(b"")));
        let tomb = Packed::new(b"k", version(1, 1), body(None));
        assert_eq!(live.simple().1, Simple::Str(b""));
        assert!(tomb.view().is_tombstone());
        assert_eq!(live.allocated(), tomb.allocated());
    }

    #[test]
    fn set_rewrites_in_place_or_repacks() {
        let mut p = Packed::new(b"k", version(1, 1), body(Some(b"ab")));
        p.set(version(2, 3), body(Some(b"cd")));
        check(&p, b"k", version(2, 3), Some(b"cd"));
        p.set(version(3, 3), body(Some(b"longer")));
        check(&p, b"k", version(3, 3), Some(b"longer"));
        p.set(version(4, 3), body(None));
        check(&p, b"k", version(4, 3), None);
        p.set(version(5, 3), body(Some(b"")));
        check(&p, b"k", version(5, 3), Some(b""));
        p.set(version(6, 3), body(None));
        check(&p, b"k", version(6, 3), None);
    }

    proptest! {
        #[test]
        fn packing_round_trips(
            key_len in prop_oneof![0usize..70, 120usize..140, 16_000usize..17_000],
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)),
            next in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)),
            ts in any::<u64>(),
            node in any::<u64>(),
        ) {
            let key: Vec<u8> = (0..key_len).map(|i| i as u8).collect();
            let mut p = Packed::new(&key, version(ts, node), body(value.as_deref()));
            prop_assert_eq!(p.key(), &key[..]);
            prop_assert_eq!(p.simple(), (version(ts, node), body(value.as_deref())));
            p.set(version(node, ts), body(next.as_deref()));
            prop_assert_eq!(p.key(), &key[..]);
            prop_assert_eq!(p.simple(), (version(node, ts), body(next.as_deref())));
        }
    }
}
