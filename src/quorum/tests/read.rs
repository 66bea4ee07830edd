use super::*;
use crate::error::Error;
use crate::quorum::{resolve, Answers, ReadQuorum, ReadStep, Timing, Why};
use crate::store::{Entry, Version};

const ME: &str = "n1";

type Read = ReadQuorum<Option<Entry>>;

/// Speculation at 20 ms, misses confirmed for 20 ms, the deadline at 2 s.
fn timing(origin: Instant) -> Timing {
    Timing {
        deadline: at(origin, 2000),
        speculate_at: Some(at(origin, 20)),
        confirm_wait: Some(Duration::from_millis(20)),
    }
}

/// A read by n1 with quorum `r`, asking from the start of the list.
fn read(origin: Instant, r: usize, strict: bool) -> Read {
    ReadQuorum::new(n(ME), q(r, 2, strict), 0, timing(origin))
}

/// A read by n1 (R = 2) over n1, n2 and n3 that asked itself and n2, with
/// its own answer, `mine`, in.
fn under_way(t: Instant, mine: Option<Entry>) -> Read {
    let mut r = read(t, 2, false);
    r.on_view(1, sloppy(&["n1", "n2", "n3"]));
    assert_eq!(asks(&mut r, t), (Why::First, targets(true, &["n2"])));
    r.on_answer(n(ME), mine);
    r
}

/// [`under_way`] with both answers in, both misses.
fn missed_twice(t: Instant) -> Read {
    let mut r = under_way(t, None);
    r.on_answer(n("n2"), None);
    r
}

fn entry(ts: u64, value: &str) -> Option<Entry> {
    let version = Version {
        ts: crate::clock::Timestamp(ts),
        node: 1,
    };
    Some(Entry::string(
        version,
        bytes::Bytes::from(value.to_string()),
    ))
}

fn tombstone(ts: u64) -> Option<Entry> {
    Some(Entry::tombstone(Version {
        ts: crate::clock::Timestamp(ts),
        node: 1,
    }))
}

/// The next step, which must be an ask: why, and whom.
fn asks(r: &mut Read, now: Instant) -> (Why, Targets) {
    match r.next(now) {
        ReadStep::Ask(why) => (why, r.asking().to_targets()),
        other => panic!("expected an ask, got {other:?}"),
    }
}

fn waits(step: ReadStep) -> Instant {
    match step {
        ReadStep::Wait(until) => until,
        other => panic!("expected a wait, got {other:?}"),
    }
}

/// The next step, which must be done: the answers.
fn answers(r: &mut Read, now: Instant) -> Answers<Option<Entry>> {
    match r.next(now) {
        ReadStep::Done => std::mem::take(r.answers()),
        other => panic!("expected answers, got {other:?}"),
    }
}

fn from(answers: &Answers<Option<Entry>>) -> Vec<&str> {
    answers.iter().map(|(n, _)| &**n).collect()
}

#[test]
fn a_replica_reads_itself_and_asks_one_other_for_r_2() {
    let t = Instant::now();
    let mut r = read(t, 2, false);
    r.on_view(1, sloppy(&["n2", "n1", "n3"]));
    assert_eq!(asks(&mut r, t), (Why::First, targets(true, &["n2"])));
    r.on_answer(n(ME), entry(5, "a"));
    assert_eq!(waits(r.next(t)), at(t, 20), "until speculation");
    r.on_answer(n("n2"), entry(5, "a"));
    assert_eq!(from(&answers(&mut r, t)), [ME, "n2"]);
}

#[test]
fn which_replica_is_asked_first_rotates_with_the_key() {
    let t = Instant::now();
    let list = sloppy(&["n2", "n3", "n4"]);
    let firsts: Vec<String> = (0..3u8)
        .map(|first| {
            let mut r: Read = ReadQuorum::new(n(ME), q(1, 2, false), first, timing(t));
            r.on_view(1, list.clone());
            let (_, asked) = asks(&mut r, t);
            assert!(!asked.local);
            asked.remote.iter().map(|n| n.to_string()).collect()
        })
        .collect();
    assert_eq!(firsts, ["n2", "n3", "n4"]);
}

#[test]
fn a_replica_whose_link_broke_is_asked_only_if_the_others_do_not_make_r() {
    let t = Instant::now();
    let mut r = read(t, 2, false);
    r.on_view(1, sloppy(&["n1", "n2", "n3"]));
    assert_eq!(asks(&mut r, t), (Why::First, targets(true, &["n2"])));
    assert!(r.asking().if_reachable, "sent to only if its link works");
    r.on_answer(n(ME), entry(1, "a"));
    // n2's link is broken: n3 in its place, also only if reachable.
    r.on_unreachable(&n("n2"));
    assert_eq!(asks(&mut r, t), (Why::First, targets(false, &["n3"])));
    assert!(r.asking().if_reachable);

    // Off the list, R = 3: the broken one is asked after all, unconditionally.
    let mut r: Read = ReadQuorum::new(n(ME), q(3, 2, false), 0, timing(t));
    r.on_view(1, sloppy(&["n2", "n3", "n4"]));
    assert_eq!(
        asks(&mut r, t),
        (Why::First, targets(false, &["n2", "n3", "n4"]))
    );
    r.on_unreachable(&n("n2"));
    assert_eq!(asks(&mut r, t), (Why::First, targets(false, &["n2"])));
    assert!(!r.asking().if_reachable);
    waits(r.next(t));
}

