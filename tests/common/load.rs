//! A steady client load for rolling-upgrade tests: client threads loop over
//! random writes and reads of a few keys of each type, through whichever
//! node is not being drained, and record every write in the one history
//! checker (`ringkv::history`), so that what a cluster of mixed versions
//! ends with can be judged at the end, and every reply that is not a
//! normal answer (an error, a timeout, a dropped connection) is counted as
//! a failed request, since a rolling upgrade done right fails none.
//!
//! **Draining.** Before a node is stopped it is marked draining: clients
//! finish the request they have in flight on it, then send nothing more
//! there; [`Load::drain`] returns once no request is in flight on it. Each
//! client bumps a node's in-flight count *before* checking the draining
//! mark and the drainer sets the mark *before* reading the count (both
//! sequentially consistent), so no request slips through between the two.
//! [`Load::undrain`], once the node runs again, moves it to a new epoch
//! before it clears the mark: a client reconnects to a node whose epoch
//! is newer than its connection's, so no connection to the stopped
//! process (even one a client opened while its last request there was in
//! flight during the drain) is used again.
//!
//! Included by `tests/upgrade.rs` with `#[path]` (with `rolling.rs`),
//! not by `common/mod.rs`: the other test crates do not compile it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringkv::history::{History, Observed, Op, Outcome};
use ringkv::resp::codec::Reply;

use crate::common::{observe, wait_until, Client};

/// How long a client waits for a reply: well past the nodes' request
/// timeout (2 s), so a request the cluster cannot serve comes back as an
/// error reply, and only a node that stopped answering times out here.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The expiry of the keys written with `SET ... PX`: an hour, so that no
/// key expires during a test and every expiry must survive each version.
pub const TTL_MS: i64 = 3_600_000;

/// Keys of each type the load uses: few, so that writes conflict.
pub const KEYS_PER_TYPE: usize = 4;

/// Which commands the load sends: what the oldest release in the test
/// has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// SET, DEL and GET of strings (0.1.0 has nothing else).
    Strings,
    /// Every type: strings, strings with expiry, counters, hashes, sets.
    Every,
}

impl Mix {
    /// The key prefixes the load writes: `k` strings, `x` strings with
    /// expiry, `c` counters, `h` hashes, `s` sets ([`observe`](crate::common::observe) reads each
    /// by its first letter).
    pub fn prefixes(self) -> &'static [&'static str] {
        match self {
            Mix::Strings => &["k"],
            Mix::Every => &["k", "x", "c", "h", "s"],
        }
    }

    /// Every key the load may touch.
    pub fn keys(self) -> Vec<String> {
        let mut keys = Vec::new();
        for p in self.prefixes() {
            keys.extend((0..KEYS_PER_TYPE).map(|i| format!("{p}{i}")));
        }
        keys
    }
}

/// Requests sent and answered normally, per command.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Command label (`SET`, `SET PX`, `INCRBY`, ...) to (sent, answered).
    pub by_command: BTreeMap<&'static str, (u64, u64)>,
}

impl Tally {
    fn merge(&mut self, other: &Tally) {
        for (cmd, (sent, ok)) in &other.by_command {
            let e = self.by_command.entry(cmd).or_default();
            e.0 += sent;
            e.1 += ok;
        }
    }

    /// Requests sent, all commands together.
    pub fn sent(&self) -> u64 {
        self.by_command.values().map(|v| v.0).sum()
    }
}

/// The shared state of a running load (see the module doc).
pub struct Load {
    /// Client addresses of the nodes, in cluster order.
    addrs: Vec<String>,
    draining: Vec<AtomicBool>,
    in_flight: Vec<AtomicUsize>,
    /// Bumped when a node is undrained (a new process): a client whose
    /// connection is from an older epoch drops it.
    epoch: Vec<AtomicU64>,
    stop: AtomicBool,
    mix: Mix,
    t0: Instant,
    /// Requests completed (answered or not) through each node, for
    /// progress checks.
    done: Vec<AtomicU64>,
    history: Mutex<History>,
    failures: Mutex<Vec<Failure>>,
}

/// A request that got no normal answer.
#[derive(Clone, Debug)]
pub struct Failure {
    /// When it was sent, in seconds since the load started.
    pub sent: f64,
    /// When its answer (or the lack of one) came back, likewise.
    pub answered: f64,
    /// The request, the node and what came back.
    pub what: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:7.2} s  {}", self.sent, self.what)
    }
}

/// A running load: its state and its client threads.
pub struct Running {
    pub load: Arc<Load>,
    threads: Vec<JoinHandle<Tally>>,
}

/// What a load did, once stopped.
pub struct Done {
    pub history: History,
    pub failures: Vec<Failure>,
    pub tally: Tally,
}

