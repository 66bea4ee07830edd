//! Replies out: the [`Reply`] model, its wire form in RESP2 and RESP3, and
//! [`RespEncoder`].
//!
//! One reply model, written once by every command and encoded for the
//! connection's protocol at the edge ([`Reply::encode`] with a [`Proto`]).
//! The RESP3 types that RESP2 lacks degrade exactly as Redis 7 degrades
//! them (`networking.c`): a map becomes a flat array of its keys and
//! values, a set an array, a double a bulk string formatted with `%.17g`,
//! a boolean the integer 1 or 0, a verbatim string a bulk string without
//! its `txt:` prefix, and both kinds of null keep their RESP2 forms (`$-1`
//! for a missing value, `*-1` for a missing array) while RESP3 has one
//! null, `_`. The types RESP2 already has are written identically in both
//! protocols, so a RESP2 connection's bytes are what they always were and
//! the hot path (bulk strings, integers, `+OK`) never looks at the
//! protocol.
//!
//! Both the server (encoding answers) and the client half (building commands
//! from the same count and bulk writers) use the writers here, so there is
//! one place that decides how a length or a line goes on the wire.
//!
//! Deliberately left out: push frames (no pub/sub), attributes, and big
//! numbers (no command ringkv has answers with them).

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::Encoder;

use super::ProtocolError;

/// The protocol a connection speaks: RESP2 until `HELLO 3`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Proto {
    /// RESP2, every connection's start.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

impl Proto {
    /// The protocol's number, as HELLO reports it.
    pub fn number(self) -> i64 {
        match self {
            Proto::Resp2 => 2,
            Proto::Resp3 => 3,
        }
    }
}

/// A reply, in the RESP3 model; [`Reply::encode`] writes it for either
/// protocol.
#[derive(Debug, Clone, PartialEq)]
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
    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    Nil,
    /// `*2\r\n...`
    Array(Vec<Reply>),
    /// A missing array: `*-1` in RESP2, `_` in RESP3.
    NilArray,
    /// `%2\r\n...` in RESP3; a flat array of keys and values in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// `~2\r\n...` in RESP3; an array in RESP2.
    Set(Vec<Reply>),
    /// `,1.5` in RESP3; a bulk string (`%.17g`, `inf`, `-inf`) in RESP2.
    Double(f64),
    /// `#t`/`#f` in RESP3; the integer 1 or 0 in RESP2.
    Bool(bool),
    /// `=15\r\ntxt:...` in RESP3 (plain text that a client may show as
    /// is); a bulk string in RESP2.
    Verbatim(Bytes),
}

impl Reply {
    /// The text of a status line or a UTF-8 bulk string.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Reply::Simple(s) => Some(s),
            Reply::Bulk(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

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

    /// A bulk string, or nil for `None`.
    pub fn bulk_or_nil(data: Option<Bytes>) -> Reply {
        data.map_or(Reply::Nil, Reply::Bulk)
    }

    /// An array of bulk strings.
    pub fn bulks<B: Into<Bytes>>(items: impl IntoIterator<Item = B>) -> Reply {
        Reply::Array(items.into_iter().map(|b| Reply::Bulk(b.into())).collect())
    }

    /// A map from `(key, value)` pairs with bulk-string keys.
    pub fn map<K: Into<Bytes>>(pairs: impl IntoIterator<Item = (K, Reply)>) -> Reply {
        Reply::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Reply::Bulk(k.into()), v))
                .collect(),
        )
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the wire form of this reply to `dst`, for `proto`.
    pub fn encode(&self, dst: &mut BytesMut, proto: Proto) {
        match self {
            Reply::Simple(text) => put_line(dst, b'+', text),
            Reply::Error(text) => put_line(dst, b'-', text),
            Reply::Integer(n) => {
                dst.put_u8(b':');
                put_int(dst, *n);
                dst.put_slice(b"\r\n");
            }
            Reply::Bulk(data) => put_bulk(dst, data),
            Reply::Nil => dst.put_slice(match proto {
                Proto::Resp2 => b"$-1\r\n",
                Proto::Resp3 => b"_\r\n",
            }),
            Reply::Array(items) => {
                put_count(dst, b'*', items.len());
                for item in items {
                    item.encode(dst, proto);
                }
            }
            Reply::NilArray => dst.put_slice(match proto {
                Proto::Resp2 => b"*-1\r\n",
                Proto::Resp3 => b"_\r\n",
            }),
            Reply::Map(pairs) => {
                match proto {
                    Proto::Resp2 => put_count(dst, b'*', pairs.len() * 2),
                    Proto::Resp3 => put_count(dst, b'%', pairs.len()),
                }
                for (k, v) in pairs {
                    k.encode(dst, proto);
                    v.encode(dst, proto);
                }
            }
            Reply::Set(items) => {
                let kind = match proto {
                    Proto::Resp2 => b'*',
                    Proto::Resp3 => b'~',
                };
                put_count(dst, kind, items.len());
                for item in items {
                    item.encode(dst, proto);
                }
            }
            Reply::Double(d) => {
                let text = format_double(*d);
                match proto {
                    Proto::Resp2 => put_bulk(dst, text.as_bytes()),
                    Proto::Resp3 => put_line(dst, b',', &text),
                }
            }
            Reply::Bool(b) => match proto {
                Proto::Resp2 => dst.put_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
                Proto::Resp3 => dst.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            },
            Reply::Verbatim(text) => match proto {
                Proto::Resp2 => put_bulk(dst, text),
                Proto::Resp3 => {
                    dst.reserve(text.len() + 20);
                    put_count(dst, b'=', text.len() + 4);
                    dst.put_slice(b"txt:");
                    dst.put_slice(text);
                    dst.put_slice(b"\r\n");
                }
            },
        }
    }

    /// The wire form for `proto`, as a fresh buffer (tests, tools).
    pub fn to_wire(&self, proto: Proto) -> BytesMut {
        let mut out = BytesMut::new();
        self.encode(&mut out, proto);
        out
    }
}

/// A double as Redis writes it (`addReplyDouble`): `inf` and `-inf` by
/// name, anything else with C's `%.17g` (17 significant digits, shortest of
/// fixed and scientific notation, trailing zeros dropped); NaN as glibc
/// prints it, `nan` (Redis never replies with one; a reply built from a
/// NaN is still well framed).
pub fn format_double(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if d.is_nan() {
        return if d.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    format_g(d, 17)
}

/// C's `%.<precision>g` for a finite `d`.
pub fn format_g(d: f64, precision: usize) -> String {
    let precision = precision.max(1);
    if d == 0.0 {
        return if d.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // The exponent after rounding to `precision` significant digits.
    let sci = format!("{:.*e}", precision - 1, d);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= precision as i32 {
        let mantissa = trim_fraction(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    } else {
        let decimals = (precision as i32 - 1 - exp).max(0) as usize;
        trim_fraction(&format!("{d:.decimals$}")).to_string()
    }
}

/// Drops trailing zeros after a decimal point, and the point itself if
/// nothing follows it.
fn trim_fraction(s: &str) -> &str {
    if !s.contains('.') {
        return s;
    }
    s.trim_end_matches('0').trim_end_matches('.')
}

/// Encodes [`Reply`] values for one protocol.
#[derive(Debug, Default, Clone, Copy)]
pub struct RespEncoder {
    /// The protocol replies are written in.
    pub proto: Proto,
}

impl Encoder<Reply> for RespEncoder {
    type Error = ProtocolError;

    fn encode(&mut self, reply: Reply, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        reply.encode(dst, self.proto);
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
