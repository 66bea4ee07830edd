//! The commit log: every write a node accepts is appended here before it is
//! acknowledged, so a crashed node can rebuild its store from its data dir.
//!
//! **Why our own log.** The job is narrow (append checksummed records,
//! replay them, rewrite them to the live set) and the durability rules are
//! the point of the issue, so the whole thing is kept small enough to read
//! and test to the byte: `record.rs` is the format, `writer.rs` the group
//! commit, `recover.rs` the replay and repair, `compact.rs` the snapshot,
//! `files.rs` the names, `stats.rs` the counters.
//!
//! **The scheme.** A data dir holds numbered segments `log-000001.seg`,
//! `log-000002.seg`, ... and at most one snapshot `snap-N.snap` standing for
//! every segment numbered below N. Each file starts with a header (magic,
//! format version, kind, sequence number) followed by frames of
//! `len | crc32 | payload`. Writes go only to the highest segment, the
//! active one; a segment is sealed when it passes `segment_bytes`, when the
//! log is reopened (recovery always starts a fresh segment) and when a
//! compaction begins, and sealed files are never written again. That is
//! what lets compaction work on sealed segments while appends continue.
//!
//! **Durability.** [`CommitLog::append`] resolves once the record's bytes
//! were handed to the OS by a `write` that returned, so a process crash
//! (kill -9) loses nothing acknowledged in any mode. [`FsyncPolicy`] adds
//! what survives a machine crash: `Always` fsyncs before answering (shared
//! by the whole batch), `Interval(d)` bounds the loss to about `d`,
//! `Never` leaves it to the OS.
//!
//! **Replay.** [`CommitLog::open`] replays the snapshot and then the
//! segments, oldest first, into a callback, cuts a torn tail, skips and
//! reports corruption, and never panics. The callback must merge records
//! last-writer-wins on `(ts, node)`: a record may be replayed twice (once
//! from the snapshot, once from a newer segment) or out of order after
//! a compaction, which is harmless only under that merge.
//!
//! Deliberately left out: reading the log while the node runs (it is
//! write-only until the next start), replication or shipping of segments,
//! encryption, compression, and a directory lock against two processes.

mod background;
mod compact;
mod fence;
mod files;
mod record;
mod recover;
mod staging;
mod stats;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod writer_tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Mutex};

pub use compact::{Compacted, SnapshotWriter};
pub use fence::{DiskErrno, DiskOp};
pub use files::snapshot_path;
pub use record::{
    kind_of, Parts, Record, RecordBody, FORMAT_VERSION, MAX_PAYLOAD, MIN_FORMAT_VERSION,
};
pub use recover::{Damage, Recovered};
pub use stats::LogStats;

use crate::error::{Error, Result};
use stats::Counters;

/// The header of a snapshot file numbered `seq`: what a compaction's
/// [`SnapshotWriter`] starts with. A backup streams the same file, so
/// restoring one is placing it in a data dir's `log/`.
pub fn snapshot_header(seq: u64) -> [u8; record::FILE_HEADER_LEN] {
    record::file_header(record::FileKind::Snapshot, seq)
}

/// Appends `rec` to `out` as one frame of a segment or snapshot file.
pub fn encode_frame(rec: &Record, out: &mut bytes::BytesMut) -> Result<()> {
    rec.parts().check().map_err(Error::InvalidInput)?;
    record::encode_into(rec, out);
    Ok(())
}
use writer::{Cmd, Done, Writer, WriterConfig};

/// When the log fsyncs what it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before acknowledging: an acknowledged write survives a machine crash.
    Always,
    /// At most this long after a write: a machine crash loses at most about
    /// this much; a process crash loses nothing.
    Interval(Duration),
    /// Never by policy (only at rotation, compaction and shutdown): a
    /// process crash loses nothing, a machine crash what the OS had not
    /// written out.
    Never,
}

impl Default for FsyncPolicy {
    /// `Interval(1000 ms)`.
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_millis(1000))
    }
}

/// Settings of a [`CommitLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// When to fsync.
    pub fsync: FsyncPolicy,
    /// Seal the active segment once it holds this many bytes.
    pub segment_bytes: u64,
    /// Appends that may wait in the queue before `append` itself waits.
    pub queue_capacity: usize,
    /// Most bytes written by one write system call.
    pub max_batch_bytes: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            fsync: FsyncPolicy::default(),
            segment_bytes: 64 << 20,
            queue_capacity: 8192,
            max_batch_bytes: 4 << 20,
        }
    }
}

impl LogOptions {
    /// Small segments and `Never`, for fast tests.
    pub fn for_test() -> Self {
        LogOptions {
            fsync: FsyncPolicy::Never,
            segment_bytes: 64 << 10,
            queue_capacity: 1024,
            max_batch_bytes: 256 << 10,
        }
    }

