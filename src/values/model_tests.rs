//! The model test of the merge layer: random client operations against
//! three in-memory replicas, with random partitions, anti-entropy between
//! replicas that can reach each other, heals, and restarts that lose a
//! replica's data. After the final heal:
//!
//! - every replica holds the same state;
//! - that state is the merge of every delta that survived somewhere, in
//!   any order (deltas are what the real nodes ship and log);
//! - every acknowledged operation's delta survived;
//! - and the state reads as the one history checker (`crate::history`)
//!   allows, from the operations and their outcomes alone.
//!
//! An operation is acknowledged when its delta reached two replicas (the
//! default write quorum); one that reached fewer is indeterminate. A
//! replica loses its data only while every other replica holds all it
//! had been told (no two losses between heals), which is what quorum
//! writes protect against; its counter shares then start under a new
//! identity, as a node's new data incarnation does.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::tests::incr;
use super::*;
use crate::history::{History, Observed, Op, Outcome};

const REPLICAS: usize = 3;
const KEYS: [&str; 4] = ["k", "c", "h", "s"];

/// One step of the model.
#[derive(Clone, Debug)]
enum Step {
    /// A client operation through replica `at`.
    Write { at: usize, op: u8, arg: u8 },
    /// Replicas `group` (a bit per replica) are cut off from the others.
    Split { group: u8 },
    /// Every replica reaches every other, and anti-entropy runs.
    Heal,
    /// Anti-entropy between two replicas, if they can reach each other.
    Sync { a: usize, b: usize },
    /// Replica `at` restarts with nothing on disk.
    Wipe { at: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => (0..REPLICAS, any::<u8>(), 0u8..4).prop_map(|(at, op, arg)| Step::Write { at, op, arg }),
        1 => (0u8..8).prop_map(|group| Step::Split { group }),
        1 => Just(Step::Heal),
        2 => (0..REPLICAS, 0..REPLICAS).prop_map(|(a, b)| Step::Sync { a, b }),
        1 => (0..REPLICAS).prop_map(|at| Step::Wipe { at }),
    ]
}

#[derive(Clone, Default)]
struct Replica {
    entries: BTreeMap<&'static str, Entry>,
    /// The deltas it holds (by index), to know which survived.
    holds: BTreeSet<usize>,
    /// Its counter identity (new after a wipe).
    identity: u64,
}

impl Replica {
    fn apply(&mut self, key: &'static str, id: usize, delta: &Entry) {
        match self.entries.get_mut(key) {
            Some(e) => {
                e.merge_in(delta);
            }
            None => {
                self.entries.insert(key, delta.clone());
            }
        }
        self.holds.insert(id);
    }
}

/// Two replicas exchange everything (anti-entropy).
fn sync(replicas: &mut [Replica], a: usize, b: usize) {
    if a == b {
        return;
    }
    let (from_a, from_b) = (replicas[a].clone(), replicas[b].clone());
    for (to, from) in [(a, from_b), (b, from_a)] {
        for (key, e) in &from.entries {
            match replicas[to].entries.get_mut(key) {
                Some(mine) => {
                    mine.merge_in(e);
                }
                None => {
                    replicas[to].entries.insert(key, e.clone());
                }
            }
        }
        let held = from.holds.clone();
        replicas[to].holds.extend(held);
    }
}

/// What a client reads of `key` in `entry`.
fn observe(key: &str, entry: Option<&Entry>) -> Observed {
    let Some(e) = entry.filter(|e| e.exists(0)) else {
        return Observed::Absent;
    };
    match e.kind(0) {
        Some(Kind::String) => Observed::Str(e.string_value(0).unwrap().unwrap()),
        Some(Kind::Hash) => Observed::Hash(e.hash_fields().into_iter().collect()),
        Some(Kind::Set) => Observed::Set(e.set_members_present().into_iter().collect()),
        None => panic!("{key}: exists but has no type"),
    }
}

