//! When a command of a connection may start: at once, or after the
//! commands before it.
//!
//! A connection runs its pipelined commands concurrently and answers them
//! in order ([`Ordered`]), but a client expects the effects of its own
//! commands in the order it sent them, as Redis executes a pipeline one
//! command after the other. Two commands of one connection that touch
//! different keys may run at once; for two that share a key, the later
//! one waits ([`Ordered::push_deferred`]: it starts once every older
//! command has finished) whenever running them together could show the
//! client something sequential execution would not:
//!
//! | earlier (still running) | later | the later one waits because |
//! |---|---|---|
//! | read | write | a read that asks another replica late (speculation, confirming a miss) would see the later write |
//! | write | write | only if the earlier one has not started: a write is stamped when it starts, and the later stamp must be the later write's |
//! | write | read | only if the earlier one has not started; once it has, every replica gets the write before any later read message (links deliver in order) |
//! | read | read | never |
//! | read-modify-write | anything | it writes only after its read: what comes after must see that write |
//! | anything | read-modify-write | it must read what the earlier commands wrote, and its write must not reach an earlier read |
//!
//! A **barrier** (FLUSHALL, EXEC, WATCH, UNWATCH, WAIT, KEYS, SCAN,
//! DBSIZE, RANDOMKEY, RESET, DISCARD) concerns everything the connection did
//! before it, and everything after it is about what it did: it starts when
//! all older commands are done, and every later command waits for it.
//!
//! Keys are compared by a 64-bit hash; a collision only makes a command
//! wait when it need not. The same rules order the commands of a
//! transaction inside EXEC.

use std::task::{Context, Poll};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::resp::cmd::{table, Run, Spec};
use crate::resp::codec::Reply;
use crate::resp::ordered::Ordered;

/// What a command does to its keys.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Nothing (a reply already known, a command without keys).
    #[default]
    Inert,
    /// Only reads them.
    Read,
    /// Writes them without reading them first.
    Write,
    /// Reads, then writes from what it read.
    Rmw,
}

/// What a started command touches, for deciding who waits for whom.
#[derive(Debug, Default, Clone)]
pub struct Footprint {
    /// Hashes of its keys.
    keys: SmallVec<[u64; 2]>,
    kind: Kind,
    barrier: bool,
    /// It was queued to start only once every older command finished.
    deferred: bool,
}

impl Footprint {
    /// A reply that is already known: it touches nothing.
    pub fn none() -> Self {
        Footprint::default()
    }

    /// The footprint of a call of `spec` with `args`.
    pub fn of(spec: &Spec, args: &[Bytes]) -> Self {
        let with_options = args.len() > spec.arity.unsigned_abs() as usize;
        let kind = if spec.has(table::RMW) || (with_options && spec.has(table::RMW_WITH_OPTIONS)) {
            Kind::Rmw
        } else if spec.has(table::WRITE) {
            Kind::Write
        } else if spec.has(table::READONLY) {
            Kind::Read
        } else {
            Kind::Inert
        };
        // One key (GET, SET...) is the common case: no iterator chain.
        let keys = match (spec.key_args, args.get(1)) {
            ((1, 1, _), Some(key)) => smallvec::smallvec![key_hash(key)],
            _ => spec.keys(args).map(|k| key_hash(k)).collect(),
        };
        Footprint {
            keys,
            kind,
            barrier: spec.has(table::BARRIER),
            deferred: false,
        }
    }

    fn shares_a_key(&self, other: &Footprint) -> bool {
        self.keys.iter().any(|k| other.keys.contains(k))
    }

    /// Whether `later` must wait for `self`, an older command still
    /// running, given that they share a key (the table in the module doc).
    fn holds_back(&self, later: &Footprint) -> bool {
        match (self.kind, later.kind) {
            (Kind::Inert, _) | (_, Kind::Inert) => false,
            (Kind::Rmw, _) | (_, Kind::Rmw) => true,
            (Kind::Read, Kind::Write) => true,
            (Kind::Write, _) => self.deferred,
            (Kind::Read, Kind::Read) => false,
        }
    }
}

