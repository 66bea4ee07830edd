//! What a peer connection counts and decodes: the traffic counters
//! `/metrics` reads, and the decoder of an accepted connection, which
//! reads the shapes of the protocol version its handshake settled on.

use std::sync::atomic::AtomicU64;

use bytes::BytesMut;

use crate::encoding::FrameCodec;
use crate::error::{Error, Result};
use crate::message::v6::{self, PeerMsg6};
use crate::message::PeerMsg;

/// Decodes the messages of one accepted connection, in the shapes of the
/// protocol version its handshake settled on (`message::v6` below 7).
pub(super) struct PeerDecoder {
    version: u32,
    current: FrameCodec<PeerMsg>,
    legacy: FrameCodec<PeerMsg6>,
}

impl PeerDecoder {
    pub(super) fn new(version: u32, max_frame: usize) -> Self {
        PeerDecoder {
            version,
            current: FrameCodec::new(max_frame),
            legacy: FrameCodec::new(max_frame),
        }
    }
}

impl tokio_util::codec::Decoder for PeerDecoder {
    type Item = PeerMsg;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<PeerMsg>> {
        if self.version >= v6::REPLACED_IN {
            let Some(frame) = self.current.next_frame(src)? else {
                return Ok(None);
            };
            // The hot frames are read by hand (`message::frames`).
            let frame = frame.freeze();
            match crate::message::frames::decode(&frame)? {
                Some(msg) => Ok(Some(msg)),
                None => crate::encoding::from_slice(&frame).map(Some),
            }
        } else {
            Ok(self.legacy.decode(src)?.map(v6::from_v6))
        }
    }
}

/// Counters of peer traffic, read by `/metrics`.
#[derive(Debug, Default)]
pub struct NetStats {
    /// Messages written to sockets.
    pub sent: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_sent: AtomicU64,
    /// Messages received and accepted.
    pub received: AtomicU64,
    /// Messages dropped because a peer's queue was full or it was unreachable.
    pub dropped: AtomicU64,
    /// Messages dropped or delayed by fault injection.
    pub faulted: AtomicU64,
    /// Handshakes refused (either side).
    pub refused: AtomicU64,
    /// Messages dropped because their sender's clock is too far off (see
    /// [`super::PeerHandler::on_clock`]).
    pub skew_refused: AtomicU64,
    /// Messages not sent because the link's peer speaks a protocol version
    /// older than the message and has no equivalent of it (see
    /// [`crate::message::compat`]).
    pub unsupported: AtomicU64,
    /// Messages and bytes by message kind.
    pub by_kind: crate::metrics::PeerCounters,
}
