//! A rich state's bytes, written and read by hand.
//!
//! The format is the one serde and bincode give a [`Rich`] with the peer
//! encoding (fixed-width little-endian integers; a length before each
//! sequence, map and byte string; a one-byte tag before an option), which
//! the log, the snapshots and the wire have always held. Every typed
//! write encodes its delta once and every replica decodes it once, and
//! serde's generic path cost about four times these loops. The tests
//! check, on random states, that both ways give serde's bytes and
//! values, and that damaged bytes are refused wherever serde refuses them.
//!
//! Reading from a frame ([`Source::Shared`]), byte strings share the
//! frame's buffer instead of being copied one by one.

use std::borrow::Borrow;

use bytes::Bytes;

use super::sorted::SortedMap;
use super::{Field, Lww, Rich, Shard, Shards, Version};
use crate::clock::Timestamp;
use crate::error::{Error, Result};

pub use super::sink::{Filling, Sink};

/// A state's head (all but its fields and members), borrowed: what
/// [`encode_parts_into`] writes first. A cell lends its own without
/// building a [`Rich`].
#[derive(Clone, Copy)]
pub struct HeadRef<'a> {
    /// Everything at or below it was removed.
    pub cleared: Version,
    /// The expiry register.
    pub ttl: &'a Option<Lww<Option<u64>>>,
    /// The string register.
    pub string: &'a Option<Lww<Bytes>>,
    /// The counter's shares.
    pub shards: &'a Shards,
}

