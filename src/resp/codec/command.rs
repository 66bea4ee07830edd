//! The server half: bytes from a client become commands (`Vec<Bytes>`).
//!
//! Kept apart from the reply and client code because this is the part that
//! faces untrusted input: the resumable state machine for multibulk arrays
//! and the Redis-compatible inline line splitter live here together.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::PREALLOC_CAP;
use super::{checked_len, parse_header, take_payload, Header, Limits, Proto, ProtocolError, Reply};

/// Decodes client commands (multibulk or inline) into their arguments.
///
/// Also implements `Encoder<Reply>` (RESP2), so `Framed<TcpStream,
/// RespDecoder>` is a whole server-side codec for simple servers and tests.
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

    /// A whole, ordinary multibulk command already in `src` (the usual
    /// case: clients write whole commands), parsed in one pass and split
    /// off at once. `None`, with nothing consumed, when the command is
    /// incomplete, long, or anything but plainly valid: the state machine
    /// then handles it, and reports what is wrong. Measured at about a
    /// third of the state machine's instructions for a SET.
    fn whole(&self, src: &mut BytesMut) -> Option<Vec<Bytes>> {
        let buf = &src[..];
        let (n, mut at) = plain_header(buf, b'*')?;
        if n == 0 || n > FAST_ARGS || n > self.limits.max_array_len {
            return None;
        }
        let mut spans = [(0usize, 0usize); FAST_ARGS];
        for span in spans.iter_mut().take(n) {
            let (len, used) = plain_header(buf.get(at..)?, b'$')?;
            if len > self.limits.max_bulk_len {
                return None;
            }
            let start = at + used;
            let end = start + len;
            if buf.get(end..end + 2)? != b"\r\n" {
                return None;
            }
            *span = (start, end);
            at = end + 2;
        }
        let frame = src.split_to(at).freeze();
        Some(spans[..n].iter().map(|&(s, e)| frame.slice(s..e)).collect())
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
        if matches!(self.state, State::Idle) {
            if let Some(args) = self.whole(src) {
                return Ok(Some(args));
            }
        }
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
        reply.encode(dst, Proto::Resp2);
        Ok(())
    }
}

/// Most arguments a command may have to take [`RespDecoder::whole`]'s path.
const FAST_ARGS: usize = 8;

/// `<marker><digits>\r\n` at the start of `buf`, the number plain (no sign,
/// no leading zero, at most 18 digits): the number and the header's length.
/// Anything else is `None`, left to the strict parser.
fn plain_header(buf: &[u8], marker: u8) -> Option<(usize, usize)> {
    if *buf.first()? != marker || buf.get(1) == Some(&b'0') && buf.get(2) != Some(&b'\r') {
        return None;
    }
    let mut n = 0usize;
    let mut i = 1;
    loop {
        match *buf.get(i)? {
            b @ b'0'..=b'9' if i <= 18 => n = n * 10 + usize::from(b - b'0'),
            b'\r' if i > 1 => break,
            _ => return None,
        }
        i += 1;
    }
    (buf.get(i + 1) == Some(&b'\n')).then_some((n, i + 2))
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
