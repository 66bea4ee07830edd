//! Random interleavings of views, answers, broken links and time against
//! both machines, checked against what a quorum request must never do:
//! finish with fewer answers than its quorum, send to a replica twice,
//! wait for an instant already past, or outlive its deadline.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::quorum::{Ack, ReadQuorum, ReadStep, Timing, WriteQuorum, WriteStep};
use crate::store::{Entry, Version};

const NODES: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];
const DEADLINE_MS: u64 = 1000;

/// Something that happens to a request between two of its steps.
#[derive(Clone, Debug)]
enum Event {
    /// The view changes: these nodes (indices into NODES) are the replicas.
    View(Vec<usize>),
    /// Replica `i` (of those sent the request) answers; `kind` picks what.
    Answer(usize, u8),
    /// The link to node `i` breaks, or heals if it was broken.
    Broken(usize),
    /// Time passes.
    Advance(u64),
}

fn replicas_of(picks: &[usize], strict: bool) -> Replicas {
    let mut names: Vec<&str> = Vec::new();
    for &i in picks {
        if !names.contains(&NODES[i]) {
            names.push(NODES[i]);
        }
    }
    Replicas {
        list: list(&names),
        home: if strict { 3 } else { names.len() },
    }
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        1 => proptest::collection::vec(0..5usize, 1..=3).prop_map(Event::View),
        6 => (0..5usize, any::<u8>()).prop_map(|(i, k)| Event::Answer(i, k)),
        2 => (0..5usize).prop_map(Event::Broken),
        3 => (0..400u64).prop_map(Event::Advance),
    ]
}

