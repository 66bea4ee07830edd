//! Whom a request counts: sloppy or strict quorums.
//!
//! **Sloppy** (the default, as in the seed design): a key's replicas are
//! its first N nodes among those this node sees up, so a write succeeds
//! while any W nodes are reachable, and a node standing in for a down
//! one counts; hand-off brings its copies home later. Reads can then
//! miss an acknowledged write during a partition.
//!
//! **Strict** (`strict_quorums = true`, or `RINGKV QUORUM R W strict` on a
//! connection): a key's replicas are its **home** replicas, its first N
//! nodes on the ring of every node known, up or down, and only they are
//! asked and counted. With R + W > N, every read overlaps every
//! acknowledged write on some home replica, so a read returns that write
//! or something newer, or fails. A request that cannot reach R (or W) home
//! replicas fails with `-UNAVAILABLE`, naming how many answered and how
//! many are up, instead of counting other nodes.
//!
//! Everything here is pure: the view comes in, a list goes out.

use crate::error::Error;
use crate::node::shared::View;
use crate::ring::{NodeList, Ring, Token};

/// The replicas a request asks, and how many it may count at most.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replicas {
    /// The nodes to ask, in preference order.
    pub list: NodeList,
    /// Home replicas of the key (strict), or `list.len()` (sloppy).
    pub home: usize,
}

/// The replicas of position `pos` that a request asks: over `ring` (the
/// nodes up that take this kind of request) when sloppy; the key's home
/// replicas that are on `ring` when strict.
pub(crate) fn replicas(view: &View, ring: &Ring, pos: &Token, n: usize, strict: bool) -> Replicas {
    if !strict {
        let list = ring.preference_list(pos, n);
        let home = list.len();
        return Replicas { list, home };
    }
    let home = view.home_ring.preference_list(pos, n);
    let count = home.len();
    let list = home.into_iter().filter(|x| ring.contains(x)).collect();
    Replicas { list, home: count }
}

/// How many answers a request needs: its quorum `q`, capped by the
/// `listed` replicas there are when sloppy (a cluster smaller than N),
/// never when strict (a strict quorum is the quorum asked for).
pub(crate) fn needed(q: usize, listed: usize, strict: bool) -> usize {
    if strict {
        q.max(1)
    } else {
        q.min(listed).max(1)
    }
}

/// The error of a request that got `got` of the `needed` answers: under
/// strict quorums, naming the home replicas (`up` of `home` reachable).
pub(crate) fn unavailable(
    op: &'static str,
    strict: bool,
    needed: usize,
    got: usize,
    up: usize,
    home: usize,
) -> Error {
    if strict {
        Error::UnavailableStrict {
            op,
            needed,
            got,
            up,
            home,
        }
    } else {
        Error::Unavailable { op, needed, got }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::NodeName;

    fn view(up: &[&str], known: &[&str]) -> View {
        let ring = |names: &[&str]| Ring::new(names.iter().map(|n| NodeName::from(*n)), 8);
        View {
            ring: ring(up),
            write_ring: ring(up),
            delete_ring: ring(up),
            home_ring: ring(known),
            ..View::default()
        }
    }

    fn names(list: &NodeList) -> Vec<&str> {
        list.iter().map(|n| &**n).collect()
    }

    #[test]
    fn sloppy_lists_the_first_n_up_and_strict_only_home_replicas_up() {
        let all = ["a", "b", "c", "d", "e"];
        let v = view(&["a", "b", "c", "d", "e"], &all);
        let pos = Token::of(b"key");
        let home = v.home_ring.preference_list(&pos, 3);
        // All up: both are the home list.
        let sloppy = replicas(&v, &v.ring, &pos, 3, false);
        let strict = replicas(&v, &v.ring, &pos, 3, true);
        assert_eq!(sloppy.list, home);
        assert_eq!(strict.list, home);
        assert_eq!((sloppy.home, strict.home), (3, 3));

        // The first home replica down: sloppy takes the next node up in
        // its place, strict asks the two left.
        let down = &*home[0];
        let up: Vec<&str> = all.iter().copied().filter(|n| *n != down).collect();
        let v = view(&up, &all);
        let sloppy = replicas(&v, &v.ring, &pos, 3, false);
        let strict = replicas(&v, &v.ring, &pos, 3, true);
        assert_eq!(sloppy.list.len(), 3);
        assert!(!sloppy.list.iter().any(|n| &**n == down));
        assert!(sloppy.list.iter().any(|n| !home.contains(n)), "a fallback");
        assert_eq!(names(&strict.list), names(&home[1..].into()));
        assert_eq!(strict.home, 3);
        assert_eq!(needed(2, strict.list.len(), true), 2);

        // Two home replicas down: strict cannot reach W = 2; sloppy can.
        let up: Vec<&str> = all
            .iter()
            .copied()
            .filter(|n| *n != &*home[0] && *n != &*home[1])
            .collect();
        let v = view(&up, &all);
        let strict = replicas(&v, &v.ring, &pos, 3, true);
        assert_eq!(names(&strict.list), [&*home[2]]);
        assert!(strict.list.len() < needed(2, strict.list.len(), true));
        let sloppy = replicas(&v, &v.ring, &pos, 3, false);
        assert_eq!(needed(2, sloppy.list.len(), false), 2);
        assert_eq!(sloppy.list.len(), 3);
    }

    #[test]
    fn a_cluster_smaller_than_the_quorum_caps_sloppy_but_not_strict() {
        let v = view(&["solo"], &["solo"]);
        let pos = Token::of(b"k");
        let sloppy = replicas(&v, &v.ring, &pos, 3, false);
        let strict = replicas(&v, &v.ring, &pos, 3, true);
        assert_eq!(needed(2, sloppy.list.len(), false), 1);
        assert_eq!(needed(2, strict.list.len(), true), 2);
        assert_eq!(strict.home, 1);
    }
}
