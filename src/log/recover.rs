//! Recovery: replay a log directory into a callback, and repair what a
//! crash left behind.
//!
//! Replay order is the newest finished snapshot `snap-N.snap`, then every
//! segment numbered N or above, oldest first. Leftover `snap-*.tmp` files
//! (a compaction that died before its rename) are removed unread. Segments
//! and snapshots numbered below N are what a compaction that died after its
//! rename had not yet deleted; they are deleted now, but only if the
//! snapshot read back clean. If the snapshot holds corruption they are
//! replayed first and kept, which is harmless because the caller merges
//! records last-writer-wins: order and repetition do not change the result.
//!
//! Damage is handled by where it is:
//!
//! * **Torn tail.** In the last segment, bad bytes after which no valid
//!   frame follows are what a crash in the middle of a write leaves. The
//!   file is truncated at the last good record (and synced), and the bytes
//!   dropped are logged with `tracing::warn` and reported.
//! * **Corruption in the middle** (any file, or the last segment when good
//!   frames follow the bad bytes). The scan resynchronises: it tries every
//!   later byte offset until a frame with a plausible length, a matching
//!   CRC32 and a well-formed payload starts there, reports the file, the
//!   offset and the bytes skipped, and carries on. A random match needs a
//!   CRC collision (about 1 in 4 billion per offset tried); the one real
//!   risk is a stored value that itself contains a well-formed frame, which
//!   could be taken for a record if the bytes just before it were damaged.
//!   We accept that risk because the alternative, dropping the rest of the
//!   segment, surely loses good records, and a record resurrected this way
//!   still has to win last-writer-wins on its timestamp to matter. A bad
//!   tail of a non-final file is reported the same way and left on disk.
//! * **A file header that is not one** (bad magic, wrong kind) is reported
//!   as corruption at offset 0 and its frames are read anyway. A file too
//!   short to hold a header holds no records and is removed.
//!
//! Recovery never panics and never refuses to start because of damage. It
//! does refuse a file whose header names a format version this code does
//! not know: that is a newer program's data, not corruption, and reading
//! on could destroy it.
//!
//! Deliberately left out: streaming large files (each file is read whole,
//! so peak memory is one segment or one snapshot beyond the caller's own
//! state), checksums over whole files, and repairing corrupt files in
//! place; compaction rewrites them away.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::files::{self, list, segment_path, snapshot_path};
use super::record::{
    self, check_header, Decoded, FileKind, HeaderCheck, Record, FILE_HEADER_LEN, FORMAT_VERSION,
    MIN_FORMAT_VERSION,
};
use crate::error::{Error, Result};

/// What recovery found.
#[derive(Debug, Default, Clone)]
pub struct Recovered {
    /// Records handed to the callback.
    pub records: u64,
    /// Files replayed (snapshot and segments).
    pub files: usize,
    /// Bytes read from them.
    pub bytes_read: u64,
    /// The torn tail cut off the last segment, if there was one.
    pub torn_tail: Option<Damage>,
    /// Corruption found elsewhere, skipped over.
    pub corruptions: Vec<Damage>,
    /// Wall-clock time recovery took.
    pub elapsed: Duration,
}

/// A damaged stretch of a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The file.
    pub file: PathBuf,
    /// Byte offset where the damage starts.
    pub offset: u64,
    /// Bytes skipped (or, for a torn tail, dropped by truncation).
    pub bytes: u64,
    /// What was wrong with the first bad frame.
    pub reason: String,
}

/// Recovery's result plus what the writer and the stats need to start.
#[derive(Debug)]
pub(super) struct Outcome {
    pub report: Recovered,
    /// Sequence number for the next segment to create.
    pub next_seq: u64,
    /// Bytes of all log files left on disk.
    pub total_bytes: u64,
    /// Segment files left on disk.
    pub segments: u64,
    /// Size of the snapshot replayed, 0 if none.
    pub snapshot_bytes: u64,
    /// Records replayed from segments (not the snapshot).
    pub segment_records: u64,
}

