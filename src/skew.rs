//! How far each peer's wall clock is from this node's, and what follows.
//!
//! Last-writer-wins orders writes by hybrid clock timestamps, and a node
//! whose wall clock is wrong stamps its writes wrong. The hybrid clock
//! repairs most of that by itself once every node hears every other's
//! clock (each socket write between peers opens with the sender's clocks,
//! `PeerMsg::Clock`), but an operator should still know, and a node too
//! far off must not take part at all. This module keeps, per peer, an
//! estimate of the offset between the peer's wall clock and this node's,
//! and says when the estimate crosses the warning threshold
//! (`clock_warn_ms`) or the refusal limit (`max_clock_skew_ms`).
//!
//! A sample is the sender's wall clock minus the receiver's at receipt:
//! the true offset less the one-way delay. The delay only ever makes a
//! sample smaller, so the estimate is the largest sample of the current
//! and the previous one-second window (NTP's minimum-delay filter, in
//! its simplest form). A clock that is fixed is accepted again within two
//! windows.
//!
//! Pure: the caller passes both clocks in, and logs the changes returned.

use std::collections::HashMap;

use crate::ring::NodeName;

/// How long one window of samples lasts.
const WINDOW_MICROS: u64 = 1_000_000;

/// A warning ends only once the estimate is back under this fraction of
/// the threshold, so an offset hovering at the threshold logs once.
const WARN_CLEAR_PERCENT: u64 = 80;

/// Where a peer's clock stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Within the warning threshold.
    Ok,
    /// Past the warning threshold, within the refusal limit.
    Warned,
    /// Past the refusal limit: its messages are not accepted.
    Refused,
}

impl Standing {
    /// The word `/status` and the dashboard show.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Ok => "ok",
            Standing::Warned => "skewed",
            Standing::Refused => "refused",
        }
    }
}

/// A peer's standing changed: the caller logs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// The standing before.
    pub from: Standing,
    /// The standing now.
    pub to: Standing,
    /// The estimated offset, peer minus this node, in microseconds.
    pub offset_micros: i64,
}

#[derive(Clone, Copy, Debug)]
struct PeerClock {
    window_start: u64,
    current: i64,
    previous: Option<i64>,
    standing: Standing,
}

impl PeerClock {
    fn estimate(&self) -> i64 {
        self.previous.map_or(self.current, |p| p.max(self.current))
    }
}

/// One peer's clock as [`Skew::peers`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerOffset {
    /// The peer.
    pub peer: NodeName,
    /// Estimated offset, peer minus this node, in microseconds.
    pub offset_micros: i64,
    /// Where it stands.
    pub standing: Standing,
}

/// The offsets of every peer heard from.
#[derive(Debug)]
pub struct Skew {
    warn_micros: u64,
    refuse_micros: u64,
    peers: HashMap<NodeName, PeerClock>,
}

impl Skew {
    /// A tracker that warns past `warn_micros` and refuses past
    /// `refuse_micros` (either way).
    pub fn new(warn_micros: u64, refuse_micros: u64) -> Self {
        Skew {
            warn_micros,
            refuse_micros,
            peers: HashMap::new(),
        }
    }

