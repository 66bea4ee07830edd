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

use bytes::Bytes;

use super::{Field, Lww, Rich, Shard, Shards, Version};
use crate::clock::Timestamp;

/// Appends the encoding of `r` to `out`.
pub fn encode_into(r: &Rich, out: &mut Vec<u8>) {
    version(out, r.cleared);
    option(out, &r.ttl, |out, t| {
        version(out, t.version);
        option(out, &t.value, |out, ms| {
            out.extend_from_slice(&ms.to_le_bytes())
        });
    });
    option(out, &r.string, lww_bytes);
    shards(out, &r.shards);
    len(out, r.fields.len());
    for (name, f) in &r.fields {
        bytes(out, name);
        version(out, f.cleared);
        option(out, &f.value, lww_bytes);
        shards(out, &f.shards);
    }
    len(out, r.members.len());
    for (name, m) in &r.members {
        bytes(out, name);
        version(out, m.version);
        out.push(u8::from(m.value));
    }
}

fn version(out: &mut Vec<u8>, v: Version) {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&v.ts.0.to_le_bytes());
    b[8..].copy_from_slice(&v.node.to_le_bytes());
    out.extend_from_slice(&b);
}

fn len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u64).to_le_bytes());
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    len(out, b.len());
    out.extend_from_slice(b);
}

fn option<T>(out: &mut Vec<u8>, o: &Option<T>, some: impl FnOnce(&mut Vec<u8>, &T)) {
    match o {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            some(out, t);
        }
    }
}

fn lww_bytes(out: &mut Vec<u8>, l: &Lww<Bytes>) {
    version(out, l.version);
    bytes(out, &l.value);
}

fn shards(out: &mut Vec<u8>, s: &Shards) {
    len(out, s.len());
    for (id, shard) in s {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&shard.total.to_le_bytes());
        version(out, shard.version);
        version(out, shard.since);
        len(out, shard.marks.len());
        for (v, total) in &shard.marks {
            version(out, *v);
            out.extend_from_slice(&total.to_le_bytes());
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
/// returns it and how many bytes it took, or why it cannot be read.
pub fn decode(src: Source<'_>) -> Result<(Rich, usize), String> {
    let (buf, shared) = match src {
        Source::Slice(s) => (s, None),
        Source::Shared(b) => (&b[..], Some(b)),
    };
    let mut r = Reader { buf, shared, at: 0 };
    let rich = r.rich()?;
    Ok((rich, r.at))
}

struct Reader<'a> {
    buf: &'a [u8],
    shared: Option<&'a Bytes>,
    at: usize,
}

#[cold]
fn ends_early(at: usize, n: usize) -> String {
    format!("ends early (at byte {at}, {n} more wanted)")
}

impl Reader<'_> {
    #[inline]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        match self.buf.get(self.at..).and_then(|b| b.first_chunk::<N>()) {
            Some(b) => {
                self.at += N;
                Ok(*b)
            }
            None => Err(ends_early(self.at, N)),
        }
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, String> {
        self.take::<1>().map(|[b]| b)
    }

    #[inline]
    fn u64(&mut self) -> Result<u64, String> {
        self.take::<8>().map(u64::from_le_bytes)
    }

    #[inline]
    fn i64(&mut self) -> Result<i64, String> {
        self.take::<8>().map(i64::from_le_bytes)
    }

    #[inline]
    fn version(&mut self) -> Result<Version, String> {
        let b = self.take::<16>()?;
        let (ts, node) = b.split_at(8);
        Ok(Version {
            ts: Timestamp(u64::from_le_bytes(ts.try_into().expect("8 bytes"))),
            node: u64::from_le_bytes(node.try_into().expect("8 bytes")),
        })
    }

    fn bool(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("{b} is not a bool (at byte {})", self.at - 1)),
        }
    }

    fn some(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!(
                "{b} is not an option's tag (at byte {})",
                self.at - 1
            )),
        }
    }

    /// A count of items of at least `min` bytes each: one the rest of the
    /// bytes cannot hold is refused before anything is allocated for it.
    fn count(&mut self, min: usize) -> Result<usize, String> {
        let n = self.u64()?;
        let room = (self.buf.len() - self.at) / min;
        match usize::try_from(n) {
            Ok(n) if n <= room => Ok(n),
            _ => Err(format!("{n} items cannot fit (at byte {})", self.at - 8)),
        }
    }

    fn bytes(&mut self) -> Result<Bytes, String> {
        let n = self.count(1)?;
        let r = self.at..self.at + n;
        self.at += n;
        Ok(match self.shared {
            None => Bytes::copy_from_slice(&self.buf[r]),
            Some(b) => b.slice(r),
        })
    }

    fn lww_bytes(&mut self) -> Result<Option<Lww<Bytes>>, String> {
        if !self.some()? {
            return Ok(None);
        }
        Ok(Some(Lww {
            version: self.version()?,
            value: self.bytes()?,
        }))
    }

    fn shards(&mut self) -> Result<Shards, String> {
        let n = self.count(56)?;
        let mut shards = Shards::new();
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

    fn rich(&mut self) -> Result<Rich, String> {
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
        for _ in 0..self.count(33)? {
            let name = self.bytes()?;
            let field = Field {
                cleared: self.version()?,
                value: self.lww_bytes()?,
                shards: self.shards()?,
            };
            rich.fields.insert(name, field);
        }
        for _ in 0..self.count(25)? {
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

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        let mut b = by_hand(&Rich::default());
        // The fields' count: after cleared (16), two absent options (2)
        // and the shards' count (8).
        b[26..34].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(Source::Slice(&b))
            .unwrap_err()
            .contains("cannot fit"));
    }
}