#[test]
fn slow_replicas_make_it_ask_every_replica_left_at_the_speculation_instant() {
    let t = Instant::now();
    let mut r = under_way(t, entry(5, "a"));
    waits(r.next(at(t, 19)));
    assert_eq!(
        asks(&mut r, at(t, 20)),
        (Why::Speculate, targets(false, &["n3"]))
    );
    assert_eq!(waits(r.next(at(t, 20))), at(t, 2000), "nothing left to ask");
    r.on_answer(n("n3"), entry(6, "b"));
    assert_eq!(from(&answers(&mut r, at(t, 21))), [ME, "n3"]);
}

#[test]
fn without_speculation_every_replica_is_asked_at_once() {
    let t = Instant::now();
    let mut r: Read = ReadQuorum::new(
        n(ME),
        q(2, 2, false),
        0,
        Timing {
            speculate_at: None,
            ..timing(t)
        },
    );
    r.on_view(1, sloppy(&["n1", "n2", "n3"]));
    assert_eq!(asks(&mut r, t), (Why::First, targets(true, &["n2", "n3"])));
}

#[test]
fn a_miss_is_confirmed_by_one_more_reachable_replica() {
    let t = Instant::now();
    let mut r = missed_twice(t);
    assert_eq!(
        asks(&mut r, at(t, 5)),
        (Why::ConfirmMiss, targets(false, &["n3"]))
    );
    assert_eq!(
        waits(r.next(at(t, 5))),
        at(t, 20),
        "confirmation bounded by speculation"
    );
    // n3 had it (the first two were filled late after a ring change).
    r.on_answer(n("n3"), entry(7, "late"));
    let mut got = answers(&mut r, at(t, 6));
    assert_eq!(from(&got), [ME, "n2", "n3"]);
    assert_eq!(resolve(&mut got, None).merged, entry(7, "late"));
}

#[test]
fn a_confirmation_that_does_not_come_in_time_leaves_the_miss_standing() {
    let t = Instant::now();
    let mut r = missed_twice(t);
    asks(&mut r, at(t, 10));
    waits(r.next(at(t, 29)));
    assert_eq!(from(&answers(&mut r, at(t, 30))), [ME, "n2"]);
}

#[test]
fn a_miss_is_not_confirmed_by_a_replica_whose_link_broke() {
    // A node just killed would otherwise make every miss wait out the
    // confirmation until the failure detector marks it down.
    let t = Instant::now();
    let mut r = missed_twice(t);
    assert_eq!(asks(&mut r, t), (Why::ConfirmMiss, targets(false, &["n3"])));
    assert!(r.asking().if_reachable);
    r.on_unreachable(&n("n3"));
    assert_eq!(
        from(&answers(&mut r, t)),
        [ME, "n2"],
        "at once, not after the wait"
    );

    // A replica known unreachable is not even proposed.
    let mut r: Read = ReadQuorum::new(n(ME), q(1, 2, false), 0, timing(t));
    r.on_view(1, sloppy(&["n2", "n3"]));
    assert_eq!(asks(&mut r, t), (Why::First, targets(false, &["n2"])));
    r.on_unreachable(&n("n2"));
    assert_eq!(asks(&mut r, t), (Why::First, targets(false, &["n3"])));
    r.on_answer(n("n3"), None);
    assert_eq!(
        from(&answers(&mut r, t)),
        ["n3"],
        "n2 is not asked to confirm"
    );
}

#[test]
fn a_tombstone_is_an_answer_not_a_miss_and_confirmation_can_be_off() {
    let t = Instant::now();
    let mut r = under_way(t, None);
    r.on_answer(n("n2"), tombstone(9));
    answers(&mut r, t);

    let mut r: Read = ReadQuorum::new(
        n(ME),
        q(2, 2, false),
        0,
        Timing {
            confirm_wait: None,
            ..timing(t)
        },
    );
    r.on_view(1, sloppy(&["n1", "n2", "n3"]));
    asks(&mut r, t);
    r.on_answer(n(ME), None);
    r.on_answer(n("n2"), None);
    answers(&mut r, t);
}

