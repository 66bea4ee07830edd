use super::*;
use crate::error::Error;
use crate::quorum::{Ack, WriteQuorum, WriteStep};
use crate::store::Version;

const ME: &str = "n1";

fn version() -> Version {
    Version {
        ts: crate::clock::Timestamp(1000 << 16),
        node: 1,
    }
}

/// A write by n1 with quorum `w`, failing 2 s after the origin.
fn write(origin: Instant, w: usize, strict: bool) -> WriteQuorum {
    WriteQuorum::new(n(ME), q(2, w, strict), version(), at(origin, 2000))
}

/// A sloppy write by n1 with quorum `w` over n1, n2 and n3, sent to all
/// three.
fn sent_to_three(origin: Instant, w: usize) -> WriteQuorum {
    let mut m = write(origin, w, false);
    let asking = m.on_view(1, sloppy(&["n1", "n2", "n3"])).to_targets();
    assert_eq!(asking, targets(true, &["n2", "n3"]));
    m
}

fn done(step: WriteStep) -> crate::quorum::WriteOutcome {
    match step {
        WriteStep::Done(Ok(outcome)) => outcome,
        other => panic!("expected a success, got {other:?}"),
    }
}

fn failed(step: WriteStep) -> Error {
    match step {
        WriteStep::Done(Err(e)) => e,
        other => panic!("expected a failure before the deadline, got {other:?}"),
    }
}

