//! The byte layout of the log: file headers and record frames.
//!
//! Everything that knows where a byte goes lives here, so the writer, the
//! recovery scan and the snapshot writer cannot disagree about the format.
//!
//! A file (segment or snapshot) starts with a 16-byte header:
//!
//! ```text
//! magic "RKVL" (4) | version u16 LE (2) | kind u8 (1) | reserved 0 (1) | seq u64 LE (8)
//! ```
//!
//! `kind` is 1 for a segment and 2 for a snapshot; `seq` repeats the number
//! in the file name. After the header come frames, back to back:
//!
//! ```text
//! len u32 LE (4) | crc u32 LE (4) | payload (len bytes)
//! payload = ts u64 LE | node u64 LE | kind u8 (0 tombstone, 1 value, 2 rich)
//!         | key_len u32 LE | key | body (the rest of the payload)
//! ```
//!
//! A value's body is the value; a rich body is a rich state's encoding (a
//! hash field, a counter shard, an expiry..., see `values`), which the log
//! stores without reading. Format version 2 added kind 2; files of version
//! 1 (which hold only kinds 0 and 1) are read as they always were, so the
//! logs and snapshots of the previous release open unchanged. A release
//! that knows only version 1 refuses version 2 files at start, naming the
//! version.
//!
//! The CRC32 (crc32fast, IEEE polynomial) covers the four length bytes and
//! the payload, so a flipped bit in the length is caught as surely as one in
//! the value. A frame is accepted only if the CRC matches *and* the payload
//! decodes (known kind, key length inside the payload, no value bytes on a
//! tombstone); decoding never trusts a length it has not bounded first.
//!
//! Deliberately left out: compression, varint lengths (fixed widths keep the
//! decoder branch-free and the size overhead is 25 bytes a record), and any
//! escaping of user bytes: a value that itself contains a well-formed frame
//! could be mistaken for a record by the resynchronising scan after real
//! corruption right before it (see `recover.rs`).

use bytes::{Bytes, BytesMut};

/// What a record holds for its key: bytes the log keeps without reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordBody {
    /// A delete.
    Tombstone,
    /// A plain value.
    Value(Bytes),
    /// A rich state's encoding.
    Rich(Bytes),
}

impl From<Option<Bytes>> for RecordBody {
    /// A value, or a tombstone for `None`.
    fn from(value: Option<Bytes>) -> Self {
        value.map_or(RecordBody::Tombstone, RecordBody::Value)
    }
}

impl RecordBody {
    /// The body's kind byte and bytes.
    fn parts(&self) -> (u8, &[u8]) {
        match self {
            RecordBody::Tombstone => (KIND_TOMBSTONE, &[]),
            RecordBody::Value(v) => (KIND_VALUE, v),
            RecordBody::Rich(r) => (KIND_RICH, r),
        }
    }
}

/// One versioned write of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The key.
    pub key: Bytes,
    /// What it holds.
    pub body: RecordBody,
    /// Hybrid logical clock timestamp of the write (for a rich body, its
    /// newest piece).
    pub ts: u64,
    /// Id of the node that wrote it (tie breaker for last-writer-wins).
    pub node: u64,
}

/// A record's fields, borrowed: what an append encodes, for a caller that
/// holds the key and body already and would otherwise copy them into a
/// [`Record`] only to have them encoded (a counter's owner, a
/// coordinator's own copy).
#[derive(Clone, Copy, Debug)]
pub struct Parts<'a> {
    /// The key.
    pub key: &'a [u8],
    /// [`kind_of`] the body.
    pub kind: u8,
    /// The body's bytes (empty for a tombstone).
    pub body: &'a [u8],
    /// As [`Record::ts`].
    pub ts: u64,
    /// As [`Record::node`].
    pub node: u64,
}

