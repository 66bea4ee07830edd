//! Compaction: replace the sealed segments by a snapshot of the live set.
//!
//! The steps, and why a crash between any two of them loses nothing:
//!
//! 1. **Seal.** The writer syncs the active segment and starts segment N;
//!    every record queued before the seal is in a segment below N, every
//!    later one in N or above. Appends wait only for this step (one sync
//!    and one file creation).
//! 2. **Snapshot.** The caller's closure writes the live set (values and
//!    tombstones still within their grace period) into `snap-N.tmp`, on a
//!    blocking thread while appends carry on. The file is flushed and
//!    fsynced. A crash here leaves a `.tmp` that recovery deletes unread;
//!    the old segments are all still there.
//! 3. **Publish.** `snap-N.tmp` is renamed to `snap-N.snap` and the
//!    directory is fsynced. From now on recovery reads the snapshot and the
//!    segments from N on, and deletes whatever is older.
//! 4. **Delete** the segments and snapshots below N, then sync the
//!    directory. A crash in the middle is finished by the next recovery.
//!
//! **The caller's contract.** The closure is called after the seal, and
//! whatever it writes replaces the sealed segments for good. So every
//! record whose `append` was *called* before `compact` was must already be
//! visible to the closure: the store applies a write to its map before it
//! appends it to the log (and acknowledges after the append). Records the
//! closure sees that are newer than the seal, or that failed to append, are
//! harmless, because replay is merged last-writer-wins on (ts, node) by
//! the caller, where order and repetition do not matter.
//!
//! Deliberately left out: deciding *when* to compact (the node compares
//! [`LogStats`](super::LogStats) with its estimate of the live size), and
//! merging segments without the caller's help: the log does not keep an
//! index of its own, the store's map already is one.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::files::{self, list, segment_path, snapshot_path, snapshot_tmp_path};
use super::record::{encode_into, file_header, FileKind, Record, FILE_HEADER_LEN};
use super::writer::{Cmd, Sealed};
use super::CommitLog;
use crate::error::{Error, Result};

/// Where the caller writes the live set during a compaction.
pub struct SnapshotWriter {
    out: BufWriter<File>,
    scratch: BytesMut,
    records: u64,
    bytes: u64,
}

impl SnapshotWriter {
    fn create(path: &Path, seq: u64) -> Result<Self> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
        out.write_all(&file_header(FileKind::Snapshot, seq))?;
        Ok(SnapshotWriter {
            out,
            scratch: BytesMut::with_capacity(4096),
            records: 0,
            bytes: FILE_HEADER_LEN as u64,
        })
    }

    /// Add one live record (a value, or a tombstone still within grace).
    pub fn push(&mut self, rec: &Record) -> Result<()> {
        rec.parts().check().map_err(Error::InvalidInput)?;
        self.scratch.clear();
        encode_into(rec, &mut self.scratch);
        self.out.write_all(&self.scratch)?;
        self.records += 1;
        self.bytes += self.scratch.len() as u64;
        Ok(())
    }

    /// Flush and fsync; returns (records, bytes).
    fn finish(self) -> Result<(u64, u64)> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::Io(e.into_error()))?;
        file.sync_all()?;
        Ok((self.records, self.bytes))
    }
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compacted {
    /// The snapshot's sequence number (it replaces every segment below it).
    pub snapshot_seq: u64,
    /// Records written to the snapshot.
    pub live_records: u64,
    /// Size of the snapshot file.
    pub snapshot_bytes: u64,
    /// Files deleted.
    pub removed_files: u64,
    /// Bytes they held.
    pub removed_bytes: u64,
    /// Wall-clock time, seal to last delete.
    pub elapsed: Duration,
}

