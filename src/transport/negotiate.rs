//! Which protocol version a peer connection speaks: the decisions of the
//! version negotiation, as pure functions (the handshake module does the
//! I/O around them).
//!
//! A node speaks a range of versions, [`Versions`]: from
//! [`MIN_PROTOCOL_VERSION`] up to its `peer_protocol_max` setting. The
//! connector offers the top of its range in `Hello.version`; the acceptor
//! settles on the lower of that and the top of its own range ([`accept`]),
//! and refuses when the result is below the bottom of its range. It tells
//! the connector its choice in the reply that carries its nonce: version 5,
//! the last one released before the negotiation, gets the `Challenge` a
//! version 5 connector expects (so a released node is served exactly as
//! before); later versions get `Negotiated`, which carries the version and
//! which a version 5 node could not decode. The connector checks the
//! choice against its own range ([`settle`]).
//!
//! A version 5 acceptor does not negotiate: it refuses any other version
//! with "protocol version X not supported (this node speaks 5)" before
//! anything else. The connector reads the number after "this node speaks"
//! and, if that version is in its own range, connects once more offering
//! it ([`retry_with`]). The refusals this module words use the same
//! phrase, followed by the acceptor's range, so whatever reads them, old
//! or new, finds the acceptor's lowest version there.
//!
//! Deliberately left out: a connector telling the acceptor why it gives up
//! (the handshake has no frame for it; the connector logs the reason and
//! closes, and the acceptor sees the connection close).

use std::fmt;

use crate::message::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// The last protocol version without negotiation: a connection settled on
/// it is challenged with the reply a version 5 node knows.
pub const LEGACY_VERSION: u32 = 5;

/// The protocol versions a node speaks, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Versions {
    /// The oldest.
    pub min: u32,
    /// The newest, which the node offers when it connects.
    pub max: u32,
}

impl Versions {
    /// Everything this build speaks.
    pub const ALL: Versions = Versions {
        min: MIN_PROTOCOL_VERSION,
        max: PROTOCOL_VERSION,
    };

    /// What this build speaks, offering at most `max` (`peer_protocol_max`).
    pub fn up_to(max: u32) -> Versions {
        Versions {
            min: MIN_PROTOCOL_VERSION,
            max,
        }
    }

    /// Whether `version` is in the range.
    pub fn contains(self, version: u32) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

impl fmt::Display for Versions {
    /// "5" for a single version (the way version 5 itself words it), else
    /// "5 to 6".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{} to {}", self.min, self.max)
        }
    }
}

/// The acceptor's decision on a hello offering `offered`: the version the
/// connection speaks, or why it is refused.
pub fn accept(ours: Versions, offered: u32) -> Result<u32, String> {
    let version = offered.min(ours.max);
    if version < ours.min {
        return Err(format!(
            "protocol version {offered} not supported (this node speaks {ours}; \
             the peer offered at most {offered})"
        ));
    }
    Ok(version)
}

/// The connector's check of the version the acceptor chose (5 for a
/// `Challenge`, the carried one for `Negotiated`) after it offered
/// `offered`: the version the connection speaks, or why it gives up.
pub fn settle(ours: Versions, offered: u32, chosen: u32) -> Result<u32, String> {
    if chosen > offered {
        return Err(format!(
            "peer chose protocol version {chosen}, newer than the {offered} offered"
        ));
    }
    if !ours.contains(chosen) {
        return Err(format!(
            "peer speaks protocol version {chosen} at most; this node speaks {ours}"
        ));
    }
    Ok(chosen)
}

/// After a refusal as the acceptor's first reply to a hello offering
/// `offered`: the version to offer on one more connection, if the refusal
/// names an older version this node speaks too. Only the first offer (the
/// top of the range) is retried, so a connector reconnects at most once.
pub fn retry_with(ours: Versions, offered: u32, reason: &str) -> Option<u32> {
    let theirs = speaks(reason)?;
    (offered == ours.max && theirs < offered && ours.contains(theirs)).then_some(theirs)
}

