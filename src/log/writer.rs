//! The writer task: group commit onto the active segment.
//!
//! Appenders encode their record themselves (in parallel, on their own
//! tasks) and queue the frame on a bounded channel; a full queue makes
//! `append` wait, which is the back-pressure. One task owns the active
//! segment. It takes the first queued command, then drains whatever else
//! is already queued (up to `max_batch_bytes`) into one buffer, makes ONE
//! `write` (inline: into the page cache it takes microseconds) or, when an
//! fsync is due, hands write and `fdatasync` to a blocking thread, and only
//! then answers every waiter of the batch. While a
//! batch is being written the next one piles up in the queue, so the
//! batch size adapts to the load by itself and an fsync is shared by all
//! the writes that arrived together.
//!
//! Sync policy: `Always` syncs every batch before answering; `Interval(d)`
//! starts an fsync on the blocking pool once `d` has passed since the last
//! one began (after a write, or from a timer when the log goes quiet) and
//! does NOT hold anyone's answer for it: the batches written meanwhile are
//! answered as soon as their `write` returns, exactly like Redis's
//! `appendfsync everysec`. Holding them cost every write that met an fsync
//! its whole duration (10 to 25 ms under load on a virtual disk), which
//! was the p99 of the whole cluster. A process crash still loses nothing
//! acknowledged, since the bytes are in the page cache; a machine crash
//! loses what the last fsync had not covered, about `d`. `Never` leaves it
//! to the OS. Rotating to a new segment, sealing for compaction and
//! shutdown wait for any fsync under way and sync, in every mode.
//!
//! Control commands (seal, sync, shutdown) travel on the same queue, so
//! they are ordered with the appends: everything queued before a seal is
//! in the sealed segments.
//!
//! After any I/O error the writer stops trusting the file (a failed fsync
//! cannot be retried safely, and a failed write may have left a partial
//! frame) and fails every later command with `Error::Io`; reopening the log
//! truncates whatever partial frame was left. Deliberately left out:
//! retrying, preallocating segment space, and O_DIRECT.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

use super::files::{create_segment, EMPTY_SEGMENT_LEN};
use super::stats::Counters;
use super::FsyncPolicy;
use crate::error::{Error, Result};

/// Who learns that an append is done.
pub(super) enum Done {
    /// A task awaiting `append`.
    Waiter(oneshot::Sender<Result<()>>),
    /// A callback run on the writer task (`append_then`): cheaper than a
    /// task per write for replicas that only need to send an ack.
    Then(Box<dyn FnOnce(Result<()>) + Send>),
}

impl Done {
    pub(super) fn finish(self, value: Result<()>) {
        match self {
            Done::Waiter(tx) => reply(tx, value),
            Done::Then(f) => f(value),
        }
    }
}

/// What the handles ask of the writer.
pub(super) enum Cmd {
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
pub(super) struct Sealed {
    /// The new active segment; every earlier segment is sealed.
    pub seq: u64,
    /// Records in segments since the last compaction, as of the seal.
    pub since_records: u64,
    /// Their bytes.
    pub since_bytes: u64,
}

/// An I/O failure in a form that can be handed to many waiters.
#[derive(Debug, Clone)]
struct Failure(io::ErrorKind, String);

impl Failure {
    fn to_error(&self) -> Error {
        Error::Io(io::Error::new(self.0, self.1.clone()))
    }
}

/// Settings the writer needs.
pub(super) struct WriterConfig {
    pub dir: PathBuf,
    pub policy: FsyncPolicy,
    pub segment_bytes: u64,
    pub max_batch_bytes: usize,
    /// Run on the blocking thread before each fsync: tests hold an fsync
    /// there to see that appends are not held with it.
    #[cfg(test)]
    pub before_sync: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// An `Interval` fsync running on the blocking pool while appends go on.
struct Syncing {
    /// When it began: everything written before this is covered by it.
    started: Instant,
    task: JoinHandle<io::Result<()>>,
}

/// The task state.
pub(super) struct Writer {
    cfg: WriterConfig,
    /// The active segment; `None` only after a failure. Shared with the
    /// blocking thread of an fsync under way.
    file: Option<Arc<File>>,
    seq: u64,
    seg_len: u64,
    /// Written since the last fsync began.
    dirty: bool,
    syncing: Option<Syncing>,
    last_sync: Instant,
    failed: Option<Failure>,
    counters: Arc<Counters>,
    /// The batch buffer and its waiters, kept between batches so a batch
    /// allocates nothing.
    scratch: BytesMut,
    waiters: Vec<Done>,
}

/// Answer a waiter; one that stopped waiting (its future was dropped) is
/// no error of ours, so it is only traced.
fn reply<T>(done: oneshot::Sender<T>, value: T) {
    if done.send(value).is_err() {
        tracing::trace!("log waiter went away before its answer");
    }
}

impl Writer {
    /// A writer appending to `file`, the freshly created segment `seq`.
    pub fn new(cfg: WriterConfig, file: File, seq: u64, counters: Arc<Counters>) -> Self {
        Writer {
            cfg,
            file: Some(Arc::new(file)),
            seq,
            seg_len: EMPTY_SEGMENT_LEN,
            dirty: false,
            syncing: None,
            last_sync: Instant::now(),
            failed: None,
            scratch: BytesMut::new(),
            waiters: Vec::new(),
            counters,
        }
    }

