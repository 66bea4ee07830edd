//! The one place that turns peer messages into bytes and back.
//!
//! Frames are a 4-byte big-endian length followed by a bincode (v2, serde)
//! body: exactly tokio-util's `LengthDelimitedCodec` format. The decoder
//! refuses a frame longer than the configured maximum before reading it,
//! and bincode's own size limit stops a small frame that claims a huge
//! vector or string from allocating it. Nothing else in the crate knows that
//! bincode exists, so swapping it (for postcard, say) touches only this
//! file.
//!
//! Deliberately left out: compression and checksums (TCP already checks;
//! the commit log has its own).

use bytes::{BufMut, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use crate::error::{Error, Result};

/// A 64-bit hash of `bytes` that every node, on every platform and every
/// release, computes alike: for digests that two nodes compare (anti-
/// entropy's summaries of rich values, the metadata record). Written out
/// here rather than taken from a hashing crate, whose output no release
/// promises to keep; it must never change. It mixes 8 bytes at a time
/// with a multiply and a rotation, and finishes with MurmurHash3's
/// `fmix64`: fast enough to run on every hash-field write, and not meant
/// to resist a chosen-input attack (the worst a collision does is hide one
/// difference from one anti-entropy round).
pub fn stable_hash(seed: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ w.wrapping_mul(K)).rotate_left(29).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(tail).wrapping_mul(K)).rotate_left(29);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// `x` as a LEB128 varint: the bytes (at most 10 for a u64) and how many.
#[inline]
pub fn varint(mut x: u64) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    let mut n = 0;
    while x >= 0x80 {
        out[n] = (x as u8) | 0x80;
        x >>= 7;
        n += 1;
    }
    out[n] = x as u8;
    (out, n + 1)
}

/// The LEB128 varint at the start of `b` and its length (at most 10
/// bytes are read; a truncated one reads as what it has).
#[inline]
pub fn read_varint(b: &[u8]) -> (u64, usize) {
    let mut x = 0u64;
    let mut n = 0;
    for &byte in b.iter().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * n);
        n += 1;
        if byte < 0x80 {
            break;
        }
    }
    (x, n)
}

/// The most bytes any single decoded message may make bincode allocate.
pub const DECODE_LIMIT: usize = 256 * 1024 * 1024;

/// How a type's integers go on the wire. The handshake types keep
/// bincode's variable-length integers, so a peer of another protocol
/// version still reads the magic and the version and is told why it is
/// refused; every message after the handshake uses fixed-width integers,
/// which encode and decode with fewer branches and writes (timestamps,
/// the most common integers, are as long either way).
pub trait Wire {
    /// Fixed-width integers; `false` for bincode's varints.
    const FIXED_INTS: bool = true;
}

fn varint_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

fn fixed_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_limit::<DECODE_LIMIT>()
}

/// Encodes `msg` into a fresh byte vector (no length prefix).
pub fn to_vec<T: Serialize + Wire>(msg: &T) -> Result<Vec<u8>> {
    to_vec_sized(msg, 64)
}

/// [`to_vec`] into a vector made with room for `capacity` bytes: for a
/// caller that knows about how long its message is. (bincode's own
/// `encode_to_vec` starts from an empty vector, which grows four or five
/// times for a hash field.)
pub fn to_vec_sized<T: Serialize + Wire>(msg: &T, capacity: usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(capacity);
    let written = if T::FIXED_INTS {
        bincode::serde::encode_into_writer(msg, VecWriter(&mut out), fixed_config())
    } else {
        bincode::serde::encode_into_writer(msg, VecWriter(&mut out), varint_config())
    };
    written.map_err(|e| Error::Protocol(format!("encode: {e}")))?;
    Ok(out)
}

/// bincode's writer onto the end of a `Vec`.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for VecWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> std::result::Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Decodes one message from `bytes`, which must hold exactly one.
pub fn from_slice<T: DeserializeOwned + Wire>(bytes: &[u8]) -> Result<T> {
    let decoded = if T::FIXED_INTS {
        bincode::serde::decode_from_slice(bytes, fixed_config())
    } else {
        bincode::serde::decode_from_slice(bytes, varint_config())
    };
    let (msg, used) = decoded.map_err(|e| Error::Protocol(format!("decode: {e}")))?;
    if used != bytes.len() {
        return Err(Error::Protocol(format!(
            "decode: {} trailing bytes after the message",
            bytes.len() - used
        )));
    }
    Ok(msg)
}

