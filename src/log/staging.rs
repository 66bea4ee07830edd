//! Appends encoded straight into the writer's next batch.
//!
//! An append used to encode its record into a buffer of its own and queue
//! it on the writer's channel, which the writer drained into its batch
//! buffer: an allocation, a channel send and a receive per write, on the
//! path of every SET. Now an append encodes its record into one shared
//! buffer under a short lock, and the first append into an empty buffer
//! wakes the writer, which takes the whole buffer as (part of) its next
//! batch. A pipeline of writes from many connections becomes one buffer
//! without a queue entry each.
//!
//! Order. The writer takes what is staged before every control command
//! (seal, sync, shutdown), so whatever was staged before such a command
//! was sent is written before it runs, as with the channel alone. Staged
//! appends and appends still sent on the channel (when the staged buffer
//! is full, and every replica's `append_frames_then`) may be written in
//! either order, which replay allows: it merges last-writer-wins, where
//! order does not matter.
//!
//! Back-pressure. At most `limit` bytes are staged; an append that finds
//! the buffer fuller than that goes on the channel instead, and waits
//! there while it is full, as before.
//!
//! Answers. The appends staged together share one answer
//! ([`StagedBatch`]): the writer sets it once and wakes each of them, where
//! a channel per append cost an allocation and two hand-overs each. An
//! append whose caller is not a task (a counter owner's increment, driven
//! by the events that reach it) leaves a callback instead of a waker
//! ([`Answer::then`]), called on the writer's task with the answer.
//!
//! Shutdown and crash. After a shutdown, and when the writer task ends for
//! any reason (an abort, in the simulated cluster's crash), the staging is
//! closed: appends waiting in it are answered `Error::Shutdown`, and new
//! ones are refused.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::sync::Notify;

use super::record::Parts;
use super::writer::Done;
use crate::error::{Error, Result};

/// The shared buffer of staged appends, and the writer's doorbell.
#[derive(Default)]
pub(super) struct Staging {
    state: Mutex<Staged>,
    /// Rung by the append that makes the buffer non-empty.
    pub(super) wake: Notify,
}

#[derive(Default)]
struct Staged {
    buf: BytesMut,
    records: u64,
    /// The answer the records in `buf` will share.
    batch: Arc<StagedBatch>,
    closed: bool,
}

/// What [`Staging::stage`] did with a record.
pub(super) enum Stage {
    /// Staged: its answer comes through this future.
    Queued(Answer),
    /// Not staged: the buffer holds `limit` bytes or more.
    Full,
}

/// The one answer of the appends staged together, set by the writer.
#[derive(Default)]
pub(in crate::log) struct StagedBatch {
    state: Mutex<BatchState>,
}

#[derive(Default)]
struct BatchState {
    outcome: Option<Outcome>,
    wakers: Vec<Waker>,
    /// Callbacks left by [`Answer::then`], called once with the answer.
    thens: Vec<Then>,
}

/// A callback waiting for a batch's answer.
pub(in crate::log) type Then = Box<dyn FnOnce(Result<()>) + Send>;

/// A batch's answer, in a form every one of its appends can be given.
#[derive(Clone)]
enum Outcome {
    Written,
    /// `Error::Misconf`: the log's fence (see `fence.rs`).
    Refused(String),
    Shutdown,
    /// Any other error, by its text.
    Failed(String),
}