/// Replay `dir` (created if missing) into `on_record`.
pub(super) fn recover<F: FnMut(Record)>(dir: &Path, on_record: &mut F) -> Result<Outcome> {
    let started = Instant::now();
    std::fs::create_dir_all(dir)?;
    let listing = list(dir)?;
    remove_temps(&listing.temps);
    let base = listing.snapshots.last().copied();
    let newer: Vec<u64> = listing
        .segments
        .iter()
        .copied()
        .filter(|s| *s >= base.unwrap_or(0))
        .collect();
    let mut out = Outcome {
        report: Recovered::default(),
        next_seq: newer.last().map_or(base.unwrap_or(1), |s| s + 1).max(1),
        total_bytes: 0,
        segments: 0,
        snapshot_bytes: 0,
        segment_records: 0,
    };
    if let Some(b) = base {
        let snap = snapshot_path(dir, b);
        let before = out.report.corruptions.len();
        out.snapshot_bytes = replay_file(
            &snap,
            FileKind::Snapshot,
            b,
            false,
            &mut out.report,
            on_record,
        )?;
        out.total_bytes += out.snapshot_bytes;
        if out.report.corruptions.len() == before {
            remove_superseded(dir, &listing, b)?;
        } else {
            tracing::warn!(snapshot = %snap.display(), "snapshot is damaged; replaying and keeping the files it replaced");
            replay_superseded(dir, &listing, b, &mut out, on_record)?;
        }
    }
    for (i, &seq) in newer.iter().enumerate() {
        let is_last = i + 1 == newer.len();
        let before = out.report.records;
        let path = segment_path(dir, seq);
        let len = replay_file(
            &path,
            FileKind::Segment,
            seq,
            is_last,
            &mut out.report,
            on_record,
        )?;
        out.segment_records += out.report.records - before;
        if len > 0 {
            out.total_bytes += len;
            out.segments += 1;
        }
    }
    out.report.elapsed = started.elapsed();
    Ok(out)
}

/// Remove snapshots a compaction never finished; they are never read, so
/// one that cannot be removed is only warned about.
fn remove_temps(temps: &[PathBuf]) {
    for tmp in temps {
        tracing::warn!(file = %tmp.display(), "removing an unfinished compaction snapshot");
        if let Err(e) = std::fs::remove_file(tmp) {
            tracing::warn!(file = %tmp.display(), error = %e, "could not remove unfinished snapshot; it is ignored");
        }
    }
}

/// Remove the segments and snapshots that snapshot `base` replaced.
fn remove_superseded(dir: &Path, listing: &files::Listing, base: u64) -> Result<()> {
    let old_segments = listing
        .segments
        .iter()
        .filter(|s| **s < base)
        .map(|s| segment_path(dir, *s));
    let old_snaps = listing
        .snapshots
        .iter()
        .filter(|s| **s < base)
        .map(|s| snapshot_path(dir, *s));
    let mut removed = 0;
    for path in old_segments.chain(old_snaps) {
        std::fs::remove_file(&path)?;
        removed += 1;
    }
    if removed > 0 {
        tracing::info!(
            removed,
            "finished removing files replaced by the last compaction"
        );
        files::sync_dir(dir)?;
    }
    Ok(())
}

/// Replay the files a damaged snapshot replaced, keeping them on disk.
fn replay_superseded<F: FnMut(Record)>(
    dir: &Path,
    listing: &files::Listing,
    base: u64,
    out: &mut Outcome,
    on_record: &mut F,
) -> Result<()> {
    for &seq in listing.snapshots.iter().filter(|s| **s < base) {
        let path = snapshot_path(dir, seq);
        out.total_bytes += replay_file(
            &path,
            FileKind::Snapshot,
            seq,
            false,
            &mut out.report,
            on_record,
        )?;
    }
    for &seq in listing.segments.iter().filter(|s| **s < base) {
        let path = segment_path(dir, seq);
        let len = replay_file(
            &path,
            FileKind::Segment,
            seq,
            false,
            &mut out.report,
            on_record,
        )?;
        out.total_bytes += len;
        out.segments += u64::from(len > 0);
    }
    Ok(())
}

/// Replay one file; returns its length as left on disk (0 if removed).
fn replay_file<F: FnMut(Record)>(
    path: &Path,
    kind: FileKind,
    seq: u64,
    is_last: bool,
    report: &mut Recovered,
    on_record: &mut F,
) -> Result<u64> {
    let data = std::fs::read(path)?;
    report.files += 1;
    report.bytes_read += data.len() as u64;
    let mut start = FILE_HEADER_LEN;
    match check_header(&data, kind, seq) {
        HeaderCheck::Good => {}
        HeaderCheck::SeqMismatch(found) => {
            tracing::warn!(file = %path.display(), found, "file header names another sequence number");
        }
        HeaderCheck::UnknownVersion(v) => {
            // Not damage: a newer release's data. Downgrading across a log
            // format change stops here, naming both sides.
            return Err(Error::InvalidInput(format!(
                "{}: commit-log format {v} was written by a newer ringkv; ringkv {} reads formats {MIN_FORMAT_VERSION} to {FORMAT_VERSION}. Refusing to touch it: run the release that wrote it, or a newer one",
                path.display(),
                env!("CARGO_PKG_VERSION")
            )));
        }
        HeaderCheck::Corrupt if data.len() < FILE_HEADER_LEN => {
            return remove_headerless(path, data.len() as u64, is_last, report);
        }
        HeaderCheck::Corrupt => {
            report
                .corruptions
                .push(damage(path, 0, FILE_HEADER_LEN, "bad file header"));
            tracing::warn!(file = %path.display(), "bad file header; reading its records anyway");
            start = FILE_HEADER_LEN;
        }
    }
    let scan = scan(&data, start, on_record);
    report.records += scan.records;
    for (offset, bytes, reason) in scan.skipped {
        tracing::warn!(file = %path.display(), offset, bytes, reason, "corrupt records skipped");
        report.corruptions.push(damage(path, offset, bytes, reason));
    }
    let Some((offset, reason)) = scan.tail else {
        return Ok(data.len() as u64);
    };
    let dropped = data.len() - offset;
    if !is_last {
        tracing::warn!(file = %path.display(), offset, bytes = dropped, reason, "corrupt end of a sealed file skipped");
        report
            .corruptions
            .push(damage(path, offset, dropped, reason));
        return Ok(data.len() as u64);
    }
    tracing::warn!(file = %path.display(), offset, bytes_dropped = dropped, reason, "truncating torn log tail");
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(offset as u64)?;
    file.sync_all()?;
    report.torn_tail = Some(damage(path, offset, dropped, reason));
    Ok(offset as u64)
}