impl CommitLog {
    /// Compact the log: seal, let `write_live` write the live set into a
    /// snapshot, publish it, delete what it replaces. See the module doc
    /// for the steps and the contract `write_live` relies on. One
    /// compaction runs at a time; a second call waits for the first.
    pub async fn compact<F>(&self, write_live: F) -> Result<Compacted>
    where
        F: FnOnce(&mut SnapshotWriter) -> Result<()> + Send + 'static,
    {
        let _one_at_a_time = self.shared.compaction.lock().await;
        let started = Instant::now();
        let sealed = self.seal().await?;
        let dir = self.shared.dir.clone();
        let (live_records, snapshot_bytes) =
            blocking(move || write_snapshot(&dir, sealed.seq, write_live)).await?;
        let dir = self.shared.dir.clone();
        let removed = blocking(move || remove_before(&dir, sealed.seq)).await?;
        let c = &self.shared.counters;
        c.since_records.fetch_sub(sealed.since_records, Relaxed);
        c.since_bytes.fetch_sub(sealed.since_bytes, Relaxed);
        c.total_bytes.fetch_add(snapshot_bytes, Relaxed);
        c.total_bytes.fetch_sub(removed.bytes, Relaxed);
        c.segments.fetch_sub(removed.segments, Relaxed);
        c.snapshot_bytes.store(snapshot_bytes, Relaxed);
        c.compactions.fetch_add(1, Relaxed);
        let done = Compacted {
            snapshot_seq: sealed.seq,
            live_records,
            snapshot_bytes,
            removed_files: removed.files,
            removed_bytes: removed.bytes,
            elapsed: started.elapsed(),
        };
        tracing::info!(?done, "commit log compacted");
        Ok(done)
    }

    /// [`compact`](Self::compact) for a live set that can be moved to the
    /// blocking thread whole (an owned collection, or an iterator over an
    /// `Arc`-held map that owns its handle).
    pub async fn compact_iter<I>(&self, live: I) -> Result<Compacted>
    where
        I: IntoIterator<Item = Record> + Send + 'static,
    {
        self.compact(move |w| live.into_iter().try_for_each(|r| w.push(&r)))
            .await
    }

    /// Step 1: seal the active segment.
    pub(super) async fn seal(&self) -> Result<Sealed> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(Cmd::Seal { done }).await?;
        wait.await.map_err(|_| Error::Shutdown)?
    }
}

/// Run `f` on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::Io(std::io::Error::other(format!(
            "compaction task failed: {e}"
        )))
    })?
}

/// Steps 2 and 3: write, sync and publish snapshot `seq`; returns
/// (records, bytes). On failure the temporary file is removed.
pub(super) fn write_snapshot<F>(dir: &Path, seq: u64, write_live: F) -> Result<(u64, u64)>
where
    F: FnOnce(&mut SnapshotWriter) -> Result<()>,
{
    let tmp = snapshot_tmp_path(dir, seq);
    let attempt = || -> Result<(u64, u64)> {
        let mut w = SnapshotWriter::create(&tmp, seq)?;
        write_live(&mut w)?;
        let counts = w.finish()?;
        std::fs::rename(&tmp, snapshot_path(dir, seq))?;
        files::sync_dir(dir)?;
        Ok(counts)
    };
    let result = attempt();
    if result.is_err() {
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %tmp.display(), error = %e, "could not remove failed snapshot; recovery will")
            }
        }
    }
    result
}

/// What step 4 removed.
#[derive(Debug, Default)]
pub(super) struct Removed {
    pub files: u64,
    pub segments: u64,
    pub bytes: u64,
}

/// Step 4: delete the segments and snapshots numbered below `seq`.
pub(super) fn remove_before(dir: &Path, seq: u64) -> Result<Removed> {
    let listing = list(dir)?;
    let mut out = Removed::default();
    let segs = listing
        .segments
        .iter()
        .filter(|s| **s < seq)
        .map(|s| (segment_path(dir, *s), true));
    let snaps = listing
        .snapshots
        .iter()
        .filter(|s| **s < seq)
        .map(|s| (snapshot_path(dir, *s), false));
    for (path, is_segment) in segs.chain(snaps) {
        let len = std::fs::metadata(&path)?.len();
        std::fs::remove_file(&path)?;
        out.files += 1;
        out.bytes += len;
        out.segments += u64::from(is_segment);
    }
    files::sync_dir(dir)?;
    Ok(out)
}
