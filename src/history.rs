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

/// A register's possible writes: (value or absence, start, end, outcome).
type Writes = Vec<(Option<Bytes>, u64, u64, Outcome)>;

/// The operations of a run.
#[derive(Clone, Debug, Default)]
pub struct History {
    events: Vec<Event>,
    /// How much later than another write's end a write must start to be
    /// known to order after it (see [`History::with_clock_margin`]).
    margin: u64,
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
                check_elements(&events, &seen, Kind::Hash, self.margin, &mut bad);
            } else if events
                .iter()
                .any(|e| matches!(e.op, Op::SAdd(..) | Op::SRem(..)))
            {
                check_elements(&events, &seen, Kind::Set, self.margin, &mut bad);
            } else {
                let writes = register(&events, self.margin, |op| match op {
                    Op::Set(_, v) => Some(Some(v.clone())),
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
}

fn key_of(op: &Op) -> &Bytes {
    match op {
        Op::Set(k, _)
        | Op::Del(k)
        | Op::Incr(k, _)
        | Op::HSet(k, _, _)
        | Op::HDel(k, _)
        | Op::SAdd(k, _)
        | Op::SRem(k, _) => k,
    }
}

/// The writes of one register, from the events that write it
/// (`write(op)`: `Some(value or absence)` for those that do), each
/// ending `margin` later than it did (see [`History::with_clock_margin`]).
fn register(
    events: &[&Event],
    margin: u64,
    write: impl Fn(&Op) -> Option<Option<Bytes>>,
) -> Writes {
    events
        .iter()
        .filter_map(|e| write(&e.op).map(|v| (v, e.start, e.end.saturating_add(margin), e.outcome)))
        .collect()
}

/// Whether `now` is a state the register's `writes` allow (see the module
/// doc); the initial state is absence, overwritten by any acknowledged
/// write.
fn allowed(writes: &Writes, now: &Option<Bytes>) -> Result<(), String> {
    let acked_ends: Vec<u64> = writes
        .iter()
        .filter(|w| w.3 == Outcome::Acked)
        .map(|w| w.2)
        .collect();
    // Some acknowledged write started after this interval ended.
    let overwritten = |end: u64| writes.iter().any(|w| w.3 == Outcome::Acked && w.1 > end);
    let initial_ok = now.is_none() && acked_ends.is_empty();
    let ok = initial_ok || writes.iter().any(|w| &w.0 == now && !overwritten(w.2));
    if ok {
        return Ok(());
    }
    let shown = |v: &Option<Bytes>| match v {
        Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
        None => "absent".to_string(),
    };
    let last = writes
        .iter()
        .filter(|w| w.3 == Outcome::Acked)
        .max_by_key(|w| w.1)
        .map_or("nothing".to_string(), |w| shown(&w.0));
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

/// Every field (or member) the events name is a register: written by
/// HSET/SADD (a value, or presence), cleared by HDEL/SREM and by DEL of
/// the key.
fn check_elements(
    events: &[&Event],
    seen: &Observed,
    kind: Kind,
    margin: u64,
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
        let writes = register(events, margin, |op| match op {
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