#[test]
fn at_the_deadline_the_read_fails_with_how_many_answered() {
    let t = Instant::now();
    let mut r = under_way(t, entry(1, "a"));
    asks(&mut r, at(t, 20)); // speculation
    match r.next(at(t, 2000)) {
        ReadStep::TimedOut { error, unanswered } => {
            assert_eq!(
                error.to_string(),
                Error::Unavailable {
                    op: "read",
                    needed: 2,
                    got: 1
                }
                .to_string()
            );
            assert_eq!(unanswered, 2);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn strict_reads_fail_at_once_with_too_few_home_replicas_and_confirm_with_a_home_one() {
    let t = Instant::now();
    let mut r = read(t, 2, true);
    r.on_view(1, strict(&["n2"], 3));
    match r.next(t) {
        ReadStep::Failed(e) => assert_eq!(
            e.to_string(),
            Error::UnavailableStrict {
                op: "read",
                needed: 2,
                got: 0,
                up: 1,
                home: 3
            }
            .to_string()
        ),
        other => panic!("expected a failure, got {other:?}"),
    }

    // Two home replicas up, both misses: no third to confirm with.
    let mut r = read(t, 2, true);
    r.on_view(1, strict(&["n1", "n2"], 3));
    assert_eq!(asks(&mut r, t), (Why::First, targets(true, &["n2"])));
    r.on_answer(n(ME), None);
    r.on_answer(n("n2"), None);
    assert_eq!(from(&answers(&mut r, t)), [ME, "n2"]);
}

#[test]
fn a_view_change_asks_the_replicas_it_adds_as_far_as_still_needed() {
    let t = Instant::now();
    let mut r = under_way(t, entry(1, "a"));
    waits(r.next(t));
    // n2, asked and silent, is marked down; n4 completes the list.
    assert!(r.is_new_view(2));
    r.on_view(2, sloppy(&["n1", "n3", "n4"]));
    assert_eq!(asks(&mut r, t), (Why::ViewChanged, targets(false, &["n3"])));
    r.on_answer(n("n3"), entry(1, "a"));
    assert_eq!(from(&answers(&mut r, t)), [ME, "n3"]);
}

#[test]
fn a_second_answer_from_one_replica_is_ignored() {
    let t = Instant::now();
    let mut r = read(t, 2, false);
    r.on_view(1, sloppy(&["n1", "n2", "n3"]));
    asks(&mut r, t);
    assert!(r.on_answer(n("n2"), entry(1, "a")));
    assert!(!r.on_answer(n("n2"), entry(2, "b")));
    waits(r.next(t));
}

#[test]
fn resolve_merges_and_names_every_replica_that_answered_something_else() {
    let a = |name: &str, e: Option<Entry>| (n(name), e);
    let mut got: Answers<Option<Entry>> = [
        a("n1", entry(5, "old")),
        a("n2", entry(9, "new")),
        a("n3", None),
    ]
    .into_iter()
    .collect();
    let resolved = resolve(&mut got, None);
    assert_eq!(resolved.merged, entry(9, "new"));
    assert_eq!(resolved.stale, list(&["n1", "n3"]));

    // A delete is newer than the value: it is the merge, and repaired.
    let mut got: Answers<Option<Entry>> = [a("n1", entry(5, "v")), a("n2", tombstone(6))]
        .into_iter()
        .collect();
    let resolved = resolve(&mut got, None);
    assert_eq!(resolved.merged, tombstone(6));
    assert_eq!(resolved.stale, list(&["n1"]));

    // Every answer a miss: nothing to merge and nothing to repair.
    let mut got: Answers<Option<Entry>> = [a("n1", None), a("n2", None)].into_iter().collect();
    assert_eq!(resolve(&mut got, None).merged, None);
    assert!(resolve(&mut got, None).stale.is_empty());

    // What a known FLUSHALL removed is no answer, and its holder is repaired.
    let before_flush = |e: Entry| (e.version().ts.0 > 6).then_some(e);
    let mut got: Answers<Option<Entry>> = [a("n1", entry(5, "flushed")), a("n2", entry(8, "kept"))]
        .into_iter()
        .collect();
    let resolved = resolve(&mut got, Some(&before_flush));
    assert_eq!(resolved.merged, entry(8, "kept"));
    assert_eq!(resolved.stale, list(&["n1"]));
}

#[test]
fn resolve_of_one_answer_is_that_answer_and_repairs_nobody() {
    let mut got: Answers<Option<Entry>> = [(n(ME), entry(5, "v"))].into_iter().collect();
    let resolved = resolve(&mut got, None);
    assert_eq!(resolved.merged, entry(5, "v"));
    assert!(resolved.stale.is_empty());

    // A known FLUSHALL still applies to a lone answer.
    let before_flush = |e: Entry| (e.version().ts.0 > 6).then_some(e);
    let mut got: Answers<Option<Entry>> = [(n(ME), entry(5, "flushed"))].into_iter().collect();
    assert_eq!(resolve(&mut got, Some(&before_flush)).merged, None);
}
