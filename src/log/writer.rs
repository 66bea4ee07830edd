//! The writer task: group commit onto the active segment.
//!
//! Appenders encode their record themselves (on their own tasks), into
//! the staged buffer (`staging.rs`) or, when that is full, as a frame on a
//! bounded channel; a full queue makes `append` wait, which is the
//! back-pressure. One task owns the active segment. Woken by either, it
//! takes the first queued command, then drains whatever else is already
//! queued (up to `max_batch_bytes`) and what is staged into one buffer, makes ONE
//! `write` (inline: into the page cache it takes microseconds; under
//! `Always`, write and `fdatasync` on a blocking thread), and only then
//! answers every waiter of the batch. While a batch is being written the
//! next one piles up in the queue, so the batch size adapts to the load by
//! itself and an fsync is shared by all the writes that arrived together.
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
//! to the OS. Rotation does not stall appends either: the next segment is
//! created in the background while appends go on to the current one, and
//! the retired segment gets its final fsync in the background (see
//! `background.rs`). Sealing for compaction waits for the new segment;
//! `Sync` and shutdown wait for all background work, then sync.
//!
//! Most appends skip the queue: they are encoded straight into a shared
//! buffer (`staging.rs`), which the writer takes whole into its batch.
//! Control commands (seal, sync, shutdown) travel on the queue, so they
//! are ordered with the appends queued, and the writer takes what is
//! staged before running each of them: everything appended before a seal
//! is in the sealed segments.
//!
//! After an I/O error the writer raises the fence (`fence.rs`) and fails
//! every append at once with `Error::Misconf`, naming the cause. A failed
//! write is recovered from by the writer itself: every
//! [`RECOVER_EVERY`] it truncates the segment back to the end of the last
//! good frame (a failed write may have left part of one), writes a probe
//! of [`PROBE_BYTES`] there and truncates it again; once that works it
//! lowers the fence and appends after the last good frame. A failed
//! fsync is not recovered from (see `fence.rs`): the fence stays up until
//! a restart. (A failed segment creation is not such an error: the
//! writer stays on the current segment and tries again a second later.)
//! Deliberately left out: preallocating segment space, and O_DIRECT.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::Instant;

mod cmd;
mod recovery;

use cmd::{refuse_rest, reply};
pub(super) use cmd::{Cmd, Done, Sealed};

use recovery::FileError;

use super::background::{Background, Event};
use super::files::EMPTY_SEGMENT_LEN;
use super::staging::Staging;
use super::stats::Counters;
use super::FsyncPolicy;
use crate::error::{Error, Result};

/// An I/O failure in a form that can be handed to many waiters: what
/// failed, and whether only a restart clears it (an fsync failed).
#[derive(Debug, Clone)]
struct Failure {
    reason: String,
    until_restart: bool,
}

impl Failure {
    /// For writes refused by the fence: nothing of them was applied.
    fn to_error(&self) -> Error {
        Error::Misconf(self.reason.clone())
    }

    /// For the writes of the batch that met the failure, which reached
    /// the store but not the log.
    fn to_error_in_memory(&self) -> Error {
        Error::Misconf(format!(
            "{}; this write reached memory but not the log, so it may still take effect",
            self.reason
        ))
    }
}

/// How often a writer whose write failed tries to recover.
pub(super) const RECOVER_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The probe a recovery writes (and takes back): room for a batch.
const PROBE_BYTES: usize = 64 << 10;

/// Settings the writer needs.
pub(super) struct WriterConfig {
    pub dir: PathBuf,
    pub policy: FsyncPolicy,
    pub segment_bytes: u64,
    pub max_batch_bytes: usize,
    /// Run on the blocking thread before each fsync: tests hold an fsync
    /// there to see that appends are not held with it.
    #[cfg(test)]
    pub before_sync: super::background::Hook,
}

/// The task state.
pub(super) struct Writer {
    cfg: WriterConfig,
    /// The active segment; `None` only when it could not be created at
    /// start (a full disk). Shared with the blocking thread of an fsync
    /// under way.
    file: Option<Arc<File>>,
    seq: u64,
    seg_len: u64,
    /// Written since the last fsync began.
    dirty: bool,
    bg: Background,
    /// After a failed segment creation, when to try again (not after
    /// every batch: a full disk would otherwise log an error per batch).
    create_after: Option<Instant>,
    last_sync: Instant,
    failed: Option<Failure>,
    /// When a writer whose write failed next tries to recover.
    recover_at: Option<Instant>,
    counters: Arc<Counters>,
    /// The batch buffer and its waiters, kept between batches so a batch
    /// allocates nothing.
    scratch: BytesMut,
    waiters: Vec<Done>,
    /// Appends encoded into the next batch without the queue.
    staging: Arc<Staging>,
}

impl Drop for Writer {
    /// However the task ends (shutdown, every handle gone, an abort),
    /// appends staged for it are answered and later ones refused.
    fn drop(&mut self) {
        self.staging.close();
    }
}