impl StagedBatch {
    fn lock(&self) -> MutexGuard<'_, BatchState> {
        // The state is a value and a list of wakers: whole at every step.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives the batch its answer and wakes its appends (the first answer
    /// stands).
    pub(in crate::log) fn finish(&self, value: Result<()>) {
        let outcome = match value {
            Ok(()) => Outcome::Written,
            Err(Error::Misconf(why)) => Outcome::Refused(why),
            Err(Error::Shutdown) => Outcome::Shutdown,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        let (wakers, thens, outcome) = {
            let mut state = self.lock();
            let outcome = state.outcome.get_or_insert(outcome).clone();
            let thens = std::mem::take(&mut state.thens);
            (std::mem::take(&mut state.wakers), thens, outcome)
        };
        for w in wakers {
            w.wake();
        }
        for then in thens {
            then(outcome.result());
        }
    }
}

impl Outcome {
    /// The answer as one append takes it.
    fn result(&self) -> Result<()> {
        match self {
            Outcome::Written => Ok(()),
            Outcome::Refused(why) => Err(Error::Misconf(why.clone())),
            Outcome::Shutdown => Err(Error::Shutdown),
            Outcome::Failed(why) => Err(Error::Io(std::io::Error::other(why.clone()))),
        }
    }
}

/// The answer to one staged append: resolves when its batch's does.
pub(super) struct Answer {
    batch: Arc<StagedBatch>,
    /// Where its waker is in the batch's list, once it waits.
    slot: Option<usize>,
}

impl Future for Answer {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let mut state = this.batch.lock();
        match &state.outcome {
            Some(outcome) => Poll::Ready(outcome.result()),
            None => {
                // (The list is only taken with the outcome set, so a slot
                // stays valid while there is none.)
                match this.slot {
                    Some(i) => state.wakers[i].clone_from(cx.waker()),
                    None => {
                        this.slot = Some(state.wakers.len());
                        state.wakers.push(cx.waker().clone());
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl Answer {
    /// The answer if the batch is written, without waiting for it (and
    /// without leaving a waker: the answer wakes no one).
    pub(super) fn peek(&self) -> Option<Result<()>> {
        let state = self.batch.lock();
        state.outcome.as_ref().map(|outcome| outcome.result())
    }

    /// Calls `then` with the answer instead of waking a task: on the
    /// writer's task when the batch is written, or here and now if it
    /// already was. Must be quick and must not block.
    pub(super) fn then(self, then: Then) {
        let outcome = {
            let mut state = self.batch.lock();
            match &state.outcome {
                Some(outcome) => outcome.clone(),
                None => {
                    state.thens.push(then);
                    return;
                }
            }
        };
        then(outcome.result());
    }
}

impl Staging {
    fn lock(&self) -> MutexGuard<'_, Staged> {
        // A panic under the lock leaves nothing half-done that matters:
        // the buffer holds whole frames (each encoded before it is
        // counted), so the state is taken as it is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Encodes a record's `parts` (already checked encodable) into the
    /// buffer, unless it holds `limit` bytes or more; `Error::Shutdown`
    /// once closed.
    pub(super) fn stage(&self, parts: Parts<'_>, limit: usize) -> Result<Stage> {
        let mut staged = self.lock();
        if staged.closed {
            return Err(Error::Shutdown);
        }
        if staged.buf.len() >= limit {
            return Ok(Stage::Full);
        }
        let first = staged.records == 0;
        parts.encode_into(&mut staged.buf);
        staged.records += 1;
        let batch = staged.batch.clone();
        drop(staged);
        if first {
            self.wake.notify_one();
        }
        Ok(Stage::Queued(Answer { batch, slot: None }))
    }

    /// Moves what is staged onto the end of `buf`, and its shared answer
    /// onto `waiters`; how many records that was.
    pub(super) fn take_into(&self, buf: &mut BytesMut, waiters: &mut Vec<Done>) -> u64 {
        let mut staged = self.lock();
        if staged.records == 0 {
            return 0;
        }
        if buf.is_empty() {
            // The usual case (a batch of staged appends alone): the
            // buffers trade places, and each keeps its capacity.
            std::mem::swap(buf, &mut staged.buf);
        } else {
            buf.extend_from_slice(&staged.buf);
            staged.buf.clear();
        }
        waiters.push(Done::Staged(std::mem::take(&mut staged.batch)));
        std::mem::take(&mut staged.records)
    }

    /// Refuses later appends, and answers those staged `Error::Shutdown`.
    pub(super) fn close(&self) {
        let batch = {
            let mut staged = self.lock();
            staged.closed = true;
            staged.buf.clear();
            staged.records = 0;
            std::mem::take(&mut staged.batch)
        };
        batch.finish(Err(Error::Shutdown));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record::{encode_into, Record};

    fn rec(key: &str) -> Record {
        Record {
            key: bytes::Bytes::copy_from_slice(key.as_bytes()),
            body: Some(bytes::Bytes::from_static(b"v")).into(),
            ts: 1,
            node: 1,
        }
    }

    #[test]
    fn a_callback_left_on_an_answer_is_called_once_with_its_batch_answer() {
        use std::sync::mpsc;
        let staging = Staging::default();
        let stage = || match staging.stage(rec("a").parts(), 1 << 20) {
            Ok(Stage::Queued(answer)) => answer,
            _ => panic!("not staged"),
        };
        let (tx, rx) = mpsc::channel();
        let note = |tag: &'static str| -> Then {
            let tx = tx.clone();
            Box::new(move |result: Result<()>| tx.send((tag, result.is_ok())).unwrap())
        };
        // Left before the batch is written: called when it is.
        stage().then(note("before"));
        let (mut buf, mut waiters) = (BytesMut::new(), Vec::new());
        assert_eq!(staging.take_into(&mut buf, &mut waiters), 1);
        assert!(rx.try_recv().is_err(), "not called before the answer");
        let Done::Staged(batch) = waiters.remove(0) else {
            panic!("the staged batch's answer")
        };
        batch.finish(Ok(()));
        assert_eq!(rx.try_recv(), Ok(("before", true)));
        // Left after: called at once, with the answer given.
        Answer { batch, slot: None }.then(note("after"));
        assert_eq!(rx.try_recv(), Ok(("after", true)));
        // A batch closed unwritten answers its callbacks with an error.
        stage().then(note("closed"));
        staging.close();
        assert_eq!(rx.try_recv(), Ok(("closed", false)));
        assert!(rx.try_recv().is_err(), "each called once");
    }

    #[tokio::test]
    async fn staged_records_are_taken_whole_in_order_and_answered_on_close() {
        let staging = Staging::default();
        let Ok(Stage::Queued(a)) = staging.stage(rec("a").parts(), 1 << 20) else {
            panic!("not staged")
        };
        let Ok(Stage::Queued(b)) = staging.stage(rec("b").parts(), 1 << 20) else {
            panic!("not staged")
        };
        // The first append rang the doorbell (a permit is stored).
        staging.wake.notified().await;
        let (mut buf, mut waiters) = (BytesMut::new(), Vec::new());
        assert_eq!(staging.take_into(&mut buf, &mut waiters), 2);
        let mut expected = BytesMut::new();
        encode_into(&rec("a"), &mut expected);
        encode_into(&rec("b"), &mut expected);
        assert_eq!(buf, expected);
        assert_eq!(waiters.len(), 1, "one answer for the batch");
        assert_eq!(staging.take_into(&mut buf, &mut waiters), 0, "taken once");
        waiters.remove(0).finish(Ok(()));
        assert!(matches!(a.await, Ok(())));
        assert!(matches!(b.await, Ok(())));
        // Staged after the take, then closed: answered Shutdown.
        let Ok(Stage::Queued(c)) = staging.stage(rec("c").parts(), 1 << 20) else {
            panic!("not staged")
        };
        staging.close();
        assert!(matches!(c.await, Err(Error::Shutdown)));
        assert!(matches!(
            staging.stage(rec("d").parts(), 1 << 20),
            Err(Error::Shutdown)
        ));
    }

    /// Appends staged (polled once: they wait for their answer) before a
    /// sync and a shutdown are written by them: answered Ok, and there
    /// when the log is opened again. Appends after the shutdown are
    /// refused.
    #[tokio::test]
    async fn what_is_staged_before_a_control_command_is_written_before_it() {
        use futures::FutureExt;
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            super::super::CommitLog::open(dir.path(), super::super::LogOptions::for_test(), |_| {})
        };
        let (log, _) = open().unwrap();
        let stage = |range: std::ops::Range<usize>| {
            range
                .map(|i| {
                    let mut append = Box::pin(log.append(rec(&format!("k{i}"))));
                    assert!(
                        append.as_mut().now_or_never().is_none(),
                        "answered unwritten"
                    );
                    append
                })
                .collect::<Vec<_>>()
        };
        let before_sync = stage(0..10);
        log.sync().await.unwrap();
        for append in before_sync {
            // Answered by the time the sync is.
            assert!(matches!(append.now_or_never(), Some(Ok(()))));
        }
        let before_shutdown = stage(10..20);
        log.shutdown().await.unwrap();
        for append in before_shutdown {
            append.await.unwrap();
        }
        assert!(matches!(
            log.append(rec("late")).await,
            Err(Error::Shutdown)
        ));
        drop(log);
        let mut keys = Vec::new();
        let _reopened =
            super::super::CommitLog::open(dir.path(), super::super::LogOptions::for_test(), |r| {
                keys.push(r.key)
            })
            .unwrap();
        assert_eq!(keys.len(), 20, "{keys:?}");
    }

    #[tokio::test]
    async fn a_batch_gives_each_append_the_log_s_refusal() {
        let staging = Staging::default();
        let answers: Vec<Answer> = (0..3)
            .map(
                |i| match staging.stage(rec(&format!("k{i}")).parts(), 1 << 20) {
                    Ok(Stage::Queued(answer)) => answer,
                    _ => panic!("not staged"),
                },
            )
            .collect();
        let (mut buf, mut waiters) = (BytesMut::new(), Vec::new());
        assert_eq!(staging.take_into(&mut buf, &mut waiters), 3);
        for w in waiters {
            w.finish(Err(Error::Misconf("disk full".into())));
        }
        for answer in answers {
            assert!(matches!(answer.await, Err(Error::Misconf(why)) if why == "disk full"));
        }
    }

    #[test]
    fn a_full_buffer_sends_the_append_elsewhere() {
        let staging = Staging::default();
        assert!(matches!(
            staging.stage(rec("a").parts(), 1),
            Ok(Stage::Queued(_))
        ));
        assert!(matches!(
            staging.stage(rec("b").parts(), 1),
            Ok(Stage::Full)
        ));
    }
}
