//! What a node counts for `/metrics`, and how it is rendered.
//!
//! The hot path only ever touches plain atomics with relaxed ordering:
//! labelled counters are fixed arrays indexed by small enums ([`Cmd`],
//! [`Outcome`], [`Op`], the peer message kind), and latency histograms are
//! [`Histogram`]s with fixed bucket bounds and one atomic per bucket. Nothing
//! on a request's path takes a lock or allocates.
//!
//! At scrape time [`render`] (in the `render` submodule, so this file holds
//! only what the hot path touches) reads every atomic once and hands the
//! values to the `prometheus-client` crate, the Prometheus project's own Rust
//! client, which writes the OpenMetrics text exposition (names prefixed
//! `ringkv_`, counters suffixed `_total`, a final `# EOF`). The crate's own
//! `Histogram` and `Family` take a lock per observation and per label
//! lookup, so they are used only for encoding, never on the request path.
//!
//! Definitions worth knowing when reading the numbers:
//! - `requests{command,outcome}` and `request_duration_seconds{command}`:
//!   one per client command, measured from when the command was read to when
//!   its reply was ready to write (a pipelined reply waits for the replies
//!   before it, as its client does).
//! - `heartbeats_missed`: every heartbeat interval, one per known member
//!   whose last heartbeat is older than two intervals (so a member silent
//!   for the whole failure timeout adds about timeout / interval - 2).
//! - `replica_acks{op}`: replica answers a coordinator received in time;
//!   `replica_timeouts{op}`: replicas asked that had not answered when a
//!   request hit its deadline.
//!
//! Deliberately left out: per-peer labels (cardinality grows with the
//! cluster) and summaries (quantiles are computed by Prometheus from the
//! buckets).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::membership::{Event, Membership};
use crate::message::PeerMsg;

mod render;

pub use render::{render, Sampled, CONTENT_TYPE};

/// A client command's metrics label: its index in the command table
/// (`resp::cmd::TABLE`), or [`Cmd::OTHER`] for anything else, malformed
/// input included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cmd(pub usize);

impl Cmd {
    /// Unknown commands and malformed input.
    pub const OTHER: Cmd = Cmd(crate::resp::cmd::table::COUNT);

    /// The command named by a request's first word (any case; no allocation).
    pub fn of(name: &[u8]) -> Cmd {
        crate::resp::cmd::lookup(name).map_or(Cmd::OTHER, |s| Cmd(s.index))
    }

    /// The label value: the command's name, or `other`.
    pub fn label(self) -> &'static str {
        crate::resp::cmd::TABLE
            .get(self.0)
            .map_or("other", |s| s.name)
    }

    /// Every label, in index order (`other` last).
    pub fn all() -> impl Iterator<Item = Cmd> {
        (0..=crate::resp::cmd::table::COUNT).map(Cmd)
    }
}

/// One `T` per command label, `other` included.
#[derive(Debug)]
pub struct PerCommand<T>(Box<[T]>);

impl<T: Default> Default for PerCommand<T> {
    fn default() -> Self {
        PerCommand(
            (0..=crate::resp::cmd::table::COUNT)
                .map(|_| T::default())
                .collect(),
        )
    }
}

impl<T> std::ops::Index<Cmd> for PerCommand<T> {
    type Output = T;

    fn index(&self, cmd: Cmd) -> &T {
        &self.0[cmd.0.min(self.0.len() - 1)]
    }
}

/// How a client command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Any reply but an error.
    Ok,
    /// Too few replicas answered in time (`-UNAVAILABLE`).
    Unavailable,
    /// Any other error reply.
    Error,
}

impl Outcome {
    /// Every outcome, in index order.
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Unavailable, Outcome::Error];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unavailable => "unavailable",
            Outcome::Error => "error",
        }
    }
}

/// Read or write, for replica counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A quorum read.
    Read = 0,
    /// A quorum write.
    Write = 1,
}

/// Upper bounds of the request latency buckets, in nanoseconds.
const LATENCY_BOUNDS_NS: [u64; 16] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
];

