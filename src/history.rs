//! The one history checker: did a run lose, resurrect or invent anything?
//!
//! Every Jepsen-style test (the real-process durability and partition
//! tests, and the model test of the merge layer) records what its clients
//! did, as [`Op`]s with the interval in which each ran and how it ended,
//! then reads the final state and asks [`History::check`] whether that
//! state is one the rules allow. The rules are those of the values module,
//! stated without its code, so the checker is an independent oracle:
//!
//! - **Registers** (a string key, a hash field, a set member's presence):
//!   last writer wins. The final state must be what some write that may
//!   have happened left (acknowledged or indeterminate, or the initial
//!   absence), and no acknowledged write may have *strictly followed* it
//!   in real time: a write that started after another was acknowledged is
//!   ordered after it by the hybrid clock, so it must win over it.
//!   DEL of a key clears its fields and members too.
//! - **Expiry**: SET with a time to live writes the value and its
//!   deadline together, so it is one register write whose value reads as
//!   absent once the deadline has passed. The deadline is the stamping
//!   node's clock plus the time to live, and each node judges it by its
//!   own clock: at the final read ([`History::read_at`]) such a write
//!   must read as absent if it ended more than its time to live (plus the
//!   clock margin) before, must read as its value if it started more than
//!   that less the margin before, and may read as either in between.
//! - **Counters**: every acknowledged increment counts and no increment
//!   counts twice: the final value lies between the sum of the
//!   acknowledged increments plus the indeterminate ones of one sign and
//!   the same with those of the other sign.
//!
//! Times are whatever the test uses, in one monotonic order (an
//! `Instant` turned into nanoseconds, or a model's step counter). An
//! operation that failed outright (refused, never applied) is left out.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

/// What one client operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// SET key value (no options).
    Set(Bytes, Bytes),
    /// SET key value PX ttl: the value with a deadline `ttl` after the
    /// write, `ttl` in the history's time unit.
    SetExpiring(Bytes, Bytes, u64),
    /// DEL key: removes the key whole, fields and members included.
    Del(Bytes),
    /// INCRBY key by (INCR, DECR, DECRBY too).
    Incr(Bytes, i64),
    /// HSET key field value.
    HSet(Bytes, Bytes, Bytes),
    /// HDEL key field.
    HDel(Bytes, Bytes),
    /// SADD key member.
    SAdd(Bytes, Bytes),
    /// SREM key member.
    SRem(Bytes, Bytes),
}

/// How an operation ended for its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged: it must not be lost.
    Acked,
    /// No answer, or an error after which it may still have happened
    /// (a timeout, a lost connection, UNAVAILABLE after a partial write).
    Unknown,
}

/// One operation with the interval it ran in.
#[derive(Clone, Debug)]
pub struct Event {
    /// What it did.
    pub op: Op,
    /// When its client sent it.
    pub start: u64,
    /// When its client had its answer (or gave up).
    pub end: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// What the final read of a key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Nothing.
    Absent,
    /// A string (a counter reads as its decimal text).
    Str(Bytes),
    /// A hash's fields and values.
    Hash(BTreeMap<Bytes, Bytes>),
    /// A set's members.
    Set(BTreeSet<Bytes>),
}

/// Something the final state should not be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: Bytes,
    /// What is wrong, in words.
    pub what: String,
}

/// One write of a register.
#[derive(Clone, Debug)]
struct Write {
    /// The value written, or `None` for a removal.
    value: Option<Bytes>,
    /// When it started.
    start: u64,
    /// When it ended, plus the clock margin.
    end: u64,
    /// How it ended.
    outcome: Outcome,
    /// For an expiring value, whether it may read as its value and
    /// whether it may read as absent at the final read.
    expiry: Option<(bool, bool)>,
}

