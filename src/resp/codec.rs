//! RESP2 framing for the client port: commands in, replies out.
//!
//! Clients speak the Redis serialization protocol, version 2. A command is an
//! array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or, for people typing
//! into `nc`/`telnet`, an "inline command": one line split on whitespace with
//! Redis's `"..."` / `'...'` quoting. [`RespDecoder`] turns bytes into
//! `Vec<Bytes>` commands; [`Reply`] and [`RespEncoder`] go the other way. The
//! client half ([`encode_command`], [`ReplyDecoder`]) is here too, so the test
//! client and the scenario runner exercise exactly the framing the server uses.
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
//! * RESP3 (`HELLO 3`, maps, sets, doubles, push frames) and attribute types.
//! * Resynchronising after a protocol error: the connection is closed instead.
//! * Redis's leniencies that depend on read boundaries (it accepts an
//!   over-long inline line if the newline arrives in the same read) and its
//!   silent skipping of `*-1`: here a negative command array is an error, while
//!   `*0` and blank inline lines are skipped as in Redis.
//! * Copying small values out of large read buffers: a stored argument pins the
//!   buffer it arrived in; the store should copy if it keeps values for long.

use std::borrow::Cow;
use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

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
    ExpectedBulk { got: u8 },
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
    ArrayTooLong { len: u64, max: usize },
    /// A bulk header exceeds `max_bulk_len`.
    #[error("Protocol error: bulk string of {len} bytes exceeds max-bulk-len {max}")]
    BulkTooLong { len: u64, max: usize },
    /// A reply starts with a byte that is not a RESP2 type.
    #[error("Protocol error: unknown reply type '{}'", .got.escape_ascii())]
    UnknownReplyType { got: u8 },
    /// An integer reply is not a valid signed 64-bit decimal.
    #[error("Protocol error: invalid integer")]
    InvalidInteger,
    /// A status or error reply line is not UTF-8.
    #[error("Protocol error: reply line is not valid UTF-8")]
    InvalidUtf8,
    /// A reply nests arrays deeper than [`MAX_REPLY_DEPTH`].
    #[error("Protocol error: reply nested deeper than {max} arrays")]
    TooDeep { max: usize },
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

// ---------------------------------------------------------------------------
// Server side: commands in.

/// Decodes client commands (multibulk or inline) into their arguments.
///
/// Also implements `Encoder<Reply>`, so `Framed<TcpStream, RespDecoder>` is
/// the whole server-side codec.
#[derive(Debug, Default)]
pub struct RespDecoder {
    limits: Limits,
    state: State,
}

/// Where the decoder is inside the current command.
#[derive(Debug, Default)]
enum State {
    /// Between commands.
    #[default]
    Idle,
    /// Reading an inline line; `scanned` bytes are known to hold no `\n`.
    Inline { scanned: usize },
    /// Inside a command array, its header already consumed.
    Array {
        remaining: usize,
        args: Vec<Bytes>,
        /// Length of the bulk whose `$` header is consumed but whose payload
        /// has not fully arrived.
        bulk_len: Option<usize>,
    },
}

/// What one step of the state machine achieved.
enum Step {
    /// Need more bytes; park in this state.
    Wait(State),
    /// Consumed something; continue from this state.
    Next(State),
    /// A whole command.
    Done(Vec<Bytes>),
}

impl RespDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RespDecoder {
            limits,
            state: State::Idle,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn step(&self, state: State, src: &mut BytesMut) -> Result<Step, ProtocolError> {
        match state {
            State::Idle => self.begin(src),
            State::Inline { scanned } => self.inline(scanned, src),
            State::Array {
                remaining,
                args,
                bulk_len,
            } => self.array(remaining, args, bulk_len, src),
        }
    }

    fn begin(&self, src: &mut BytesMut) -> Result<Step, ProtocolError> {
        match src.first() {
            None => Ok(Step::Wait(State::Idle)),
            Some(b'*') => {
                let Some((n, used)) = parse_header(src, Header::Multibulk)? else {
                    return Ok(Step::Wait(State::Idle));
                };
                let len = checked_len(n, self.limits.max_array_len, Header::Multibulk)?;
                src.advance(used);
                if len == 0 {
                    return Ok(Step::Next(State::Idle));
                }
                Ok(Step::Next(State::Array {
                    remaining: len,
                    args: Vec::with_capacity(len.min(PREALLOC_CAP)),
                    bulk_len: None,
                }))
            }
            Some(_) => Ok(Step::Next(State::Inline { scanned: 0 })),
        }
    }

