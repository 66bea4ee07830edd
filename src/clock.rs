//! Write timestamps: a hybrid logical clock (HLC).
//!
//! Last-writer-wins is only as good as the clock that orders the writers.
//! Wall clocks jump backwards (NTP steps) and two writes can land in the same
//! microsecond; a pure logical clock loses the link to real time that lets a
//! person say "the later write wins". An HLC keeps both: its physical part
//! follows the wall clock in microseconds, its logical part breaks ties, and
//! the whole never goes backwards on a node and always moves past every
//! timestamp the node has seen from others.
//!
//! A [`Timestamp`] packs both parts into one `u64` (52 bits of microseconds
//! since the Unix epoch, enough until the year 2112, and 12 bits of logical
//! counter), so it is cheap to store with every value and compares with one
//! integer comparison.
//!
//! This is the one module that reads the clocks; everything else takes
//! time as an argument or asks here. The wall clock is [`wall_micros`];
//! the monotonic clock that request deadlines, speculation, heartbeats,
//! the failure sweep and hand-off patience are measured on is
//! [`instant`], which reads tokio's clock, so a test on a runtime with
//! paused time (`tokio::time::pause`) controls every deadline of a node
//! (outside such a test it is `std::time::Instant::now()`). Fault injection can add an offset to it (see
//! [`set_offset_micros`]): a node is one process, so the offset moves
//! everything that node times by (write timestamps, expiry, the clock it
//! announces to peers) together, as a wrong system clock would.
//!
//! Deliberately left out: clock-uncertainty intervals (Spanner/Cockroach
//! style commit waits). Writes that happen within the skew between two nodes'
//! clocks are ordered by the HLC, which may not match real time; LWW accepts
//! that.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const LOGICAL_BITS: u32 = 12;
const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;

/// A hybrid logical clock reading: physical microseconds and a logical counter.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The timestamp for a physical time with a zero logical part.
    pub fn from_micros(micros: u64) -> Self {
        Timestamp(micros << LOGICAL_BITS)
    }

    /// The physical part: microseconds since the Unix epoch.
    pub fn micros(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// The logical counter that orders events within one microsecond.
    pub fn logical(self) -> u64 {
        self.0 & LOGICAL_MASK
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.micros(), self.logical())
    }
}

/// Now, by the monotonic clock a node times its requests, heartbeats and
/// patience with: tokio's, which a runtime with paused time controls (see
/// the module doc).
#[inline]
pub fn instant() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// How long ago `then` (an [`instant`]) was, by the same clock (an
/// `Instant`'s own `elapsed` reads the real clock, which a paused runtime
/// does not drive).
pub fn since(then: std::time::Instant) -> std::time::Duration {
    instant().saturating_duration_since(then)
}

/// The offset fault injection adds to this process's wall clock.
static OFFSET_MICROS: AtomicI64 = AtomicI64::new(0);

/// Sets the offset added to every wall clock reading of this process (fault
/// injection: a clock set wrong, without libfaketime, which cannot reach a
/// static binary).
pub fn set_offset_micros(offset: i64) {
    OFFSET_MICROS.store(offset, Ordering::Relaxed);
}

/// The offset set by [`set_offset_micros`].
pub fn offset_micros() -> i64 {
    OFFSET_MICROS.load(Ordering::Relaxed)
}

tokio::task_local! {
    /// In a simulated cluster, how far the wall clock of the node whose
    /// task this is stands off the simulated time (see
    /// [`with_node_offset`]).
    static NODE_OFFSET: i64;
}

/// Runs `fut` on the wall clock of a simulated node whose clock is
/// `offset_micros` off: every wall clock reading in it (write
/// timestamps, expiry, the clock announced to peers, skew estimates)
/// moves by that much. Only a simulated wall clock
/// ([`simulate_wall_clock`]) looks at it; a real process has one node and
/// the process-wide offset ([`set_offset_micros`]).
pub fn with_node_offset<F: std::future::Future>(
    offset_micros: i64,
    fut: F,
) -> tokio::task::futures::TaskLocalFuture<i64, F> {
    NODE_OFFSET.scope(offset_micros, fut)
}

/// Runs `f` on the wall clock of a simulated node `offset_micros` off (as
/// [`with_node_offset`], for a synchronous call: a message handed to a
/// node).
pub fn with_node_offset_sync<R>(offset_micros: i64, f: impl FnOnce() -> R) -> R {
    NODE_OFFSET.sync_scope(offset_micros, f)
}

/// `fut` on the clock of the node whose task spawns it: what a node's
/// tasks are spawned with, so that the tasks of a simulated node keep its
/// clock (outside a node's task, or in a real process, it changes
/// nothing).
pub fn inherit<F: std::future::Future>(fut: F) -> tokio::task::futures::TaskLocalFuture<i64, F> {
    NODE_OFFSET.scope(NODE_OFFSET.try_with(|o| *o).unwrap_or(0), fut)
}