/// The filter slot of a key hash.
fn slot_of(hash: u64) -> usize {
    (hash >> 56) as usize % FILTER
}

fn key_hash(key: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x5eed).hash_one(key)
}

/// Slots of [`Sequencer`]'s key filter.
const FILTER: usize = 256;

/// A connection's (or a transaction's) commands in flight, started as the
/// rules above allow and finished in order.
pub struct Sequencer<S> {
    queue: Ordered<(S, Footprint), Reply>,
    /// Barriers in the queue.
    barriers: usize,
    /// How many keys of the commands in the queue fall in each slot (by
    /// their hash): a new command whose keys all fall in empty slots
    /// shares no key with any of them, and starts without a scan of the
    /// queue, which is the usual case of a pipeline of distinct keys.
    filter: Box<[u32; FILTER]>,
}

impl<S> Sequencer<S> {
    /// An empty sequencer with room for `capacity` commands.
    pub fn with_capacity(capacity: usize) -> Self {
        Sequencer {
            queue: Ordered::with_capacity(capacity),
            barriers: 0,
            filter: Box::new([0; FILTER]),
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

    /// Adds a command's outcome with its `data`: a known reply is queued
    /// as done; a future starts at once, or when every older command has
    /// finished if it must wait (see the module doc).
    pub fn push(&mut self, data: S, mut footprint: Footprint, run: Run) {
        match run {
            Run::Now(reply) => self.queue.push_done((data, Footprint::none()), reply),
            Run::Later(fut) => {
                footprint.deferred = self.must_wait(&footprint);
                self.barriers += usize::from(footprint.barrier);
                for k in &footprint.keys {
                    let slot = &mut self.filter[slot_of(*k)];
                    *slot = slot.saturating_add(1);
                }
                if footprint.deferred {
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

    /// Whether a read with footprint `new` may read its keys now, before
    /// the commands in the queue are next polled (a read answered during
    /// dispatch): nothing queued is a barrier, and nothing queued that
    /// shares a key with it writes (a write queued but not yet polled has
    /// not reached the store).
    pub fn may_read_now(&self, new: &Footprint) -> bool {
        if new.kind != Kind::Read || new.barrier || self.barriers > 0 {
            return false;
        }
        if self.queue.is_empty() || new.keys.iter().all(|k| self.filter[slot_of(*k)] == 0) {
            return true;
        }
        !self
            .queue
            .data()
            .map(|(_, f)| f)
            .any(|f| f.shares_a_key(new) && matches!(f.kind, Kind::Write | Kind::Rmw))
    }

    fn must_wait(&self, new: &Footprint) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        if new.barrier || self.barriers > 0 {
            return true;
        }
        if new.keys.iter().all(|k| self.filter[slot_of(*k)] == 0) {
            return false;
        }
        self.queue
            .data()
            .map(|(_, f)| f)
            .any(|f| f.shares_a_key(new) && f.holds_back(new))
    }

    /// The oldest command's data and reply, once it has finished (see
    /// [`Ordered::poll_next`]).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<(S, Reply)>> {
        match self.queue.poll_next(cx) {
            Poll::Ready(Some(((data, footprint), reply))) => {
                self.barriers -= usize::from(footprint.barrier);
                for k in &footprint.keys {
                    let slot = &mut self.filter[slot_of(*k)];
                    *slot = slot.saturating_sub(1);
                }
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
        let fp = Footprint::of(spec, &a);
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
        push(&mut seq, "set2", &["SET", "j", "2"], &log, gate.clone());
        assert!(poll(&mut seq).is_none());
        assert_eq!(*log.lock().unwrap(), ["set", "get", "set2"]);
    }

    #[tokio::test]
    async fn a_read_may_run_at_dispatch_only_with_no_write_of_its_key_queued() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (_tx, gate) = tokio::sync::watch::channel(false);
        let fp = |words: &[&str]| {
            let a = args(words);
            Footprint::of(lookup(a[0].as_ref()).unwrap(), &a)
        };
        let mut seq = Sequencer::with_capacity(8);
        assert!(seq.may_read_now(&fp(&["GET", "k"])), "nothing queued");
        push(&mut seq, "get", &["GET", "k"], &log, gate.clone());
        assert!(seq.may_read_now(&fp(&["GET", "k"])), "a read of it");
        push(&mut seq, "set", &["SET", "k", "1"], &log, gate.clone());
        assert!(!seq.may_read_now(&fp(&["GET", "k"])), "a write of it");
        assert!(seq.may_read_now(&fp(&["GET", "j"])), "another key");
        push(&mut seq, "incr", &["INCR", "j"], &log, gate.clone());
        assert!(!seq.may_read_now(&fp(&["GET", "j"])), "a read-modify-write");
        assert!(
            !seq.may_read_now(&fp(&["MGET", "x", "j"])),
            "one of its keys"
        );
        push(&mut seq, "keys", &["KEYS", "*"], &log, gate.clone());
        assert!(!seq.may_read_now(&fp(&["GET", "y"])), "a barrier");
    }

    #[tokio::test]
    async fn commands_sharing_a_key_wait_as_the_table_says() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, gate) = tokio::sync::watch::channel(false);
        let mut seq = Sequencer::with_capacity(8);
        push(&mut seq, "set", &["SET", "k", "1"], &log, gate.clone());
        // A read-modify-write of the key waits for the SET.
        push(
            &mut seq,
            "append",
            &["APPEND", "k", "x"],
            &log,
            gate.clone(),
        );
        // One of another key does not.
        push(
            &mut seq,
            "setnx",
            &["SETNX", "other", "y"],
            &log,
            gate.clone(),
        );
        // A GET of the key waits for the APPEND's write.
        push(&mut seq, "get", &["GET", "k"], &log, gate.clone());
        // A GET of an unrelated key does not wait.
        push(&mut seq, "get2", &["GET", "z"], &log, gate.clone());
        // A write of `z` after a read of it waits: the read must not see it.
        push(&mut seq, "set_z", &["SET", "z", "2"], &log, gate.clone());
        assert!(poll(&mut seq).is_none());
        assert_eq!(*log.lock().unwrap(), ["set", "setnx", "get2"]);
        tx.send_replace(true);
        let mut order = Vec::new();
        while let Some(Some((name, _))) = poll(&mut seq) {
            order.push(name);
        }
        assert_eq!(order, ["set", "append", "setnx", "get", "get2", "set_z"]);
        assert_eq!(
            *log.lock().unwrap(),
            ["set", "setnx", "get2", "append", "get", "set_z"]
        );
    }

    #[tokio::test]
    async fn reads_share_keys_freely_and_so_do_writes_that_have_started() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (_tx, gate) = tokio::sync::watch::channel(false);
        let mut seq = Sequencer::with_capacity(8);
        push(&mut seq, "get", &["GET", "k"], &log, gate.clone());
        push(&mut seq, "get2", &["GET", "k"], &log, gate.clone());
        push(&mut seq, "mget", &["MGET", "k", "j"], &log, gate.clone());
        push(&mut seq, "set", &["SET", "j", "1"], &log, gate.clone());
        push(&mut seq, "set2", &["SET", "i", "1"], &log, gate.clone());
        push(&mut seq, "set3", &["SET", "i", "2"], &log, gate.clone());
        push(&mut seq, "get3", &["GET", "i"], &log, gate.clone());
        assert!(poll(&mut seq).is_none());
        // `SET j` waits for the MGET that reads j; the rest run at once.
        assert_eq!(
            *log.lock().unwrap(),
            ["get", "get2", "mget", "set2", "set3", "get3"]
        );
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
