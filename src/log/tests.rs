//! End-to-end tests of the log through its public handle: round trips,
//! damage at every byte of the last record, corruption in the middle,
//! concurrency, compaction (also interrupted), fsync policies.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::compact::{remove_before, write_snapshot};
use super::files::{segment_path, snapshot_path, snapshot_tmp_path};
use super::*;

fn rec(i: u64) -> Record {
    Record {
        key: Bytes::from(format!("key-{i}")),
        body: (i % 5 != 4)
            .then(|| Bytes::from(format!("value-{i}-{}", "x".repeat((i % 7) as usize))))
            .into(),
        ts: 1000 + i,
        node: i % 3,
    }
}

fn open(dir: &Path, opts: LogOptions) -> (CommitLog, Recovered, Vec<Record>) {
    let mut got = Vec::new();
    let (log, report) = CommitLog::open(dir, opts, |r| got.push(r)).unwrap();
    (log, report, got)
}

/// Polls `cond` every millisecond until it holds; fails with `what` after
/// 10 s.
pub(super) async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn reopen_records(dir: &Path) -> (Recovered, Vec<Record>) {
    let (log, report, got) = open(dir, LogOptions::for_test());
    drop(log);
    (report, got)
}

/// Last-writer-wins on (ts, node), as the store merges.
fn merge(map: &mut HashMap<Bytes, Record>, r: Record) {
    match map.get(&r.key) {
        Some(old) if (old.ts, old.node) >= (r.ts, r.node) => {}
        _ => {
            map.insert(r.key.clone(), r);
        }
    }
}

fn merged(dir: &Path) -> HashMap<Bytes, Record> {
    let mut map = HashMap::new();
    let (log, _) = CommitLog::open(dir, LogOptions::for_test(), |r| merge(&mut map, r)).unwrap();
    drop(log);
    map
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

async fn write_n(dir: &Path, n: u64) -> Vec<Record> {
    let (log, _, _) = open(dir, LogOptions::for_test());
    let recs: Vec<Record> = (0..n).map(rec).collect();
    for r in &recs {
        log.append(r.clone()).await.unwrap();
    }
    log.shutdown().await.unwrap();
    recs
}

#[tokio::test]
async fn append_and_reopen_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let recs = write_n(dir.path(), 100).await;
    let (report, got) = reopen_records(dir.path());
    assert_eq!(got, recs);
    assert_eq!(report.records, 100);
    assert!(report.torn_tail.is_none() && report.corruptions.is_empty());
    // A second reopen sees the same, across the extra (empty) segment.
    assert_eq!(reopen_records(dir.path()).1, recs);
}

/// The one segment written by `write_n`, its bytes and the offset of its
/// last record.
async fn one_segment(n: u64) -> (Vec<u8>, usize, Vec<Record>) {
    let dir = tempfile::tempdir().unwrap();
    let recs = write_n(dir.path(), n).await;
    let bytes = std::fs::read(segment_path(dir.path(), 1)).unwrap();
    let last = bytes.len() - recs.last().unwrap().encoded_len();
    (bytes, last, recs)
}

#[tokio::test]
async fn truncation_at_every_offset_of_the_last_record_keeps_the_ones_before() {
    let (bytes, last, recs) = one_segment(6).await;
    for cut in last..bytes.len() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segment_path(dir.path(), 1), &bytes[..cut]).unwrap();
        let (report, got) = reopen_records(dir.path());
        assert_eq!(got, recs[..5], "cut at {cut}");
        assert!(report.corruptions.is_empty(), "cut at {cut}");
        if cut == last {
            assert!(report.torn_tail.is_none());
        } else {
            let tail = report.torn_tail.expect("torn tail reported");
            assert_eq!(
                (tail.offset, tail.bytes),
                (last as u64, (cut - last) as u64)
            );
        }
        assert_eq!(
            std::fs::metadata(segment_path(dir.path(), 1))
                .unwrap()
                .len(),
            last as u64
        );
        let (again, got) = reopen_records(dir.path());
        assert_eq!(got, recs[..5]);
        assert!(again.torn_tail.is_none() && again.corruptions.is_empty());
    }
}