fn timed_out(step: WriteStep) -> (String, usize) {
    match step {
        WriteStep::TimedOut { error, unanswered } => (error.to_string(), unanswered),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

fn waits(step: WriteStep) -> Instant {
    match step {
        WriteStep::Wait(until) => until,
        other => panic!("expected a wait, got {other:?}"),
    }
}

#[test]
fn a_write_goes_to_every_replica_at_once_and_is_done_after_w() {
    let t = Instant::now();
    let mut w = write(t, 2, false);
    assert!(w.is_first_view() && w.is_new_view(1));
    assert_eq!(
        w.on_view(1, sloppy(&["n3", "n1", "n2"])).to_targets(),
        targets(true, &["n3", "n2"])
    );
    assert!(!w.is_new_view(1));
    assert!(w.on_ack(n(ME), Ack::done(false)));
    assert_eq!(
        waits(w.next(t)),
        at(t, 2000),
        "one of two: wait until the deadline"
    );
    assert!(w.on_ack(n("n2"), Ack::done(true)));
    let outcome = done(w.next(at(t, 1)));
    assert!(outcome.was_live && !outcome.conflict);
    assert_eq!(outcome.version, version());
}

#[test]
fn the_same_replica_acknowledging_twice_counts_once() {
    let t = Instant::now();
    let mut w = sent_to_three(t, 2);
    assert!(w.on_ack(n("n2"), Ack::done(false)));
    assert!(!w.on_ack(n("n2"), Ack::done(false)), "a duplicate");
    waits(w.next(t));
    w.on_ack(n("n3"), Ack::done(false));
    done(w.next(t));
}

#[test]
fn a_coordinator_off_the_list_sends_to_every_replica_and_writes_nothing_itself() {
    let t = Instant::now();
    let mut w = write(t, 2, false);
    assert_eq!(
        w.on_view(1, sloppy(&["n2", "n3", "n4"])).to_targets(),
        targets(false, &["n2", "n3", "n4"])
    );
    w.on_ack(n("n4"), Ack::done(false));
    waits(w.next(t));
    w.on_ack(n("n3"), Ack::done(false));
    done(w.next(t));
}

#[test]
fn sloppy_quorums_count_over_the_nodes_there_are_and_strict_ones_do_not() {
    let t = Instant::now();
    // A cluster shrunk to one node still writes.
    let mut w = write(t, 2, false);
    assert_eq!(
        w.on_view(1, sloppy(&["n1"])).to_targets(),
        targets(true, &[])
    );
    w.on_ack(n(ME), Ack::done(false));
    done(w.next(t));

    // Strict: one home replica up of three, W = 2: fails at once, naming them.
    let mut w = write(t, 2, true);
    assert_eq!(
        w.on_view(1, strict(&["n1"], 3)).to_targets(),
        targets(true, &[])
    );
    w.on_ack(n(ME), Ack::done(false));
    let (error, unanswered) = timed_out(w.next(t));
    assert_eq!(
        error,
        Error::UnavailableStrict {
            op: "write",
            needed: 2,
            got: 1,
            up: 1,
            home: 3
        }
        .to_string()
    );
    assert_eq!(unanswered, 0);

    // Strict with two home replicas up: both must acknowledge.
    let mut w = write(t, 2, true);
    w.on_view(1, strict(&["n1", "n2"], 3));
    w.on_ack(n(ME), Ack::done(false));
    waits(w.next(t));
    w.on_ack(n("n2"), Ack::done(false));
    done(w.next(t));
}

#[test]
fn at_the_deadline_the_write_fails_with_how_many_answered() {
    let t = Instant::now();
    let mut w = sent_to_three(t, 2);
    w.on_ack(n(ME), Ack::done(false));
    waits(w.next(at(t, 1999)));
    let (error, unanswered) = timed_out(w.next(at(t, 2000)));
    assert_eq!(
        error,
        Error::Unavailable {
            op: "write",
            needed: 2,
            got: 1
        }
        .to_string()
    );
    assert_eq!(unanswered, 2);
}

#[test]
fn a_view_change_sends_only_to_the_replicas_it_adds() {
    let t = Instant::now();
    let mut w = sent_to_three(t, 2);
    w.on_ack(n(ME), Ack::done(false));
    waits(w.next(t));
    // n2 and n3 are marked down; n4 and n5 complete the list.
    assert!(w.is_new_view(2));
    assert_eq!(
        w.on_view(2, sloppy(&["n1", "n4", "n5"])).to_targets(),
        targets(false, &["n4", "n5"])
    );
    // The same list again (another change elsewhere): nothing to send.
    assert_eq!(
        w.on_view(3, sloppy(&["n1", "n4", "n5"])).to_targets(),
        targets(false, &[])
    );
    w.on_ack(n("n5"), Ack::done(false));
    done(w.next(t));
}

#[test]
fn an_ack_from_a_replica_that_left_the_list_still_counts() {
    // It holds the write: the ack was sent before it was marked down.
    let t = Instant::now();
    let mut w = sent_to_three(t, 2);
    w.on_ack(n(ME), Ack::done(false));
    w.on_view(2, sloppy(&["n1", "n3", "n4"]));
    w.on_ack(n("n2"), Ack::done(false));
    done(w.next(t));
}

#[test]
fn refusals_that_leave_too_few_for_w_fail_at_once_with_the_reason() {
    let t = Instant::now();
    let full = "MISCONF Errors writing to the commit log: No space left on device (on n2)";
    let mut w = sent_to_three(t, 2);
    w.on_ack(n(ME), Ack::done(false));
    w.on_ack(n("n2"), Ack::Refused(full.into()));
    waits(w.next(t)); // n3 can still make two
    w.on_ack(n("n3"), Ack::Refused("n3 refused: OOM".into()));
    assert_eq!(
        failed(w.next(t)).to_string(),
        Error::invalid("n3 refused: OOM").to_string()
    );

    // The local copy refused with MISCONF, then a replica too: Redis's code.
    let mut w = sent_to_three(t, 2);
    w.on_ack(n(ME), Ack::Refused("MISCONF disk full".into()));
    waits(w.next(t));
    w.on_ack(n("n2"), Ack::Refused(full.into()));
    match failed(w.next(t)) {
        Error::Misconf(why) => assert!(why.contains("(on n2)"), "{why}"),
        e => panic!("expected MISCONF, got {e}"),
    }

    // One refusal, two acks: done.
    let mut w = sent_to_three(t, 2);
    w.on_ack(n("n2"), Ack::Refused(full.into()));
    w.on_ack(n(ME), Ack::done(false));
    waits(w.next(t));
    w.on_ack(n("n3"), Ack::done(false));
    done(w.next(t));
}

#[test]
fn a_refusal_heard_before_the_deadline_is_the_timeout_error() {
    // n3 is silent, so W = 2 could still be made until the deadline; then
    // the client hears why n2 refused, not just that too few answered.
    let t = Instant::now();
    let mut w = sent_to_three(t, 2);
    w.on_ack(n(ME), Ack::done(false));
    w.on_ack(n("n2"), Ack::Refused("n2 refused: fenced".into()));
    waits(w.next(at(t, 1999)));
    let (error, unanswered) = timed_out(w.next(at(t, 2000)));
    assert_eq!(error, "n2 refused: fenced");
    assert_eq!(unanswered, 2);

    // W = 3 cannot be made after one refusal: it says so at once.
    let mut w = sent_to_three(t, 3);
    w.on_ack(n(ME), Ack::done(false));
    w.on_ack(n("n2"), Ack::Refused("n2 refused: fenced".into()));
    assert_eq!(failed(w.next(t)).to_string(), "n2 refused: fenced");
}

#[test]
fn a_typed_write_every_replica_refuses_for_the_type_is_wrongtype_once_all_answered() {
    let t = Instant::now();
    let mut w = sent_to_three(t, 2);
    w.on_ack(n(ME), Ack::WrongType);
    w.on_ack(n("n2"), Ack::WrongType);
    waits(w.next(t)); // n3 may hold the type the write expects
    w.on_ack(n("n3"), Ack::WrongType);
    assert!(matches!(failed(w.next(t)), Error::WrongType));

    // Only refusals for the type by the deadline: WRONGTYPE, not UNAVAILABLE.
    let mut w = sent_to_three(t, 2);
    w.on_ack(n(ME), Ack::WrongType);
    let (error, _) = timed_out(w.next(at(t, 2000)));
    assert_eq!(error, Error::WrongType.to_string());
}

#[test]
fn a_typed_write_some_replicas_applied_is_forced_on_those_that_refused_it_once() {
    let t = Instant::now();
    let mut w = sent_to_three(t, 2);
    // This node refused for the type (its copy disagrees), n2 applied it.
    w.on_ack(n(ME), Ack::WrongType);
    waits(w.next(t));
    w.on_ack(n("n2"), Ack::done(false));
    match w.next(t) {
        WriteStep::Force(force) => assert_eq!(force, targets(true, &[])),
        other => panic!("expected a force, got {other:?}"),
    }
    // The driver applied it here as a plain write.
    w.on_ack(n(ME), Ack::done(false));
    done(w.next(t));

    // A remote refuser is sent it once, however many answers follow.
    let mut w = sent_to_three(t, 3);
    w.on_ack(n(ME), Ack::done(false));
    w.on_ack(n("n3"), Ack::WrongType);
    match w.next(t) {
        WriteStep::Force(force) => assert_eq!(force, targets(false, &["n3"])),
        other => panic!("expected a force, got {other:?}"),
    }
    w.on_ack(n("n2"), Ack::done(false));
    waits(w.next(t));
    w.on_ack(n("n3"), Ack::done(false));
    done(w.next(t));
}

#[test]
fn what_replicas_report_is_merged_into_the_outcome() {
    let t = Instant::now();
    let mut w = sent_to_three(t, 3);
    let ack = |was_live, conflict, present: &[bool]| Ack::Done {
        was_live,
        conflict,
        present: present.into(),
    };
    w.on_ack(n(ME), ack(false, false, &[true, false]));
    w.on_ack(n("n2"), ack(false, true, &[false, false, true]));
    w.on_ack(n("n3"), ack(true, false, &[]));
    let outcome = done(w.next(t));
    assert!(outcome.was_live && outcome.conflict);
    assert_eq!(outcome.present[..], [true, false, true]);
}

/// `alone_outcome` concludes what the machine concludes when the
/// coordinator is the one replica listed, for every kind of answer.
#[test]
fn a_write_alone_concludes_as_the_machine_with_one_replica() {
    let t = Instant::now();
    let acks = [
        Ack::done(true),
        Ack::Done {
            was_live: false,
            conflict: true,
            present: smallvec::smallvec![true, false],
        },
        Ack::Refused(crate::error::MISCONF_PREFIX.to_string() + "disk full"),
        Ack::Refused("too big".into()),
        Ack::WrongType,
    ];
    for ack in acks {
        let mut machine = write(t, 2, false);
        let asking = machine.on_view(1, sloppy(&[ME])).to_targets();
        assert_eq!(asking, targets(true, &[]));
        machine.on_ack(n(ME), ack.clone());
        let by_machine = match machine.next(t) {
            WriteStep::Done(result) => result,
            other => panic!("{ack:?}: the machine did not conclude: {other:?}"),
        };
        let alone = crate::quorum::alone_outcome(version(), ack.clone());
        assert_eq!(format!("{alone:?}"), format!("{by_machine:?}"), "{ack:?}");
    }
}

#[test]
fn short_by_counts_the_acknowledgements_still_needed() {
    // The driver awaits its own log append only once one acknowledgement
    // would do; before that, it only looks at it.
    let t = Instant::now();
    let mut w = sent_to_three(t, 2);
    assert_eq!(
        w.short_by(),
        2,
        "nothing heard: its own answer cannot finish it"
    );
    w.on_ack(n("n2"), Ack::done(false));
    assert_eq!(w.short_by(), 1);
    w.on_ack(n("n2"), Ack::done(false));
    assert_eq!(w.short_by(), 1, "a duplicate counts once");
    w.on_ack(n("n3"), Ack::Refused("no room".into()));
    assert_eq!(w.short_by(), 1, "a refusal is no acknowledgement");
    w.on_ack(n(ME), Ack::done(false));
    assert_eq!(w.short_by(), 0);
    done(w.next(t));

    // W = 1: its own answer alone may finish it.
    assert_eq!(sent_to_three(t, 1).short_by(), 1);
    // Sloppy, a cluster of one: capped by the nodes there are.
    let mut w = write(t, 2, false);
    w.on_view(1, sloppy(&["n1"]));
    assert_eq!(w.short_by(), 1);
    // Strict: never capped.
    let mut w = write(t, 2, true);
    w.on_view(1, strict(&["n1"], 3));
    assert_eq!(w.short_by(), 2);
}