impl Parts<'_> {
    /// Bytes of its payload (the frame less its header).
    fn payload_len(&self) -> usize {
        PAYLOAD_FIXED_LEN + self.key.len() + self.body.len()
    }

    /// Bytes its frame takes in a log file, header included.
    pub fn encoded_len(&self) -> usize {
        FRAME_HEADER_LEN + self.payload_len()
    }

    /// Why this record cannot be logged, if it cannot (too big).
    pub fn check(&self) -> Result<(), String> {
        let payload = self.payload_len();
        if payload > MAX_PAYLOAD {
            return Err(format!(
                "record of {payload} bytes exceeds the log limit of {MAX_PAYLOAD}"
            ));
        }
        Ok(())
    }

    /// Appends its frame to `buf`. The caller has checked the size with
    /// [`Parts::check`]; lengths are bounded by [`MAX_PAYLOAD`].
    pub fn encode_into(&self, buf: &mut BytesMut) {
        let (key, body) = (self.key, self.body);
        let payload_len = self.payload_len();
        buf.reserve(FRAME_HEADER_LEN + payload_len);
        let start = buf.len();
        // The fixed part is assembled on the stack and appended at once: a
        // put per field cost a capacity check each.
        let mut head = [0u8; FRAME_HEADER_LEN + PAYLOAD_FIXED_LEN];
        head[..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        // Bytes 4..8 hold the CRC, filled in below.
        head[8..16].copy_from_slice(&self.ts.to_le_bytes());
        head[16..24].copy_from_slice(&self.node.to_le_bytes());
        head[24] = self.kind;
        head[25..29].copy_from_slice(&(key.len() as u32).to_le_bytes());
        buf.extend_from_slice(&head);
        buf.extend_from_slice(key);
        buf.extend_from_slice(body);
        let crc = frame_crc(&buf[start..start + 4], &buf[start + FRAME_HEADER_LEN..]);
        buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

impl Record {
    /// Its fields, borrowed.
    pub fn parts(&self) -> Parts<'_> {
        let (kind, body) = self.body.parts();
        Parts {
            key: &self.key,
            kind,
            body,
            ts: self.ts,
            node: self.node,
        }
    }

    /// Bytes this record takes in a log file, frame header included. Useful
    /// to estimate the live data size for the compaction threshold.
    pub fn encoded_len(&self) -> usize {
        self.parts().encoded_len()
    }
}

/// Magic bytes at the start of every log file.
pub const MAGIC: [u8; 4] = *b"RKVL";
/// The format version this code writes.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest format version this code reads.
pub const MIN_FORMAT_VERSION: u16 = 1;
/// Length of the file header.
pub const FILE_HEADER_LEN: usize = 16;
/// Length of a frame's `len` + `crc` prefix.
pub const FRAME_HEADER_LEN: usize = 8;
/// Fixed part of a payload: ts, node, kind, key_len.
pub const PAYLOAD_FIXED_LEN: usize = 8 + 8 + 1 + 4;
/// Largest payload accepted, on write and on read (64 MiB).
pub const MAX_PAYLOAD: usize = 64 << 20;

const KIND_TOMBSTONE: u8 = 0;
const KIND_VALUE: u8 = 1;
const KIND_RICH: u8 = 2;

/// Which kind of file a header announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// An append-only segment.
    Segment = 1,
    /// A compaction snapshot.
    Snapshot = 2,
}

/// The header for a file of `kind` numbered `seq`.
pub fn file_header(kind: FileKind, seq: u64) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[6] = kind as u8;
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h
}

/// What a file header says about the file.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderCheck {
    /// A header of the expected kind in a version this code reads.
    Good,
    /// Magic and version are right but the sequence number disagrees with
    /// the file name (worth a warning, not a reason to distrust the frames).
    SeqMismatch(u64),
    /// A well-formed header of a format version this code does not know.
    UnknownVersion(u16),
    /// Not a header at all: bad magic, wrong kind or too short.
    Corrupt,
}