    /// Refuse settings the log cannot work with.
    pub fn validate(&self) -> Result<()> {
        if let FsyncPolicy::Interval(d) = self.fsync {
            if d.is_zero() {
                return Err(Error::config(
                    "log.fsync_interval_ms",
                    "must be above 0 (use `always`)",
                ));
            }
        }
        if self.segment_bytes < 4096 {
            return Err(Error::config("log.segment_bytes", "must be at least 4096"));
        }
        if self.queue_capacity == 0 {
            return Err(Error::config("log.queue_capacity", "must be at least 1"));
        }
        if self.max_batch_bytes < 4096 {
            return Err(Error::config(
                "log.max_batch_bytes",
                "must be at least 4096",
            ));
        }
        Ok(())
    }
}

/// An append under way ([`CommitLog::begin_append`]): resolves once its
/// record reached the OS (and the disk, under [`FsyncPolicy::Always`]).
pub struct Appending(Append);

enum Append {
    /// Staged for the writer's next batch (the usual case).
    Staged(staging::Answer),
    /// Queued on the writer's channel, the staged buffer being full.
    Queued(std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>),
}

impl Appending {
    /// The append's answer if it has come, without waiting: a staged
    /// append's is looked at, and no waker is left for it; one queued
    /// behind a full buffer is polled with a waker that does nothing (it is
    /// polled again, or awaited, later).
    pub fn peek(&mut self) -> Option<Result<()>> {
        match &mut self.0 {
            Append::Staged(answer) => answer.peek(),
            Append::Queued(fut) => {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match fut.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(result) => Some(result),
                    std::task::Poll::Pending => None,
                }
            }
        }
    }

    /// Calls `then` with the append's answer instead of being awaited (for
    /// a caller that is not a task: see `coordinator/owner.rs`). A staged
    /// append leaves it with its batch, so it runs on the writer's task
    /// (or here, if the batch is already written); one queued behind a
    /// full buffer is awaited by a small task. `then` must be quick and
    /// must not block.
    pub fn then(self, then: Box<dyn FnOnce(Result<()>) + Send>) {
        match self.0 {
            Append::Staged(answer) => answer.then(then),
            Append::Queued(wait) => {
                tokio::spawn(async move { then(wait.await) });
            }
        }
    }
}

impl std::future::Future for Appending {
    type Output = Result<()>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<()>> {
        match &mut self.get_mut().0 {
            Append::Staged(answer) => std::pin::Pin::new(answer).poll(cx),
            Append::Queued(fut) => fut.as_mut().poll(cx),
        }
    }
}

/// A handle to a node's commit log; clone it freely, every clone appends
/// to the same log.
#[derive(Clone)]
pub struct CommitLog {
    tx: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    counters: Arc<Counters>,
    compaction: Mutex<()>,
    /// Where [`CommitLog::append`] encodes its record for the writer's
    /// next batch (see `staging.rs`), up to `stage_limit` bytes.
    staging: Arc<staging::Staging>,
    stage_limit: usize,
}