/// Decodes one message from the start of `bytes`, which may go on after
/// it; returns it and how many bytes it took. (For tests that compare the
/// formats written by hand with serde's.)
#[cfg(test)]
pub fn from_slice_prefix<T: DeserializeOwned + Wire>(bytes: &[u8]) -> Result<(T, usize)> {
    let decoded = if T::FIXED_INTS {
        bincode::serde::decode_from_slice(bytes, fixed_config())
    } else {
        bincode::serde::decode_from_slice(bytes, varint_config())
    };
    decoded.map_err(|e| Error::Protocol(format!("decode: {e}")))
}

/// The peer framing codec: length-prefixed bincode messages of type `T`.
#[derive(Debug)]
pub struct FrameCodec<T> {
    frames: LengthDelimitedCodec,
    max_frame: usize,
    _marker: std::marker::PhantomData<fn() -> T>,
}

impl<T> FrameCodec<T> {
    /// A codec that refuses frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameCodec {
            frames: LengthDelimitedCodec::builder()
                .max_frame_length(max_frame)
                .new_codec(),
            max_frame,
            _marker: std::marker::PhantomData,
        }
    }
}

impl<T> FrameCodec<T> {
    /// The body of the next whole frame in `src`, not decoded: for a
    /// caller that reads some messages itself.
    pub fn next_frame(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>> {
        self.frames
            .decode(src)
            .map_err(|e| Error::Protocol(format!("frame: {e}")))
    }

    /// A frame whose body `write` puts onto `dst` (for a message written
    /// by hand); the frame is taken back out if `write` fails or writes
    /// too much.
    pub fn encode_with(
        &mut self,
        dst: &mut BytesMut,
        write: impl FnOnce(&mut BytesMut) -> Result<()>,
    ) -> Result<()> {
        let start = dst.len();
        dst.put_u32(0);
        if let Err(e) = write(dst) {
            dst.truncate(start);
            return Err(e);
        }
        let len = dst.len() - start - 4;
        self.patch_len(dst, start, len)
    }
}

impl<T: DeserializeOwned + Wire> Decoder for FrameCodec<T> {
    type Item = T;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<T>> {
        match self.next_frame(src)? {
            Some(frame) => from_slice(&frame).map(Some),
            None => Ok(None),
        }
    }
}

impl<T: Serialize + Wire, M: std::borrow::Borrow<T>> Encoder<M> for FrameCodec<T> {
    type Error = Error;

    /// Encodes straight into the write buffer: a length placeholder, the
    /// body (through `BufWriter`, which appends each field to the buffer),
    /// then the real length patched in.
    fn encode(&mut self, msg: M, dst: &mut BytesMut) -> Result<()> {
        self.encode_sized(msg.borrow(), SMALL_BODY, dst)
    }
}

impl<T: Serialize + Wire> FrameCodec<T> {
    /// [`Encoder::encode`], with room for `body_hint` bytes of body reserved
    /// first, for a caller that knows its message is big (a coalesced batch
    /// of writes, say), so the buffer grows at most once.
    pub fn encode_sized(&mut self, msg: &T, body_hint: usize, dst: &mut BytesMut) -> Result<()> {
        let start = dst.len();
        dst.reserve(4 + body_hint.clamp(SMALL_BODY, self.max_frame.max(SMALL_BODY)));
        dst.put_u32(0);
        let written = if T::FIXED_INTS {
            bincode::serde::encode_into_writer(msg, BufWriter(dst), fixed_config())
        } else {
            bincode::serde::encode_into_writer(msg, BufWriter(dst), varint_config())
        };
        if let Err(e) = written {
            dst.truncate(start);
            return Err(Error::Protocol(format!("encode: {e}")));
        }
        let len = dst.len() - start - 4;
        self.patch_len(dst, start, len)
    }
}

/// Room reserved for a message's body before encoding it.
const SMALL_BODY: usize = 512;

/// bincode's writer straight into a `BytesMut`. (Encoding into a slice
/// first cost zeroing that slice; bincode's `io::Write` adapter goes
/// through `BufMut`'s chunk loop for every field.)
struct BufWriter<'a>(&'a mut BytesMut);

