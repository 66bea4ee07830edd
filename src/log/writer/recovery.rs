//! The writer's fence: raising it on a failed write or fsync, and
//! recovering from a failed write (see the `writer` module doc).

use std::io::{self, Seek, SeekFrom, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::time::Instant;

use super::{Failure, Writer, PROBE_BYTES, RECOVER_EVERY};
use crate::log::files::EMPTY_SEGMENT_LEN;

impl Writer {
    /// Raises the fence: every append fails at once until [`Self::recover`]
    /// succeeds, or, `until_restart`, for good.
    pub(super) fn fail(&mut self, reason: String, until_restart: bool) -> Failure {
        if until_restart {
            tracing::error!(
                error = %reason,
                "commit log fsync failed: the file may have lost acknowledged writes the page cache \
                 still shows, so this node takes no writes until restarted (reads go on; a restart \
                 replays what the file holds, and anti-entropy refills the rest from the replicas)"
            );
        } else if self.failed.is_none() {
            tracing::error!(
                error = %reason,
                "commit log cannot be written: refusing writes (reads go on), trying again every {:?}",
                RECOVER_EVERY
            );
        }
        let f = Failure {
            reason,
            until_restart: until_restart || self.failed.as_ref().is_some_and(|f| f.until_restart),
        };
        self.recover_at = (!f.until_restart).then(|| Instant::now() + RECOVER_EVERY);
        self.counters.fence.raise(f.reason.clone(), f.until_restart);
        self.failed = Some(f.clone());
        self.counters.failed.store(true, Relaxed);
        f
    }

    /// After a failed write: truncates the segment back to its last good
    /// frame and probes for room (see the module doc). On success the
    /// fence comes down; on failure it stays, and the next try is due in
    /// [`RECOVER_EVERY`].
    pub(super) fn recover(&mut self) {
        self.recover_at = None;
        if self.failed.as_ref().is_none_or(|f| f.until_restart) {
            return;
        }
        match self.probe() {
            Ok(()) => {
                tracing::info!(
                    segment = self.seq,
                    "commit log writable again: appending after the last good record, taking writes"
                );
                self.failed = None;
                self.counters.failed.store(false, Relaxed);
                self.counters.fence.lower();
            }
            Err(e) => {
                tracing::debug!(error = %e, "commit log still cannot be written");
                self.fail(e.to_string(), false);
            }
        }
    }

    fn probe(&mut self) -> io::Result<()> {
        let faults = &self.counters.disk_faults;
        if self.file.is_none() {
            faults.check(crate::log::DiskOp::Write)?;
            let file = crate::log::files::create_segment(&self.cfg.dir, self.seq)
                .map_err(|e| io::Error::other(e.to_string()))?;
            self.file = Some(Arc::new(file));
            self.seg_len = EMPTY_SEGMENT_LEN;
        }
        let Some(file) = self.file.as_deref() else {
            return Err(io::Error::other("no active segment"));
        };
        let mut f = file;
        file.set_len(self.seg_len)?;
        f.seek(SeekFrom::Start(self.seg_len))?;
        faults.check(crate::log::DiskOp::Write)?;
        let probed = f.write_all(&[0u8; PROBE_BYTES]);
        file.set_len(self.seg_len)?;
        f.seek(SeekFrom::Start(self.seg_len))?;
        probed
    }
}

/// Why an operation on the active segment failed.
pub(super) enum FileError {
    /// A write: the fence comes down once writing works again.
    Write(io::Error),
    /// An fsync: the fence stays up until a restart.
    Sync(io::Error),
}

impl From<io::Error> for FileError {
    fn from(e: io::Error) -> Self {
        FileError::Write(e)
    }
}
