//! The client half: commands out, replies in.
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