/// A latency histogram with fixed buckets (50 µs to 5 s, and +Inf), one
/// atomic per bucket: observing is a few relaxed adds.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts; the last one is the +Inf overflow.
    buckets: [AtomicU64; LATENCY_BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// A point-in-time copy of a [`Histogram`].
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// Sum of the observations, in seconds.
    pub sum: f64,
    /// Observations.
    pub count: u64,
    /// (upper bound in seconds, cumulative count), +Inf last.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS_NS.partition_point(|&b| b < ns);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Reads the histogram (cumulative buckets, as Prometheus wants them).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                total += b.load(Relaxed);
                let bound = LATENCY_BOUNDS_NS
                    .get(i)
                    .map_or(f64::INFINITY, |&ns| ns as f64 / 1e9);
                (bound, total)
            })
            .collect();
        HistogramSnapshot {
            sum: self.sum_ns.load(Relaxed) as f64 / 1e9,
            // The +Inf bucket, so count and buckets agree within one scrape.
            count: total,
            buckets,
        }
    }
}

/// Peer message kinds, in the order [`PeerMsg::kind_index`] numbers them.
pub use crate::message::KINDS as PEER_KINDS;

/// Peer traffic by message kind (kept by the transport).
#[derive(Debug)]
pub struct PeerCounters {
    sent: [AtomicU64; PEER_KINDS.len()],
    sent_bytes: [AtomicU64; PEER_KINDS.len()],
    received: [AtomicU64; PEER_KINDS.len()],
}

impl Default for PeerCounters {
    // Arrays longer than 32 have no derived `Default`.
    fn default() -> Self {
        PeerCounters {
            sent: std::array::from_fn(|_| AtomicU64::new(0)),
            sent_bytes: std::array::from_fn(|_| AtomicU64::new(0)),
            received: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl PeerCounters {
    /// A message of `bytes` encoded bytes went into a socket batch.
    pub fn sent(&self, msg: &PeerMsg, bytes: usize) {
        let k = msg.kind_index();
        self.sent[k].fetch_add(1, Relaxed);
        self.sent_bytes[k].fetch_add(bytes as u64, Relaxed);
    }

    /// A message was received and handed to the node.
    pub fn received(&self, msg: &PeerMsg) {
        self.received[msg.kind_index()].fetch_add(1, Relaxed);
    }
}

/// Membership event kinds, in the order [`Metrics::membership_event`] counts them.
const MEMBERSHIP_KINDS: [&str; 5] = ["up", "down", "restarted", "learned", "name_clash"];

/// The label of a membership event.
pub fn event_kind(ev: &Event) -> &'static str {
    MEMBERSHIP_KINDS[event_index(ev)]
}

fn event_index(ev: &Event) -> usize {
    match ev {
        Event::Up { .. } => 0,
        Event::Down { .. } => 1,
        Event::Restarted { .. } => 2,
        Event::Learned { .. } => 3,
        Event::NameClash { .. } => 4,
    }
}

/// Known members whose last heartbeat (if any) is older than two
/// `interval`s at `now`: the heartbeats missed in this interval.
pub fn missed_heartbeats(m: &Membership, now: Instant, interval: Duration) -> u64 {
    m.members()
        .filter(|x| {
            x.last_heard
                .is_none_or(|t| now.saturating_duration_since(t) > interval * 2)
        })
        .count() as u64
}

/// The node's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Client commands executed.
    pub commands: AtomicU64,
    /// Client commands answered with an error.
    pub command_errors: AtomicU64,
    /// Quorum reads that succeeded.
    pub reads_ok: AtomicU64,
    /// Quorum reads that failed (too few replicas in time).
    pub reads_failed: AtomicU64,
    /// Quorum writes that succeeded.
    pub writes_ok: AtomicU64,
    /// Quorum writes that failed (too few replicas in time).
    pub writes_failed: AtomicU64,
    /// Stale replicas sent the newest version after a read.
    pub read_repairs: AtomicU64,
    /// Reads that asked the rest of the replicas after `read_speculation_ms`.
    pub read_speculations: AtomicU64,
    /// Reads whose first R answers all found no such key and that asked
    /// one more replica to confirm the miss.
    pub read_miss_confirmations: AtomicU64,
    /// Membership changes that altered the ring.
    pub membership_changes: AtomicU64,
    /// Entries handed to other nodes after ring changes.
    pub handoff_entries: AtomicU64,
    /// Local copies dropped after hand-off.
    pub handoff_dropped: AtomicU64,
    /// Entries sent by hand-off and by a leave's streams (those the
    /// replicas offered them wanted), counted batch by batch.
    pub handoff_sent: AtomicU64,
    /// Strays held for a replica that is down (within its rebuild delay),
    /// as the last hand-off pass counted them.
    pub handoff_backlog: AtomicU64,
    /// Heartbeat messages sent.
    pub heartbeats_sent: AtomicU64,
    /// Heartbeats missed (see the module doc).
    pub heartbeats_missed: AtomicU64,
    /// Client connections accepted.
    pub client_connections: AtomicU64,
    /// Read-modify-write commands (APPEND, SETNX, SET NX...) whose write
    /// found, on some replica, a version newer than the one they read.
    pub rmw_conflicts: AtomicU64,
    /// Expired keys reduced to tombstones by the reclaimer.
    pub expired_reclaimed: AtomicU64,
    /// Reads of part of a key (a hash field, a set member) whose replicas
    /// held different wholes, so the whole key was read.
    pub read_part_mismatches: AtomicU64,
    requests: PerCommand<[AtomicU64; Outcome::ALL.len()]>,
    latency: PerCommand<Histogram>,
    replica_acks: [AtomicU64; 2],
    replica_timeouts: [AtomicU64; 2],
    membership_events: [AtomicU64; MEMBERSHIP_KINDS.len()],
    handoff_rounds: [AtomicU64; 2],
}

impl Metrics {
    /// Counts one finished client command and its latency.
    pub fn request(&self, cmd: Cmd, outcome: Outcome, took: Duration) {
        self.requests[cmd][outcome as usize].fetch_add(1, Relaxed);
        self.latency[cmd].observe(took);
    }

