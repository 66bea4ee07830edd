//! Fuzz target bodies, shared by the libFuzzer targets in `fuzz/` and the
//! corpus replay in `tests/fuzz_corpus.rs` (so CI replays every corpus and
//! crash file without a fuzzer).
//!
//! Each function takes arbitrary bytes and must neither panic nor allocate
//! beyond its limits; beyond "no panic" each checks one property:
//!
//! - [`resp_decoder`]: the same bytes give the same commands, or the same
//!   error, however they are split into reads.
//! - [`peer_frame`]: whatever decodes re-encodes to a frame that decodes to
//!   the same message.
//! - [`log_recover`]: recovery is idempotent: after recovering (and
//!   repairing) a damaged log once, recovering again yields the same records.
//!
//! Deliberately left out: structure-aware (arbitrary-derived) inputs; the
//! committed seed corpus gives the fuzzer valid frames and segments to
//! mutate instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::encoding::FrameCodec;
use crate::log::{CommitLog, LogOptions, Record};
use crate::message::{Hello, HelloProof, HelloReply, PeerMsg};
use crate::resp::codec::{Limits, ReplyDecoder, RespDecoder};

/// Small limits, so the fuzzer reaches every limit check quickly.
fn small_limits() -> Limits {
    Limits {
        max_array_len: 64,
        max_bulk_len: 4096,
        max_inline_len: 1024,
    }
}

/// Every command (or the first error) that `chunks` of input decode to.
fn decode_commands(chunks: &[&[u8]]) -> (Vec<Vec<bytes::Bytes>>, Option<String>) {
    let mut dec = RespDecoder::new(small_limits());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(cmd)) => out.push(cmd),
                Ok(None) => break,
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }
    (out, None)
}

/// The RESP command decoder (and the reply decoder) on arbitrary bytes.
/// The first byte picks where the input is split in two.
pub fn resp_decoder(data: &[u8]) {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let whole = decode_commands(&[rest]);
    let cut = usize::from(cut).min(rest.len());
    let split = decode_commands(&[&rest[..cut], &rest[cut..]]);
    assert_eq!(whole, split, "split at {cut} changed the outcome");
    let mut replies = ReplyDecoder::default();
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(_)) = replies.decode(&mut buf) {}
}

fn frames<T>(data: &[u8])
where
    T: serde::Serialize
        + serde::de::DeserializeOwned
        + crate::encoding::Wire
        + PartialEq
        + std::fmt::Debug,
{
    let mut codec = FrameCodec::<T>::new(64 * 1024);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(msg)) = codec.decode(&mut buf) {
        let mut again = BytesMut::new();
        codec
            .encode(&msg, &mut again)
            .expect("a decoded message re-encodes");
        let back = codec.decode(&mut again).expect("re-decodes");
        assert_eq!(back.as_ref(), Some(&msg));
    }
}

/// The peer frame decoder on arbitrary bytes, as every type a peer
/// connection reads: handshake frames and messages.
pub fn peer_frame(data: &[u8]) {
    frames::<Hello>(data);
    frames::<HelloReply>(data);
    frames::<HelloProof>(data);
    frames::<PeerMsg>(data);
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fn replay(dir: &std::path::Path) -> Option<Vec<Record>> {
    let mut records = Vec::new();
    let opened = runtime().block_on(async {
        let (log, _report) = CommitLog::open(dir, LogOptions::for_test(), |r| records.push(r))?;
        log.shutdown().await
    });
    opened.ok().map(|()| records)
}

/// Commit-log recovery of arbitrary bytes as the first segment (or, if the
/// first byte is odd, as a snapshot), twice over.
pub fn log_recover(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ringkv-fuzz-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let name = match kind % 2 {
        0 => "log-000001.seg",
        _ => "snap-000001.snap",
    };
    std::fs::write(dir.join(name), rest).expect("write the input");
    let first = replay(&dir);
    let second = first.as_ref().map(|_| replay(&dir));
    // Clean up before asserting, so a failure leaves no litter.
    std::fs::remove_dir_all(&dir).expect("remove the temp dir");
    if let (Some(first), Some(second)) = (first, second) {
        let second = second.expect("a recovered log opens again");
        assert_eq!(first, second, "recovery is not idempotent");
    }
}
