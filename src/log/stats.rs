//! Counters the writer and compaction keep, and the [`LogStats`] snapshot
//! the node reads to decide when to compact.
//!
//! The counters are plain atomics: the writer task is the only one that
//! adds to the append counters and compaction the only one that subtracts,
//! so no lock is needed for them to stay exact.
//!
//! Deliberately left out: histograms of batch sizes and sync latencies;
//! the admin endpoint can derive rates from these monotonic counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// A point-in-time view of the log, for metrics and the compaction policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Bytes of every log file on disk (snapshot and segments).
    pub total_bytes: u64,
    /// Segment files on disk, the active one included.
    pub segments: u64,
    /// Size of the current snapshot, 0 if there is none. Right after a
    /// compaction this is the best estimate of the live data size.
    pub snapshot_bytes: u64,
    /// Records appended to segments since the last compaction (those
    /// replayed from segments at startup included).
    pub records_since_compaction: u64,
    /// Frame bytes appended since the last compaction.
    pub bytes_since_compaction: u64,
    /// Records appended since the log was opened.
    pub records_appended: u64,
    /// Write system calls (batches) since the log was opened.
    pub batches: u64,
    /// fsyncs of segment files since the log was opened.
    pub fsyncs: u64,
    /// Compactions finished since the log was opened.
    pub compactions: u64,
    /// Sequence number of the segment being appended to.
    pub active_segment: u64,
    /// The log hit an I/O error and refuses appends until reopened.
    pub failed: bool,
}

impl LogStats {
    /// The suggested trigger: the log holds more than `factor` times the
    /// live data (as the caller estimates it, e.g. the sum of
    /// [`Record::encoded_len`](super::Record::encoded_len) over its map) and
    /// more than `min_bytes` in all.
    pub fn should_compact(&self, live_bytes: u64, factor: u64, min_bytes: u64) -> bool {
        self.total_bytes > min_bytes && self.total_bytes > live_bytes.saturating_mul(factor)
    }
}

/// The shared counters behind [`LogStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub total_bytes: AtomicU64,
    pub segments: AtomicU64,
    pub snapshot_bytes: AtomicU64,
    pub since_records: AtomicU64,
    pub since_bytes: AtomicU64,
    pub records_appended: AtomicU64,
    pub batches: AtomicU64,
    pub fsyncs: AtomicU64,
    pub compactions: AtomicU64,
    pub active_segment: AtomicU64,
    pub failed: AtomicBool,
    /// Whether (and why) the log takes no writes.
    pub fence: super::fence::Fence,
    /// Injected disk faults (tests, through the admin port).
    pub disk_faults: super::fence::DiskFaults,
    /// How long each fsync of a segment took.
    pub fsync_latency: crate::metrics::Histogram,
}

impl Counters {
    /// Read every counter.
    pub fn snapshot(&self) -> LogStats {
        LogStats {
            total_bytes: self.total_bytes.load(Relaxed),
            segments: self.segments.load(Relaxed),
            snapshot_bytes: self.snapshot_bytes.load(Relaxed),
            records_since_compaction: self.since_records.load(Relaxed),
            bytes_since_compaction: self.since_bytes.load(Relaxed),
            records_appended: self.records_appended.load(Relaxed),
            batches: self.batches.load(Relaxed),
            fsyncs: self.fsyncs.load(Relaxed),
            compactions: self.compactions.load(Relaxed),
            active_segment: self.active_segment.load(Relaxed),
            failed: self.failed.load(Relaxed),
        }
    }

    /// `fdatasync` a segment, timing it into `fsync_latency` (the caller
    /// counts it in `fsyncs` once it is booked).
    pub fn fsync(&self, file: &std::fs::File) -> std::io::Result<()> {
        let started = std::time::Instant::now();
        self.disk_faults.check(super::fence::DiskOp::Fsync)?;
        file.sync_data()?;
        self.fsync_latency.observe(started.elapsed());
        Ok(())
    }

    /// Count a batch of `records` frames, `bytes` long, written to the
    /// active segment.
    pub fn wrote(&self, records: u64, bytes: u64) {
        self.total_bytes.fetch_add(bytes, Relaxed);
        self.since_records.fetch_add(records, Relaxed);
        self.since_bytes.fetch_add(bytes, Relaxed);
        self.records_appended.fetch_add(records, Relaxed);
        self.batches.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_needs_both_factor_and_minimum() {
        let s = LogStats {
            total_bytes: 1000,
            ..LogStats::default()
        };
        assert!(s.should_compact(400, 2, 500));
        assert!(!s.should_compact(600, 2, 500));
        assert!(!s.should_compact(100, 2, 5000));
        assert!(!s.should_compact(u64::MAX, 2, 0));
    }
}