impl bincode::enc::write::Writer for BufWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> std::result::Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

impl<T> FrameCodec<T> {
    /// Writes the body length into the frame's placeholder, or takes the
    /// frame back out if it is too long.
    fn patch_len(&self, dst: &mut BytesMut, start: usize, len: usize) -> Result<()> {
        if len > self.max_frame {
            dst.truncate(start);
            return Err(Error::Protocol(format!(
                "message of {len} bytes exceeds max frame size {}",
                self.max_frame
            )));
        }
        dst[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Hello, PeerMsg, MAGIC, PROTOCOL_VERSION};
    use bytes::Bytes;

    #[test]
    fn the_stable_hash_never_changes() {
        // Nodes of different releases compare these: pinned values.
        assert_eq!(stable_hash(0, b""), 0);
        let pinned = [
            stable_hash(0, b"a"),
            stable_hash(1, b"a"),
            stable_hash(0, b"hello world, sixteen+"),
        ];
        assert_eq!(
            pinned,
            [
                12285375323750939468,
                3696697140467056350,
                7620288459993804734
            ]
        );
        assert_ne!(stable_hash(0, b"ab"), stable_hash(0, b"ba"));
        assert_ne!(stable_hash(0, b"a\0"), stable_hash(0, b"a"));
    }

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let msgs = vec![
            PeerMsg::Get {
                id: 7,
                key: Bytes::from_static(b"key"),
            },
            PeerMsg::TransferAck { id: 9 },
            PeerMsg::PutAcks {
                acks: vec![(1, true), (u64::MAX, false)],
            },
            PeerMsg::GetReplies {
                replies: vec![(3, None)],
            },
            PeerMsg::Puts { items: vec![] },
        ];
        let mut codec = FrameCodec::<PeerMsg>::new(1024);
        let mut buf = BytesMut::new();
        for m in &msgs {
            codec.encode(m, &mut buf).unwrap();
        }
        let whole = buf.freeze();
        for cut in 0..whole.len() {
            let mut codec = FrameCodec::<PeerMsg>::new(1024);
            let mut src = BytesMut::from(&whole[..cut]);
            let mut out = Vec::new();
            while let Some(m) = codec.decode(&mut src).unwrap() {
                out.push(m);
            }
            src.extend_from_slice(&whole[cut..]);
            while let Some(m) = codec.decode(&mut src).unwrap() {
                out.push(m);
            }
            assert_eq!(out, msgs, "cut at {cut}");
        }
    }

    #[test]
    fn oversized_frames_are_refused_before_reading() {
        let mut codec = FrameCodec::<PeerMsg>::new(16);
        let mut src = BytesMut::from(&[0u8, 0, 1, 0, 1, 2, 3][..]);
        assert!(matches!(codec.decode(&mut src), Err(Error::Protocol(_))));
        let big = PeerMsg::Get {
            id: 1,
            key: Bytes::from(vec![0u8; 64]),
        };
        let mut dst = BytesMut::new();
        assert!(codec.encode(&big, &mut dst).is_err());
        assert!(dst.is_empty(), "a refused message leaves nothing behind");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for junk in [
            &b"\xff\xff\xff\xff\xff"[..],
            b"GET / HTTP/1.1\r\n",
            &[0x09; 40],
        ] {
            let _ = from_slice::<PeerMsg>(junk);
            let _ = from_slice::<Hello>(junk);
        }
        // A tiny body that claims a 4 GiB string does not allocate it.
        let claim = [0xfc, 0xff, 0xff, 0xff, 0xff];
        assert!(from_slice::<Hello>(&claim).is_err());
    }

    #[test]
    fn hello_round_trips() {
        let h = Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            name: "n1".into(),
            generation: 3,
            reply_to: "127.0.0.1:7101".into(),
        };
        assert_eq!(from_slice::<Hello>(&to_vec(&h).unwrap()).unwrap(), h);
    }
}