/// The delta and history operation of a client operation on replica `r`.
fn operation(r: &Replica, op: u8, arg: u8, version: Version) -> (&'static str, Entry, Op) {
    let name = Bytes::from(format!("e{arg}"));
    let value = Bytes::from(format!("v{}", version.ts.0));
    let key = KEYS[usize::from(op) % KEYS.len()];
    let k = Bytes::from_static(key.as_bytes());
    let delete = op / 4 % 5 == 0;
    match key {
        "k" if delete => (key, Entry::tombstone(version), Op::Del(k)),
        "k" => (
            key,
            Entry::set_string(version, value.clone(), None),
            Op::Set(k, value),
        ),
        "c" => {
            let by = i64::from(arg) - 1;
            let (delta, _) =
                incr(r.entries.get(key), r.identity, by, version, 0).expect("an integer");
            (key, delta, Op::Incr(k, by))
        }
        "h" if op / 4 % 7 == 0 => (key, Entry::tombstone(version), Op::Del(k)),
        "h" if delete => (
            key,
            Entry::hash_delete(version, std::slice::from_ref(&name)),
            Op::HDel(k, name),
        ),
        "h" => (
            key,
            Entry::hash_set(version, &[(name.clone(), value.clone())]),
            Op::HSet(k, name, value),
        ),
        _ if op / 4 % 7 == 0 => (key, Entry::tombstone(version), Op::Del(k)),
        _ => {
            let present = !delete;
            let delta = Entry::set_members(version, std::slice::from_ref(&name), present);
            let op = if present {
                Op::SAdd(k, name)
            } else {
                Op::SRem(k, name)
            };
            (key, delta, op)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn replicas_converge_on_the_merge_of_every_acknowledged_operation(
        steps in proptest::collection::vec(step(), 1..150),
        seed in any::<u64>(),
    ) {
        let mut replicas: Vec<Replica> = (0..REPLICAS)
            .map(|i| Replica { identity: i as u64 + 1, ..Replica::default() })
            .collect();
        let mut side = [0u8; REPLICAS];
        let mut deltas: Vec<(&'static str, Entry)> = Vec::new();
        let mut acked: Vec<usize> = Vec::new();
        let mut history = History::new();
        let mut next_identity = 100;
        // A replica that lost its data, until a heal repairs it.
        let mut unrepaired = false;
        for (t, s) in steps.into_iter().enumerate() {
            let now = t as u64 + 1;
            match s {
                Step::Write { at, op, arg } => {
                    let version = Version { ts: crate::clock::Timestamp(now), node: at as u64 };
                    let (key, delta, op) = operation(&replicas[at], op, arg, version);
                    let id = deltas.len();
                    let mut reached = 0;
                    for r in 0..REPLICAS {
                        if side[r] == side[at] {
                            replicas[r].apply(key, id, &delta);
                            reached += 1;
                        }
                    }
                    let outcome = if reached >= 2 { Outcome::Acked } else { Outcome::Unknown };
                    if outcome == Outcome::Acked {
                        acked.push(id);
                    }
                    history.push(op, now, now, outcome);
                    deltas.push((key, delta));
                }
                Step::Split { group } => {
                    for (r, s) in side.iter_mut().enumerate() {
                        *s = (group >> r) & 1;
                    }
                }
                Step::Heal => {
                    side = [0; REPLICAS];
                    for a in 0..REPLICAS {
                        for b in 0..REPLICAS {
                            sync(&mut replicas, a, b);
                        }
                    }
                    unrepaired = false;
                }
                Step::Sync { a, b } => {
                    if side[a] == side[b] {
                        sync(&mut replicas, a, b);
                    }
                }
                Step::Wipe { at } => {
                    if !unrepaired {
                        replicas[at] = Replica { identity: next_identity, ..Replica::default() };
                        next_identity += 1;
                        unrepaired = true;
                    }
                }
            }
        }
        for a in 0..REPLICAS {
            for b in 0..REPLICAS {
                sync(&mut replicas, a, b);
            }
        }
        for r in &replicas[1..] {
            prop_assert_eq!(&r.entries, &replicas[0].entries, "replicas differ after the heal");
        }
        let survived = &replicas[0].holds;
        for id in &acked {
            prop_assert!(survived.contains(id), "acknowledged delta {} lost", id);
        }
        let mut order: Vec<usize> = survived.iter().copied().collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let mut merged: BTreeMap<&'static str, Entry> = BTreeMap::new();
        for id in order {
            let (key, delta) = &deltas[id];
            let e = Entry::merge_options(merged.remove(key), Some(delta)).expect("some");
            merged.insert(key, e);
        }
        prop_assert_eq!(&merged, &replicas[0].entries, "state is not the merge of its deltas");
        let violations = history.check(|k| {
            let key = KEYS.iter().find(|n| n.as_bytes() == &k[..]).expect("a model key");
            observe(key, replicas[0].entries.get(key))
        });
        prop_assert!(violations.is_empty(), "{:?}", violations);
    }
}
