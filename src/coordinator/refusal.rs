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

/// When `ring` is empty because every node up is fenced, the error to
/// fail with at once: `MISCONF` naming a node whose commit log cannot be
/// written, or `OOM` when they are all past `maxmemory`; `None` when the
/// only fences are of nodes that are stopping (see `node/drain.rs`).
pub(crate) fn fenced_everywhere(view: &View, ring: &crate::ring::Ring) -> Option<Error> {
    // Nodes that are stopping are simply not there for writes.
    let mut fenced = (view.fenced.iter())
        .filter(|(_, why)| !why.starts_with(crate::node::drain::STOPPING))
        .peekable();
    if fenced.peek().is_none() || !ring.nodes().is_empty() {
        return None;
    }
    let log = fenced.find(|(_, why)| !why.starts_with(crate::node::shared::OOM_FENCE));
    Some(match log {
        Some((node, why)) => Error::Misconf(format!(
            "{} (on {node}; no node up takes writes)",
            why.strip_prefix("commit log cannot be written: ")
                .unwrap_or(why)
        )),
        None => Error::Oom,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(fences: &[(&str, &str)]) -> View {
        View {
            fenced: (fences.iter())
                .map(|(n, why)| (NodeName::from(*n), why.to_string()))
                .collect(),
            ..View::default()
        }
    }

    #[test]
    fn nodes_that_are_stopping_make_no_misconf_and_no_oom() {
        let empty = crate::ring::Ring::default();
        let stopping = "stopping: the node is shutting down";
        assert!(fenced_everywhere(&view(&[("n1", stopping)]), &empty).is_none());
        let full = "commit log cannot be written: No space left on device";
        let got = fenced_everywhere(&view(&[("n1", stopping), ("n2", full)]), &empty);
        assert_eq!(
            got.map(|e| e.to_string()),
            Some(
                Error::Misconf("No space left on device (on n2; no node up takes writes)".into())
                    .to_string()
            )
        );
        let oom = "OOM: used memory 2 > maxmemory 1";
        let got = fenced_everywhere(&view(&[("n1", stopping), ("n2", oom)]), &empty);
        assert!(matches!(got, Some(Error::Oom)));
    }
}