    /// Serve commands until shutdown or until every handle is dropped.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        loop {
            let deadline = self.sync_deadline();
            let cmd = tokio::select! {
                cmd = rx.recv() => cmd,
                (started, result) = sync_done(&mut self.syncing) => {
                    self.synced_in_background(started, result);
                    continue;
                }
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.start_sync();
                    continue;
                }
            };
            let Some(mut cmd) = cmd else {
                if let Err(e) = self.sync().await {
                    tracing::error!(error = %e, "final fsync of the commit log failed");
                }
                return;
            };
            loop {
                let next = match cmd {
                    Cmd::Append {
                        frame,
                        records,
                        done,
                    } => self.batch(frame, records, done, &mut rx).await,
                    Cmd::Seal { done } => {
                        reply(done, self.seal().await);
                        None
                    }
                    Cmd::Sync { done } => {
                        reply(done, self.sync().await);
                        None
                    }
                    Cmd::Shutdown { done } => {
                        reply(done, self.sync().await);
                        refuse_rest(&mut rx);
                        return;
                    }
                };
                match next {
                    Some(c) => cmd = c,
                    None => break,
                }
            }
        }
    }

    /// When the interval timer should start syncing dirty data, if it
    /// should (not while an fsync is under way: its end re-arms it).
    fn sync_deadline(&self) -> Option<Instant> {
        match self.cfg.policy {
            FsyncPolicy::Interval(d)
                if self.dirty && self.failed.is_none() && self.syncing.is_none() =>
            {
                Some(self.last_sync + d)
            }
            _ => None,
        }
    }

    /// Start an fsync of everything written so far on the blocking pool,
    /// unless one is under way or there is nothing to sync.
    fn start_sync(&mut self) {
        if self.syncing.is_some() || !self.dirty || self.failed.is_some() {
            return;
        }
        let Some(file) = self.file.clone() else {
            return;
        };
        let counters = self.counters.clone();
        #[cfg(test)]
        let hook = self.cfg.before_sync.clone();
        let task = tokio::task::spawn_blocking(move || {
            #[cfg(test)]
            if let Some(hook) = hook {
                hook();
            }
            let started = Instant::now();
            file.sync_data()?;
            counters.fsync_latency.observe(started.elapsed());
            Ok(())
        });
        self.dirty = false;
        self.syncing = Some(Syncing {
            started: Instant::now(),
            task,
        });
    }

    /// Book the end of a background fsync: a failure poisons the writer
    /// like any other I/O failure (see the module doc).
    fn synced_in_background(
        &mut self,
        started: Instant,
        result: Result<io::Result<()>, JoinError>,
    ) {
        match result {
            Ok(Ok(())) => {
                self.last_sync = started;
                self.counters.fsyncs.fetch_add(1, Relaxed);
            }
            Ok(Err(e)) => {
                self.fail(e.kind(), e.to_string());
            }
            Err(e) => {
                self.fail(io::ErrorKind::Other, format!("log fsync task failed: {e}"));
            }
        }
    }

    /// Wait for the background fsync under way, if any.
    async fn settle(&mut self) {
        if let Some(s) = self.syncing.take() {
            let result = s.task.await;
            self.synced_in_background(s.started, result);
        }
    }

    /// Collect queued appends behind the first, write them, answer them.
    /// Returns a control command met while draining, to run next.
    async fn batch(
        &mut self,
        frame: Bytes,
        records: u64,
        done: Done,
        rx: &mut mpsc::Receiver<Cmd>,
    ) -> Option<Cmd> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.reserve(frame.len().max(64 << 10));
        buf.extend_from_slice(&frame);
        let mut count = records;
        let mut waiters = std::mem::take(&mut self.waiters);
        waiters.push(done);
        let mut leftover = None;
        while buf.len() < self.cfg.max_batch_bytes {
            match rx.try_recv() {
                Ok(Cmd::Append {
                    frame,
                    records,
                    done,
                }) => {
                    buf.extend_from_slice(&frame);
                    count += records;
                    waiters.push(done);
                }
                Ok(other) => {
                    leftover = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let result = self.write(&mut buf, count).await;
        for w in waiters.drain(..) {
            w.finish(result.clone().map_err(|f| f.to_error()));
        }
        buf.clear();
        self.scratch = buf;
        self.waiters = waiters;
        if result.is_ok() && self.seg_len >= self.cfg.segment_bytes {
            if let Err(e) = self.rotate().await {
                tracing::error!(error = %e, "could not start a new commit log segment");
            }
        }
        leftover
    }

    /// One write of a whole batch: with its fsync under `Always`; under
    /// `Interval`, followed by the start of a background fsync when one is
    /// due.
    async fn write(&mut self, buf: &mut BytesMut, records: u64) -> Result<(), Failure> {
        let sync = self.cfg.policy == FsyncPolicy::Always;
        let len = buf.len() as u64;
        if sync {
            // The blocking pool needs the bytes for as long as it runs.
            let buf = buf.split().freeze();
            let counters = self.counters.clone();
            self.with_file(move |f| {
                f.write_all(&buf)?;
                let started = Instant::now();
                f.sync_data()?;
                counters.fsync_latency.observe(started.elapsed());
                Ok(())
            })
            .await?;
        } else {
            // A write into the page cache takes microseconds: done right
            // here, it saves a hand-off to the blocking pool per batch.
            self.write_inline(buf)?;
        }
        self.seg_len += len;
        self.counters.wrote(records, len);
        if sync {
            self.synced();
        } else {
            self.dirty = true;
            if let FsyncPolicy::Interval(d) = self.cfg.policy {
                if self.last_sync.elapsed() >= d {
                    self.start_sync();
                }
            }
        }
        Ok(())
    }

    /// fsync the active segment if it has unsynced data, after any fsync
    /// under way.
    async fn sync(&mut self) -> Result<()> {
        self.settle().await;
        if let Some(f) = &self.failed {
            return Err(f.to_error());
        }
        if self.dirty {
            let counters = self.counters.clone();
            self.with_file(move |f| {
                let started = Instant::now();
                f.sync_data()?;
                counters.fsync_latency.observe(started.elapsed());
                Ok(())
            })
            .await
            .map_err(|f| f.to_error())?;
            self.synced();
        }
        Ok(())
    }

    fn synced(&mut self) {
        self.dirty = false;
        self.last_sync = Instant::now();
        self.counters.fsyncs.fetch_add(1, Relaxed);
    }

    /// Sync the active segment and start the next one.
    async fn rotate(&mut self) -> Result<()> {
        self.sync().await?;
        let dir = self.cfg.dir.clone();
        let next = self.seq + 1;
        let file = match tokio::task::spawn_blocking(move || create_segment(&dir, next)).await {
            Ok(r) => r?,
            Err(e) => {
                return Err(Error::Io(io::Error::other(format!(
                    "segment creation task failed: {e}"
                ))))
            }
        };
        self.file = Some(Arc::new(file));
        self.seq = next;
        self.seg_len = EMPTY_SEGMENT_LEN;
        self.counters.segments.fetch_add(1, Relaxed);
        self.counters
            .total_bytes
            .fetch_add(EMPTY_SEGMENT_LEN, Relaxed);
        self.counters.active_segment.store(next, Relaxed);
        Ok(())
    }

    /// Seal the active segment for compaction.
    async fn seal(&mut self) -> Result<Sealed> {
        let since_records = self.counters.since_records.load(Relaxed);
        let since_bytes = self.counters.since_bytes.load(Relaxed);
        self.rotate().await?;
        Ok(Sealed {
            seq: self.seq,
            since_records,
            since_bytes,
        })
    }

    /// Write `buf` to the active segment right here. Any failure poisons
    /// the writer (see the module doc).
    fn write_inline(&mut self, buf: &[u8]) -> Result<(), Failure> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        let Some(file) = self.file.as_deref() else {
            return Err(self.fail(io::ErrorKind::Other, "no active segment".into()));
        };
        match (&mut &*file).write_all(buf) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e.kind(), e.to_string())),
        }
    }

    /// Run `op` on the active segment on a blocking thread. Any failure
    /// poisons the writer (see the module doc).
    async fn with_file<Op>(&mut self, op: Op) -> Result<(), Failure>
    where
        Op: FnOnce(&mut &File) -> io::Result<()> + Send + 'static,
    {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        let Some(file) = self.file.clone() else {
            return Err(self.fail(io::ErrorKind::Other, "no active segment".into()));
        };
        let joined = tokio::task::spawn_blocking(move || op(&mut &*file)).await;
        match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.fail(e.kind(), e.to_string())),
            Err(e) => Err(self.fail(io::ErrorKind::Other, format!("log I/O task failed: {e}"))),
        }
    }

    fn fail(&mut self, kind: io::ErrorKind, msg: String) -> Failure {
        tracing::error!(error = %msg, "commit log I/O failed; refusing further appends until restart");
        let f = Failure(kind, format!("commit log failed earlier: {msg}"));
        self.failed = Some(f.clone());
        self.counters.failed.store(true, Relaxed);
        f
    }
}

/// The end of the background fsync under way; never, if there is none.
async fn sync_done(syncing: &mut Option<Syncing>) -> (Instant, Result<io::Result<()>, JoinError>) {
    match syncing {
        Some(s) => {
            let result = (&mut s.task).await;
            let started = s.started;
            *syncing = None;
            (started, result)
        }
        None => std::future::pending().await,
    }
}

/// Fail everything queued behind a shutdown.
fn refuse_rest(rx: &mut mpsc::Receiver<Cmd>) {
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        match cmd {
            Cmd::Append { done, .. } => done.finish(Err(Error::Shutdown)),
            Cmd::Sync { done } | Cmd::Shutdown { done } => reply(done, Err(Error::Shutdown)),
            Cmd::Seal { done } => reply(done, Err(Error::Shutdown)),
        }
    }
}