/// A file too short for its header holds no records: remove it.
fn remove_headerless(path: &Path, len: u64, is_last: bool, report: &mut Recovered) -> Result<u64> {
    tracing::warn!(file = %path.display(), bytes_dropped = len, "removing a log file too short for its header");
    let d = damage(path, 0, len as usize, "file shorter than its header");
    if is_last {
        report.torn_tail = Some(d);
    } else {
        report.corruptions.push(d);
    }
    std::fs::remove_file(path)?;
    Ok(0)
}

fn damage(path: &Path, offset: usize, bytes: usize, reason: &str) -> Damage {
    Damage {
        file: path.to_path_buf(),
        offset: offset as u64,
        bytes: bytes as u64,
        reason: reason.to_string(),
    }
}

/// The result of scanning one file's frames.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Good records found.
    pub records: u64,
    /// Damaged stretches skipped: (offset, length, reason).
    pub skipped: Vec<(usize, usize, &'static str)>,
    /// Damage running to the end of the data: (offset, reason).
    pub tail: Option<(usize, &'static str)>,
}

/// Decode the frames in `data` from `pos` on, resynchronising after bad
/// stretches as the module doc describes.
pub(super) fn scan<F: FnMut(Record)>(data: &[u8], mut pos: usize, on_record: &mut F) -> Scan {
    let mut out = Scan::default();
    while pos < data.len() {
        match record::decode(&data[pos..]) {
            Decoded::Record(rec, used) => {
                on_record(rec);
                out.records += 1;
                pos += used;
            }
            Decoded::Bad(reason) => match resync(data, pos + 1) {
                Some(next) => {
                    out.skipped.push((pos, next - pos, reason));
                    pos = next;
                }
                None => {
                    out.tail = Some((pos, reason));
                    break;
                }
            },
        }
    }
    out
}

/// The first offset at or after `from` where a valid frame starts.
fn resync(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len()).find(|&q| record::is_valid_frame(&data[q..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};

    fn recs(n: u64) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                key: Bytes::from(format!("key-{i}")),
                body: (i % 3 != 0).then(|| Bytes::from(vec![i as u8; 20])).into(),
                ts: i,
                node: 1,
            })
            .collect()
    }

    fn frames(rs: &[Record]) -> (Vec<u8>, Vec<usize>) {
        let mut buf = BytesMut::new();
        let mut offsets = Vec::new();
        for r in rs {
            offsets.push(buf.len());
            record::encode_into(r, &mut buf);
        }
        (buf.to_vec(), offsets)
    }

    #[test]
    fn scan_skips_a_damaged_middle_record() {
        let rs = recs(5);
        let (mut data, offs) = frames(&rs);
        data[offs[2] + 12] ^= 0xff;
        let mut got = Vec::new();
        let s = scan(&data, 0, &mut |r| got.push(r));
        assert_eq!(s.skipped.len(), 1);
        assert_eq!(s.skipped[0].0, offs[2]);
        assert_eq!(s.skipped[0].1, offs[3] - offs[2]);
        assert!(s.tail.is_none());
        let expected: Vec<_> = rs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, r)| r.clone())
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn scan_reports_a_bad_tail() {
        let rs = recs(3);
        let (mut data, offs) = frames(&rs);
        data.extend_from_slice(&[0u8; 40]);
        let mut n = 0;
        let s = scan(&data, 0, &mut |_| n += 1);
        assert_eq!(n, 3);
        assert_eq!(s.tail.map(|t| t.0), Some(offs[2] + rs[2].encoded_len()));
    }
}