#[tokio::test]
async fn a_flipped_byte_anywhere_in_the_last_record_drops_only_it() {
    let (bytes, last, recs) = one_segment(6).await;
    for at in last..bytes.len() {
        let dir = tempfile::tempdir().unwrap();
        let mut bad = bytes.clone();
        bad[at] ^= 0xff;
        std::fs::write(segment_path(dir.path(), 1), &bad).unwrap();
        let (report, got) = reopen_records(dir.path());
        assert_eq!(got, recs[..5], "flip at {at}");
        let tail = report.torn_tail.expect("torn tail reported");
        assert_eq!(tail.offset, last as u64, "flip at {at}");
        assert!(report.corruptions.is_empty());
    }
}

#[tokio::test]
async fn corruption_in_a_sealed_segment_is_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut recs = write_n(dir.path(), 10).await;
    let (log, _, _) = open(dir.path(), LogOptions::for_test());
    log.append(rec(10)).await.unwrap();
    log.shutdown().await.unwrap();
    recs.push(rec(10));
    let path = segment_path(dir.path(), 1);
    let offset = 16 + recs[..4].iter().map(Record::encoded_len).sum::<usize>();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset + 20] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let (report, got) = reopen_records(dir.path());
    assert!(report.torn_tail.is_none());
    let expected_damage = Damage {
        file: path.clone(),
        offset: offset as u64,
        bytes: recs[4].encoded_len() as u64,
        reason: "checksum mismatch".into(),
    };
    assert_eq!(report.corruptions, vec![expected_damage]);
    recs.remove(4);
    assert_eq!(got, recs);
    // Nothing was cut: the damage is reported again next time.
    assert_eq!(std::fs::read(&path).unwrap().len(), bytes.len());
}

#[tokio::test]
async fn corruption_mid_way_in_the_last_segment_is_skipped_not_truncated() {
    let (mut bytes, _, mut recs) = one_segment(8).await;
    let offset = 16 + recs[..2].iter().map(Record::encoded_len).sum::<usize>();
    bytes[offset] ^= 0x40; // the length field
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(segment_path(dir.path(), 1), &bytes).unwrap();
    let (report, got) = reopen_records(dir.path());
    assert!(report.torn_tail.is_none());
    assert_eq!(report.corruptions.len(), 1);
    assert_eq!(report.corruptions[0].offset, offset as u64);
    recs.remove(2);
    assert_eq!(got, recs);
}

