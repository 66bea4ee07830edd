//! The client half: commands out, replies in.
//!
//! Replies are decoded in both RESP2 and RESP3 (maps, sets, doubles,
//! booleans, verbatim strings and `_` nulls, which decode as [`Reply::Nil`]).
//!
//! Lives beside the server half so that the test client and the scenario
//! runner speak exactly the framing the server decodes, with the same
//! [`Limits`] applied to what comes back.

use std::borrow::Cow;

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::reply::{put_bulk, put_count};
use super::{checked_len, parse_i64, take_payload, Header, Limits, ProtocolError, Reply};
use super::{MAX_REPLY_DEPTH, PREALLOC_CAP};

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

/// Decodes server replies, with the same limits as
/// [`RespDecoder`](super::RespDecoder) (status and error lines are bounded by
/// `max_inline_len`) and nesting bounded by [`MAX_REPLY_DEPTH`].
///
/// Also implements `Encoder<Vec<Bytes>>` for commands, so
/// `Framed<TcpStream, ReplyDecoder>` is the whole client-side codec.
#[derive(Debug, Default)]
pub struct ReplyDecoder {
    limits: Limits,
    /// Aggregates being filled, innermost last: (items still expected,
    /// items, what they make).
    stack: Vec<(usize, Vec<Reply>, Aggregate)>,
    /// Length of a bulk (or, with `true`, a verbatim string) whose header is
    /// consumed but whose payload is not here.
    bulk_len: Option<(usize, bool)>,
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
        if let Some((len, verbatim)) = self.bulk_len {
            let Some(mut payload) = take_payload(src, len)? else {
                return Ok(None);
            };
            self.bulk_len = None;
            if !verbatim {
                return Ok(Some(Reply::Bulk(payload)));
            }
            // `txt:` (or any three-letter format and a colon) comes first.
            if payload.len() < 4 || payload[3] != b':' {
                return Err(ProtocolError::InvalidBulkLength);
            }
            payload.advance(4);
            return Ok(Some(Reply::Verbatim(payload)));
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
            b'_' if body.is_empty() => Some(Reply::Nil),
            b'#' => match body {
                b"t" => Some(Reply::Bool(true)),
                b"f" => Some(Reply::Bool(false)),
                _ => return Err(ProtocolError::InvalidInteger),
            },
            b',' => Some(Reply::Double(parse_double(body)?)),
            b'$' | b'=' => match parse_i64(body).ok_or(ProtocolError::InvalidBulkLength)? {
                -1 if kind == b'$' => Some(Reply::Nil),
                n => {
                    let len = checked_len(n, self.limits.max_bulk_len, Header::Bulk)?;
                    self.bulk_len = Some((len, kind == b'='));
                    None
                }
            },
            b'*' | b'%' | b'~' => {
                let aggregate = match kind {
                    b'*' => Aggregate::Array,
                    b'%' => Aggregate::Map,
                    _ => Aggregate::Set,
                };
                match parse_i64(body).ok_or(ProtocolError::InvalidMultibulkLength)? {
                    -1 if kind == b'*' => Some(Reply::NilArray),
                    0 => Some(aggregate.make(Vec::new())),
                    n => {
                        let len = checked_len(n, self.limits.max_array_len, Header::Multibulk)?;
                        let items = if aggregate == Aggregate::Map {
                            len.checked_mul(2)
                                .ok_or(ProtocolError::InvalidMultibulkLength)?
                        } else {
                            len
                        };
                        if self.stack.len() >= MAX_REPLY_DEPTH {
                            return Err(ProtocolError::TooDeep {
                                max: MAX_REPLY_DEPTH,
                            });
                        }
                        self.stack.push((
                            items,
                            Vec::with_capacity(items.min(PREALLOC_CAP)),
                            aggregate,
                        ));
                        None
                    }
                }
            }
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

/// What a RESP aggregate header starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aggregate {
    Array,
    Map,
    Set,
}

impl Aggregate {
    /// The reply made of `items` (a map's keys and values alternate).
    fn make(self, items: Vec<Reply>) -> Reply {
        match self {
            Aggregate::Array => Reply::Array(items),
            Aggregate::Set => Reply::Set(items),
            Aggregate::Map => {
                let mut pairs = Vec::with_capacity(items.len() / 2);
                let mut items = items.into_iter();
                while let (Some(k), Some(v)) = (items.next(), items.next()) {
                    pairs.push((k, v));
                }
                Reply::Map(pairs)
            }
        }
    }
}

/// A RESP3 double: decimal or scientific notation, `inf`, `-inf`, `nan`.
fn parse_double(body: &[u8]) -> Result<f64, ProtocolError> {
    let text = std::str::from_utf8(body).map_err(|_| ProtocolError::InvalidUtf8)?;
    text.parse::<f64>()
        .map_err(|_| ProtocolError::InvalidInteger)
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
                let Some((remaining, items, aggregate)) = self.stack.last_mut() else {
                    return Ok(Some(value));
                };
                items.push(value);
                *remaining -= 1;
                if *remaining > 0 {
                    break;
                }
                // The innermost aggregate is complete: it becomes a value itself.
                value = aggregate.make(std::mem::take(items));
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
