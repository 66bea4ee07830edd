//! How a write's refusals become the client's error: a replica whose
//! commit log cannot be written makes it Redis's `MISCONF`, a ring that
//! fences left empty fails at once (see `log/fence.rs`).

use crate::error::Error;
use crate::node::shared::View;
use crate::ring::NodeName;

/// A replica's refusal as the coordinator words it: a full log keeps its
/// `MISCONF` first, so the client gets Redis's error code.
pub(super) fn refusal_text(from: &NodeName, why: String) -> String {
    match why.strip_prefix(crate::error::MISCONF_PREFIX) {
        Some(rest) => format!("{}{rest} (on {from})", crate::error::MISCONF_PREFIX),
        None => format!("{from} refused: {why}"),
    }
}

/// The error a write fails with after refusals (see [`refusal_text`]).
pub(super) fn refusal_error(why: String) -> Error {
    match why.strip_prefix(crate::error::MISCONF_PREFIX) {
        Some(rest) => Error::Misconf(rest.to_string()),
        None => Error::invalid(why),
    }
}

/// When `ring` is empty because every node up is fenced, the error to
/// fail with at once: `MISCONF` naming a node whose commit log cannot be
/// written, or `OOM` when they are all past `maxmemory`.
pub(crate) fn fenced_everywhere(view: &View, ring: &crate::ring::Ring) -> Option<Error> {
    if view.fenced.is_empty() || !ring.nodes().is_empty() {
        return None;
    }
    let log = view
        .fenced
        .iter()
        .find(|(_, why)| !why.starts_with(crate::node::shared::OOM_FENCE));
    Some(match log {
        Some((node, why)) => Error::Misconf(format!(
            "{} (on {node}; no node up takes writes)",
            why.strip_prefix("commit log cannot be written: ")
                .unwrap_or(why)
        )),
        None => Error::Oom,
    })
}