/// Check `data` (the start of a file) against the header expected for it.
pub fn check_header(data: &[u8], kind: FileKind, seq: u64) -> HeaderCheck {
    if data.len() < FILE_HEADER_LEN || data[..4] != MAGIC {
        return HeaderCheck::Corrupt;
    }
    let version = u16::from_le_bytes([data[4], data[5]]);
    if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return HeaderCheck::UnknownVersion(version);
    }
    if data[6] != kind as u8 || data[7] != 0 {
        return HeaderCheck::Corrupt;
    }
    let found = read_u64(&data[8..16]);
    if found != seq {
        return HeaderCheck::SeqMismatch(found);
    }
    HeaderCheck::Good
}

/// Append the frame for `rec` to `buf` (see [`Parts::encode_into`]).
pub fn encode_into(rec: &Record, buf: &mut BytesMut) {
    rec.parts().encode_into(buf);
}

/// The kind byte of a body borrowed as `(tombstone?, rich?, bytes)`: for a
/// caller that encodes from borrowed parts (see [`Parts`]).
pub fn kind_of(tombstone: bool, rich: bool) -> u8 {
    match (tombstone, rich) {
        (true, _) => KIND_TOMBSTONE,
        (false, false) => KIND_VALUE,
        (false, true) => KIND_RICH,
    }
}

/// The frame for `rec` as its own buffer.
#[cfg(test)]
pub fn encode(rec: &Record) -> Bytes {
    encode_parts(rec.parts())
}

/// [`encode`] from borrowed parts (checked with [`Parts::check`]).
pub fn encode_parts(parts: Parts<'_>) -> Bytes {
    let len = FRAME_HEADER_LEN + PAYLOAD_FIXED_LEN + parts.key.len() + parts.body.len();
    let mut buf = BytesMut::with_capacity(len);
    parts.encode_into(&mut buf);
    buf.freeze()
}

fn frame_crc(len_bytes: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len_bytes);
    h.update(payload);
    h.finalize()
}

/// The result of decoding one frame at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A good record and the number of bytes its frame took.
    Record(Record, usize),
    /// Not a valid frame; the reason, for the report.
    Bad(&'static str),
}

/// Decode the frame at the start of `data`, copying key and value out so
/// the records do not pin the file buffer in memory.
pub fn decode(data: &[u8]) -> Decoded {
    let parsed = check_frame(data).and_then(|(payload, used)| Ok((parse_payload(payload)?, used)));
    match parsed {
        Ok((p, used)) => Decoded::Record(
            Record {
                key: Bytes::copy_from_slice(p.key),
                body: match p.kind {
                    KIND_TOMBSTONE => RecordBody::Tombstone,
                    KIND_VALUE => RecordBody::Value(Bytes::copy_from_slice(p.body)),
                    _ => RecordBody::Rich(Bytes::copy_from_slice(p.body)),
                },
                ts: p.ts,
                node: p.node,
            },
            used,
        ),
        Err(why) => Decoded::Bad(why),
    }
}

/// Whether a valid frame starts at `data`, without copying anything out:
/// the probe the resynchronising scan runs at every candidate offset.
pub fn is_valid_frame(data: &[u8]) -> bool {
    check_frame(data)
        .and_then(|(payload, _)| parse_payload(payload))
        .is_ok()
}

/// Validate the length and CRC of the frame at the start of `data`;
/// returns the payload and the frame's total length.
fn check_frame(data: &[u8]) -> Result<(&[u8], usize), &'static str> {
    if data.len() < FRAME_HEADER_LEN {
        return Err("frame header cut short");
    }
    let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    if !(PAYLOAD_FIXED_LEN..=MAX_PAYLOAD).contains(&len) {
        return Err("implausible frame length");
    }
    let end = FRAME_HEADER_LEN + len;
    if data.len() < end {
        return Err("frame cut short");
    }
    let stored = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    let payload = &data[FRAME_HEADER_LEN..end];
    if frame_crc(&data[..4], payload) != stored {
        return Err("checksum mismatch");
    }
    Ok((payload, end))
}

/// A payload's fields, borrowed from the buffer.
struct Parsed<'a> {
    ts: u64,
    node: u64,
    kind: u8,
    key: &'a [u8],
    body: &'a [u8],
}