/// How many readings of a simulated wall clock were made outside every
/// node's clock since the simulation began: a simulation with skewed
/// clocks checks that none were, i.e. that every task of every node runs
/// on its node's clock.
/// (Counted per thread, as the simulated clock is.)
pub fn unscoped_simulated_reads() -> u64 {
    UNSCOPED_READS.get()
}

thread_local! {
    /// A simulated cluster's wall clock on this thread (see
    /// [`simulate_wall_clock`]): the reading at its start, and when that
    /// was on tokio's clock.
    static SIMULATED: std::cell::Cell<Option<(u64, tokio::time::Instant)>> =
        const { std::cell::Cell::new(None) };
    /// Readings of this thread's simulated wall clock made outside any
    /// node's clock (see [`unscoped_simulated_reads`]).
    static UNSCOPED_READS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Makes the wall clock of this thread follow tokio's clock from
/// `start_micros` on: for a simulated cluster on a current-thread runtime
/// with paused time, whose nodes' tasks all run on this thread, so that
/// write timestamps and expiry move with the simulated time, not with the
/// few real milliseconds the simulation takes.
pub fn simulate_wall_clock(start_micros: u64) {
    SIMULATED.set(Some((start_micros, tokio::time::Instant::now())));
}

/// Microseconds since the Unix epoch by the wall clock (plus the injected
/// offset, if any).
pub fn wall_micros() -> u64 {
    let real = match SIMULATED.get() {
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0),
        Some((start, at)) => {
            let offset = NODE_OFFSET.try_with(|o| *o).unwrap_or_else(|_| {
                UNSCOPED_READS.set(UNSCOPED_READS.get() + 1);
                0
            });
            (start + at.elapsed().as_micros() as u64).saturating_add_signed(offset)
        }
    };
    real.saturating_add_signed(OFFSET_MICROS.load(Ordering::Relaxed))
}

/// Milliseconds since the Unix epoch by the wall clock: what key expiry is
/// judged against.
pub fn wall_millis() -> u64 {
    wall_micros() / 1000
}

/// A node's hybrid logical clock. Shared by all tasks of a node.
#[derive(Debug)]
pub struct Hlc {
    last: AtomicU64,
    max_skew_micros: u64,
}

impl Hlc {
    /// A clock that refuses remote timestamps more than `max_skew_micros`
    /// ahead of the local wall clock.
    pub fn new(max_skew_micros: u64) -> Self {
        Hlc {
            last: AtomicU64::new(0),
            max_skew_micros,
        }
    }

    /// A fresh timestamp for a local write: greater than every timestamp
    /// this clock has issued or observed.
    pub fn now(&self) -> Timestamp {
        self.now_at(wall_micros())
    }

