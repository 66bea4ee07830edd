//! The writer task driven directly, with its background fsyncs held in a
//! hook: what waits for an fsync and what does not.

use std::path::Path;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::files::create_segment;
use super::record::encode;
use super::stats::Counters;
use super::tests::until;
use super::writer::{Cmd, Done, Writer, WriterConfig};
use super::*;

fn rec(i: u64) -> Record {
    Record {
        key: bytes::Bytes::from(format!("key-{i}")),
        body: Some(bytes::Bytes::from(format!("value-{i}"))).into(),
        ts: 1000 + i,
        node: 1,
    }
}

async fn append(tx: &mpsc::Sender<Cmd>, i: u64) -> Result<()> {
    let (done, wait) = oneshot::channel();
    let cmd = Cmd::Append {
        frame: encode(&rec(i)),
        records: 1,
        done: Done::Waiter(done),
    };
    tx.send(cmd).await.map_err(|_| Error::Shutdown)?;
    wait.await.map_err(|_| Error::Shutdown)?
}

/// Appends `range`, each of which must be answered within 10 s.
async fn append_all(tx: &mpsc::Sender<Cmd>, range: std::ops::RangeInclusive<u64>, what: &str) {
    for i in range {
        tokio::time::timeout(Duration::from_secs(10), append(tx, i))
            .await
            .unwrap_or_else(|_| panic!("append {i} not answered while {what}"))
            .unwrap();
    }
}

/// A writer on a fresh segment 1 of `dir`; each of its background fsyncs
/// sends on `entered`, then blocks until `release` is dropped.
struct Gated {
    tx: mpsc::Sender<Cmd>,
    counters: Arc<Counters>,
    writer: JoinHandle<()>,
    entered: std_mpsc::Receiver<()>,
    release: std_mpsc::Sender<()>,
}

fn gated(dir: &Path, policy: FsyncPolicy, segment_bytes: u64) -> Gated {
    let file = create_segment(dir, 1).unwrap();
    let (entered_tx, entered) = std_mpsc::channel::<()>();
    let (release, release_rx) = std_mpsc::channel::<()>();
    let gate = Mutex::new((entered_tx, release_rx));
    let cfg = WriterConfig {
        dir: dir.to_path_buf(),
        policy,
        segment_bytes,
        max_batch_bytes: 1 << 20,
        before_sync: Some(Arc::new(move || {
            let gate = gate.lock().unwrap();
            // A dropped receiver or sender only means the test is over.
            let _ = gate.0.send(());
            let _ = gate.1.recv();
        })),
    };
    let counters = Arc::new(Counters::default());
    let (tx, rx) = mpsc::channel(64);
    let writer = tokio::spawn(Writer::new(cfg, Ok(file), 1, counters.clone()).run(rx));
    Gated {
        tx,
        counters,
        writer,
        entered,
        release,
    }
}

/// Waits, off the runtime, until a background fsync has started.
async fn fsync_started(entered: std_mpsc::Receiver<()>) {
    let got = tokio::task::spawn_blocking(move || entered.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap();
    got.expect("a background fsync started");
}

async fn send_and_wait(
    tx: &mpsc::Sender<Cmd>,
    cmd: impl FnOnce(oneshot::Sender<Result<()>>) -> Cmd,
) {
    let (done, wait) = oneshot::channel();
    tx.send(cmd(done)).await.unwrap();
    wait.await.unwrap().unwrap();
}

/// Shuts the writer down, then reopens its log: the records recovered.
async fn shut_down_and_reopen(
    tx: &mpsc::Sender<Cmd>,
    writer: JoinHandle<()>,
    dir: &Path,
) -> Vec<Record> {
    send_and_wait(tx, |done| Cmd::Shutdown { done }).await;
    writer.await.unwrap();
    let mut got = Vec::new();
    let (log, _) = CommitLog::open(dir, LogOptions::for_test(), |r| got.push(r)).unwrap();
    drop(log);
    got
}

/// Under `Interval`, an fsync under way holds nobody's answer: appends
/// are answered while it is held; a `Sync` waits for it; every record is
/// there after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_appends_are_answered_while_an_fsync_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let policy = FsyncPolicy::Interval(Duration::from_millis(1));
    let Gated {
        tx,
        counters,
        writer,
        entered,
        release,
    } = gated(dir.path(), policy, 1 << 30);

    append(&tx, 0).await.unwrap();
    // 1 ms later the timer (or the next write) starts an fsync, held.
    fsync_started(entered).await;
    append_all(&tx, 1..=20, "an interval fsync is held").await;
    assert_eq!(
        counters.snapshot().fsyncs,
        0,
        "the held fsync has not ended"
    );

    let (done, wait) = oneshot::channel();
    tx.send(Cmd::Sync { done }).await.unwrap();
    let mut wait = Box::pin(wait);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut wait)
            .await
            .is_err(),
        "a Sync answered while an fsync was held"
    );
    drop(release);
    wait.await.unwrap().unwrap();
    assert!(counters.snapshot().fsyncs >= 1);

    assert_eq!(
        shut_down_and_reopen(&tx, writer, dir.path()).await,
        (0..=20).map(rec).collect::<Vec<_>>()
    );
}

/// A full segment is replaced without holding appends: while the retired
/// segment's final fsync is held, appends are answered on the new segment
/// (past its size limit, as the next rotation waits for that fsync); then
/// every record reopens, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_does_not_hold_appends_for_the_retired_segments_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let Gated {
        tx,
        counters,
        writer,
        entered,
        release,
    } = gated(dir.path(), FsyncPolicy::Never, 64);

    append_all(&tx, 0..=1, "segment 1 fills").await;
    // Past 64 bytes: segment 2 is created in the background, and the
    // switch to it starts segment 1's final fsync, which is held.
    fsync_started(entered).await;
    append_all(&tx, 2..=20, "the retired segment's fsync is held").await;
    let stats = counters.snapshot();
    assert_eq!(stats.active_segment, 2);
    assert_eq!(stats.fsyncs, 0, "the held fsync has not ended");

    // Segment 2 filled meanwhile: once the fsync has ended it is replaced
    // at once, with no further append (appends may have stopped). (That
    // retires segment 2 in turn, whose fsync may end before the poll
    // below looks: at least one.)
    drop(release);
    until("the retired segment's fsync never ended", || {
        counters.snapshot().fsyncs >= 1
    })
    .await;
    until("rotation never resumed", || {
        counters.snapshot().active_segment == 3
    })
    .await;
    assert_eq!(
        shut_down_and_reopen(&tx, writer, dir.path()).await,
        (0..=20).map(rec).collect::<Vec<_>>()
    );
}

/// A segment file that a failed creation left behind (created, header not
/// finished) does not stop rotation: the next attempt replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_left_by_a_failed_segment_creation_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let Gated {
        tx,
        counters,
        writer,
        ..
    } = gated(dir.path(), FsyncPolicy::Always, 64);
    std::fs::write(super::files::segment_path(dir.path(), 2), b"torn").unwrap();
    append_all(&tx, 0..=1, "segment 1 fills").await;
    until("segment 2 never replaced the leftover", || {
        counters.snapshot().active_segment == 2
    })
    .await;
    append_all(&tx, 2..=3, "segment 2 is active").await;
    assert_eq!(
        shut_down_and_reopen(&tx, writer, dir.path()).await,
        (0..=3).map(rec).collect::<Vec<_>>()
    );
}