impl<'a> HeadRef<'a> {
    /// The head of `r`.
    pub fn of(r: &'a Rich) -> HeadRef<'a> {
        HeadRef {
            cleared: r.cleared,
            ttl: &r.ttl,
            string: &r.string,
            shards: &r.shards,
        }
    }
}

/// Appends the encoding of `r` to `out`.
pub fn encode_into(r: &Rich, out: &mut impl Sink) {
    encode_parts_into(
        HeadRef::of(r),
        r.fields.iter().map(|(name, f)| (&name[..], f)),
        r.members.iter().map(|(name, m)| (&name[..], m)),
        out,
    );
}

/// [`encode_into`] of a state of `head` alone, with no fields and no
/// members (what a head's digest hashes).
pub fn encode_head_into(head: HeadRef<'_>, out: &mut impl Sink) {
    let none = std::iter::empty::<(&[u8], &Field)>();
    encode_parts_into(head, none, std::iter::empty::<(&[u8], &Lww<bool>)>(), out);
}

/// [`encode_into`] of the state whose head is `head` and whose fields and
/// members are `fields` and `members`, each in the order of their names,
/// no name twice: a cell's state, encoded without building a [`Rich`]
/// (`Cell::encode`).
pub fn encode_parts_into<'a, F: Borrow<Field>, M: Borrow<Lww<bool>>>(
    head: HeadRef<'_>,
    fields: impl ExactSizeIterator<Item = (&'a [u8], F)>,
    members: impl ExactSizeIterator<Item = (&'a [u8], M)>,
    out: &mut impl Sink,
) {
    version(out, head.cleared);
    option(out, head.ttl, |out, t| {
        version(out, t.version);
        option(out, &t.value, |out, ms| out.put_slice(&ms.to_le_bytes()));
    });
    option(out, head.string, lww_bytes);
    shards(out, head.shards);
    len(out, fields.len());
    for (name, f) in fields {
        let f = f.borrow();
        bytes(out, name);
        version(out, f.cleared);
        option(out, &f.value, lww_bytes);
        shards(out, &f.shards);
    }
    len(out, members.len());
    for (name, m) in members {
        let m = m.borrow();
        bytes(out, name);
        version(out, m.version);
        out.put_byte(u8::from(m.value));
    }
}

/// The exact length of [`encode_into`]'s output for `r`, so a buffer can
/// be sized once (kept beside the encoder, which it must follow).
pub fn encoded_len(r: &Rich) -> usize {
    fixed_len(HeadRef::of(r))
        + r.fields
            .iter()
            .map(|(name, f)| {
                LEN + name.len()
                    + VERSION
                    + 1
                    + f.value.as_ref().map_or(0, lww_bytes_len)
                    + shards_len(&f.shards)
            })
            .sum::<usize>()
        + r.members
            .keys()
            .map(|name| LEN + name.len() + VERSION + 1)
            .sum::<usize>()
}

/// Bytes of an encoded version.
const VERSION: usize = 16;
/// Bytes of an encoded length.
const LEN: usize = 8;

fn lww_bytes_len(l: &Lww<Bytes>) -> usize {
    VERSION + LEN + l.value.len()
}

fn shards_len(s: &Shards) -> usize {
    LEN + s
        .iter()
        .map(|(_, shard)| 16 + 2 * VERSION + LEN + shard.marks.len() * (VERSION + 8))
        .sum::<usize>()
}

/// The exact length of [`encode_parts_into`]'s output but for the fields
/// and members themselves: the head and the two counts.
pub fn fixed_len(head: HeadRef<'_>) -> usize {
    let ttl = head
        .ttl
        .as_ref()
        .map_or(0, |t| VERSION + 1 + t.value.map_or(0, |_| 8));
    VERSION
        + 1
        + ttl
        + 1
        + head.string.as_ref().map_or(0, lww_bytes_len)
        + shards_len(head.shards)
        + 2 * LEN
}

fn version(out: &mut impl Sink, v: Version) {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&v.ts.0.to_le_bytes());
    b[8..].copy_from_slice(&v.node.to_le_bytes());
    out.put_slice(&b);
}

fn len(out: &mut impl Sink, n: usize) {
    out.put_slice(&(n as u64).to_le_bytes());
}

fn bytes(out: &mut impl Sink, b: &[u8]) {
    len(out, b.len());
    out.put_slice(b);
}

fn option<S: Sink, T>(out: &mut S, o: &Option<T>, some: impl FnOnce(&mut S, &T)) {
    match o {
        None => out.put_byte(0),
        Some(t) => {
            out.put_byte(1);
            some(out, t);
        }
    }
}

fn lww_bytes(out: &mut impl Sink, l: &Lww<Bytes>) {
    version(out, l.version);
    bytes(out, &l.value);
}

fn shards(out: &mut impl Sink, s: &Shards) {
    len(out, s.len());
    for (id, shard) in s {
        out.put_slice(&id.to_le_bytes());
        out.put_slice(&shard.total.to_le_bytes());
        version(out, shard.version);
        version(out, shard.since);
        len(out, shard.marks.len());
        for (v, total) in &shard.marks {
            version(out, *v);
            out.put_slice(&total.to_le_bytes());
        }
    }
}

/// Where a state is read from: a plain slice (byte strings copied), or a
/// shared buffer (byte strings are slices of it).
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// Copy what is read.
    Slice(&'a [u8]),
    /// Share what is read.
    Shared(&'a Bytes),
}

/// Reads a rich state from the start of `src`, which may go on after it;
/// returns it and how many bytes it took.
pub fn decode(src: Source<'_>) -> Result<(Rich, usize)> {
    let mut r = Reader::new(src);
    let rich = r.rich()?;
    Ok((rich, r.at()))
}

/// A cursor over bytes in the peer encoding: what this module reads a
/// rich state with, and the hand-written peer frames
/// (`message/frames/`) read the rest of a message with. Damage is
/// [`Error::Protocol`], saying what and at which byte.
pub struct Reader<'a> {
    buf: &'a [u8],
    shared: Option<&'a Bytes>,
    at: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `src`.
    pub fn new(src: Source<'a>) -> Self {
        let (buf, shared) = match src {
            Source::Slice(s) => (s, None),
            Source::Shared(b) => (&b[..], Some(b)),
        };
        Reader { buf, shared, at: 0 }
    }

    /// How many bytes it has read.
    pub fn at(&self) -> usize {
        self.at
    }

    /// An error saying why the bytes cannot be read, and where.
    #[cold]
    pub fn bad(&self, why: &str) -> Error {
        Error::Protocol(format!("decode: {why} (at byte {})", self.at))
    }

    #[inline(always)]
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        match self.buf.get(self.at..).and_then(|b| b.first_chunk::<N>()) {
            Some(b) => {
                self.at += N;
                Ok(*b)
            }
            None => Err(self.ends_early(N)),
        }
    }

    #[cold]
    #[inline(never)]
    fn ends_early(&self, n: usize) -> Error {
        self.bad(&format!("ends early, {n} more bytes wanted"))
    }