    /// Takes one sample of `peer`'s clock: its wall clock `theirs` as
    /// sent, this node's `ours` at receipt (microseconds since the Unix
    /// epoch). Returns whether the peer's messages are accepted, and the
    /// change of its standing, if any.
    pub fn sample(&mut self, peer: &NodeName, theirs: u64, ours: u64) -> (bool, Option<Change>) {
        let sample =
            (theirs as i128 - ours as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        let clock = self.peers.entry(peer.clone()).or_insert(PeerClock {
            window_start: ours,
            current: sample,
            previous: None,
            standing: Standing::Ok,
        });
        if ours.saturating_sub(clock.window_start) >= WINDOW_MICROS {
            clock.previous = Some(clock.current);
            clock.current = sample;
            clock.window_start = ours;
        } else {
            clock.current = clock.current.max(sample);
        }
        let offset = clock.estimate();
        let size = offset.unsigned_abs();
        let to = if size > self.refuse_micros {
            Standing::Refused
        } else if size > self.warn_micros
            || (clock.standing != Standing::Ok
                && size * 100 > self.warn_micros * WARN_CLEAR_PERCENT)
        {
            Standing::Warned
        } else {
            Standing::Ok
        };
        let from = std::mem::replace(&mut clock.standing, to);
        let change = (from != to).then_some(Change {
            from,
            to,
            offset_micros: offset,
        });
        (to != Standing::Refused, change)
    }

    /// Forgets `peer` (it left the ring, or restarted).
    pub fn forget(&mut self, peer: &NodeName) {
        self.peers.remove(peer);
    }

    /// Every peer heard from, by name.
    pub fn peers(&self) -> Vec<PeerOffset> {
        let mut all: Vec<PeerOffset> = self
            .peers
            .iter()
            .map(|(peer, c)| PeerOffset {
                peer: peer.clone(),
                offset_micros: c.estimate(),
                standing: c.standing,
            })
            .collect();
        all.sort_by(|a, b| a.peer.cmp(&b.peer));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;
    const T0: u64 = 1_700_000_000 * S;

    fn skew() -> Skew {
        Skew::new(S / 2, 60 * S)
    }

    fn peer() -> NodeName {
        NodeName::from("p")
    }

    #[test]
    fn the_estimate_is_the_sample_with_the_least_delay() {
        let mut s = skew();
        // The peer is 100 ms ahead; the delays are 5, 1 and 30 ms.
        for (at, delay) in [(0, 5_000), (200_000, 1_000), (400_000, 30_000)] {
            let ours = T0 + at;
            s.sample(&peer(), ours + 100_000 - delay, ours);
        }
        assert_eq!(s.peers()[0].offset_micros, 99_000);
        assert_eq!(s.peers()[0].standing, Standing::Ok);
    }

    #[test]
    fn warns_once_past_the_threshold_and_clears_below_four_fifths_of_it() {
        let mut s = skew();
        let mut changes = Vec::new();
        // 600 ms ahead, then 450 ms (still warned: above 400), then 300 ms.
        for (i, offset) in [600_000, 600_000, 450_000, 450_000, 300_000, 300_000]
            .into_iter()
            .enumerate()
        {
            // Each pair of samples in a window of its own, so the old
            // window's maximum is gone two windows later.
            let ours = T0 + (i as u64 / 2) * 3 * S + (i as u64 % 2) * (S + 1);
            let (accepted, change) = s.sample(&peer(), ours + offset, ours);
            assert!(accepted);
            changes.extend(change.map(|c| (c.to, c.offset_micros)));
        }
        assert_eq!(
            changes,
            [(Standing::Warned, 600_000), (Standing::Ok, 300_000)]
        );
    }

    #[test]
    fn refuses_a_peer_too_far_off_either_way_and_accepts_it_once_fixed() {
        for sign in [1i64, -1] {
            let mut s = skew();
            let ours = T0;
            let theirs = |offset: i64| ours.saturating_add_signed(sign * offset);
            let (accepted, change) = s.sample(&peer(), theirs(61 * S as i64), ours);
            assert!(!accepted);
            assert_eq!(change.map(|c| c.to), Some(Standing::Refused));
            // Fixed: accepted once the bad window has passed (two windows
            // at most: a peer behind is accepted at the first good sample
            // of a new window, since a sample is never above the truth).
            let mut last = None;
            let mut accepted = false;
            for at in [ours + S, ours + 2 * S] {
                let (ok, change) = s.sample(&peer(), at, at);
                accepted = ok;
                last = change.map(|c| c.to).or(last);
            }
            assert!(accepted, "sign {sign}");
            assert_eq!(last, Some(Standing::Ok));
        }
    }

    #[test]
    fn a_peer_behind_is_estimated_through_its_delays_too() {
        let mut s = skew();
        // 2 s behind, with 1 to 20 ms of delay: warned, offset within 1 ms.
        for (i, delay) in [20_000u64, 1_000, 7_000].into_iter().enumerate() {
            let ours = T0 + i as u64 * 100_000;
            s.sample(&peer(), ours - 2 * S - delay, ours);
        }
        let p = &s.peers()[0];
        assert_eq!(
            (p.offset_micros, p.standing),
            (-2_001_000, Standing::Warned)
        );
    }
}
