//! A bounded feed of recent membership and repair events, for the dashboard.
//!
//! Every membership change and every hand-off round is pushed here (and
//! logged, and counted) once, by [`Shared::record_membership_event`] and
//! [`Shared::record_handoff`]. The feed keeps the last [`CAPACITY`] events,
//! each with a sequence number, so a poller asks for what came after the
//! last one it saw. Events are rare (a few per membership change), so a
//! plain mutex is fine here; the request path never touches it.
//!
//! Deliberately left out: persistence. The feed starts empty on every start.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use crate::membership::Event;
use crate::node::shared::Shared;
use crate::ring::NodeName;

/// Events kept.
pub const CAPACITY: usize = 256;

/// One entry of the feed.
#[derive(Clone, Debug, Serialize)]
pub struct EventRecord {
    /// Grows by one per event, from 1.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// `up`, `down`, `restarted`, `learned`, `name_clash`, `handoff` or
    /// `clock`.
    pub kind: &'static str,
    /// The node concerned, if one.
    pub node: Option<String>,
    /// A sentence for people.
    pub text: String,
}

#[derive(Debug, Default)]
struct Ring {
    next: u64,
    items: VecDeque<EventRecord>,
}

/// The feed.
#[derive(Debug, Default)]
pub struct EventLog {
    inner: Mutex<Ring>,
}

impl EventLog {
    /// Appends an event, forgetting the oldest beyond [`CAPACITY`].
    pub fn push(&self, kind: &'static str, node: Option<String>, text: String) {
        let mut r = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        r.next += 1;
        let rec = EventRecord {
            seq: r.next,
            unix_ms: crate::clock::wall_micros() / 1000,
            kind,
            node,
            text,
        };
        if r.items.len() == CAPACITY {
            r.items.pop_front();
        }
        r.items.push_back(rec);
    }

    /// The events with a sequence number above `seq`, oldest first.
    pub fn since(&self, seq: u64) -> Vec<EventRecord> {
        let r = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        r.items.iter().filter(|e| e.seq > seq).cloned().collect()
    }
}

fn describe(ev: &Event) -> (Option<String>, String) {
    match ev {
        Event::Up { name, reason, .. } => (Some(name.clone()), format!("{name} is up ({reason})")),
        Event::Down { name, reason } => (Some(name.clone()), format!("{name} is down ({reason})")),
        Event::Restarted { name, old, new } => (
            Some(name.clone()),
            format!("{name} restarted (generation {old} -> {new})"),
        ),
        Event::Learned { name, via } => {
            (Some(name.clone()), format!("learned of {name} via {via}"))
        }
        Event::NameClash { generation, peer } => (
            None,
            format!("another process at {peer} (generation {generation}) uses this node's name"),
        ),
    }
}

impl Shared {
    /// Counts a membership event and adds it to the feed. (The node logs it
    /// in `handle_events`.)
    pub fn record_membership_event(&self, ev: &Event) {
        self.metrics.membership_event(ev);
        let (node, text) = describe(ev);
        self.events.push(crate::metrics::event_kind(ev), node, text);
    }

    /// Counts a hand-off round that sent `entries` entries to `targets` and
    /// dropped `dropped` local copies, and adds it to the feed.
    pub fn record_handoff(
        &self,
        targets: &[NodeName],
        entries: usize,
        dropped: usize,
        complete: bool,
    ) {
        self.metrics.handoff_round(complete);
        let to: Vec<&str> = targets.iter().map(|t| &**t).collect();
        let text = format!(
            "hand-off: {entries} entries to [{}], {dropped} copies dropped{}",
            to.join(", "),
            if complete {
                ""
            } else {
                " (incomplete; will retry)"
            }
        );
        self.events.push("handoff", None, text);
    }

    /// Adds an anti-entropy round that repaired differences with `peer` to
    /// the feed (rounds that found nothing to repair are not news).
    pub fn record_repair(&self, peer: &str, report: &crate::anti_entropy::RoundReport) {
        let text = format!(
            "anti-entropy with {peer}: {} leaves differed, {} entries sent, {} received",
            report.differing_leaves, report.keys_sent, report.keys_received
        );
        self.events.push("repair", Some(peer.to_string()), text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_capacity_events_in_order() {
        let log = EventLog::default();
        for i in 0..CAPACITY + 10 {
            log.push("up", None, format!("{i}"));
        }
        let all = log.since(0);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].seq, 11);
        assert_eq!(log.since(CAPACITY as u64 + 8).len(), 2);
    }
}
