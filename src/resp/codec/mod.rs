//! RESP framing for the client port: commands in, replies out.
//!
//! Clients speak the Redis serialization protocol, version 2, or version 3
//! after `HELLO 3`; commands look the same in both. A command is an
//! array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or, for people typing
//! into `nc`/`telnet`, an "inline command": one line split on whitespace with
//! Redis's `"..."` / `'...'` quoting. [`RespDecoder`] turns bytes into
//! `Vec<Bytes>` commands; [`Reply`] and [`RespEncoder`] go the other way. The
//! client half ([`encode_command`], [`ReplyDecoder`]) is here too, so the test
//! client and the scenario runner exercise exactly the framing the server uses.
//!
//! Layout: this file holds [`Limits`], [`ProtocolError`] and the header and
//! payload parsing both decoders share; `command.rs` is the server's decoder,
//! `reply.rs` the [`Reply`] type and its encoding, `client.rs` the client half.
//!
//! Why it is shaped this way:
//!
//! * **Untrusted lengths are checked before anything is allocated.** A header
//!   such as `*2000000000` or `$99999999999` is compared with [`Limits`] the
//!   moment its line is complete and rejected with an error that names the
//!   limit. Vectors are preallocated to at most [`PREALLOC_CAP`] slots whatever
//!   the header claims, so a 20-byte request cannot reserve megabytes.
//! * **Incremental, never quadratic.** The decoder keeps its place between
//!   calls: inside an array it remembers how many arguments are left and the
//!   length of the bulk it is waiting for, so a 100 MB value trickling in as
//!   64 KiB reads costs one length comparison per read, not a rescan. Inline
//!   lines remember how far they were searched for `\n`. Header lines are
//!   bounded ([`MAX_HEADER_LEN`]) so re-reading an incomplete one is O(1).
//! * **Zero copy.** Bulk payloads are split off the read buffer and frozen;
//!   the command's arguments share the connection's allocation.
//! * **Chunking never changes the outcome.** Every check (line lengths,
//!   header lengths, the CRLF after a payload) is phrased so that the same
//!   bytes give the same commands or the same error however they are split
//!   into reads. The tests feed inputs at every split point to hold us to it.
//! * **Errors read like Redis's** (`Protocol error: invalid bulk length`), so
//!   the server can answer `-ERR <message>` and close the connection, as Redis
//!   does. The decoder therefore never tries to resynchronise after an error.
//! * **Replies cannot break framing.** Simple strings and errors have any `\r`
//!   or `\n` replaced by a space when encoded.
//!
//! What it deliberately leaves out:
//!
//! * RESP3 push frames, attributes and big numbers (see `reply.rs`).
//! * Resynchronising after a protocol error: the connection is closed instead.
//! * Redis's leniencies that depend on read boundaries (it accepts an
//!   over-long inline line if the newline arrives in the same read) and its
//!   silent skipping of `*-1`: here a negative command array is an error, while
//!   `*0` and blank inline lines are skipped as in Redis.
//! * Copying small values out of large read buffers: a stored argument pins the
//!   buffer it arrived in; the store should copy if it keeps values for long.

use bytes::{Buf, Bytes, BytesMut};

mod client;
mod command;
mod reply;
#[cfg(test)]
mod tests;

pub use client::{encode_command, ReplyDecoder};
pub use command::RespDecoder;
pub use reply::{format_double, format_g, Proto, Reply, RespEncoder};

/// Longest length header accepted (`*`/`$`, sign, digits, CRLF).
pub const MAX_HEADER_LEN: usize = 32;
/// Most slots preallocated for an array, whatever its header claims.
pub const PREALLOC_CAP: usize = 1024;
/// Deepest nesting of arrays [`ReplyDecoder`] accepts in one reply.
pub const MAX_REPLY_DEPTH: usize = 64;

/// Size limits applied to untrusted input before any allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most elements in one array (arguments of a command, items of a reply).
    pub max_array_len: usize,
    /// Most bytes in one bulk string.
    pub max_bulk_len: usize,
    /// Most bytes in an inline command line (or a reply's status line).
    pub max_inline_len: usize,
}

impl Default for Limits {
    /// Redis's own defaults: 1M arguments, 512 MiB bulks, 64 KiB inline lines.
    fn default() -> Self {
        Limits {
            max_array_len: 1_048_576,
            max_bulk_len: 536_870_912,
            max_inline_len: 65_536,
        }
    }
}