impl Load {
    /// Starts `clients` client threads against the nodes at `addrs`.
    pub fn start(addrs: Vec<String>, mix: Mix, clients: usize) -> Running {
        let n = addrs.len();
        let load = Arc::new(Load {
            addrs,
            draining: (0..n).map(|_| AtomicBool::new(false)).collect(),
            in_flight: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            epoch: (0..n).map(|_| AtomicU64::new(0)).collect(),
            stop: AtomicBool::new(false),
            mix,
            t0: Instant::now(),
            done: (0..n).map(|_| AtomicU64::new(0)).collect(),
            history: Mutex::new(History::new()),
            failures: Mutex::new(Vec::new()),
        });
        let threads = (0..clients)
            .map(|id| {
                let load = load.clone();
                std::thread::spawn(move || client(&load, id))
            })
            .collect();
        Running { load, threads }
    }

    /// Requests completed so far, through all nodes.
    pub fn done(&self) -> u64 {
        self.done.iter().map(|d| d.load(SeqCst)).sum()
    }

    /// Requests completed so far through node `i`.
    pub fn done_through(&self, i: usize) -> u64 {
        self.done[i].load(SeqCst)
    }

    /// Failed requests so far.
    pub fn failures(&self) -> usize {
        self.failures.lock().unwrap().len()
    }

    /// Marks node `i` draining and waits until no request is in flight on
    /// it (see the module doc).
    pub fn drain(&self, i: usize) {
        self.draining[i].store(true, SeqCst);
        assert!(
            wait_until(CLIENT_TIMEOUT + Duration::from_secs(1), || self.in_flight
                [i]
                .load(SeqCst)
                == 0),
            "requests on node {i} did not finish"
        );
    }

    /// Lets clients use node `i` again, through new connections.
    pub fn undrain(&self, i: usize) {
        self.epoch[i].fetch_add(1, SeqCst);
        self.draining[i].store(false, SeqCst);
    }

    /// A node not draining, chosen at random, with this client's request
    /// counted in flight on it.
    fn enter(&self, rng: &mut StdRng) -> usize {
        loop {
            let i = rng.gen_range(0..self.addrs.len());
            self.in_flight[i].fetch_add(1, SeqCst);
            if !self.draining[i].load(SeqCst) {
                return i;
            }
            self.in_flight[i].fetch_sub(1, SeqCst);
        }
    }

    /// Records a failed request sent at `sent` and answered at
    /// `answered` (see [`Load::now`]).
    fn fail(&self, sent: u64, answered: u64, what: String) {
        let (sent, answered) = (sent as f64 / 1e9, answered as f64 / 1e9);
        let failure = Failure {
            sent,
            answered,
            what,
        };
        self.failures.lock().unwrap().push(failure);
    }

    /// Nanoseconds since the load started.
    fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// Seconds since the load started (the clock of [`Failure::sent`]).
    pub fn elapsed(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }
}

impl Running {
    /// Stops the clients and collects what they did.
    pub fn stop(self) -> Done {
        self.load.stop.store(true, SeqCst);
        let mut tally = Tally::default();
        for t in self.threads {
            tally.merge(&t.join().expect("a client thread panicked"));
        }
        let load = Arc::try_unwrap(self.load).unwrap_or_else(|_| panic!("load still shared"));
        Done {
            history: load.history.into_inner().unwrap(),
            failures: load.failures.into_inner().unwrap(),
            tally,
        }
    }
}

/// What a reply must look like to count as a normal answer.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Ok,
    Int,
    /// PTTL of a key written only with PX: the expiry, or -2 for a key
    /// not written yet; -1 (no expiry) means a version lost it.
    Ttl,
    BulkOrNil,
    Array,
}

fn answered(expect: Expect, reply: &Reply) -> bool {
    match (expect, reply) {
        (Expect::Ok, r) => *r == Reply::ok(),
        (Expect::Int, Reply::Integer(_)) => true,
        (Expect::Ttl, Reply::Integer(ms)) => *ms == -2 || (1..=TTL_MS).contains(ms),
        (Expect::BulkOrNil, Reply::Bulk(_) | Reply::Nil) => true,
        (Expect::Array, Reply::Array(_)) => true,
        _ => false,
    }
}