    fn inline(&self, scanned: usize, src: &mut BytesMut) -> Result<Step, ProtocolError> {
        let max = self.limits.max_inline_len;
        let scanned = scanned.min(src.len());
        let Some(offset) = src[scanned..].iter().position(|&b| b == b'\n') else {
            if src.len() > max {
                return Err(ProtocolError::TooBigInline);
            }
            return Ok(Step::Wait(State::Inline { scanned: src.len() }));
        };
        let newline = scanned + offset;
        if newline > max {
            return Err(ProtocolError::TooBigInline);
        }
        let line = src.split_to(newline + 1);
        let text = &line[..newline];
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let args = split_inline(text)?;
        if args.is_empty() {
            return Ok(Step::Next(State::Idle));
        }
        if args.len() > self.limits.max_array_len {
            return Err(ProtocolError::ArrayTooLong {
                len: args.len() as u64,
                max: self.limits.max_array_len,
            });
        }
        Ok(Step::Done(args))
    }

    fn array(
        &self,
        mut remaining: usize,
        mut args: Vec<Bytes>,
        mut bulk_len: Option<usize>,
        src: &mut BytesMut,
    ) -> Result<Step, ProtocolError> {
        while remaining > 0 {
            let len = match bulk_len {
                Some(len) => len,
                None => match src.first() {
                    None => break,
                    Some(b'$') => {
                        let Some((n, used)) = parse_header(src, Header::Bulk)? else {
                            break;
                        };
                        let len = checked_len(n, self.limits.max_bulk_len, Header::Bulk)?;
                        src.advance(used);
                        len
                    }
                    Some(&got) => return Err(ProtocolError::ExpectedBulk { got }),
                },
            };
            let Some(payload) = take_payload(src, len)? else {
                bulk_len = Some(len);
                break;
            };
            bulk_len = None;
            args.push(payload);
            remaining -= 1;
        }
        if remaining == 0 {
            return Ok(Step::Done(args));
        }
        Ok(Step::Wait(State::Array {
            remaining,
            args,
            bulk_len,
        }))
    }
}

impl Decoder for RespDecoder {
    type Item = Vec<Bytes>;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            let state = std::mem::take(&mut self.state);
            match self.step(state, src)? {
                Step::Wait(state) => {
                    self.state = state;
                    return Ok(None);
                }
                Step::Next(state) => self.state = state,
                Step::Done(args) => return Ok(Some(args)),
            }
        }
    }
}

impl Encoder<Reply> for RespDecoder {
    type Error = ProtocolError;

    fn encode(&mut self, reply: Reply, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        reply.encode(dst);
        Ok(())
    }
}