    /// [`Hlc::now`] with the wall clock passed in: by tests, and by a
    /// write that reads it once for the stamp and for expiry.
    pub fn now_at(&self, wall_micros: u64) -> Timestamp {
        let physical = Timestamp::from_micros(wall_micros).0;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = physical.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Timestamp(next),
                Err(seen) => last = seen,
            }
        }
    }

    /// The clock's reading without issuing a timestamp: what it would give
    /// now, less one logical tick (what peers are told, see
    /// [`crate::message::PeerMsg::Clock`]).
    pub fn peek(&self) -> Timestamp {
        self.peek_at(wall_micros())
    }

    /// [`Hlc::peek`] with the wall clock passed in (for tests).
    pub fn peek_at(&self, wall_micros: u64) -> Timestamp {
        let physical = Timestamp::from_micros(wall_micros).0;
        Timestamp(physical.max(self.last.load(Ordering::Relaxed)))
    }

    /// Moves the clock past a timestamp received from another node, so the
    /// next local write orders after it. Refuses (and ignores) a timestamp
    /// too far ahead of the local wall clock.
    pub fn observe(&self, ts: Timestamp) -> Result<()> {
        self.observe_at(ts, wall_micros())
    }

    /// Moves the clock past `ts` without a skew check: for timestamps this
    /// node itself recorded (commit log recovery), which it must never
    /// issue again even if the wall clock has since gone back.
    pub fn advance_past(&self, ts: Timestamp) {
        self.last.fetch_max(ts.0, Ordering::AcqRel);
    }

    /// [`Hlc::observe`] with the wall clock passed in: by tests, and by a
    /// replica that reads it once for the check and for expiry.
    pub fn observe_at(&self, ts: Timestamp, wall_micros: u64) -> Result<()> {
        let ahead = ts.micros().saturating_sub(wall_micros);
        if ahead > self.max_skew_micros {
            return Err(Error::ClockSkew {
                got_micros: ts.micros(),
                ahead_micros: ahead,
                limit_micros: self.max_skew_micros,
            });
        }
        self.last.fetch_max(ts.0, Ordering::AcqRel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_monotonic_clock_is_the_one_a_paused_runtime_drives() {
        let before = instant();
        tokio::time::advance(std::time::Duration::from_secs(3600)).await;
        let after = instant();
        assert!(after - before >= std::time::Duration::from_secs(3600));
        assert!(after - before < std::time::Duration::from_secs(3601));
    }

    #[test]
    fn never_goes_backwards_when_the_wall_clock_does() {
        let clock = Hlc::new(1_000_000);
        let a = clock.now_at(1_000);
        let b = clock.now_at(500);
        let c = clock.now_at(500);
        assert!(a < b && b < c);
        assert_eq!(b.micros(), 1_000);
        assert_eq!(c.logical(), 2);
    }

    #[test]
    fn follows_the_wall_clock_when_it_moves_ahead() {
        let clock = Hlc::new(1_000_000);
        clock.now_at(1_000);
        let t = clock.now_at(2_000);
        assert_eq!((t.micros(), t.logical()), (2_000, 0));
    }

    #[test]
    fn moves_past_observed_timestamps() {
        let clock = Hlc::new(1_000_000);
        let remote = Timestamp::from_micros(5_000);
        clock.observe_at(remote, 4_000).unwrap();
        assert!(clock.now_at(4_000) > remote);
    }

    #[test]
    fn refuses_timestamps_too_far_ahead() {
        let clock = Hlc::new(1_000);
        let err = clock
            .observe_at(Timestamp::from_micros(10_000), 5_000)
            .unwrap_err();
        assert!(matches!(
            err,
            Error::ClockSkew {
                ahead_micros: 5_000,
                ..
            }
        ));
        assert!(clock.now_at(5_000) < Timestamp::from_micros(10_000));
    }

    #[test]
    fn logical_overflow_carries_into_the_physical_part() {
        let clock = Hlc::new(1_000_000);
        let mut last = clock.now_at(7);
        for _ in 0..5_000 {
            let t = clock.now_at(7);
            assert!(t > last);
            last = t;
        }
        assert_eq!(last.micros(), 8);
    }

    mod announced {
        //! The rule the clocks peers announce (`PeerMsg::Clock`) give: with
        //! one node's wall clock up to the skew limit ahead of or behind
        //! the others, a write made more than two heartbeat intervals after
        //! another, through any node, is stamped after it, whether or not
        //! the second coordinator replicates the key.

        use proptest::prelude::*;

        use super::super::*;

        const HEARTBEAT: u64 = 100_000;
        const MAX_SKEW: u64 = 60_000_000;
        const MAX_DELAY: u64 = 20_000;

        proptest! {
            #[test]
            fn a_write_two_heartbeats_after_another_is_stamped_after_it(
                skewed in -(MAX_SKEW as i64 - 1_000_000)..(MAX_SKEW as i64 - 1_000_000),
                jitter in proptest::collection::vec(-500_000i64..500_000, 4),
                phases in proptest::collection::vec(0..HEARTBEAT, 5),
                delays in proptest::collection::vec(0..=MAX_DELAY, 64),
                writes in proptest::collection::vec((0usize..5, 0..HEARTBEAT), 2..12),
            ) {
                // Node 0 is skewed; the others are within half a second.
                let offsets: Vec<i64> = std::iter::once(skewed).chain(jitter).collect();
                let nodes: Vec<Hlc> = (0..5).map(|_| Hlc::new(MAX_SKEW)).collect();
                let start = 1_700_000_000_000_000u64;
                let wall = |n: usize, real: u64| real.saturating_add_signed(offsets[n]);
                let mut delay = delays.iter().cycle();
                // Clock messages in flight: (arrival, to, timestamp).
                let mut flight: Vec<(u64, usize, Timestamp)> = Vec::new();
                let mut next_beat: Vec<u64> = phases.iter().map(|p| start + p).collect();
                let mut real = start;
                let mut last: Option<Timestamp> = None;
                for (through, extra) in writes {
                    let at = real + 2 * HEARTBEAT + MAX_DELAY + 1 + extra;
                    // Every announcement sent before `at` (each node to
                    // every other, once per heartbeat), and every one that
                    // has arrived by then, in order.
                    loop {
                        let (n, t) = next_beat
                            .iter()
                            .enumerate()
                            .map(|(n, t)| (n, *t))
                            .min_by_key(|(_, t)| *t)
                            .expect("five nodes");
                        if t > at {
                            break;
                        }
                        flight.sort_by_key(|f| f.0);
                        for (arrival, to, ts) in flight.extract_if(.., |f| f.0 <= t) {
                            prop_assert!(nodes[to].observe_at(ts, wall(to, arrival)).is_ok());
                        }
                        let ts = nodes[n].peek_at(wall(n, t));
                        for to in (0..5).filter(|to| *to != n) {
                            flight.push((t + delay.next().expect("cycled"), to, ts));
                        }
                        next_beat[n] += HEARTBEAT;
                    }
                    for (arrival, to, ts) in flight.extract_if(.., |f| f.0 <= at) {
                        prop_assert!(nodes[to].observe_at(ts, wall(to, arrival)).is_ok());
                    }
                    let ts = nodes[through].now_at(wall(through, at));
                    if let Some(before) = last {
                        prop_assert!(ts > before, "{ts} through node {through} not after {before}");
                    }
                    last = Some(ts);
                    real = at;
                }
            }
        }
    }
}
