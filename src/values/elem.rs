//! One hash field or set member as bytes: how a [`super::Cell`] keeps its
//! elements (in an arena, `elems.rs`).
//!
//! An element is `varint(name length) | name | payload`. A member's
//! payload is its register: version (ts and node, 8 bytes each, little-
//! endian) and 1 byte, present or removed. A field's payload is a flags
//! byte (which pieces follow), then its `cleared` version (left out when
//! it is just before the value's, as HSET writes it), its value's
//! version, its counter shards (a varint count, then for each: id, total,
//! version, since, a varint count of marks and the marks, each a version
//! and a total), and last its value's bytes. Every piece is written in one fixed order
//! and only when present, so two equal elements are equal bytes: the
//! digest of a rich state hashes these bytes (see [`field_hash`]).

use bytes::Bytes;

use super::{Field, Lww, Shard, Shards, Version};
use crate::clock::Timestamp;
use crate::encoding::{read_varint, stable_hash, varint};

const HAS_CLEARED: u8 = 1;
const HAS_VALUE: u8 = 2;
const HAS_SHARDS: u8 = 4;
/// The field's `cleared` is just before its value's version (what HSET
/// writes), and is not written out.
const CLEARED_JUST_BEFORE_VALUE: u8 = 8;
const FIELD_SEED: u64 = 0x6669_656c_6473;
const MEMBER_SEED: u64 = 0x6d65_6d62_6572;

/// Appends an element's name to `buf`, with room reserved for its
/// `payload`; returns the element's size.
fn start(buf: &mut Vec<u8>, name: &[u8], payload: usize) -> usize {
    let (n, len) = varint(name.len() as u64);
    let size = len + name.len() + payload;
    buf.reserve_exact(size);
    buf.extend_from_slice(&n[..len]);
    buf.extend_from_slice(name);
    size
}

/// The largest scratch buffer kept for the next element (see [`scratch`]).
const SCRATCH_KEPT: usize = 4096;

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Writes an element with `write` into this thread's scratch buffer and
/// lends it to `then`. A cell copies each element into its arena (or only
/// hashes it), so building it in a box of its own cost an allocation and
/// a free per HSET or SADD on every replica.
fn scratch<R>(write: impl FnOnce(&mut Vec<u8>), then: impl FnOnce(&[u8]) -> R) -> R {
    // Taken out, not borrowed: a nested call gets a buffer of its own.
    let mut buf = SCRATCH.take();
    buf.clear();
    write(&mut buf);
    let r = then(&buf);
    if buf.capacity() <= SCRATCH_KEPT {
        SCRATCH.set(buf);
    }
    r
}

/// Lends `name`'s field element, built in the scratch buffer, to `then`.
pub fn with_field<R>(name: &[u8], f: &Field, then: impl FnOnce(&[u8]) -> R) -> R {
    scratch(|b| field_into(b, name, f), then)
}

/// Lends `name`'s member element, built in the scratch buffer, to `then`.
pub fn with_member<R>(name: &[u8], m: &Lww<bool>, then: impl FnOnce(&[u8]) -> R) -> R {
    scratch(|b| member_into(b, name, m), then)
}

/// The element's name (field or member).
pub fn name(elem: &[u8]) -> &[u8] {
    let (len, n) = read_varint(elem);
    &elem[n..n + len as usize]
}

fn payload(elem: &[u8]) -> &[u8] {
    let (len, n) = read_varint(elem);
    &elem[n + len as usize..]
}

