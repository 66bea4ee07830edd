//! The writer task driven directly, with an fsync held on its blocking
//! thread: what waits for an fsync and what does not.

use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::files::create_segment;
use super::record::encode;
use super::stats::Counters;
use super::writer::{Cmd, Done, Writer, WriterConfig};
use super::*;

fn rec(i: u64) -> Record {
    Record {
        key: bytes::Bytes::from(format!("key-{i}")),
        value: Some(bytes::Bytes::from(format!("value-{i}"))),
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

/// Under `Interval`, an fsync under way holds nobody's answer: appends
/// are answered while it is held; a `Sync` waits for it; every record is
/// there after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_appends_are_answered_while_an_fsync_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let file = create_segment(dir.path(), 1).unwrap();
    let (entered_tx, entered_rx) = std_mpsc::channel::<()>();
    let (release_tx, release_rx) = std_mpsc::channel::<()>();
    let gate = Mutex::new((entered_tx, release_rx));
    let cfg = WriterConfig {
        dir: dir.path().to_path_buf(),
        policy: FsyncPolicy::Interval(Duration::from_millis(1)),
        segment_bytes: 1 << 30,
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
    let writer = tokio::spawn(Writer::new(cfg, file, 1, counters.clone()).run(rx));

    append(&tx, 0).await.unwrap();
    // 1 ms later the timer (or the next write) starts an fsync; it blocks
    // in the hook until released.
    let entered = tokio::task::spawn_blocking(move || {
        let got = entered_rx.recv_timeout(Duration::from_secs(10));
        (got, entered_rx)
    });
    let (got, _entered_rx) = entered.await.unwrap();
    got.expect("an interval fsync started");
    for i in 1..=20 {
        tokio::time::timeout(Duration::from_secs(10), append(&tx, i))
            .await
            .expect("an append is answered while the fsync is held")
            .unwrap();
    }
    assert_eq!(
        counters.snapshot().fsyncs,
        0,
        "the held fsync has not ended"
    );

    // A Sync waits for the fsync under way.
    let (done, wait) = oneshot::channel();
    tx.send(Cmd::Sync { done }).await.unwrap();
    let mut wait = Box::pin(wait);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut wait)
            .await
            .is_err(),
        "a Sync answered while an fsync was held"
    );
    drop(release_tx);
    wait.await.unwrap().unwrap();
    assert!(counters.snapshot().fsyncs >= 1);

    let (done, wait) = oneshot::channel();
    tx.send(Cmd::Shutdown { done }).await.unwrap();
    wait.await.unwrap().unwrap();
    writer.await.unwrap();
    let mut got = Vec::new();
    let (log, _) = CommitLog::open(dir.path(), LogOptions::for_test(), |r| got.push(r)).unwrap();
    drop(log);
    assert_eq!(got, (0..=20).map(rec).collect::<Vec<_>>());
}