/// Why a byte stream is not valid RESP. After any of these the connection
/// should be answered with `-ERR <message>` and closed; no state was applied.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A `*` header is not a valid length (non-digits, overflow, negative).
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A `$` header is not a valid length (non-digits, overflow, negative).
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// A `*` header line ran past [`MAX_HEADER_LEN`] without a CRLF.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    /// A `$` header line ran past [`MAX_HEADER_LEN`] without a CRLF.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// An element of a command array is not a bulk string.
    #[error("Protocol error: expected '$', got '{}'", .got.escape_ascii())]
    ExpectedBulk {
        /// The byte found where `$` should have been.
        got: u8,
    },
    /// A bulk payload, or a reply line, is not followed by `\r\n`.
    #[error("Protocol error: expected CRLF")]
    ExpectedCrlf,
    /// An inline command line (or reply line) is longer than `max_inline_len`.
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// An inline command has an unterminated quote, or a closing quote is
    /// directly followed by something other than whitespace.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// An array header exceeds `max_array_len`.
    #[error("Protocol error: array of {len} elements exceeds max-array-len {max}")]
    ArrayTooLong {
        /// The length the header claimed.
        len: u64,
        /// The configured `max_array_len`.
        max: usize,
    },
    /// A bulk header exceeds `max_bulk_len`.
    #[error("Protocol error: bulk string of {len} bytes exceeds max-bulk-len {max}")]
    BulkTooLong {
        /// The length the header claimed.
        len: u64,
        /// The configured `max_bulk_len`.
        max: usize,
    },
    /// A reply starts with a byte that is not a RESP2 type.
    #[error("Protocol error: unknown reply type '{}'", .got.escape_ascii())]
    UnknownReplyType {
        /// The byte found where a type marker should have been.
        got: u8,
    },
    /// An integer reply is not a valid signed 64-bit decimal.
    #[error("Protocol error: invalid integer")]
    InvalidInteger,
    /// A status or error reply line is not UTF-8.
    #[error("Protocol error: reply line is not valid UTF-8")]
    InvalidUtf8,
    /// A reply nests arrays deeper than [`MAX_REPLY_DEPTH`].
    #[error("Protocol error: reply nested deeper than {max} arrays")]
    TooDeep {
        /// The nesting limit, [`MAX_REPLY_DEPTH`].
        max: usize,
    },
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

// ---------------------------------------------------------------------------
// Shared low-level parsing.

/// Which header is being read, to pick the error Redis would give.
#[derive(Clone, Copy)]
enum Header {
    Multibulk,
    Bulk,
}

impl Header {
    fn invalid(self) -> ProtocolError {
        match self {
            Header::Multibulk => ProtocolError::InvalidMultibulkLength,
            Header::Bulk => ProtocolError::InvalidBulkLength,
        }
    }
    fn too_big(self) -> ProtocolError {
        match self {
            Header::Multibulk => ProtocolError::TooBigMultibulkCount,
            Header::Bulk => ProtocolError::TooBigBulkCount,
        }
    }
}

/// Reads a `<type byte><integer>\r\n` header at the start of `src`. Returns
/// the integer and the header's length, or `None` if more bytes are needed.
/// A stray byte is an error as soon as it arrives, not when CRLF does.
fn parse_header(src: &[u8], kind: Header) -> Result<Option<(i64, usize)>, ProtocolError> {
    let window = &src[..src.len().min(MAX_HEADER_LEN)];
    let is_number = |b: &u8| b.is_ascii_digit() || *b == b'-';
    let Some(cr) = window
        .iter()
        .skip(1)
        .position(|b| !is_number(b))
        .map(|p| p + 1)
    else {
        return if src.len() >= MAX_HEADER_LEN {
            Err(kind.too_big())
        } else {
            Ok(None)
        };
    };
    match (window[cr], src.get(cr + 1)) {
        (b'\r', None) => Ok(None),
        (b'\r', Some(b'\n')) => parse_i64(&src[1..cr])
            .map(|n| Some((n, cr + 2)))
            .ok_or_else(|| kind.invalid()),
        _ => Err(kind.invalid()),
    }
}

/// Strict decimal, as Redis's `string2ll`: optional `-`, no `+`, no leading
/// zeros (except `0` itself), no overflow.
fn parse_i64(digits: &[u8]) -> Option<i64> {
    let (negative, body) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    let first = *body.first()?;
    if !first.is_ascii_digit() || (first == b'0' && (body.len() > 1 || negative)) {
        return None;
    }
    body.iter().try_fold(0i64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(b - b'0');
        let acc = acc.checked_mul(10)?;
        if negative {
            acc.checked_sub(digit)
        } else {
            acc.checked_add(digit)
        }
    })
}

/// Turns a header integer into a length within `max`, or the right error.
fn checked_len(n: i64, max: usize, kind: Header) -> Result<usize, ProtocolError> {
    let len = u64::try_from(n).map_err(|_| kind.invalid())?;
    let too_long = match kind {
        Header::Multibulk => ProtocolError::ArrayTooLong { len, max },
        Header::Bulk => ProtocolError::BulkTooLong { len, max },
    };
    match usize::try_from(len) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(too_long),
    }
}

/// Takes a `len`-byte payload plus its CRLF off the front of `src`, or says
/// more bytes are needed. O(1) while waiting, so big payloads stay linear.
fn take_payload(src: &mut BytesMut, len: usize) -> Result<Option<Bytes>, ProtocolError> {
    if src.len() < len.saturating_add(2) {
        return Ok(None);
    }
    if &src[len..len + 2] != b"\r\n" {
        return Err(ProtocolError::ExpectedCrlf);
    }
    let payload = src.split_to(len).freeze();
    src.advance(2);
    Ok(Some(payload))
}