/// Whitespace as C's `isspace`, which Redis's `sdssplitargs` uses.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Splits an inline command the way Redis's `sdssplitargs` does: whitespace
/// separates arguments; `"..."` understands `\n \r \t \b \a \xHH` and `\<c>`;
/// `'...'` understands only `\'`; a closing quote must end the argument.
fn split_inline(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(|&b| is_space(b)) {
            i += 1;
        }
        if i >= line.len() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        let mut quote = None;
        loop {
            let Some(&c) = line.get(i) else {
                if quote.is_some() {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                break;
            };
            match quote {
                None if is_space(c) => break,
                None if c == b'"' || c == b'\'' => quote = Some(c),
                None => arg.push(c),
                Some(q) if c == q => {
                    if line.get(i + 1).is_some_and(|&b| !is_space(b)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                }
                Some(b'"') if c == b'\\' => {
                    let (byte, used) = unescape(&line[i + 1..]);
                    arg.push(byte);
                    i += used;
                }
                Some(_) if c == b'\\' && line.get(i + 1) == Some(&b'\'') => {
                    arg.push(b'\'');
                    i += 1;
                }
                Some(_) => arg.push(c),
            }
            i += 1;
        }
        args.push(Bytes::from(arg));
    }
}

/// Decodes the escape after a `\` inside double quotes. Returns the byte and
/// how many bytes after the backslash it used (a lone trailing `\` is kept).
fn unescape(rest: &[u8]) -> (u8, usize) {
    let hex = |b: u8| char::from(b).to_digit(16);
    match rest {
        [b'x', h, l, ..] => match (hex(*h), hex(*l)) {
            (Some(h), Some(l)) => ((h * 16 + l) as u8, 3),
            _ => (b'x', 1),
        },
        [b'n', ..] => (b'\n', 1),
        [b'r', ..] => (b'\r', 1),
        [b't', ..] => (b'\t', 1),
        [b'b', ..] => (0x08, 1),
        [b'a', ..] => (0x07, 1),
        [c, ..] => (*c, 1),
        [] => (b'\\', 0),
    }
}

// ---------------------------------------------------------------------------
// Replies out.

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

fn put_bulk(dst: &mut BytesMut, data: &[u8]) {
    dst.reserve(data.len() + 16);
    put_count(dst, b'$', data.len());
    dst.put_slice(data);
    dst.put_slice(b"\r\n");
}

fn put_count(dst: &mut BytesMut, kind: u8, n: usize) {
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

// ---------------------------------------------------------------------------
// Client side: commands out, replies in.

/// Appends `args` as a RESP command (an array of bulk strings) to `dst`.
pub fn encode_command(args: &[&[u8]], dst: &mut BytesMut) {
    encode_args(args, dst);
}

fn encode_args<A: AsRef<[u8]>>(args: &[A], dst: &mut BytesMut) {
    put_count(dst, b'*', args.len());
    for arg in args {
        put_bulk(dst, arg.as_ref());
    }
}

/// Decodes server replies, with the same limits as [`RespDecoder`] (status
/// and error lines are bounded by `max_inline_len`) and nesting bounded by
/// [`MAX_REPLY_DEPTH`].
///
/// Also implements `Encoder<Vec<Bytes>>` for commands, so
/// `Framed<TcpStream, ReplyDecoder>` is the whole client-side codec.
#[derive(Debug, Default)]
pub struct ReplyDecoder {
    limits: Limits,
    /// Arrays being filled, innermost last: (items still expected, items).
    stack: Vec<(usize, Vec<Reply>)>,
    /// Length of a bulk whose header is consumed but payload is not here.
    bulk_len: Option<usize>,
    /// Bytes of the current line known to hold no `\n`.
    scanned: usize,
}

impl ReplyDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        ReplyDecoder {
            limits,
            ..ReplyDecoder::default()
        }
    }

    /// Reads one value, or the header of an array (pushed onto the stack).
    fn next_value(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
        if let Some(len) = self.bulk_len {
            let Some(payload) = take_payload(src, len)? else {
                return Ok(None);
            };
            self.bulk_len = None;
            return Ok(Some(Reply::Bulk(payload)));
        }
        let Some(cr) = self.find_line(src)? else {
            return Ok(None);
        };
        let kind = src[0];
        let body = src
            .get(1..cr)
            .ok_or(ProtocolError::UnknownReplyType { got: kind })?;
        let value = match kind {
            b'+' => Some(Reply::Simple(Cow::Owned(utf8(body)?))),
            b'-' => Some(Reply::Error(utf8(body)?)),
            b':' => Some(Reply::Integer(
                parse_i64(body).ok_or(ProtocolError::InvalidInteger)?,
            )),
            b'$' => match parse_i64(body).ok_or(ProtocolError::InvalidBulkLength)? {
                -1 => Some(Reply::Nil),
                n => {
                    self.bulk_len = Some(checked_len(n, self.limits.max_bulk_len, Header::Bulk)?);
                    None
                }
            },
            b'*' => match parse_i64(body).ok_or(ProtocolError::InvalidMultibulkLength)? {
                -1 => Some(Reply::NilArray),
                0 => Some(Reply::Array(Vec::new())),
                n => {
                    let len = checked_len(n, self.limits.max_array_len, Header::Multibulk)?;
                    if self.stack.len() >= MAX_REPLY_DEPTH {
                        return Err(ProtocolError::TooDeep {
                            max: MAX_REPLY_DEPTH,
                        });
                    }
                    self.stack
                        .push((len, Vec::with_capacity(len.min(PREALLOC_CAP))));
                    None
                }
            },
            got => return Err(ProtocolError::UnknownReplyType { got }),
        };
        src.advance(cr + 2);
        match value {
            Some(value) => Ok(Some(value)),
            None => self.next_value(src),
        }
    }

    /// Finds the `\r` of the CRLF ending the line at the start of `src`.
    fn find_line(&mut self, src: &BytesMut) -> Result<Option<usize>, ProtocolError> {
        let from = self.scanned.min(src.len());
        let Some(offset) = src[from..].iter().position(|&b| b == b'\n') else {
            if src.len() > self.limits.max_inline_len {
                return Err(ProtocolError::TooBigInline);
            }
            self.scanned = src.len();
            return Ok(None);
        };
        let newline = from + offset;
        if newline > self.limits.max_inline_len {
            return Err(ProtocolError::TooBigInline);
        }
        if newline == 0 || src[newline - 1] != b'\r' {
            return Err(ProtocolError::ExpectedCrlf);
        }
        self.scanned = 0;
        Ok(Some(newline - 1))
    }
}