/// Split a payload (at least [`PAYLOAD_FIXED_LEN`] long, which
/// `check_frame` guarantees) into its fields.
fn parse_payload(p: &[u8]) -> Result<Parsed<'_>, &'static str> {
    let kind = p[16];
    let key_len = u32::from_le_bytes([p[17], p[18], p[19], p[20]]) as usize;
    let rest = &p[PAYLOAD_FIXED_LEN..];
    if key_len > rest.len() {
        return Err("key length beyond the payload");
    }
    let (key, body) = rest.split_at(key_len);
    match kind {
        KIND_VALUE | KIND_RICH => {}
        KIND_TOMBSTONE if body.is_empty() => {}
        KIND_TOMBSTONE => return Err("tombstone with value bytes"),
        _ => return Err("unknown record kind"),
    }
    Ok(Parsed {
        ts: read_u64(&p[0..8]),
        node: read_u64(&p[8..16]),
        kind,
        key,
        body,
    })
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(key: &[u8], value: Option<&[u8]>, ts: u64, node: u64) -> Record {
        Record {
            key: Bytes::copy_from_slice(key),
            body: value.map(Bytes::copy_from_slice).into(),
            ts,
            node,
        }
    }

    #[test]
    fn value_and_tombstone_round_trip() {
        for r in [
            rec(b"k", Some(b"v"), 7, 1),
            rec(b"k", None, 8, 2),
            rec(b"", Some(b""), 0, 0),
            Record {
                key: Bytes::from_static(b"h"),
                body: RecordBody::Rich(Bytes::from_static(b"\x01\x02rich")),
                ts: 9,
                node: 3,
            },
        ] {
            let frame = encode(&r);
            assert_eq!(frame.len(), r.encoded_len());
            assert_eq!(decode(&frame), Decoded::Record(r, frame.len()));
        }
    }

    #[test]
    fn header_checks() {
        let h = file_header(FileKind::Segment, 42);
        assert_eq!(check_header(&h, FileKind::Segment, 42), HeaderCheck::Good);
        assert_eq!(
            check_header(&h, FileKind::Segment, 41),
            HeaderCheck::SeqMismatch(42)
        );
        assert_eq!(
            check_header(&h, FileKind::Snapshot, 42),
            HeaderCheck::Corrupt
        );
        assert_eq!(
            check_header(&h[..10], FileKind::Segment, 42),
            HeaderCheck::Corrupt
        );
        let mut v1 = h;
        v1[4] = 1;
        assert_eq!(check_header(&v1, FileKind::Segment, 42), HeaderCheck::Good);
        let mut v3 = h;
        v3[4] = 3;
        assert_eq!(
            check_header(&v3, FileKind::Segment, 42),
            HeaderCheck::UnknownVersion(3)
        );
    }

    #[test]
    fn oversized_record_is_refused() {
        let big = Record {
            key: Bytes::new(),
            body: RecordBody::Value(Bytes::from(vec![0u8; MAX_PAYLOAD])),
            ts: 0,
            node: 0,
        };
        assert!(big.parts().check().is_err());
    }

    proptest! {
        #[test]
        fn any_record_round_trips(key in proptest::collection::vec(any::<u8>(), 0..64),
                                  value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256)),
                                  ts: u64, node: u64) {
            let r = rec(&key, value.as_deref(), ts, node);
            let frame = encode(&r);
            prop_assert_eq!(decode(&frame), Decoded::Record(r, frame.len()));
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _decoded = decode(&data);
        }

        #[test]
        fn any_single_flip_is_caught(value in proptest::collection::vec(any::<u8>(), 0..64),
                                     at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let frame = encode(&rec(b"key", Some(&value), 1, 2));
            let mut bad = frame.to_vec();
            let i = at.index(bad.len());
            bad[i] ^= 1 << bit;
            prop_assert!(matches!(decode(&bad), Decoded::Bad(_)));
        }
    }
}