fn put_version(buf: &mut Vec<u8>, v: Version) {
    buf.extend_from_slice(&v.ts.0.to_le_bytes());
    buf.extend_from_slice(&v.node.to_le_bytes());
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn version_at(b: &[u8], at: usize) -> Version {
    Version {
        ts: Timestamp(u64_at(b, at)),
        node: u64_at(b, at + 8),
    }
}

/// A set member's element.
#[cfg(test)]
pub fn member(name: &[u8], m: &Lww<bool>) -> Box<[u8]> {
    let mut buf = Vec::new();
    member_into(&mut buf, name, m);
    buf.into_boxed_slice()
}

/// A set member's element, appended to `buf`.
fn member_into(buf: &mut Vec<u8>, name: &[u8], m: &Lww<bool>) {
    start(buf, name, 17);
    put_version(buf, m.version);
    buf.push(u8::from(m.value));
}

/// A set member's register.
pub fn read_member(elem: &[u8]) -> Lww<bool> {
    let p = payload(elem);
    Lww {
        version: version_at(p, 0),
        value: p[16] != 0,
    }
}

/// Whether a member element says present.
pub fn member_present(elem: &[u8]) -> bool {
    elem.last() == Some(&1)
}

/// A hash field's element, allocated to its exact size.
#[cfg(test)]
pub fn field(name: &[u8], f: &Field) -> Box<[u8]> {
    let mut buf = Vec::new();
    field_into(&mut buf, name, f);
    debug_assert_eq!(buf.len(), buf.capacity(), "sized exactly");
    buf.into_boxed_slice()
}

/// A hash field's element, appended to `buf`. A field that HSET wrote
/// (`cleared` just before its value) does not spell `cleared` out: the
/// flag [`CLEARED_JUST_BEFORE_VALUE`] says so, 16 bytes fewer.
fn field_into(buf: &mut Vec<u8>, name: &[u8], f: &Field) {
    let at = buf.len();
    let implied = f
        .value
        .as_ref()
        .is_some_and(|v| f.cleared != Version::ZERO && f.cleared == v.version.just_before());
    let mut flags = 0;
    if implied {
        flags |= CLEARED_JUST_BEFORE_VALUE;
    } else if f.cleared != Version::ZERO {
        flags |= HAS_CLEARED;
    }
    if f.value.is_some() {
        flags |= HAS_VALUE;
    }
    let (n, n_len) = varint(f.shards.len() as u64);
    if !f.shards.is_empty() {
        flags |= HAS_SHARDS;
    }
    let value_len = f.value.as_ref().map_or(0, |v| v.value.len());
    let payload = 1
        + if flags & HAS_CLEARED != 0 { 16 } else { 0 }
        + if f.value.is_some() { 16 } else { 0 }
        + if flags & HAS_SHARDS != 0 {
            n_len + f.shards.values().map(shard_len).sum::<usize>()
        } else {
            0
        }
        + value_len;
    let size = start(buf, name, payload);
    buf.push(flags);
    if flags & HAS_CLEARED != 0 {
        put_version(buf, f.cleared);
    }
    if let Some(v) = &f.value {
        put_version(buf, v.version);
    }
    if flags & HAS_SHARDS != 0 {
        buf.extend_from_slice(&n[..n_len]);
        for (id, s) in &f.shards {
            buf.extend_from_slice(&id.to_le_bytes());
            buf.extend_from_slice(&s.total.to_le_bytes());
            put_version(buf, s.version);
            put_version(buf, s.since);
            let (m, m_len) = varint(s.marks.len() as u64);
            buf.extend_from_slice(&m[..m_len]);
            for (v, t) in &s.marks {
                put_version(buf, *v);
                buf.extend_from_slice(&t.to_le_bytes());
            }
        }
    }
    if let Some(v) = &f.value {
        buf.extend_from_slice(&v.value);
    }
    debug_assert_eq!(buf.len() - at, size, "sized exactly");
}

/// The bytes a counter share takes in a field element: id, total,
/// version, since, the marks' count and the marks.
fn shard_len(s: &Shard) -> usize {
    8 + 8 + 16 + 16 + varint(s.marks.len() as u64).1 + 24 * s.marks.len()
}

/// A hash field from its element.
pub fn read_field(elem: &[u8]) -> Field {
    let p = payload(elem);
    let flags = p[0];
    let mut at = 1;
    let mut f = Field::default();
    if flags & HAS_CLEARED != 0 {
        f.cleared = version_at(p, at);
        at += 16;
    }
    let value_version = (flags & HAS_VALUE != 0).then(|| {
        let v = version_at(p, at);
        at += 16;
        v
    });
    if flags & HAS_SHARDS != 0 {
        let (n, len) = read_varint(&p[at..]);
        at += len;
        let mut shards = Shards::new();
        for _ in 0..n {
            let id = u64_at(p, at);
            let total = u64_at(p, at + 8) as i64;
            let version = version_at(p, at + 16);
            let since = version_at(p, at + 32);
            at += 48;
            let (m, len) = read_varint(&p[at..]);
            at += len;
            let mut marks = Vec::with_capacity(m as usize);
            for _ in 0..m {
                marks.push((version_at(p, at), u64_at(p, at + 16) as i64));
                at += 24;
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
        f.shards = shards;
    }
    if flags & CLEARED_JUST_BEFORE_VALUE != 0 {
        f.cleared = value_version.expect("a value").just_before();
    }
    f.value = value_version.map(|version| Lww {
        version,
        value: Bytes::copy_from_slice(&p[at..]),
    });
    f
}

/// Whether a field element holds anything live (a value or shares).
pub fn field_live(elem: &[u8]) -> bool {
    payload(elem)[0] & (HAS_VALUE | HAS_SHARDS) != 0
}

/// A field element's digest contribution.
pub fn field_hash(elem: &[u8]) -> u64 {
    stable_hash(FIELD_SEED, elem)
}

/// A member element's digest contribution.
pub fn member_hash(elem: &[u8]) -> u64 {
    stable_hash(MEMBER_SEED, elem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_cleared_and_a_nested_call_gets_a_buffer_of_its_own() {
        let big = vec![7u8; 2 * SCRATCH_KEPT];
        // A large element is lent, then not kept.
        assert_eq!(
            scratch(|b| b.extend_from_slice(&big), |e| e.len()),
            big.len()
        );
        let outer = scratch(
            |b| b.extend_from_slice(b"outer"),
            |o| {
                let inner = scratch(|b| b.extend_from_slice(b"in"), |i| i.to_vec());
                assert_eq!(inner, b"in");
                o.to_vec()
            },
        );
        assert_eq!(outer, b"outer");
        // What the last call left is cleared before the next writes.
        assert_eq!(scratch(|_| {}, |e| e.len()), 0);
    }

    fn v(ts: u64, node: u64) -> Version {
        Version {
            ts: Timestamp(ts),
            node,
        }
    }

    #[test]
    fn elements_read_back_as_written() {
        let m = Lww {
            version: v(7, 3),
            value: true,
        };
        let e = member(b"mem", &m);
        assert_eq!(name(&e), b"mem");
        assert_eq!(read_member(&e), m);
        assert!(member_present(&e));
        let mut shards = Shards::new();
        shards.insert(9, Shard::first(-1, v(3, 1)).then(-4, v(5, 1)));
        shards.insert(11, Shard::first(7, v(4, 2)));
        for f in [
            Field::default(),
            Field {
                cleared: v(2, 2),
                value: Some(Lww {
                    version: v(3, 1),
                    value: Bytes::from_static(b"value"),
                }),
                shards: shards.clone(),
            },
            Field {
                cleared: Version::ZERO,
                value: Some(Lww {
                    version: v(3, 1),
                    value: Bytes::new(),
                }),
                shards: Shards::new(),
            },
            Field {
                cleared: v(4, 0),
                value: None,
                shards,
            },
            // HSET's shape: `cleared` just before the value, left implied.
            Field {
                cleared: v(3, 1).just_before(),
                value: Some(Lww {
                    version: v(3, 1),
                    value: Bytes::from_static(b"v"),
                }),
                shards: Shards::new(),
            },
            Field {
                cleared: v(3, 0).just_before(),
                value: Some(Lww {
                    version: v(3, 0),
                    value: Bytes::from_static(b"v"),
                }),
                shards: Shards::new(),
            },
        ] {
            let e = field(&[0xff; 200], &f);
            assert_eq!(name(&e), &[0xff; 200][..]);
            assert_eq!(read_field(&e), f);
            assert_eq!(field_live(&e), f.is_live());
        }
        // HSET's field takes 1 + 16 bytes besides its name and value.
        let hset = Field {
            cleared: v(3, 1).just_before(),
            value: Some(Lww {
                version: v(3, 1),
                value: Bytes::from_static(b"0123456789abcdef"),
            }),
            shards: Shards::new(),
        };
        assert_eq!(field(b"f:1", &hset).len(), 1 + 3 + 1 + 16 + 16);
    }
}
