//! When a command of a connection may start: at once, or after the
//! commands before it.
//!
//! A connection runs its pipelined commands concurrently and answers them
//! in order ([`Ordered`]). For plain reads and writes that is safe: a SET
//! is stamped by the clock when it starts, so of two pipelined SETs of one
//! key the later always wins, and each peer link delivers in order, so a
//! GET sent after a SET of the same key reaches every replica after it.
//! Two kinds of command need more, and wait ([`Ordered::push_deferred`])
//! until every older command of the connection has finished:
//!
//! - a **read-modify-write** (APPEND, SETNX, SET NX/XX/GET, SETRANGE...)
//!   reads the key and writes from what it read, so it must not read
//!   before the connection's earlier writes of that key are done, and a
//!   later command on that key must not run before it has written. It
//!   waits when an older command still running shares a key with it (or
//!   might: commands started while no read-modify-write was in flight
//!   did not record their keys), and a later command waits for it when
//!   they share a key.
//! - a **barrier** (FLUSHALL, EXEC, WATCH, WAIT, KEYS, SCAN, DBSIZE,
//!   RANDOMKEY) is about everything the connection did before it, and
//!   everything after it is about what it did: it starts when all older
//!   commands are done, and every later command waits for it.
//!
//! Keys are compared by a 64-bit hash; a collision only makes a command
//! wait when it need not. A pipeline of GETs and SETs never computes one.
//! The same rules order the commands of a transaction inside EXEC.

use std::task::{Context, Poll};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::resp::cmd::{table, Run, Spec};
use crate::resp::codec::Reply;
use crate::resp::ordered::Ordered;

/// What a started command touches, for deciding who waits for whom.
#[derive(Debug, Default, Clone)]
pub struct Footprint {
    /// Hashes of its keys, if they were recorded.
    keys: SmallVec<[u64; 2]>,
    /// Whether `keys` was filled in (or the command has no effect).
    known: bool,
    rmw: bool,
    barrier: bool,
}

impl Footprint {
    /// A reply that is already known: it touches nothing.
    pub fn none() -> Self {
        Footprint {
            known: true,
            ..Footprint::default()
        }
    }

    /// The footprint of a call of `spec` with `args`; its keys are
    /// recorded if `record_keys` or the command is a read-modify-write.
    pub fn of(spec: &Spec, args: &[Bytes], record_keys: bool) -> Self {
        let rmw = spec.has(table::RMW);
        let mut fp = Footprint {
            rmw,
            barrier: spec.has(table::BARRIER),
            ..Footprint::default()
        };
        if rmw || record_keys {
            fp.known = true;
            fp.keys = spec.keys(args).map(|k| key_hash(k)).collect();
        }
        fp
    }

    fn shares_a_key(&self, other: &Footprint) -> bool {
        self.keys.iter().any(|k| other.keys.contains(k))
    }
}

fn key_hash(key: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x5eed).hash_one(key)
}

/// A connection's (or a transaction's) commands in flight, started as the
/// rules above allow and finished in order.
pub struct Sequencer<S> {
    queue: Ordered<(S, Footprint), Reply>,
    /// Read-modify-writes in the queue.
    rmw: usize,
    /// Barriers in the queue.
    barriers: usize,
}

impl<S> Sequencer<S> {
    /// An empty sequencer with room for `capacity` commands.
    pub fn with_capacity(capacity: usize) -> Self {
        Sequencer {
            queue: Ordered::with_capacity(capacity),
            rmw: 0,
            barriers: 0,
        }
    }

    /// Commands not yet taken.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The footprint a call of `spec` with `args` would have now. Call it
    /// before the command is dispatched (which consumes `args`).
    pub fn footprint(&self, spec: &Spec, args: &[Bytes]) -> Footprint {
        Footprint::of(spec, args, self.rmw > 0)
    }

    /// Adds a command's outcome with its `data`: a known reply is queued
    /// as done; a future starts at once, or when every older command has
    /// finished if it must wait (see the module doc).
    pub fn push(&mut self, data: S, footprint: Footprint, run: Run) {
        match run {
            Run::Now(reply) => self.queue.push_done((data, Footprint::none()), reply),
            Run::Later(fut) => {
                let wait = self.must_wait(&footprint);
                self.rmw += usize::from(footprint.rmw);
                self.barriers += usize::from(footprint.barrier);
                if wait {
                    self.queue.push_deferred((data, footprint), fut);
                } else {
                    self.queue.push((data, footprint), fut);
                }
            }
        }
    }

    /// Queues an answer known at once, touching nothing.
    pub fn push_done(&mut self, data: S, reply: Reply) {
        self.queue.push_done((data, Footprint::none()), reply);
    }