fn entry(k: u8) -> Option<Entry> {
    let version = Version {
        ts: crate::clock::Timestamp(u64::from(k % 4)),
        node: 1,
    };
    (k % 3 != 0).then(|| Entry::string(version, bytes::Bytes::from_static(b"v")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_write_never_finishes_short_never_sends_twice_and_ends_by_its_deadline(
        first in proptest::collection::vec(0..5usize, 1..=3),
        w in 1..=3usize,
        strict in any::<bool>(),
        events in proptest::collection::vec(event(), 0..40),
    ) {
        let t = Instant::now();
        let version = Version { ts: crate::clock::Timestamp(7), node: 1 };
        let mut m = WriteQuorum::new(n("n1"), q(2, w, strict), version, at(t, DEADLINE_MS));
        let mut listed = replicas_of(&first, strict);
        let mut sent: Vec<NodeName> = m.on_view(1, listed.clone()).to_targets().remote.into_vec();
        let mut local = listed.list.iter().any(|x| &**x == "n1");
        let mut acked = BTreeSet::new();
        if local {
            m.on_ack(n("n1"), Ack::done(false));
            acked.insert("n1".to_string());
        }
        let mut forced = BTreeSet::new();
        let (mut now, mut epoch) = (0u64, 1u64);
        let mut finished = false;
        for e in events.into_iter().chain([Event::Advance(DEADLINE_MS)]) {
            match e {
                Event::View(picks) => {
                    epoch += 1;
                    listed = replicas_of(&picks, strict);
                    let asking = m.on_view(epoch, listed.clone()).to_targets();
                    for node in &asking.remote {
                        prop_assert!(!sent.contains(node), "{node} sent the write twice");
                        sent.push(node.clone());
                    }
                    if asking.local {
                        prop_assert!(!local, "applied here twice");
                        local = true;
                        m.on_ack(n("n1"), Ack::done(false));
                        acked.insert("n1".to_string());
                    }
                }
                Event::Answer(i, kind) if !sent.is_empty() => {
                    let from = sent[i % sent.len()].clone();
                    let ack = match kind % 6 {
                        0 => Ack::WrongType,
                        1 => Ack::Refused(format!("{from} refused: full")),
                        _ => Ack::done(kind % 2 == 0),
                    };
                    if matches!(ack, Ack::Done { .. }) {
                        acked.insert(from.to_string());
                    }
                    m.on_ack(from, ack);
                }
                Event::Advance(ms) => now = (now + ms).min(DEADLINE_MS + 1),
                _ => {}
            }
            // Step until it waits or finishes, as the driver does.
            for _ in 0..10 {
                match m.next(at(t, now)) {
                    WriteStep::Wait(until) => {
                        prop_assert!(until > at(t, now), "waits for an instant already past");
                        prop_assert!(now < DEADLINE_MS, "waits past its deadline");
                        break;
                    }
                    WriteStep::Force(targets) => {
                        for node in &targets.remote {
                            prop_assert!(forced.insert(node.to_string()), "{node} forced twice");
                        }
                        if targets.local {
                            prop_assert!(forced.insert("n1".into()), "forced here twice");
                        }
                    }
                    WriteStep::Done(Ok(_)) => {
                        let needed = if strict { w } else { w.min(listed.list.len()).max(1) };
                        prop_assert!(acked.len() >= needed, "done with {} of {needed}", acked.len());
                        finished = true;
                        break;
                    }
                    WriteStep::Done(Err(_)) | WriteStep::TimedOut { .. } => {
                        finished = true;
                        break;
                    }
                }
            }
            if finished {
                break;
            }
        }
        prop_assert!(finished, "still going after its deadline");
    }

    #[test]
    fn a_read_never_finishes_short_never_asks_twice_and_ends_by_its_deadline(
        first in proptest::collection::vec(0..5usize, 1..=3),
        r in 1..=3usize,
        strict in any::<bool>(),
        speculate in any::<bool>(),
        confirm in any::<bool>(),
        rotation in any::<u8>(),
        events in proptest::collection::vec(event(), 0..40),
    ) {
        let t = Instant::now();
        let timing = Timing {
            deadline: at(t, DEADLINE_MS),
            speculate_at: speculate.then(|| at(t, 20)),
            confirm_wait: confirm.then(|| Duration::from_millis(20)),
        };
        let mut m: ReadQuorum<Option<Entry>> = ReadQuorum::new(n("n1"), q(r, 2, strict), rotation, timing);
        let mut listed = replicas_of(&first, strict);
        m.on_view(1, listed.clone());
        // Replicas actually sent the read (the broken ones were not).
        let mut sent: Vec<NodeName> = Vec::new();
        // Nodes whose link is broken now.
        let mut broken = BTreeSet::new();
        let mut answered = BTreeSet::new();
        let (mut now, mut epoch) = (0u64, 1u64);
        let mut finished = false;
        for e in [Event::Advance(0)].into_iter().chain(events).chain([Event::Advance(DEADLINE_MS)]) {
            match e {
                Event::View(picks) => {
                    epoch += 1;
                    listed = replicas_of(&picks, strict);
                    m.on_view(epoch, listed.clone());
                }
                Event::Answer(i, kind) if !sent.is_empty() => {
                    let from = sent[i % sent.len()].clone();
                    if m.on_answer(from.clone(), entry(kind)) {
                        prop_assert!(answered.insert(from.to_string()));
                    }
                }
                Event::Broken(i) => {
                    let node = NODES[i];
                    if broken.contains(node) {
                        broken.remove(node);
                    } else {
                        broken.insert(node);
                    }
                }
                Event::Advance(ms) => now = (now + ms).min(DEADLINE_MS + 1),
                _ => {}
            }
            for _ in 0..20 {
                match m.next(at(t, now)) {
                    ReadStep::Ask(_) => {
                        // As the driver does: a conditional send over a
                        // broken link is not made, and is reported.
                        let asking = m.asking();
                        let mut unreachable = Vec::new();
                        for node in asking.remote {
                            prop_assert!(listed.list.contains(node), "{node} is not a replica");
                            if asking.if_reachable && broken.contains(&**node) {
                                unreachable.push(node.clone());
                                continue;
                            }
                            prop_assert!(!sent.contains(node), "{node} sent the read twice");
                            sent.push(node.clone());
                        }
                        let local = asking.local;
                        for node in &unreachable {
                            m.on_unreachable(node);
                        }
                        if local {
                            prop_assert!(answered.insert("n1".into()), "read here twice");
                            m.on_answer(n("n1"), entry(1));
                        }
                    }
                    ReadStep::Wait(until) => {
                        prop_assert!(until > at(t, now), "waits for an instant already past");
                        prop_assert!(now < DEADLINE_MS, "waits past its deadline");
                        break;
                    }
                    ReadStep::Done => {
                        let needed = if strict { r } else { r.min(listed.list.len()).max(1) };
                        prop_assert!(m.answers().len() >= needed, "done with {} of {needed}", m.answers().len());
                        finished = true;
                        break;
                    }
                    ReadStep::Failed(_) => {
                        prop_assert!(strict && listed.list.len() < r);
                        finished = true;
                        break;
                    }
                    ReadStep::TimedOut { .. } => {
                        prop_assert!(now >= DEADLINE_MS);
                        finished = true;
                        break;
                    }
                }
            }
            if finished {
                break;
            }
        }
        prop_assert!(finished, "still going after its deadline");
    }
}