#[tokio::test]
async fn a_garbage_or_short_header_never_stops_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let recs = write_n(dir.path(), 5).await;
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] = b'X';
    std::fs::write(&path, &bytes).unwrap();
    std::fs::write(segment_path(dir.path(), 2), b"RKV").unwrap();
    let (report, got) = reopen_records(dir.path());
    assert_eq!(got, recs);
    assert_eq!(report.corruptions[0].offset, 0);
    assert_eq!(report.torn_tail.map(|t| t.bytes), Some(3));
    assert!(!segment_path(dir.path(), 2).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_are_all_recovered_and_batched() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(dir.path(), LogOptions::for_test());
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                log.append(rec(t * 1000 + i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = log.stats();
    log.shutdown().await.unwrap();
    assert_eq!(stats.records_appended, 6400);
    assert!(
        stats.batches < stats.records_appended,
        "no batching: {stats:?}"
    );
    let got: HashMap<Bytes, Record> = reopen_records(dir.path())
        .1
        .into_iter()
        .map(|r| (r.key.clone(), r))
        .collect();
    assert_eq!(got.len(), 6400);
    for t in 0..32 {
        for i in 0..200 {
            let r = rec(t * 1000 + i);
            assert_eq!(got.get(&r.key), Some(&r));
        }
    }
}

#[tokio::test]
async fn a_staged_append_is_looked_at_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(dir.path(), LogOptions::for_test());
    let mut looked = log.begin_append(&rec(1)).unwrap();
    // Staged, not yet written: the writer has not run (this test's task has
    // not yielded since).
    assert!(looked.peek().is_none());
    // Another append of the same batch, awaited, writes it.
    log.append(rec(2)).await.unwrap();
    assert!(matches!(looked.peek(), Some(Ok(()))));
    log.shutdown().await.unwrap();
    let got = reopen_records(dir.path()).1;
    assert_eq!(got, vec![rec(1), rec(2)]);
}

#[tokio::test]
async fn segments_rotate_and_replay_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        segment_bytes: 4096,
        ..LogOptions::for_test()
    };
    let (log, _, _) = open(dir.path(), opts);
    let recs: Vec<Record> = (0..500).map(rec).collect();
    // Each round of 100 (4.6 KB) fills a segment; the next one is created
    // in the background while appends go on, so wait for each switch.
    for round in recs.chunks(100) {
        let before = log.stats().active_segment;
        for r in round {
            log.append(r.clone()).await.unwrap();
        }
        until("no rotation", || log.stats().active_segment != before).await;
    }
    let stats = log.stats();
    log.shutdown().await.unwrap();
    assert!(stats.segments > 5, "{stats:?}");
    assert_eq!(stats.total_bytes, dir_bytes(dir.path()));
    assert_eq!(reopen_records(dir.path()).1, recs);
}