/// One random request: its label, arguments, the write it makes (for the
/// history) and the reply it expects.
fn pick(
    rng: &mut StdRng,
    mix: Mix,
    value: String,
) -> (&'static str, Vec<String>, Option<Op>, Expect) {
    let prefix = mix.prefixes()[rng.gen_range(0..mix.prefixes().len())];
    let key = format!("{prefix}{}", rng.gen_range(0..KEYS_PER_TYPE));
    let field = format!("f{}", rng.gen_range(0..4));
    let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    let roll = rng.gen_range(0..10);
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match (prefix, roll) {
        ("k", 0..=4) => (
            "string SET",
            args(&["SET", &key, &value]),
            Some(Op::Set(b(&key), b(&value))),
            Expect::Ok,
        ),
        ("k", 5..=6) => (
            "string DEL",
            args(&["DEL", &key]),
            Some(Op::Del(b(&key))),
            Expect::Int,
        ),
        ("k", _) => ("string GET", args(&["GET", &key]), None, Expect::BulkOrNil),
        ("x", 0..=4) => {
            let px = TTL_MS.to_string();
            let op = Op::Set(b(&key), b(&value));
            (
                "expiring SET PX",
                args(&["SET", &key, &value, "PX", &px]),
                Some(op),
                Expect::Ok,
            )
        }
        ("x", 5..=7) => (
            "expiring GET",
            args(&["GET", &key]),
            None,
            Expect::BulkOrNil,
        ),
        ("x", _) => ("expiring PTTL", args(&["PTTL", &key]), None, Expect::Ttl),
        ("c", 0..=5) => {
            let by: i64 = rng.gen_range(-3..10);
            let op = Op::Incr(b(&key), by);
            (
                "counter INCRBY",
                args(&["INCRBY", &key, &by.to_string()]),
                Some(op),
                Expect::Int,
            )
        }
        ("c", _) => ("counter GET", args(&["GET", &key]), None, Expect::BulkOrNil),
        ("h", 0..=4) => {
            let op = Op::HSet(b(&key), b(&field), b(&value));
            (
                "hash HSET",
                args(&["HSET", &key, &field, &value]),
                Some(op),
                Expect::Int,
            )
        }
        ("h", 5..=6) => {
            let op = Op::HDel(b(&key), b(&field));
            (
                "hash HDEL",
                args(&["HDEL", &key, &field]),
                Some(op),
                Expect::Int,
            )
        }
        ("h", _) => (
            "hash HGETALL",
            args(&["HGETALL", &key]),
            None,
            Expect::Array,
        ),
        ("s", 0..=4) => (
            "set SADD",
            args(&["SADD", &key, &field]),
            Some(Op::SAdd(b(&key), b(&field))),
            Expect::Int,
        ),
        ("s", 5..=6) => (
            "set SREM",
            args(&["SREM", &key, &field]),
            Some(Op::SRem(b(&key), b(&field))),
            Expect::Int,
        ),
        _ => (
            "set SMEMBERS",
            args(&["SMEMBERS", &key]),
            None,
            Expect::Array,
        ),
    }
}

/// One client thread: random requests until the load stops.
fn client(load: &Load, id: usize) -> Tally {
    let mut rng = StdRng::seed_from_u64(0x5eed + id as u64);
    let mut conns: Vec<Option<(u64, Client)>> = load.addrs.iter().map(|_| None).collect();
    let mut tally = Tally::default();
    let mut seq = 0u64;
    while !load.stop.load(SeqCst) {
        let node = load.enter(&mut rng);
        seq += 1;
        let (label, args, op, expect) = pick(&mut rng, load.mix, format!("c{id}-{seq}"));
        let epoch = load.epoch[node].load(SeqCst);
        if !matches!(&conns[node], Some((e, _)) if *e == epoch) {
            conns[node] =
                Client::try_connect(&load.addrs[node], CLIENT_TIMEOUT).map(|c| (epoch, c));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let start = load.now();
        let reply = match conns[node].as_mut() {
            Some((_, c)) => c.try_cmd(&args),
            None => None,
        };
        let end = load.now();
        load.in_flight[node].fetch_sub(1, SeqCst);
        let ok = reply.as_ref().is_some_and(|r| answered(expect, r));
        let counts = tally.by_command.entry(label).or_default();
        counts.0 += 1;
        counts.1 += u64::from(ok);
        if !ok {
            let what = match &reply {
                Some(r) => format!("{r:?}"),
                None if conns[node].is_none() => "could not connect".to_string(),
                None => "no reply (timeout or closed connection)".to_string(),
            };
            load.fail(start, end, format!("{args:?} through node {node}: {what}"));
        }
        if reply.is_none() {
            conns[node] = None;
        }
        if let Some(op) = op {
            // An error reply to a write may come after some replicas took
            // it: indeterminate, as no reply is.
            let outcome = if ok { Outcome::Acked } else { Outcome::Unknown };
            load.history.lock().unwrap().push(op, start, end, outcome);
        }
        load.done[node].fetch_add(1, SeqCst);
    }
    tally
}

/// What every node in `addrs` reads of every key of `keys`, once they
/// all agree (polled until `limit`); `None` if they never did.
pub fn agreed(
    addrs: &[String],
    keys: &[String],
    limit: Duration,
) -> Option<BTreeMap<String, Observed>> {
    let read = |addr: &String| -> Option<BTreeMap<String, Observed>> {
        keys.iter()
            .map(|k| Some((k.clone(), observe(addr, k)?)))
            .collect()
    };
    let mut agreed = None;
    wait_until(limit, || {
        let views: Option<Vec<_>> = addrs.iter().map(read).collect();
        agreed = views
            .filter(|v| v.windows(2).all(|w| w[0] == w[1]))
            .and_then(|mut v| v.pop());
        agreed.is_some()
    });
    agreed
}