    fn must_wait(&self, new: &Footprint) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        if new.barrier || self.barriers > 0 {
            return true;
        }
        let mut older = self.queue.data().map(|(_, f)| f);
        if new.rmw {
            return older.any(|f| !f.known || f.shares_a_key(new));
        }
        self.rmw > 0 && older.any(|f| f.rmw && f.shares_a_key(new))
    }

    /// The oldest command's data and reply, once it has finished (see
    /// [`Ordered::poll_next`]).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<(S, Reply)>> {
        match self.queue.poll_next(cx) {
            Poll::Ready(Some(((data, footprint), reply))) => {
                self.rmw -= usize::from(footprint.rmw);
                self.barriers -= usize::from(footprint.barrier);
                Poll::Ready(Some((data, reply)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::cmd::lookup;
    use futures::FutureExt;
    use std::sync::{Arc, Mutex};

    fn args(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::from(w.to_string())).collect()
    }

    /// Pushes a command whose future records when it starts into `log`
    /// and finishes when `gate` lets it.
    fn push(
        seq: &mut Sequencer<&'static str>,
        name: &'static str,
        words: &[&str],
        log: &Arc<Mutex<Vec<&'static str>>>,
        gate: tokio::sync::watch::Receiver<bool>,
    ) {
        let a = args(words);
        let spec = lookup(a[0].as_ref()).unwrap();
        let fp = seq.footprint(spec, &a);
        let log = log.clone();
        let run = Run::later(async move {
            log.lock().unwrap().push(name);
            let mut gate = gate;
            gate.wait_for(|open| *open).await.ok();
            Reply::ok()
        });
        seq.push(name, fp, run);
    }

    fn poll(seq: &mut Sequencer<&'static str>) -> Option<Option<(&'static str, Reply)>> {
        std::future::poll_fn(|cx| seq.poll_next(cx)).now_or_never()
    }

    #[tokio::test]
    async fn plain_reads_and_writes_all_start_at_once() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (_tx, gate) = tokio::sync::watch::channel(false);
        let mut seq = Sequencer::with_capacity(4);
        push(&mut seq, "set", &["SET", "k", "1"], &log, gate.clone());
        push(&mut seq, "get", &["GET", "k"], &log, gate.clone());
        push(&mut seq, "set2", &["SET", "k", "2"], &log, gate.clone());
        assert!(poll(&mut seq).is_none());
        assert_eq!(*log.lock().unwrap(), ["set", "get", "set2"]);
    }

    #[tokio::test]
    async fn a_read_modify_write_waits_for_earlier_commands_it_may_share_a_key_with() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, gate) = tokio::sync::watch::channel(false);
        let mut seq = Sequencer::with_capacity(8);
        push(&mut seq, "set", &["SET", "k", "1"], &log, gate.clone());
        // The SET recorded no keys (nothing read-modify-write was in
        // flight), so the APPEND cannot know they differ: it waits.
        push(
            &mut seq,
            "append",
            &["APPEND", "k", "x"],
            &log,
            gate.clone(),
        );
        // So does one of another key: the SET's keys are unknown.
        push(
            &mut seq,
            "setnx",
            &["SETNX", "other", "y"],
            &log,
            gate.clone(),
        );
        // A GET of the key the waiting APPEND writes waits for it.
        push(&mut seq, "get", &["GET", "k"], &log, gate.clone());
        // And a GET of an unrelated key does not.
        push(&mut seq, "get2", &["GET", "z"], &log, gate.clone());
        assert!(poll(&mut seq).is_none());
        assert_eq!(*log.lock().unwrap(), ["set", "get2"]);
        tx.send_replace(true);
        let mut order = Vec::new();
        while let Some(Some((name, _))) = poll(&mut seq) {
            order.push(name);
        }
        assert_eq!(order, ["set", "append", "setnx", "get", "get2"]);
        assert_eq!(
            *log.lock().unwrap(),
            ["set", "get2", "append", "setnx", "get"]
        );
    }

    #[tokio::test]
    async fn read_modify_writes_of_different_keys_run_together() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (_tx, gate) = tokio::sync::watch::channel(false);
        let mut seq = Sequencer::with_capacity(8);
        push(&mut seq, "a", &["SETNX", "a", "1"], &log, gate.clone());
        push(&mut seq, "b", &["APPEND", "b", "1"], &log, gate.clone());
        push(&mut seq, "a2", &["APPEND", "a", "2"], &log, gate.clone());
        push(&mut seq, "c", &["SET", "c", "1"], &log, gate.clone());
        assert!(poll(&mut seq).is_none());
        assert_eq!(*log.lock().unwrap(), ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_barrier_waits_for_everything_before_and_holds_everything_after() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, gate) = tokio::sync::watch::channel(false);
        let mut seq = Sequencer::with_capacity(8);
        push(&mut seq, "set", &["SET", "a", "1"], &log, gate.clone());
        push(&mut seq, "flush", &["FLUSHALL"], &log, gate.clone());
        push(&mut seq, "get", &["GET", "b"], &log, gate.clone());
        assert!(poll(&mut seq).is_none());
        assert_eq!(*log.lock().unwrap(), ["set"]);
        tx.send_replace(true);
        while let Some(Some(_)) = poll(&mut seq) {}
        assert_eq!(*log.lock().unwrap(), ["set", "flush", "get"]);
        assert!(seq.is_empty());
    }
}