#[tokio::test]
async fn fsync_policies_all_recover_and_sync_as_promised() {
    let policies = [
        FsyncPolicy::Always,
        FsyncPolicy::Interval(Duration::from_millis(20)),
        FsyncPolicy::Never,
    ];
    for policy in policies {
        let dir = tempfile::tempdir().unwrap();
        let opts = LogOptions {
            fsync: policy,
            ..LogOptions::for_test()
        };
        let (log, _, _) = open(dir.path(), opts);
        for i in 0..5 {
            log.append(rec(i)).await.unwrap();
        }
        let fsyncs = log.stats().fsyncs;
        match policy {
            FsyncPolicy::Always => assert_eq!(fsyncs, 5),
            FsyncPolicy::Never => assert_eq!(fsyncs, 0),
            FsyncPolicy::Interval(_) => {
                let deadline = Instant::now() + Duration::from_secs(5);
                while log.stats().fsyncs == 0 {
                    assert!(Instant::now() < deadline, "interval fsync never happened");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        log.shutdown().await.unwrap();
        assert_eq!(
            reopen_records(dir.path()).1,
            (0..5).map(rec).collect::<Vec<_>>()
        );
    }
}

#[test]
fn handles_and_their_futures_can_cross_threads() {
    fn is_send<T: Send + Sync>(_: &T) {}
    fn fut_is_send<T: Send>(_: T) {}
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = rt
        .block_on(async { CommitLog::open(dir.path(), LogOptions::for_test(), |_| {}) })
        .unwrap();
    is_send(&log);
    fut_is_send(log.append(rec(1)));
    fut_is_send(log.compact_iter(Vec::new()));
    fut_is_send(log.shutdown());
    assert!(matches!(
        CommitLog::open(dir.path(), LogOptions::for_test(), |_| {}),
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn refused_appends_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(dir.path(), LogOptions::for_test());
    let big = Record {
        body: Some(Bytes::from(vec![0u8; MAX_PAYLOAD])).into(),
        ..rec(1)
    };
    assert!(matches!(log.append(big).await, Err(Error::InvalidInput(_))));
    log.shutdown().await.unwrap();
    log.shutdown().await.unwrap();
    assert!(matches!(log.append(rec(2)).await, Err(Error::Shutdown)));
    let bad = LogOptions {
        fsync: FsyncPolicy::Interval(Duration::ZERO),
        ..LogOptions::for_test()
    };
    assert!(matches!(
        CommitLog::open(dir.path(), bad, |_| {}),
        Err(Error::Config { .. })
    ));
}

/// The live set of a map, written after the seal as the contract asks.
fn live_of(
    map: &Arc<Mutex<HashMap<Bytes, Record>>>,
) -> impl FnOnce(&mut SnapshotWriter) -> Result<()> + Send + 'static {
    let map = map.clone();
    move |w| {
        let live: Vec<Record> = map.lock().unwrap().values().cloned().collect();
        live.iter().try_for_each(|r| w.push(r))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_under_concurrent_appends_loses_nothing_and_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(dir.path(), LogOptions::for_test());
    let map: Arc<Mutex<HashMap<Bytes, Record>>> = Arc::default();
    let mut writers = Vec::new();
    for t in 0..4u64 {
        let (log, map) = (log.clone(), map.clone());
        writers.push(tokio::spawn(async move {
            for round in 0..400u64 {
                let mut r = rec(round % 50);
                r.ts = round * 10 + t;
                r.node = t;
                merge(&mut map.lock().unwrap(), r.clone()); // apply, then log
                log.append(r).await.unwrap();
            }
        }));
    }
    for _ in 0..3 {
        log.compact(live_of(&map)).await.unwrap();
    }
    for w in writers {
        w.await.unwrap();
    }
    let done = log.compact(live_of(&map)).await.unwrap();
    let after = log.stats();
    // 1600 records were written; the log now holds the 50 live ones. (How
    // much the first three compactions removed depends on how they
    // interleaved with the writers, so compare with what was written.)
    let written = 1600 * rec(0).encoded_len() as u64;
    assert!(
        after.total_bytes * 4 < written,
        "{written} bytes written -> {after:?}"
    );
    assert_eq!(done.live_records, 50);
    assert_eq!(after.compactions, 4);
    assert_eq!(after.total_bytes, dir_bytes(dir.path()));
    assert_eq!(after.records_since_compaction, 0);
    log.shutdown().await.unwrap();
    let expected = map.lock().unwrap().clone();
    assert_eq!(merged(dir.path()), expected);
}

#[tokio::test]
async fn crash_before_the_snapshot_is_published_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let recs = write_n(dir.path(), 30).await;
    let (log, _, _) = open(dir.path(), LogOptions::for_test());
    let sealed = log.seal().await.unwrap();
    std::fs::write(
        snapshot_tmp_path(dir.path(), sealed.seq),
        b"RKVL half a snapshot",
    )
    .unwrap();
    log.shutdown().await.unwrap(); // the "crash"
    let (report, got) = reopen_records(dir.path());
    assert_eq!(got, recs);
    assert!(report.corruptions.is_empty());
    assert!(!snapshot_tmp_path(dir.path(), sealed.seq).exists());
}

#[tokio::test]
async fn crash_after_publishing_before_deleting_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = HashMap::new();
    for r in write_n(dir.path(), 40).await {
        merge(&mut expected, r);
    }
    let (log, _, _) = open(dir.path(), LogOptions::for_test());
    let sealed = log.seal().await.unwrap();
    let mut late = rec(3);
    late.ts = 99_999;
    log.append(late.clone()).await.unwrap();
    let live: Vec<Record> = expected.values().cloned().collect();
    write_snapshot(dir.path(), sealed.seq, move |w| {
        live.iter().try_for_each(|r| w.push(r))
    })
    .unwrap();
    // Delete only some of what the snapshot replaces, then "crash".
    std::fs::remove_file(segment_path(dir.path(), 1)).unwrap();
    log.shutdown().await.unwrap();
    merge(&mut expected, late);
    assert!(segment_path(dir.path(), 2).exists());
    assert_eq!(merged(dir.path()), expected);
    assert!(
        !segment_path(dir.path(), 2).exists(),
        "recovery finishes the deletion"
    );
    assert!(snapshot_path(dir.path(), sealed.seq).exists());
    assert_eq!(merged(dir.path()), expected);
}

#[tokio::test]
async fn a_damaged_snapshot_keeps_and_replays_what_it_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let recs = write_n(dir.path(), 20).await;
    let (log, _, _) = open(dir.path(), LogOptions::for_test());
    let sealed = log.seal().await.unwrap();
    let live = recs.clone();
    write_snapshot(dir.path(), sealed.seq, move |w| {
        live.iter().try_for_each(|r| w.push(r))
    })
    .unwrap();
    log.shutdown().await.unwrap();
    let snap = snapshot_path(dir.path(), sealed.seq);
    let mut bytes = std::fs::read(&snap).unwrap();
    bytes[40] ^= 0xff;
    std::fs::write(&snap, bytes).unwrap();
    let (report, got) = reopen_records(dir.path());
    assert_eq!(report.corruptions.len(), 1);
    assert!(segment_path(dir.path(), 1).exists());
    let mut want = HashMap::new();
    recs.into_iter().for_each(|r| merge(&mut want, r));
    let mut have = HashMap::new();
    got.into_iter().for_each(|r| merge(&mut have, r));
    assert_eq!(have, want);
    // A later compaction clears the damage for good.
    let (log, _, _) = open(dir.path(), LogOptions::for_test());
    log.compact_iter(want.clone().into_values()).await.unwrap();
    log.shutdown().await.unwrap();
    assert!(reopen_records(dir.path()).0.corruptions.is_empty());
    assert_eq!(remove_before(dir.path(), 0).unwrap().files, 0);
}

/// Recovery time for 1M records of 64-byte values and ~10-byte keys. Run
/// with `cargo test --release -- --ignored --nocapture recovery_of_a_million`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn recovery_of_a_million_records() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions::default();
    let (log, _, _) = open(dir.path(), opts.clone());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..100u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10_000u64 {
                let n = t * 10_000 + i;
                let r = Record {
                    key: Bytes::from(format!("key{n:07}")),
                    body: Some(Bytes::from(vec![b'v'; 64])).into(),
                    ts: n,
                    node: 1,
                };
                log.append(r).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = log.stats();
    log.shutdown().await.unwrap();
    println!("wrote 1M records in {:?}: {stats:?}", started.elapsed());
    let mut count = 0u64;
    let (log, report) = CommitLog::open(dir.path(), opts.clone(), |_| count += 1).unwrap();
    log.shutdown().await.unwrap();
    println!(
        "recovered {count} records (counting only) in {:?}",
        report.elapsed
    );
    let started = Instant::now();
    let mut map = HashMap::with_capacity(1 << 20);
    let (log, report) = CommitLog::open(dir.path(), opts, |r| merge(&mut map, r)).unwrap();
    let elapsed = started.elapsed();
    println!(
        "recovered {} records, {} bytes, {} files into a HashMap in {elapsed:?} (scan {:?})",
        report.records, report.bytes_read, report.files, report.elapsed
    );
    assert_eq!(map.len(), 1_000_000);
    log.shutdown().await.unwrap();
    assert!(elapsed < Duration::from_secs(2));
}

/// A segment of a newer format (what a downgrade finds) is refused at
/// open, untouched, with both versions named.
#[tokio::test]
async fn a_newer_format_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let mut header = record::file_header(record::FileKind::Segment, 1);
    header[4..6].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let path = segment_path(dir.path(), 1);
    std::fs::write(&path, header).unwrap();
    let err = match CommitLog::open(dir.path(), LogOptions::for_test(), |_| {}) {
        Ok(_) => panic!("a newer format opened"),
        Err(e) => e.to_string(),
    };
    let want = format!(
        "commit-log format {} was written by a newer ringkv; ringkv {} reads formats {MIN_FORMAT_VERSION} to {FORMAT_VERSION}",
        FORMAT_VERSION + 1,
        env!("CARGO_PKG_VERSION")
    );
    assert!(err.contains(&want), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        header,
        "the file was touched"
    );
}