fn utf8(body: &[u8]) -> Result<String, ProtocolError> {
    String::from_utf8(body.to_vec()).map_err(|_| ProtocolError::InvalidUtf8)
}

impl Decoder for ReplyDecoder {
    type Item = Reply;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
        loop {
            let Some(mut value) = self.next_value(src)? else {
                return Ok(None);
            };
            loop {
                let Some((remaining, items)) = self.stack.last_mut() else {
                    return Ok(Some(value));
                };
                items.push(value);
                *remaining -= 1;
                if *remaining > 0 {
                    break;
                }
                // The innermost array is complete: it becomes a value itself.
                value = Reply::Array(std::mem::take(items));
                self.stack.pop();
            }
        }
    }
}

impl Encoder<Vec<Bytes>> for ReplyDecoder {
    type Error = ProtocolError;

    fn encode(&mut self, args: Vec<Bytes>, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_args(&args, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `input` to `dec` cut at `cuts`, decoding after every chunk until
    /// the decoder wants more; stops at the first error.
    fn feed<D: Decoder>(
        dec: &mut D,
        input: &[u8],
        cuts: &[usize],
    ) -> Result<Vec<D::Item>, D::Error> {
        let mut points: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
        points.push(input.len());
        points.sort_unstable();
        let (mut buf, mut out, mut start) = (BytesMut::new(), Vec::new(), 0);
        for end in points {
            buf.extend_from_slice(&input[start..end]);
            start = end;
            while let Some(item) = dec.decode(&mut buf)? {
                out.push(item);
            }
        }
        Ok(out)
    }

    fn commands(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        feed(&mut RespDecoder::default(), input, &[])
    }

    fn command_err(input: &[u8]) -> String {
        match commands(input) {
            Ok(cmds) => panic!("{input:?} decoded to {cmds:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    fn encoded(args: &[&[u8]]) -> Vec<u8> {
        let mut dst = BytesMut::new();
        encode_command(args, &mut dst);
        dst.to_vec()
    }

    fn wire(reply: &Reply) -> Vec<u8> {
        let mut dst = BytesMut::new();
        reply.encode(&mut dst);
        dst.to_vec()
    }

    const MIXED: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\r\nal\r\nPING\r\n\r\n \
        \r\n*0\r\nset \"a b\" 'c'\n*1\r\n$0\r\n\r\n";

    fn mixed_expected() -> Vec<Vec<Bytes>> {
        vec![
            args(&["SET", "k", "v\r\nal"]),
            args(&["PING"]),
            args(&["set", "a b", "c"]),
            args(&[""]),
        ]
    }

    #[test]
    fn decodes_multibulk_and_inline_mixed() {
        assert_eq!(commands(MIXED).unwrap(), mixed_expected());
    }

    #[test]
    fn every_split_point_and_byte_by_byte_agree() {
        for cut in 0..=MIXED.len() {
            assert_eq!(
                feed(&mut RespDecoder::default(), MIXED, &[cut]).unwrap(),
                mixed_expected()
            );
        }
        let every: Vec<usize> = (0..MIXED.len()).collect();
        assert_eq!(
            feed(&mut RespDecoder::default(), MIXED, &every).unwrap(),
            mixed_expected()
        );
    }

    #[test]
    fn partial_input_waits_and_resumes() {
        let mut dec = RespDecoder::default();
        let mut buf = BytesMut::from(&b"*2\r\n$4\r\nEC"[..]);
        assert!(dec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"HO\r\n$2\r\nhi\r");
        assert!(dec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"\n");
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(args(&["ECHO", "hi"])));
        assert!(buf.is_empty());
    }

    #[test]
    fn big_bulk_in_chunks_is_zero_copy() {
        let payload = vec![b'x'; 8 << 20];
        let input = encoded(&[b"SET", b"k", &payload]);
        let mut dec = RespDecoder::default();
        let mut buf = BytesMut::with_capacity(input.len());
        let mut got = None;
        for chunk in input.chunks(64 << 10) {
            buf.extend_from_slice(chunk);
            if let Some(cmd) = dec.decode(&mut buf).unwrap() {
                got = Some(cmd);
            }
        }
        let cmd = got.expect("command decoded");
        assert_eq!(cmd[2].len(), payload.len());
        // The payload points into the read buffer's allocation: no copy.
        let header = input.len() - payload.len() - 2;
        assert_eq!(cmd[2].as_ptr(), cmd[0].as_ptr().wrapping_add(header - 8));
    }

    #[test]
    fn malformed_commands_give_redis_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"*-1\r\n", "Protocol error: invalid multibulk length"),
            (b"*abc\r\n", "Protocol error: invalid multibulk length"),
            (b"*\r\n", "Protocol error: invalid multibulk length"),
            (b"*+3\r\n", "Protocol error: invalid multibulk length"),
            (b"*3\n", "Protocol error: invalid multibulk length"),
            (b"*3\rX", "Protocol error: invalid multibulk length"),
            (
                b"*99999999999999999999\r\n",
                "Protocol error: invalid multibulk length",
            ),
            (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
            (
                b"*1\r\n$03\r\nabc\r\n",
                "Protocol error: invalid bulk length",
            ),
            (b"*1\r\n$3\r\nabcXY", "Protocol error: expected CRLF"),
            (b"*1\r\n$3\r\nabcd\r\n", "Protocol error: expected CRLF"),
            (b"*1\r\nx", "Protocol error: expected '$', got 'x'"),
            (
                b"*1\r\n*1\r\n$1\r\na\r\n",
                "Protocol error: expected '$', got '*'",
            ),
            (b"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
            (b"*1\r\n\x00", "Protocol error: expected '$', got '\\x00'"),
            (
                b"*11111111111111111111111111111111111",
                "Protocol error: too big mbulk count string",
            ),
            (
                b"*1\r\n$1111111111111111111111111111111111",
                "Protocol error: too big bulk count string",
            ),
            (
                b"*2000000000\r\n",
                "Protocol error: array of 2000000000 elements exceeds max-array-len 1048576",
            ),
            (
                b"*1\r\n$99999999999\r\n",
                "Protocol error: bulk string of 99999999999 bytes exceeds max-bulk-len 536870912",
            ),
            (b"set \"a\n", "Protocol error: unbalanced quotes in request"),
        ];
        for (input, want) in cases {
            assert_eq!(
                command_err(input),
                *want,
                "input {:?}",
                input.escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn limits_are_enforced_before_payload_arrives() {
        let limits = Limits {
            max_array_len: 2,
            max_bulk_len: 4,
            max_inline_len: 8,
        };
        let dec = || RespDecoder::new(limits);
        let err = |input: &[u8]| feed(&mut dec(), input, &[]).unwrap_err().to_string();
        assert_eq!(
            err(b"*3\r\n"),
            "Protocol error: array of 3 elements exceeds max-array-len 2"
        );
        assert_eq!(
            err(b"*1\r\n$5\r\n"),
            "Protocol error: bulk string of 5 bytes exceeds max-bulk-len 4"
        );
        assert_eq!(
            err(b"a b c\r\n"),
            "Protocol error: array of 3 elements exceeds max-array-len 2"
        );
        assert_eq!(err(b"123456789"), "Protocol error: too big inline request");
        assert_eq!(
            err(b"12345678\r\n"),
            "Protocol error: too big inline request"
        );
        assert_eq!(
            feed(&mut dec(), b"1234567\r\n", &[]).unwrap(),
            vec![args(&["1234567"])]
        );
        assert_eq!(
            feed(&mut dec(), b"*2\r\n$4\r\nabcd\r\n$0\r\n\r\n", &[]).unwrap(),
            vec![args(&["abcd", ""])]
        );
    }

    #[test]
    fn inline_quoting_follows_redis() {
        let cases: &[(&[u8], &[&str])] = &[
            (b"PING\r\n", &["PING"]),
            (b"set a b\n", &["set", "a", "b"]),
            (b"  get\t \tkey  \r\n", &["get", "key"]),
            (b"set \"hello world\" x\r\n", &["set", "hello world", "x"]),
            (b"set 'it''s' x\n", &[]), // closing quote followed by a quote: error below
            (b"echo \"a\\nb\\t\\x41\\\"q\"\n", &["echo", "a\nb\tA\"q"]),
            (b"echo \"\\xZZ\"\n", &["echo", "xZZ"]),
            (b"echo 'a\\'b' 'c\\n'\n", &["echo", "a'b", "c\\n"]),
            (b"echo \"\"\n", &["echo", ""]),
            (b"echo a\"b c\"\n", &["echo", "ab c"]),
        ];
        for (input, want) in cases {
            if want.is_empty() {
                assert_eq!(
                    command_err(input),
                    "Protocol error: unbalanced quotes in request"
                );
            } else {
                assert_eq!(commands(input).unwrap(), vec![args(want)]);
            }
        }
        for bad in [
            &b"echo \"abc\n"[..],
            b"echo 'abc\n",
            b"echo \"a\"b\n",
            b"echo \"a\\\"\n",
        ] {
            assert_eq!(
                command_err(bad),
                "Protocol error: unbalanced quotes in request"
            );
        }
    }

    #[test]
    fn reply_encoding_is_exact() {
        assert_eq!(wire(&Reply::ok()), b"+OK\r\n");
        assert_eq!(
            wire(&Reply::err("unknown command")),
            b"-ERR unknown command\r\n"
        );
        assert_eq!(
            wire(&Reply::error_code("WRONGTYPE", "nope")),
            b"-WRONGTYPE nope\r\n"
        );
        assert_eq!(
            wire(&Reply::err("line\r\nbreak\n")),
            b"-ERR line  break \r\n"
        );
        assert_eq!(wire(&Reply::simple("a\rb")), b"+a b\r\n");
        assert_eq!(wire(&Reply::Integer(-42)), b":-42\r\n");
        assert_eq!(
            wire(&Reply::Integer(i64::MIN)),
            b":-9223372036854775808\r\n"
        );
        assert_eq!(wire(&Reply::bulk(&b"hi"[..])), b"$2\r\nhi\r\n");
        assert_eq!(wire(&Reply::Nil), b"$-1\r\n");
        assert_eq!(wire(&Reply::NilArray), b"*-1\r\n");
        let nested = Reply::Array(vec![Reply::Integer(0), Reply::Array(vec![]), Reply::Nil]);
        assert_eq!(wire(&nested), b"*3\r\n:0\r\n*0\r\n$-1\r\n");
        let mut dst = BytesMut::new();
        RespEncoder.encode(Reply::ok(), &mut dst).unwrap();
        RespDecoder::default()
            .encode(Reply::Integer(7), &mut dst)
            .unwrap();
        assert_eq!(&dst[..], b"+OK\r\n:7\r\n");
        let err = ProtocolError::InvalidBulkLength;
        assert_eq!(
            wire(&Reply::err(&err)),
            b"-ERR Protocol error: invalid bulk length\r\n"
        );
    }

    #[test]
    fn client_encoder_matches_encode_command() {
        let mut dst = BytesMut::new();
        ReplyDecoder::default()
            .encode(args(&["GET", "k"]), &mut dst)
            .unwrap();
        assert_eq!(&dst[..], &encoded(&[b"GET", b"k"])[..]);
        assert_eq!(&dst[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }

    #[test]
    fn malformed_replies_give_errors() {
        let limits = Limits {
            max_array_len: 3,
            max_bulk_len: 4,
            max_inline_len: 16,
        };
        let cases: &[(&[u8], &str)] = &[
            (b"?x\r\n", "Protocol error: unknown reply type '?'"),
            (b"\r\n", "Protocol error: unknown reply type '\\r'"),
            (b"+OK\n", "Protocol error: expected CRLF"),
            (b":12a\r\n", "Protocol error: invalid integer"),
            (b":\r\n", "Protocol error: invalid integer"),
            (b"$-2\r\n", "Protocol error: invalid bulk length"),
            (b"*-2\r\n", "Protocol error: invalid multibulk length"),
            (
                b"$5\r\n",
                "Protocol error: bulk string of 5 bytes exceeds max-bulk-len 4",
            ),
            (
                b"*4\r\n",
                "Protocol error: array of 4 elements exceeds max-array-len 3",
            ),
            (b"$2\r\nabc\r\n", "Protocol error: expected CRLF"),
            (
                b"+\xff\r\n",
                "Protocol error: reply line is not valid UTF-8",
            ),
            (
                b"+0123456789abcdefg",
                "Protocol error: too big inline request",
            ),
        ];
        for (input, want) in cases {
            let err = feed(&mut ReplyDecoder::new(limits), input, &[]).unwrap_err();
            assert_eq!(
                err.to_string(),
                *want,
                "input {:?}",
                input.escape_ascii().to_string()
            );
        }
        let deep = b"*1\r\n".repeat(MAX_REPLY_DEPTH + 1);
        let err = feed(&mut ReplyDecoder::default(), &deep, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Protocol error: reply nested deeper than 64 arrays"
        );
        let ok = [b"*1\r\n".repeat(MAX_REPLY_DEPTH), b":1\r\n".to_vec()].concat();
        assert_eq!(
            feed(&mut ReplyDecoder::default(), &ok, &[]).unwrap().len(),
            1
        );
    }

    fn arb_reply() -> impl Strategy<Value = Reply> {
        let leaf = prop_oneof![
            "[ -~]{0,12}".prop_map(Reply::simple),
            "[ -~]{0,12}".prop_map(Reply::Error),
            any::<i64>().prop_map(Reply::Integer),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(Reply::bulk),
            Just(Reply::Nil),
            Just(Reply::NilArray),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            proptest::collection::vec(inner, 0..5).prop_map(Reply::Array)
        })
    }

    fn arb_cuts() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(0usize..600, 0..12)
    }

    /// Fragments that make decoders walk their less common paths.
    fn arb_wire() -> impl Strategy<Value = Vec<u8>> {
        const TOKENS: &[&[u8]] = &[
            b"*",
            b"$",
            b"\r\n",
            b"\n",
            b"\r",
            b"-1",
            b"2",
            b"0",
            b"99999999999",
            b"\"",
            b"'",
            b"\\x4",
            b"\\",
            b"a",
            b" ",
            b":",
            b"+",
            b"-",
            b"\xff",
        ];
        let token = proptest::sample::select(TOKENS);
        let tokens = proptest::collection::vec(token, 0..60).prop_map(|t| t.concat());
        prop_oneof![tokens, proptest::collection::vec(any::<u8>(), 0..300)]
    }

    proptest! {
        #[test]
        fn commands_round_trip_under_any_chunking(
            cmds in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6), 0..6),
            cuts in arb_cuts(),
        ) {
            let mut input = Vec::new();
            for cmd in &cmds {
                let refs: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
                input.extend(encoded(&refs));
            }
            let got = feed(&mut RespDecoder::default(), &input, &cuts).unwrap();
            let want: Vec<Vec<Bytes>> =
                cmds.iter().map(|c| c.iter().map(|a| Bytes::copy_from_slice(a)).collect()).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn inline_words_round_trip(words in proptest::collection::vec("[a-zA-Z0-9_]{1,8}", 1..6), cuts in arb_cuts()) {
            let input = format!("{}\r\n", words.join(" "));
            let got = feed(&mut RespDecoder::default(), input.as_bytes(), &cuts).unwrap();
            let want: Vec<&str> = words.iter().map(String::as_str).collect();
            prop_assert_eq!(got, vec![args(&want)]);
        }

        #[test]
        fn replies_round_trip_under_any_chunking(replies in proptest::collection::vec(arb_reply(), 0..4), cuts in arb_cuts()) {
            let input: Vec<u8> = replies.iter().flat_map(wire).collect();
            prop_assert_eq!(feed(&mut ReplyDecoder::default(), &input, &cuts).unwrap(), replies);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_chunking_never_matters(input in arb_wire(), cuts in arb_cuts()) {
            let limits = Limits { max_array_len: 8, max_bulk_len: 64, max_inline_len: 32 };
            let whole = feed(&mut RespDecoder::new(limits), &input, &[]).map_err(|e| e.to_string());
            let split = feed(&mut RespDecoder::new(limits), &input, &cuts).map_err(|e| e.to_string());
            prop_assert_eq!(whole, split);
            let whole = feed(&mut ReplyDecoder::new(limits), &input, &[]).map_err(|e| e.to_string());
            let split = feed(&mut ReplyDecoder::new(limits), &input, &cuts).map_err(|e| e.to_string());
            prop_assert_eq!(whole, split);
        }
    }
}
