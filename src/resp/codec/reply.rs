//! Replies out: the [`Reply`] value, its exact wire form and [`RespEncoder`].
//!
//! Both the server (encoding answers) and the client half (building commands
//! from the same count and bulk writers) use the writers here, so there is
//! one place that decides how a length or a line goes on the wire.

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::Encoder;

use super::ProtocolError;

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`: a status line; `\r`/`\n` become spaces when encoded.
    Simple(Cow<'static, str>),
    /// `-ERR ...`: written as-is after `-` (include the code, e.g. `ERR `);
    /// `\r`/`\n` become spaces when encoded.
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo`
    Bulk(Bytes),
    /// `$-1`: a missing value.
    Nil,
    /// `*2\r\n...`
    Array(Vec<Reply>),
    /// `*-1`: a missing array.
    NilArray,
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple(Cow::Borrowed("OK"))
    }

    /// A status line.
    pub fn simple(text: impl Into<Cow<'static, str>>) -> Reply {
        Reply::Simple(text.into())
    }

    /// `-ERR <msg>`.
    pub fn err(msg: impl fmt::Display) -> Reply {
        Reply::error_code("ERR", msg)
    }

    /// `-<code> <msg>`, for codes other than `ERR` (`WRONGTYPE`, `NOAUTH`...).
    pub fn error_code(code: &str, msg: impl fmt::Display) -> Reply {
        Reply::Error(format!("{code} {msg}"))
    }

    /// A bulk string.
    pub fn bulk(data: impl Into<Bytes>) -> Reply {
        Reply::Bulk(data.into())
    }

    /// Appends the wire form of this reply to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Reply::Simple(text) => put_line(dst, b'+', text),
            Reply::Error(text) => put_line(dst, b'-', text),
            Reply::Integer(n) => {
                dst.put_u8(b':');
                put_int(dst, *n);
                dst.put_slice(b"\r\n");
            }
            Reply::Bulk(data) => put_bulk(dst, data),
            Reply::Nil => dst.put_slice(b"$-1\r\n"),
            Reply::Array(items) => {
                put_count(dst, b'*', items.len());
                for item in items {
                    item.encode(dst);
                }
            }
            Reply::NilArray => dst.put_slice(b"*-1\r\n"),
        }
    }
}

/// Encodes [`Reply`] values; see also `Encoder<Reply> for RespDecoder`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RespEncoder;

impl Encoder<Reply> for RespEncoder {
    type Error = ProtocolError;

    fn encode(&mut self, reply: Reply, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        reply.encode(dst);
        Ok(())
    }
}

fn put_line(dst: &mut BytesMut, kind: u8, text: &str) {
    dst.reserve(text.len() + 3);
    dst.put_u8(kind);
    dst.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    dst.put_slice(b"\r\n");
}

pub(super) fn put_bulk(dst: &mut BytesMut, data: &[u8]) {
    dst.reserve(data.len() + 16);
    put_count(dst, b'$', data.len());
    dst.put_slice(data);
    dst.put_slice(b"\r\n");
}

pub(super) fn put_count(dst: &mut BytesMut, kind: u8, n: usize) {
    dst.put_u8(kind);
    put_uint(dst, n as u64);
    dst.put_slice(b"\r\n");
}

fn put_int(dst: &mut BytesMut, n: i64) {
    if n < 0 {
        dst.put_u8(b'-');
    }
    put_uint(dst, n.unsigned_abs());
}

fn put_uint(dst: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    dst.put_slice(&digits[i..]);
}