impl Write {
    /// Whether the register may read `now` with this write the last.
    fn may_read(&self, now: &Option<Bytes>) -> bool {
        match (self.expiry, now) {
            (None, _) => &self.value == now,
            (Some((live, _)), Some(_)) => live && &self.value == now,
            (Some((_, dead)), None) => dead,
        }
    }
}

/// A register's possible writes.
type Writes = Vec<Write>;

/// The operations of a run.
#[derive(Clone, Debug, Default)]
pub struct History {
    events: Vec<Event>,
    /// How much later than another write's end a write must start to be
    /// known to order after it (see [`History::with_clock_margin`]).
    margin: u64,
    /// When the final state was read (see [`History::read_at`]).
    read_at: Option<u64>,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// The same history judged with clocks up to `margin` apart (in the
    /// history's time unit): a write is known to order after another only
    /// if it started more than `margin` after that one ended. Hybrid
    /// clocks order writes by the clocks of the nodes that stamp them, so
    /// with node clocks that differ by up to `margin`, a write that
    /// started less than that after another was acknowledged may
    /// lawfully lose to it (last-writer-wins by timestamp, not by real
    /// time). Default 0: one clock.
    pub fn with_clock_margin(mut self, margin: u64) -> History {
        self.margin = margin;
        self
    }

    /// The same history, its final state read at `time` (in the
    /// history's time unit): needed to judge expiring writes, which a
    /// history with one and no read time reports as a violation.
    pub fn read_at(mut self, time: u64) -> History {
        self.read_at = Some(time);
        self
    }

    /// Records an operation.
    pub fn push(&mut self, op: Op, start: u64, end: u64, outcome: Outcome) {
        self.events.push(Event {
            op,
            start,
            end,
            outcome,
        });
    }