    /// A byte that must be 0 or 1 (a bool, or an option's tag).
    #[inline(always)]
    fn flag(&mut self, what: &str) -> Result<bool> {
        match self.take::<1>()? {
            [0] => Ok(false),
            [1] => Ok(true),
            [b] => Err(self.back_and_bad(1, &format!("{b} is not {what}"))),
        }
    }

    /// [`Reader::bad`] about the `n` bytes just read.
    #[cold]
    #[inline(never)]
    fn back_and_bad(&mut self, n: usize, why: &str) -> Error {
        self.at -= n;
        self.bad(why)
    }

    /// A little-endian `u32`.
    #[inline(always)]
    pub fn u32(&mut self) -> Result<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }

    /// A little-endian `u64`.
    #[inline(always)]
    pub fn u64(&mut self) -> Result<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }

    #[inline(always)]
    fn i64(&mut self) -> Result<i64> {
        self.take::<8>().map(i64::from_le_bytes)
    }

    /// A version: timestamp, then node id.
    #[inline(always)]
    pub fn version(&mut self) -> Result<Version> {
        let b = self.take::<16>()?;
        let (ts, node) = b.split_at(8);
        Ok(Version {
            ts: Timestamp(u64::from_le_bytes(ts.try_into().expect("8 bytes"))),
            node: u64::from_le_bytes(node.try_into().expect("8 bytes")),
        })
    }

    /// A bool (one byte, 0 or 1).
    pub fn bool(&mut self) -> Result<bool> {
        self.flag("a bool")
    }

    /// An option's tag: whether a value follows.
    pub fn some(&mut self) -> Result<bool> {
        self.flag("an option's tag")
    }

    /// A count of items of at least `min` bytes each: one the rest of the
    /// bytes cannot hold is refused before anything is allocated for it.
    #[inline(always)]
    pub fn count(&mut self, min: usize) -> Result<usize> {
        let n = self.u64()?;
        let room = (self.buf.len() - self.at) / min;
        match usize::try_from(n) {
            Ok(n) if n <= room => Ok(n),
            _ => Err(self.back_and_bad(8, &format!("{n} items cannot fit"))),
        }
    }

    /// A byte string (its length, then it): a slice of a shared buffer,
    /// a copy of a plain one.
    #[inline]
    pub fn bytes(&mut self) -> Result<Bytes> {
        let n = self.count(1)?;
        let r = self.at..self.at + n;
        self.at += n;
        Ok(match self.shared {
            None => Bytes::copy_from_slice(&self.buf[r]),
            Some(b) => b.slice(r),
        })
    }

    /// A rich state, and the bytes it was read from (a slice of a shared
    /// buffer, a copy of a plain one).
    pub fn rich_kept(&mut self) -> Result<(Rich, Bytes)> {
        let start = self.at;
        let rich = self.rich()?;
        let kept = match self.shared {
            None => Bytes::copy_from_slice(&self.buf[start..self.at]),
            Some(b) => b.slice(start..self.at),
        };
        Ok((rich, kept))
    }

    fn lww_bytes(&mut self) -> Result<Option<Lww<Bytes>>> {
        if !self.some()? {
            return Ok(None);
        }
        Ok(Some(Lww {
            version: self.version()?,
            value: self.bytes()?,
        }))
    }

    fn shards(&mut self) -> Result<Shards> {
        let n = self.count(56)?;
        let mut shards = Shards::with_capacity(n);
        for _ in 0..n {
            let id = self.u64()?;
            let total = self.i64()?;
            let version = self.version()?;
            let since = self.version()?;
            let m = self.count(24)?;
            let mut marks = Vec::with_capacity(m);
            for _ in 0..m {
                marks.push((self.version()?, self.i64()?));
            }
            shards.insert(
                id,
                Shard {
                    total,
                    version,
                    since,
                    marks,
                },
            );
        }
        Ok(shards)
    }

    /// A rich state.
    pub fn rich(&mut self) -> Result<Rich> {
        let cleared = self.version()?;
        let ttl = if self.some()? {
            let version = self.version()?;
            let value = if self.some()? {
                Some(self.u64()?)
            } else {
                None
            };
            Some(Lww { version, value })
        } else {
            None
        };
        let string = self.lww_bytes()?;
        let shards = self.shards()?;
        let mut rich = Rich {
            cleared,
            ttl,
            string,
            shards,
            ..Rich::default()
        };
        let n = self.count(33)?;
        rich.fields = SortedMap::with_capacity(n);
        for _ in 0..n {
            let name = self.bytes()?;
            let field = Field {
                cleared: self.version()?,
                value: self.lww_bytes()?,
                shards: self.shards()?,
            };
            rich.fields.insert(name, field);
        }
        let n = self.count(25)?;
        rich.members = SortedMap::with_capacity(n);
        for _ in 0..n {
            let name = self.bytes()?;
            let m = Lww {
                version: self.version()?,
                value: self.bool()?,
            };
            rich.members.insert(name, m);
        }
        Ok(rich)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn serde_bytes(r: &Rich) -> Vec<u8> {
        crate::encoding::to_vec(r).unwrap()
    }

    fn by_hand(r: &Rich) -> Vec<u8> {
        let mut out = Vec::new();
        encode_into(r, &mut out);
        out
    }

    fn serde_decode(b: &[u8]) -> Option<(Rich, usize)> {
        crate::encoding::from_slice_prefix::<Rich>(b).ok()
    }

    proptest! {
        #[test]
        fn both_ways_as_serde(r in super::super::tests::rich(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let b = by_hand(&r);
            prop_assert_eq!(&b, &serde_bytes(&r));
            prop_assert_eq!(encoded_len(&r), b.len());
            let mut long = b.clone();
            long.extend_from_slice(&tail);
            let shared = Bytes::from(long.clone());
            for src in [Source::Slice(&long), Source::Shared(&shared)] {
                let (back, used) = decode(src).unwrap();
                prop_assert_eq!(&back, &r);
                prop_assert_eq!(used, b.len());
            }
        }

        /// Damaged bytes: refused wherever serde refuses them, and read as
        /// serde reads them otherwise.
        #[test]
        fn damaged_bytes_as_serde(
            r in super::super::tests::rich(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut b = by_hand(&r);
            let i = at.index(b.len());
            b[i] = byte;
            let b = &b[..cut.index(b.len() + 1)];
            let hand = decode(Source::Slice(b)).ok();
            prop_assert_eq!(hand, serde_decode(b));
        }
    }

    /// A state with every piece: expiry, string, counter shares with
    /// marks, a field with a value and shares, a member.
    fn every_piece() -> Rich {
        let v = |ts: u64| Version {
            ts: Timestamp(ts),
            node: 3,
        };
        let share = Shard::first(5, v(10)).then(7, v(11));
        let mut r = Rich {
            cleared: v(1),
            ttl: Some(Lww {
                version: v(2),
                value: Some(99),
            }),
            string: Some(Lww {
                version: v(3),
                value: "s".into(),
            }),
            ..Rich::default()
        };
        r.shards.insert(7, share.clone());
        r.fields.insert(
            "f".into(),
            Field {
                cleared: v(4),
                value: Some(Lww {
                    version: v(5),
                    value: "x".into(),
                }),
                shards: [(8, share)].into_iter().collect(),
            },
        );
        r.members.insert(
            "m".into(),
            Lww {
                version: v(6),
                value: true,
            },
        );
        r
    }

    /// Every byte in turn set to values that are no bool or option tag
    /// (which random damage rarely hits where a tag is): read as serde
    /// reads it.
    #[test]
    fn each_byte_damaged_reads_as_serde() {
        let b = by_hand(&every_piece());
        assert_eq!(b, serde_bytes(&every_piece()));
        assert_eq!(encoded_len(&every_piece()), b.len());
        assert_eq!(
            encoded_len(&Rich::default()),
            by_hand(&Rich::default()).len()
        );
        for i in 0..b.len() {
            for byte in [2, 0xff] {
                let mut d = b.clone();
                d[i] = byte;
                let hand = decode(Source::Slice(&d)).ok();
                assert_eq!(hand, serde_decode(&d), "byte {i} set to {byte}");
            }
        }
    }

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        let mut b = by_hand(&Rich::default());
        // The fields' count: after cleared (16), two absent options (2)
        // and the shards' count (8).
        b[26..34].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = decode(Source::Slice(&b)).unwrap_err().to_string();
        assert!(err.contains("cannot fit"), "{err}");
    }
}