    /// Requests of `cmd` that ended with `outcome` so far.
    pub fn requests(&self, cmd: Cmd, outcome: Outcome) -> u64 {
        self.requests[cmd][outcome as usize].load(Relaxed)
    }

    /// The latency histogram of `cmd`.
    pub fn latency(&self, cmd: Cmd) -> &Histogram {
        &self.latency[cmd]
    }

    /// Calls of the command at table index `index` (INFO commandstats).
    pub fn command_calls(&self, index: usize) -> u64 {
        Outcome::ALL
            .iter()
            .map(|&o| self.requests(Cmd(index), o))
            .sum()
    }

    /// Calls of the command at `index` answered with an error.
    pub fn command_failures(&self, index: usize) -> u64 {
        self.requests(Cmd(index), Outcome::Error) + self.requests(Cmd(index), Outcome::Unavailable)
    }

    /// A replica answered a coordinator in time.
    pub fn replica_ack(&self, op: Op) {
        self.replica_acks[op as usize].fetch_add(1, Relaxed);
    }

    /// `n` replicas asked had not answered when a request hit its deadline.
    pub fn replica_timeouts(&self, op: Op, n: usize) {
        self.replica_timeouts[op as usize].fetch_add(n as u64, Relaxed);
    }

    /// Counts a membership event by kind.
    pub fn membership_event(&self, ev: &Event) {
        self.membership_events[event_index(ev)].fetch_add(1, Relaxed);
    }

    /// Counts a hand-off round.
    pub fn handoff_round(&self, complete: bool) {
        self.handoff_rounds[usize::from(!complete)].fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_classified_without_case() {
        assert_eq!(Cmd::of(b"get").label(), "get");
        assert_eq!(Cmd::of(b"MsEt").label(), "mset");
        assert_eq!(Cmd::of(b"NOSUCHCOMMAND"), Cmd::OTHER);
        assert_eq!(Cmd::of(b"").label(), "other");
        assert_eq!(Cmd::all().count(), crate::resp::cmd::TABLE.len() + 1);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_count() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets.first(), Some(&(0.00005, 1)));
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 3)));
        assert!(s
            .buckets
            .windows(2)
            .all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0));
        assert!((s.sum - 60.00031).abs() < 1e-6);
    }
}