impl CommitLog {
    /// Open the log in `dir` (created if missing): replay it into
    /// `on_record`, repair its tail, start a fresh segment and the writer
    /// task. Must be called inside a Tokio runtime. Recovery runs on the
    /// calling thread with blocking file I/O; call it at startup, or from
    /// `spawn_blocking` / `block_in_place` if the runtime is already busy.
    pub fn open<F: FnMut(Record)>(
        dir: impl AsRef<Path>,
        options: LogOptions,
        mut on_record: F,
    ) -> Result<(CommitLog, Recovered)> {
        options.validate()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::invalid(format!("CommitLog::open needs a Tokio runtime: {e}")))?;
        let dir = dir.as_ref().to_path_buf();
        let out = recover::recover(&dir, &mut on_record)?;
        // A full disk must not stop the node: without a new segment, the
        // writer starts with its fence up and creates it once it can.
        let file = files::create_segment(&dir, out.next_seq).map_err(|e| e.to_string());
        let counters = Arc::new(Counters::default());
        counters
            .total_bytes
            .store(out.total_bytes + files::EMPTY_SEGMENT_LEN, Relaxed);
        counters.segments.store(out.segments + 1, Relaxed);
        counters.snapshot_bytes.store(out.snapshot_bytes, Relaxed);
        counters.since_records.store(out.segment_records, Relaxed);
        counters
            .since_bytes
            .store(out.total_bytes - out.snapshot_bytes, Relaxed);
        counters.active_segment.store(out.next_seq, Relaxed);
        let cfg = WriterConfig {
            dir: dir.clone(),
            policy: options.fsync,
            segment_bytes: options.segment_bytes,
            max_batch_bytes: options.max_batch_bytes,
            #[cfg(test)]
            before_sync: None,
        };
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let writer = Writer::new(cfg, file, out.next_seq, counters.clone());
        let staging = writer.staging();
        runtime.spawn(crate::clock::inherit(writer.run(rx)));
        let r = &out.report;
        tracing::info!(
            dir = %dir.display(), records = r.records, files = r.files, bytes = r.bytes_read,
            corruptions = r.corruptions.len(), torn_tail = r.torn_tail.is_some(),
            elapsed_ms = r.elapsed.as_millis() as u64, "commit log recovered"
        );
        let shared = Arc::new(Shared {
            dir,
            counters,
            compaction: Mutex::new(()),
            staging,
            stage_limit: options.max_batch_bytes,
        });
        Ok((CommitLog { tx, shared }, out.report))
    }

    /// Append one record. Resolves once its bytes reached the OS (and the
    /// disk, under [`FsyncPolicy::Always`]); many concurrent appends share
    /// one write and one fsync. Waits while the queue is full.
    ///
    /// Errors: `InvalidInput` for a record over [`MAX_PAYLOAD`] (nothing
    /// written), `Shutdown` after [`shutdown`](Self::shutdown), `Io` if the
    /// log failed (the record may or may not be on disk).
    pub async fn append(&self, rec: Record) -> Result<()> {
        self.begin_append(&rec)?.await
    }

    /// [`CommitLog::append`] in two steps: the record is checked and
    /// staged (or queued) now, and the returned future resolves as
    /// `append` would. For a caller whose own future must stay small: the
    /// record is not held while waiting.
    pub fn begin_append(&self, rec: &Record) -> Result<Appending> {
        self.begin_append_parts(rec.parts())
    }

    /// [`CommitLog::begin_append`] of a record's borrowed `parts`: no
    /// [`Record`], so no copy of the key or body is made to build one.
    pub fn begin_append_parts(&self, parts: record::Parts<'_>) -> Result<Appending> {
        parts.check().map_err(Error::InvalidInput)?;
        let stage = self.shared.staging.stage(parts, self.shared.stage_limit)?;
        if let staging::Stage::Queued(wait) = stage {
            return Ok(Appending(Append::Staged(wait)));
        }
        // The staged buffer is full: the queue, and its back-pressure.
        let frame = record::encode_parts(parts);
        let tx = self.tx.clone();
        Ok(Appending(Append::Queued(Box::pin(async move {
            let (done, wait) = oneshot::channel();
            let cmd = Cmd::Append {
                frame,
                records: 1,
                done: Done::Waiter(done),
            };
            tx.send(cmd).await.map_err(|_| Error::Shutdown)?;
            wait.await.map_err(|_| Error::Shutdown)?
        }))))
    }

    /// Appends `records` records already encoded into `frames` (with
    /// [`Parts::encode_into`]) as one unit, and calls `then` with the
    /// outcome once they reached the OS (and the disk, under
    /// [`FsyncPolicy::Always`]), on the writer task: for callers that only
    /// need to send an acknowledgement (a replica's), without a task or a
    /// channel per write. `then` must be quick and must not block. Never
    /// waits: when the queue is full, the send is finished by a small task
    /// (back-pressure is then the queue's bound on those tasks' progress).
    pub fn append_frames_then(
        &self,
        frames: bytes::Bytes,
        records: u64,
        then: Box<dyn FnOnce(Result<()>) + Send>,
    ) {
        let cmd = Cmd::Append {
            frame: frames,
            records,
            done: Done::Then(then),
        };
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    if let Err(mpsc::error::SendError(Cmd::Append { done, .. })) =
                        tx.send(cmd).await
                    {
                        done.finish(Err(Error::Shutdown));
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(Cmd::Append { done, .. })) => {
                done.finish(Err(Error::Shutdown))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Why the log takes no writes, if it does not (see `fence.rs`): a
    /// write or fsync failed. Cheap while writes are taken.
    pub fn fenced(&self) -> Option<String> {
        self.shared.counters.fence.reason()
    }

    /// Whether the fence stays up until a restart (an fsync failed).
    pub fn fenced_until_restart(&self) -> bool {
        self.shared.counters.fence.until_restart()
    }

    /// Fails the next `count` disk operations `op` with `errno` (fault
    /// injection).
    pub fn inject_disk_fault(&self, op: DiskOp, count: u64, errno: DiskErrno) {
        self.shared.counters.disk_faults.inject(op, count, errno);
    }

    /// Clears injected disk faults.
    pub fn clear_disk_faults(&self) {
        self.shared.counters.disk_faults.clear();
    }

    /// fsync whatever was written, whatever the policy.
    pub async fn sync(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Cmd::Sync { done }).await?;
        wait.await.map_err(|_| Error::Shutdown)?
    }

    /// Write and fsync everything queued before this call, then stop the
    /// writer; later appends fail with `Error::Shutdown`. Calling it again
    /// is harmless.
    pub async fn shutdown(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Cmd::Shutdown { done }).await.is_err() {
            return Ok(());
        }
        match wait.await {
            Ok(r) => r,
            Err(_) => Ok(()),
        }
    }

    /// The counters, for metrics and for deciding when to compact.
    pub fn stats(&self) -> LogStats {
        self.shared.counters.snapshot()
    }

    /// How long each fsync of a segment took (for `/metrics`).
    pub fn fsync_latency(&self) -> &crate::metrics::Histogram {
        &self.shared.counters.fsync_latency
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    async fn send(&self, cmd: Cmd) -> Result<()> {
        self.tx.send(cmd).await.map_err(|_| Error::Shutdown)
    }
}