    /// How many operations it holds.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// How many of its operations were acknowledged.
    pub fn acked(&self) -> usize {
        self.events
            .iter()
            .filter(|e| e.outcome == Outcome::Acked)
            .count()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The keys the history touched, in order.
    pub fn keys(&self) -> Vec<Bytes> {
        let keys: BTreeSet<Bytes> = self.events.iter().map(|e| key_of(&e.op).clone()).collect();
        keys.into_iter().collect()
    }

    /// Checks the final state, `read(key)` for every key the history
    /// touched; every violation found, none when the state is allowed.
    pub fn check(&self, mut read: impl FnMut(&Bytes) -> Observed) -> Vec<Violation> {
        let mut out = Vec::new();
        for key in self.keys() {
            let seen = read(&key);
            let events: Vec<&Event> = self
                .events
                .iter()
                .filter(|e| key_of(&e.op) == &key)
                .collect();
            let mut bad = |what: String| {
                out.push(Violation {
                    key: key.clone(),
                    what,
                })
            };
            if events.iter().any(|e| matches!(e.op, Op::Incr(..))) {
                check_counter(&events, &seen, &mut bad);
            } else if events
                .iter()
                .any(|e| matches!(e.op, Op::HSet(..) | Op::HDel(..)))
            {
                self.check_elements(&events, &seen, Kind::Hash, &mut bad);
            } else if events
                .iter()
                .any(|e| matches!(e.op, Op::SAdd(..) | Op::SRem(..)))
            {
                self.check_elements(&events, &seen, Kind::Set, &mut bad);
            } else {
                if self.read_at.is_none()
                    && events.iter().any(|e| matches!(e.op, Op::SetExpiring(..)))
                {
                    bad(
                        "an expiring write, and no time for the final read (History::read_at)"
                            .into(),
                    );
                    continue;
                }
                let writes = self.register(&events, |op| match op {
                    Op::Set(_, v) | Op::SetExpiring(_, v, _) => Some(Some(v.clone())),
                    Op::Del(_) => Some(None),
                    _ => None,
                });
                let now = match &seen {
                    Observed::Absent => None,
                    Observed::Str(v) => Some(v.clone()),
                    other => {
                        bad(format!("a string key reads as {other:?}"));
                        continue;
                    }
                };
                if let Err(why) = allowed(&writes, &now) {
                    bad(why);
                }
            }
        }
        out
    }

    /// The writes of one register, from the events that write it
    /// (`write(op)`: `Some(value or absence)` for those that do), each
    /// ending the clock margin later than it did (see
    /// [`History::with_clock_margin`]).
    fn register(&self, events: &[&Event], write: impl Fn(&Op) -> Option<Option<Bytes>>) -> Writes {
        let margin = self.margin;
        let expiry = |e: &Event| match (&e.op, self.read_at) {
            // Dead for certain past its latest deadline as any clock sees
            // it, live for certain before its earliest.
            (Op::SetExpiring(_, _, ttl), Some(read)) => Some((
                read <= e.end.saturating_add(margin).saturating_add(*ttl),
                read.saturating_add(margin) >= e.start.saturating_add(*ttl),
            )),
            _ => None,
        };
        events
            .iter()
            .filter_map(|e| {
                write(&e.op).map(|value| Write {
                    value,
                    start: e.start,
                    end: e.end.saturating_add(margin),
                    outcome: e.outcome,
                    expiry: expiry(e),
                })
            })
            .collect()
    }

    /// Every field (or member) the events name is a register: written by
    /// HSET/SADD (a value, or presence), cleared by HDEL/SREM and by DEL of
    /// the key.
    fn check_elements(
        &self,
        events: &[&Event],
        seen: &Observed,
        kind: Kind,
        bad: &mut impl FnMut(String),
    ) {
        let now: BTreeMap<Bytes, Bytes> = match (seen, kind) {
            (Observed::Absent, _) => BTreeMap::new(),
            (Observed::Hash(h), Kind::Hash) => h.clone(),
            (Observed::Set(s), Kind::Set) => s.iter().map(|m| (m.clone(), Bytes::new())).collect(),
            (other, _) => return bad(format!("reads as {other:?}")),
        };
        let mut names: BTreeSet<Bytes> = now.keys().cloned().collect();
        for e in events {
            match &e.op {
                Op::HSet(_, n, _) | Op::HDel(_, n) | Op::SAdd(_, n) | Op::SRem(_, n) => {
                    names.insert(n.clone());
                }
                _ => {}
            }
        }
        for name in names {
            let writes = self.register(events, |op| match op {
                Op::HSet(_, n, v) if *n == name => Some(Some(v.clone())),
                Op::SAdd(_, n) if *n == name => Some(Some(Bytes::new())),
                Op::HDel(_, n) | Op::SRem(_, n) if *n == name => Some(None),
                Op::Del(_) => Some(None),
                _ => None,
            });
            if let Err(why) = allowed(&writes, &now.get(&name).cloned()) {
                bad(format!("{:?}: {why}", String::from_utf8_lossy(&name)));
            }
        }
    }
}

fn key_of(op: &Op) -> &Bytes {
    match op {
        Op::Set(k, _)
        | Op::SetExpiring(k, _, _)
        | Op::Del(k)
        | Op::Incr(k, _)
        | Op::HSet(k, _, _)
        | Op::HDel(k, _)
        | Op::SAdd(k, _)
        | Op::SRem(k, _) => k,
    }
}

/// Whether `now` is a state the register's `writes` allow (see the module
/// doc); the initial state is absence, overwritten by any acknowledged
/// write.
fn allowed(writes: &Writes, now: &Option<Bytes>) -> Result<(), String> {
    let acked = |w: &&Write| w.outcome == Outcome::Acked;
    // Some acknowledged write started after this interval ended.
    let overwritten = |end: u64| writes.iter().filter(acked).any(|w| w.start > end);
    let initial_ok = now.is_none() && !writes.iter().any(|w| acked(&w));
    let ok = initial_ok
        || writes
            .iter()
            .any(|w| w.may_read(now) && !overwritten(w.end));
    if ok {
        return Ok(());
    }
    let shown = |v: &Option<Bytes>| match v {
        Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
        None => "absent".to_string(),
    };
    let last =
        writes
            .iter()
            .filter(acked)
            .max_by_key(|w| w.start)
            .map_or("nothing".to_string(), |w| {
                let expiring = if w.expiry.is_some() { " expiring" } else { "" };
                format!("{}{expiring}", shown(&w.value))
            });
    Err(format!(
        "reads {}, which no write that may have been last left (the last acknowledged wrote {last})",
        shown(now)
    ))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hash,
    Set,
}

/// The counter rule (see the module doc). A DEL or SET of a counter key
/// is not modelled: tests that check counters only increment them.
fn check_counter(events: &[&Event], seen: &Observed, bad: &mut impl FnMut(String)) {
    if events.iter().any(|e| !matches!(e.op, Op::Incr(..))) {
        return bad(
            "a counter key was also set or deleted; the checker counts increments only".into(),
        );
    }
    let value = match seen {
        Observed::Absent => 0,
        Observed::Str(v) => match std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<i128>().ok())
        {
            Some(n) => n,
            None => return bad(format!("counter reads {v:?}, not an integer")),
        },
        other => return bad(format!("counter reads as {other:?}")),
    };
    let mut low = 0i128;
    let mut high = 0i128;
    for e in events {
        let Op::Incr(_, by) = e.op else { continue };
        let by = i128::from(by);
        match e.outcome {
            Outcome::Acked => {
                low += by;
                high += by;
            }
            Outcome::Unknown if by < 0 => low += by,
            Outcome::Unknown => high += by,
        }
    }
    if !(low..=high).contains(&value) {
        bad(format!(
            "counter reads {value}, outside {low}..={high} (acknowledged increments, give or take the indeterminate ones)"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn the_last_acknowledged_write_or_a_concurrent_one_may_be_read() {
        let mut h = History::new();
        h.push(Op::Set(b("k"), b("1")), 0, 1, Outcome::Acked);
        h.push(Op::Set(b("k"), b("2")), 2, 5, Outcome::Acked);
        h.push(Op::Set(b("k"), b("3")), 4, 6, Outcome::Unknown);
        let read = |v: Observed| h.check(|_| v.clone());
        assert!(read(Observed::Str(b("2"))).is_empty());
        assert!(
            read(Observed::Str(b("3"))).is_empty(),
            "indeterminate, concurrent"
        );
        assert_eq!(read(Observed::Str(b("1"))).len(), 1, "overwritten by 2");
        assert_eq!(read(Observed::Absent).len(), 1, "lost");
        assert_eq!(read(Observed::Str(b("9"))).len(), 1, "never written");
    }

    #[test]
    fn with_clocks_apart_a_write_just_after_another_may_lose_to_it() {
        let mut h = History::new();
        h.push(Op::Set(b("k"), b("1")), 0, 10, Outcome::Acked);
        h.push(Op::Set(b("k"), b("2")), 15, 20, Outcome::Acked);
        let read = |h: &History, v: &str| h.check(|_| Observed::Str(b(v)));
        // One clock: 2 started after 1 was acknowledged, so it wins.
        assert_eq!(read(&h, "1").len(), 1);
        // Clocks 5 apart: still ordered (15 > 10 + 5 is false: not known).
        let skewed = h.clone().with_clock_margin(5);
        assert!(read(&skewed, "1").is_empty(), "within the margin: either");
        assert!(read(&skewed, "2").is_empty());
        // Clocks 4 apart: 2 started more than that after 1 ended.
        assert_eq!(read(&h.clone().with_clock_margin(4), "1").len(), 1);
        // The margin never makes a value up or loses a lone write.
        assert_eq!(read(&skewed, "9").len(), 1);
        assert_eq!(skewed.check(|_| Observed::Absent).len(), 1);
    }

    #[test]
    fn an_expiring_write_reads_as_absent_once_its_deadline_has_passed_on_every_clock() {
        // SET k 1, then SET k 2 with a time to live of 100, run 10..20.
        let mut h = History::new();
        h.push(Op::Set(b("k"), b("1")), 0, 5, Outcome::Acked);
        h.push(Op::SetExpiring(b("k"), b("2"), 100), 10, 20, Outcome::Acked);
        let two = Observed::Str(b("2"));
        let unread = h.check(|_| Observed::Absent);
        assert_eq!(unread.len(), 1, "no read time: {unread:?}");
        let at = |h: &History, t: u64, v: &Observed| h.clone().read_at(t).check(|_| v.clone());
        // Live for certain before 110, dead for certain after 120.
        assert!(at(&h, 105, &two).is_empty());
        assert_eq!(at(&h, 105, &Observed::Absent).len(), 1, "expired early");
        for t in [110, 115, 120] {
            assert!(at(&h, t, &two).is_empty() && at(&h, t, &Observed::Absent).is_empty());
        }
        assert!(at(&h, 121, &Observed::Absent).is_empty());
        assert_eq!(at(&h, 121, &two).len(), 1, "outlived its deadline");
        // The value it replaced never comes back, expired or not.
        assert_eq!(at(&h, 500, &Observed::Str(b("1"))).len(), 1);
        // Clocks 7 apart widen the window either way.
        let skewed = h.clone().with_clock_margin(7);
        assert!(at(&skewed, 104, &Observed::Absent).is_empty());
        assert_eq!(at(&skewed, 102, &Observed::Absent).len(), 1);
        assert!(at(&skewed, 127, &two).is_empty());
        assert_eq!(at(&skewed, 128, &two).len(), 1);
        // A later acknowledged write replaces it, whatever its deadline.
        h.push(Op::Set(b("k"), b("3")), 30, 40, Outcome::Acked);
        assert_eq!(at(&h, 500, &Observed::Absent).len(), 1);
        assert!(at(&h, 500, &Observed::Str(b("3"))).is_empty());
    }

    #[test]
    fn a_delete_clears_fields_and_members_written_before_it() {
        let mut h = History::new();
        h.push(Op::SAdd(b("s"), b("a")), 0, 1, Outcome::Acked);
        h.push(Op::SAdd(b("s"), b("b")), 0, 1, Outcome::Acked);
        h.push(Op::Del(b("s")), 2, 3, Outcome::Acked);
        h.push(Op::SAdd(b("s"), b("c")), 4, 5, Outcome::Acked);
        let set = |m: &[&str]| Observed::Set(m.iter().map(|s| b(s)).collect());
        assert!(h.check(|_| set(&["c"])).is_empty());
        assert_eq!(h.check(|_| set(&["a", "c"])).len(), 1);
        assert_eq!(h.check(|_| Observed::Absent).len(), 1, "c lost");
        let mut g = History::new();
        g.push(Op::HSet(b("h"), b("f"), b("1")), 0, 1, Outcome::Acked);
        g.push(Op::HSet(b("h"), b("f"), b("2")), 0, 1, Outcome::Acked);
        let hash = |v: &str| Observed::Hash([(b("f"), b(v))].into_iter().collect());
        assert!(g.check(|_| hash("1")).is_empty() && g.check(|_| hash("2")).is_empty());
    }

    #[test]
    fn every_acknowledged_increment_counts_once() {
        let mut h = History::new();
        h.push(Op::Incr(b("c"), 5), 0, 1, Outcome::Acked);
        h.push(Op::Incr(b("c"), 3), 0, 1, Outcome::Unknown);
        h.push(Op::Incr(b("c"), -2), 0, 1, Outcome::Unknown);
        let read = |n: i64| h.check(|_| Observed::Str(Bytes::from(n.to_string())));
        for ok in [3, 5, 6, 8] {
            assert!(read(ok).is_empty(), "{ok}");
        }
        for lost in [2, 9] {
            assert_eq!(read(lost).len(), 1, "{lost}");
        }
    }
}