/// How long after a failed segment creation the next attempt waits.
const CREATE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl Writer {
    /// A writer appending to `file`, the freshly created segment `seq`;
    /// without one (it could not be created), a writer that refuses
    /// appends until it has created it.
    pub fn new(
        cfg: WriterConfig,
        file: std::result::Result<File, String>,
        seq: u64,
        counters: Arc<Counters>,
    ) -> Self {
        #[cfg(test)]
        let bg = Background::with_hook(cfg.before_sync.clone());
        #[cfg(not(test))]
        let bg = Background::default();
        let (file, failed) = match file {
            Ok(f) => (Some(Arc::new(f)), None),
            Err(e) => (None, Some(e)),
        };
        let mut writer = Writer {
            cfg,
            file,
            seq,
            seg_len: EMPTY_SEGMENT_LEN,
            dirty: false,
            bg,
            create_after: None,
            last_sync: Instant::now(),
            failed: None,
            recover_at: None,
            scratch: BytesMut::new(),
            waiters: Vec::new(),
            staging: Arc::default(),
            counters,
        };
        if let Some(e) = failed {
            writer.fail(format!("cannot create segment {seq}: {e}"), false);
        }
        writer
    }

    /// Where appends stage their records for this writer.
    pub fn staging(&self) -> Arc<Staging> {
        self.staging.clone()
    }

    /// Serve commands until shutdown or until every handle is dropped.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let staging = self.staging.clone();
        loop {
            let deadline = self.sync_deadline();
            let cmd = tokio::select! {
                cmd = rx.recv() => cmd,
                () = staging.wake.notified() => {
                    if let Some(cmd) = self.batch(None, &mut rx, true).await {
                        if self.control(cmd, &mut rx).await.is_break() {
                            return;
                        }
                    }
                    continue;
                }
                event = self.bg.next() => {
                    self.book(event);
                    continue;
                }
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.start_sync();
                    continue;
                }
                () = tokio::time::sleep_until(self.recover_at.unwrap_or_else(Instant::now)), if self.recover_at.is_some() => {
                    self.recover();
                    continue;
                }
            };
            let Some(cmd) = cmd else {
                self.batch(None, &mut rx, false).await;
                if let Err(e) = self.sync().await {
                    tracing::error!(error = %e, "final fsync of the commit log failed");
                }
                return;
            };
            if self.control(cmd, &mut rx).await.is_break() {
                return;
            }
        }
    }

    /// Runs `cmd` and the control commands a batch meets after it;
    /// `Break` after a shutdown.
    async fn control(
        &mut self,
        mut cmd: Cmd,
        rx: &mut mpsc::Receiver<Cmd>,
    ) -> std::ops::ControlFlow<()> {
        loop {
            if !matches!(cmd, Cmd::Append { .. }) {
                // What was staged before this command was sent goes first.
                self.batch(None, rx, false).await;
            }
            let next = match cmd {
                Cmd::Append {
                    frame,
                    records,
                    done,
                } => self.batch(Some((frame, records, done)), rx, true).await,
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
                    self.staging.close();
                    refuse_rest(rx);
                    return std::ops::ControlFlow::Break(());
                }
            };
            match next {
                Some(c) => cmd = c,
                None => return std::ops::ControlFlow::Continue(()),
            }
        }
    }

    /// When the interval timer should start syncing dirty data, if it
    /// should (not while an fsync is under way: its end re-arms it).
    fn sync_deadline(&self) -> Option<Instant> {
        match self.cfg.policy {
            FsyncPolicy::Interval(d)
                if self.dirty && self.failed.is_none() && !self.bg.syncing() =>
            {
                Some(self.last_sync + d)
            }
            _ => None,
        }
    }

    /// Start an fsync of everything written so far on the blocking pool,
    /// unless one is under way or there is nothing to sync.
    fn start_sync(&mut self) {
        if self.bg.syncing() || !self.dirty || self.failed.is_some() {
            return;
        }
        if let Some(file) = self.file.clone() {
            self.bg.start_sync(file, &self.counters);
            self.dirty = false;
        }
    }

    /// Book the end of some background work. A failed fsync poisons the
    /// writer like any other I/O failure (see the module doc); a segment
    /// that could not be created is returned as the error, and the writer
    /// goes on with the current one (and tries again a second later).
    fn finished(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Synced(started, Ok(())) => {
                self.last_sync = started;
                self.counters.fsyncs.fetch_add(1, Relaxed);
            }
            Event::Retired(Ok(())) => {
                self.counters.fsyncs.fetch_add(1, Relaxed);
            }
            Event::Synced(_, Err(e)) | Event::Retired(Err(e)) => {
                self.fail(format!("fsync failed: {e}"), true);
            }
            Event::Created(Ok(file)) => {
                self.create_after = None;
                self.switch_to(file);
            }
            Event::Created(Err(e)) => {
                self.create_after = Some(Instant::now() + CREATE_RETRY);
                return Err(e);
            }
        }
        Ok(())
    }

    /// [`Self::finished`], with a segment that could not be created
    /// logged (the writer goes on with the current one).
    fn book(&mut self, event: Event) {
        if let Err(e) = self.finished(event) {
            tracing::error!(error = %e, "could not start a new commit log segment");
        }
        self.maybe_start_create();
    }

    /// Wait for all background work.
    async fn settle(&mut self) {
        while !self.bg.idle() {
            let event = self.bg.next().await;
            self.book(event);
        }
    }

    /// Collect `first` and, when `queued`, the appends queued behind it,
    /// and what is staged; write them, answer them. Returns a control
    /// command met while draining the queue, to run next.
    async fn batch(
        &mut self,
        first: Option<(Bytes, u64, Done)>,
        rx: &mut mpsc::Receiver<Cmd>,
        queued: bool,
    ) -> Option<Cmd> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.reserve(64 << 10);
        let mut count = 0;
        let mut waiters = std::mem::take(&mut self.waiters);
        if let Some((frame, records, done)) = first {
            buf.extend_from_slice(&frame);
            count += records;
            waiters.push(done);
        }
        let mut leftover = None;
        while queued && buf.len() < self.cfg.max_batch_bytes {
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
        count += self.staging.take_into(&mut buf, &mut waiters);
        if waiters.is_empty() {
            self.scratch = buf;
            self.waiters = waiters;
            return leftover;
        }
        let fenced_before = self.failed.is_some();
        let result = self.write(&mut buf, count).await;
        for w in waiters.drain(..) {
            w.finish(result.clone().map_err(|f| match fenced_before {
                true => f.to_error(),
                // This batch met the failure: its writes are already in
                // the store (see `Shared::apply_durably`), so they are
                // indeterminate, and their clients are told so.
                false => f.to_error_in_memory(),
            }));
        }
        buf.clear();
        self.scratch = buf;
        self.waiters = waiters;
        if result.is_ok() {
            self.maybe_start_create();
        }
        leftover
    }

    /// A full segment is replaced in the background; until the next one
    /// exists (and the previous one's final fsync has ended), appends go on
    /// to this one. Called after every batch and every end of background
    /// work, so a segment that filled while the last one was still being
    /// retired is replaced once that ends, not at the next append.
    fn maybe_start_create(&mut self) {
        if self.failed.is_none()
            && self.seg_len >= self.cfg.segment_bytes
            && !self.bg.creating()
            && !self.bg.retiring()
            && self.create_after.is_none_or(|at| Instant::now() >= at)
        {
            self.bg.start_create(self.cfg.dir.clone(), self.seq + 1);
        }
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
                counters.disk_faults.check(super::fence::DiskOp::Write)?;
                f.write_all(&buf)?;
                counters.fsync(f).map_err(FileError::Sync)
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
            self.with_file(move |f| counters.fsync(f).map_err(FileError::Sync))
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

    /// Make the freshly created `file` the active segment; the old one
    /// gets its final fsync in the background if it has unsynced data.
    fn switch_to(&mut self, file: File) {
        let old = self.file.replace(Arc::new(file));
        if let (Some(old), true) = (old, self.dirty) {
            self.bg.start_retire(old, &self.counters);
        }
        self.dirty = false;
        self.seq += 1;
        self.seg_len = EMPTY_SEGMENT_LEN;
        self.counters.segments.fetch_add(1, Relaxed);
        self.counters
            .total_bytes
            .fetch_add(EMPTY_SEGMENT_LEN, Relaxed);
        self.counters.active_segment.store(self.seq, Relaxed);
    }

    /// Seal the active segment for compaction: start the next one (or
    /// finish starting it) and answer once appends go there.
    async fn seal(&mut self) -> Result<Sealed> {
        let since_records = self.counters.since_records.load(Relaxed);
        let since_bytes = self.counters.since_bytes.load(Relaxed);
        let next = self.seq + 1;
        while self.seq < next {
            if let Some(f) = &self.failed {
                return Err(f.to_error());
            }
            if !self.bg.creating() && !self.bg.retiring() {
                self.bg.start_create(self.cfg.dir.clone(), next);
            }
            let event = self.bg.next().await;
            self.finished(event)?;
        }
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
            return Err(self.fail("no active segment".into(), false));
        };
        let written = self
            .counters
            .disk_faults
            .check(super::fence::DiskOp::Write)
            .and_then(|()| (&mut &*file).write_all(buf));
        match written {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e.to_string(), false)),
        }
    }

    /// Run `op` on the active segment on a blocking thread. Any failure
    /// raises the fence (see the module doc); an fsync's
    /// ([`FileError::Sync`]) until a restart.
    async fn with_file<Op>(&mut self, op: Op) -> Result<(), Failure>
    where
        Op: FnOnce(&mut &File) -> Result<(), FileError> + Send + 'static,
    {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        let Some(file) = self.file.clone() else {
            return Err(self.fail("no active segment".into(), false));
        };
        let joined = tokio::task::spawn_blocking(move || op(&mut &*file)).await;
        match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(FileError::Write(e))) => Err(self.fail(e.to_string(), false)),
            Ok(Err(FileError::Sync(e))) => Err(self.fail(format!("fsync failed: {e}"), true)),
            Err(e) => Err(self.fail(format!("log I/O task failed: {e}"), true)),
        }
    }
}