/// The version named by a version refusal ("protocol version X not
/// supported (this node speaks N...)"), whoever worded it.
fn speaks(reason: &str) -> Option<u32> {
    if !reason.starts_with("protocol version ") {
        return None;
    }
    let (_, rest) = reason.split_once("this node speaks ")?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V5: Versions = Versions { min: 5, max: 5 };
    const V56: Versions = Versions { min: 5, max: 6 };
    const V67: Versions = Versions { min: 6, max: 7 };

    /// The exact text a version 5 node (commit 57b5f3f) refuses with.
    fn legacy_refusal(offered: u32) -> String {
        format!("protocol version {offered} not supported (this node speaks 5)")
    }

    #[test]
    fn the_acceptor_settles_on_the_newest_both_speak() {
        // (acceptor's range, offered) -> version
        for (ours, offered, want) in [
            (V56, 6, 6),
            (V56, 5, 5),
            (V56, 9, 6),
            (V5, 6, 5),
            (V5, 5, 5),
            (V67, 7, 7),
            (V67, 6, 6),
        ] {
            assert_eq!(accept(ours, offered), Ok(want), "{ours} offered {offered}");
        }
    }

    #[test]
    fn the_acceptor_refuses_an_offer_below_its_range_naming_both() {
        let reason = accept(V67, 5).unwrap_err();
        assert_eq!(
            reason,
            "protocol version 5 not supported (this node speaks 6 to 7; \
             the peer offered at most 5)"
        );
        assert!(accept(V56, 4)
            .unwrap_err()
            .contains("this node speaks 5 to 6"));
        assert!(accept(V56, 1)
            .unwrap_err()
            .starts_with("protocol version 1 not supported"));
    }

    #[test]
    fn the_connector_accepts_only_a_choice_in_its_range_and_offer() {
        assert_eq!(settle(V56, 6, 6), Ok(6));
        assert_eq!(settle(V56, 6, 5), Ok(5));
        assert_eq!(settle(V5, 5, 5), Ok(5));
        assert_eq!(
            settle(V67, 7, 5).unwrap_err(),
            "peer speaks protocol version 5 at most; this node speaks 6 to 7"
        );
        assert_eq!(
            settle(V56, 5, 6).unwrap_err(),
            "peer chose protocol version 6, newer than the 5 offered"
        );
    }

    #[test]
    fn a_legacy_refusal_is_retried_once_at_the_version_it_names() {
        assert_eq!(retry_with(V56, 6, &legacy_refusal(6)), Some(5));
        // Only the first offer is retried.
        assert_eq!(retry_with(V56, 5, &legacy_refusal(5)), None);
        // Not in our range: give up.
        assert_eq!(retry_with(V67, 7, &legacy_refusal(7)), None);
        // Not older than what we offered: retrying would change nothing.
        assert_eq!(retry_with(V5, 5, &legacy_refusal(5)), None);
        // Other refusals are not version refusals.
        for other in [
            "not a ringkv peer (bad magic)",
            "wrong cluster secret",
            "this node speaks 5",
        ] {
            assert_eq!(retry_with(V56, 6, other), None, "{other}");
        }
    }

    #[test]
    fn version_refusals_are_read_whoever_worded_them() {
        assert_eq!(speaks(&legacy_refusal(6)), Some(5));
        assert_eq!(speaks(&accept(V67, 5).unwrap_err()), Some(6));
        assert_eq!(speaks(&accept(V5, 4).unwrap_err()), Some(5));
        assert_eq!(
            speaks("protocol version 6 not supported (this node speaks 12)"),
            Some(12)
        );
        assert_eq!(
            speaks("protocol version 6 not supported (this node speaks x)"),
            None
        );
        assert_eq!(
            speaks("protocol version 6 not supported (this node speaks "),
            None
        );
        assert_eq!(
            speaks("protocol version 6 not supported (this node speaks 99999999999)"),
            None
        );
    }
}
