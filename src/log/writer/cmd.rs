//! What the commit log's handles ask of the writer task, and how the
//! writer answers: the commands on its queue, and the waiters of appends.

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// Who learns that an append is done.
pub(in crate::log) enum Done {
    /// A task awaiting `append`.
    Waiter(oneshot::Sender<Result<()>>),
    /// A callback run on the writer task (`append_frames_then`): cheaper than a
    /// task per write for replicas that only need to send an ack.
    Then(Box<dyn FnOnce(Result<()>) + Send>),
    /// The appends staged together (`staging.rs`), all answered at once.
    Staged(std::sync::Arc<crate::log::staging::StagedBatch>),
}

impl Done {
    pub(in crate::log) fn finish(self, value: Result<()>) {
        match self {
            Done::Waiter(tx) => reply(tx, value),
            Done::Then(f) => f(value),
            Done::Staged(batch) => batch.finish(value),
        }
    }
}

/// What the handles ask of the writer.
pub(in crate::log) enum Cmd {
    /// Write encoded frames (`records` of them); answer once they reached
    /// the OS (and disk, under `Always`).
    Append {
        frame: Bytes,
        records: u64,
        done: Done,
    },
    /// Start a new segment; answer with what was sealed.
    Seal {
        done: oneshot::Sender<Result<Sealed>>,
    },
    /// fsync the active segment now.
    Sync { done: oneshot::Sender<Result<()>> },
    /// Sync and stop; later commands fail with `Error::Shutdown`.
    Shutdown { done: oneshot::Sender<Result<()>> },
}

/// The answer to a seal.
#[derive(Debug, Clone, Copy)]
pub(in crate::log) struct Sealed {
    /// The new active segment; every earlier segment is sealed.
    pub seq: u64,
    /// Records in segments since the last compaction, as of the seal.
    pub since_records: u64,
    /// Their bytes.
    pub since_bytes: u64,
}

/// Answer a waiter; one that stopped waiting (its future was dropped) is
/// no error of ours, so it is only traced.
pub(super) fn reply<T>(done: oneshot::Sender<T>, value: T) {
    if done.send(value).is_err() {
        tracing::trace!("log waiter went away before its answer");
    }
}

/// Fail everything queued behind a shutdown.
pub(super) fn refuse_rest(rx: &mut mpsc::Receiver<Cmd>) {
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        match cmd {
            Cmd::Append { done, .. } => done.finish(Err(Error::Shutdown)),
            Cmd::Sync { done } | Cmd::Shutdown { done } => reply(done, Err(Error::Shutdown)),
            Cmd::Seal { done } => reply(done, Err(Error::Shutdown)),
        }
    }
}
