//! Placement: the SHA-1 ring.
//!
//! Nodes and keys hash onto the same 160-bit circle. A node's token is
//! SHA-1 of its name (or of `NAME#i` for each of its `vnodes` tokens when
//! there are more than one); a key's position is SHA-1 of its bytes. The
//! owner of a key is the node with the smallest token at or after the key's
//! position, wrapping around to the smallest token; the key's preference
//! list is the owner followed by the next *distinct* nodes clockwise, N in
//! all. Those N nodes hold the key's replicas.
//!
//! A [`Ring`] is an immutable snapshot built from the nodes a coordinator
//! currently sees as up; membership builds a new one on every change and
//! publishes it atomically, so a request always works on one consistent
//! ring. Everything here is pure: no I/O, no clock.
//!
//! Deliberately left out: weighted nodes and rack/zone awareness in the
//! preference list.

use std::fmt;
use std::sync::Arc;

use sha1::{Digest, Sha1};

/// A point on the ring: a 160-bit big-endian unsigned integer.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Token(pub [u8; 20]);

impl Token {
    /// The smallest point.
    pub const MIN: Token = Token([0; 20]);
    /// The largest point.
    pub const MAX: Token = Token([0xff; 20]);

    /// SHA-1 of `bytes`.
    pub fn of(bytes: &[u8]) -> Token {
        Token(Sha1::digest(bytes).into())
    }

    /// The 40 hex digits of the token.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The token as a fraction of the full circle, in [0, 1).
    pub fn fraction(&self) -> f64 {
        let top = u64::from_be_bytes(self.0[..8].try_into().expect("8 bytes"));
        top as f64 / 2f64.powi(64)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", &self.hex()[..10])
    }
}

/// The tokens of node `name` with `vnodes` tokens (CONTRACT, "Placement").
pub fn node_tokens(name: &str, vnodes: usize) -> Vec<Token> {
    if vnodes <= 1 {
        vec![Token::of(name.as_bytes())]
    } else {
        (0..vnodes)
            .map(|i| Token::of(format!("{name}#{i}").as_bytes()))
            .collect()
    }
}

/// A node name, shared cheaply.
pub type NodeName = Arc<str>;

/// A preference list: N is small (3 by default), so it lives inline and a
/// request that computes one allocates nothing for it.
pub type NodeList = smallvec::SmallVec<[NodeName; 4]>;

/// An immutable ring over a set of nodes.
#[derive(Clone, Debug, Default)]
pub struct Ring {
    /// (token, index into `nodes`), sorted by token.
    points: Vec<(Token, usize)>,
    /// The first 8 bytes of each point's token, as a number: what finding
    /// a key's place compares (an integer, not 20 bytes through memcmp).
    prefixes: Vec<u64>,
    nodes: Vec<NodeName>,
    /// The preference list of every point for one N (the first N asked
    /// for; requests all ask for the node's replication factor), made
    /// once per ring: a request's lookup is then one search and a copy.
    lists: std::sync::OnceLock<(usize, Vec<NodeList>)>,
}

impl PartialEq for Ring {
    fn eq(&self, other: &Ring) -> bool {
        self.points == other.points && self.nodes == other.nodes
    }
}

impl Eq for Ring {}

/// Rings with more points than this (over 4.5 MiB of lists) walk the
/// ring for every lookup instead of keeping each point's list.
const MAX_CACHED_POINTS: usize = 65_536;

/// The first 8 bytes of `t`, big-endian: ordered as the tokens are.
fn prefix(t: &Token) -> u64 {
    u64::from_be_bytes(t.0[..8].try_into().expect("8 bytes"))
}

impl Ring {
    /// The ring over `nodes` (duplicates ignored), `vnodes` tokens each.
    pub fn new<I>(nodes: I, vnodes: usize) -> Ring
    where
        I: IntoIterator<Item = NodeName>,
    {
        Ring::build(nodes.into_iter().map(|n| (n, vnodes)))
    }

    /// The ring over `nodes`, each with its own number of tokens (a name
    /// given twice keeps its first count).
    pub fn build<I>(nodes: I) -> Ring
    where
        I: IntoIterator<Item = (NodeName, usize)>,
    {
        let mut named: Vec<(NodeName, usize)> = nodes.into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named.dedup_by(|later, first| later.0 == first.0);
        let mut points: Vec<(Token, usize)> = named
            .iter()
            .enumerate()
            .flat_map(|(i, (n, count))| node_tokens(n, *count).into_iter().map(move |t| (t, i)))
            .collect();
        points.sort();
        Ring {
            prefixes: points.iter().map(|(t, _)| prefix(t)).collect(),
            points,
            nodes: named.into_iter().map(|(n, _)| n).collect(),
            lists: std::sync::OnceLock::new(),
        }
    }

    /// The index of the first point at or after `pos` (`points.len()`
    /// past the last one).
    fn place(&self, pos: &Token) -> usize {
        let p = prefix(pos);
        let mut i = self.prefixes.partition_point(|&x| x < p);
        // Tokens that share the prefix (all but never) are compared whole.
        while i < self.points.len() && self.prefixes[i] == p && self.points[i].0 < *pos {
            i += 1;
        }
        i
    }

    /// Every token of node `name`, in ring order (empty if it is not on
    /// the ring).
    pub fn tokens_of(&self, name: &str) -> Vec<Token> {
        self.points
            .iter()
            .filter(|(_, i)| &*self.nodes[*i] == name)
            .map(|(t, _)| *t)
            .collect()
    }

    /// The nodes on the ring, sorted by name.
    pub fn nodes(&self) -> &[NodeName] {
        &self.nodes
    }

    /// Whether `name` is on the ring.
    pub fn contains(&self, name: &str) -> bool {
        self.nodes.iter().any(|n| &**n == name)
    }

    /// The owner of position `pos`, if the ring has any node.
    pub fn owner(&self, pos: &Token) -> Option<&NodeName> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.place(pos) % self.points.len();
        Some(&self.nodes[self.points[i].1])
    }

    /// The preference list of position `pos`: the owner, then the next
    /// distinct nodes clockwise, `n` in all (fewer if the ring is smaller).
    pub fn preference_list(&self, pos: &Token, n: usize) -> NodeList {
        let len = self.points.len();
        if len == 0 {
            return NodeList::new();
        }
        let start = self.place(pos) % len;
        if len > MAX_CACHED_POINTS {
            return self.walk(start, n);
        }
        let (cached, lists) = self
            .lists
            .get_or_init(|| (n, (0..len).map(|i| self.walk(i, n)).collect()));
        if *cached == n {
            return lists[start].clone();
        }
        self.walk(start, n)
    }

    /// The preference list of the positions whose first point at or after
    /// them is point `start`: that point's node, then the next distinct
    /// nodes clockwise, `n` in all.
    fn walk(&self, start: usize, n: usize) -> NodeList {
        let want = n.min(self.nodes.len());
        let mut out = NodeList::with_capacity(want);
        let len = self.points.len();
        // Walk clockwise; N is small, so a scan of `out` beats a set.
        for i in 0..len {
            if out.len() == want {
                break;
            }
            let node = &self.nodes[self.points[(start + i) % len].1];
            if !out.iter().any(|x| Arc::ptr_eq(x, node)) {
                out.push(node.clone());
            }
        }
        out
    }

    /// The preference list of a key.
    pub fn preference_list_for_key(&self, key: &[u8], n: usize) -> NodeList {
        self.preference_list(&Token::of(key), n)
    }

    /// Every arc of the ring as (start exclusive, end inclusive, preference
    /// list of the positions in it). The arc that wraps past the top is
    /// split in two, so every arc has start < end. Empty for an empty ring.
    pub fn arcs(&self, n: usize) -> Vec<(Token, Token, NodeList)> {
        let len = self.points.len();
        let mut out = Vec::with_capacity(len + 1);
        for i in 0..len {
            let end = self.points[i].0;
            let pref = self.preference_list(&end, n);
            if i == 0 {
                let last = self.points[len - 1].0;
                if last < Token::MAX {
                    out.push((last, Token::MAX, pref.clone()));
                }
                out.push((Token::MIN, end, pref));
            } else {
                out.push((self.points[i - 1].0, end, pref));
            }
        }
        out
    }

    /// Each node's share of the replicas, as a fraction of the mean: the
    /// part of the circle whose preference lists (`n` replicas) hold it,
    /// divided by the mean of that over the nodes. 1.0 for every node of
    /// a perfectly balanced ring.
    pub fn replica_balance(&self, n: usize) -> Vec<(NodeName, f64)> {
        let mut held = vec![0.0f64; self.nodes.len()];
        for (start, end, pref) in self.arcs(n) {
            let len = arc_len(&start, &end);
            for node in &pref {
                if let Ok(i) = self.nodes.binary_search(node) {
                    held[i] += len;
                }
            }
        }
        let mean = held.iter().sum::<f64>() / held.len().max(1) as f64;
        self.nodes
            .iter()
            .zip(held)
            .map(|(name, h)| (name.clone(), if mean > 0.0 { h / mean } else { 0.0 }))
            .collect()
    }

    /// The share of the circle `name` owns (the arcs ending at its tokens).
    pub fn share(&self, name: &str) -> f64 {
        let len = self.points.len();
        if len == 0 {
            return 0.0;
        }
        if self.nodes.len() == 1 {
            return if self.contains(name) { 1.0 } else { 0.0 };
        }
        let mut total = 0.0;
        for i in 0..len {
            let (tok, idx) = self.points[i];
            if &*self.nodes[idx] != name {
                continue;
            }
            let prev = self.points[(i + len - 1) % len].0;
            let arc = tok.fraction() - prev.fraction();
            total += if arc <= 0.0 { arc + 1.0 } else { arc };
        }
        total
    }
}

/// The length of the arc (start, end] as a fraction of the circle, for
/// start < end (as [`Ring::arcs`] gives them).
fn arc_len(start: &Token, end: &Token) -> f64 {
    let len = end.fraction() - start.fraction();
    // The arc (x, MAX] ends a hair short of 1.0; a whole-circle arc of one
    // node's single token is split by `arcs` and adds up here.
    if *end == Token::MAX {
        1.0 - start.fraction()
    } else {
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring(names: &[&str]) -> Ring {
        Ring::new(names.iter().map(|n| NodeName::from(*n)), 1)
    }

    fn names(list: &[NodeName]) -> Vec<&str> {
        list.iter().map(|n| &**n).collect()
    }

    /// Three names sorted by token, found by hashing (for readable tests).
    fn by_token(r: &Ring) -> Vec<NodeName> {
        let mut v: Vec<_> = r
            .nodes()
            .iter()
            .map(|n| (Token::of(n.as_bytes()), n.clone()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, n)| n).collect()
    }

    #[test]
    fn token_is_sha1_of_the_name() {
        assert_eq!(Token::of(b"n1").hex(), hex::encode(Sha1::digest(b"n1")),);
        assert_eq!(node_tokens("a", 1), vec![Token::of(b"a")]);
        assert_eq!(
            node_tokens("a", 2),
            vec![Token::of(b"a#0"), Token::of(b"a#1")]
        );
    }

    #[test]
    fn owner_is_the_successor_and_wraps_around() {
        let r = ring(&["n1", "n2", "n3"]);
        let order = by_token(&r);
        let t: Vec<Token> = order.iter().map(|n| Token::of(n.as_bytes())).collect();
        // Exactly at a token: that node owns it (inclusive).
        assert_eq!(r.owner(&t[1]), Some(&order[1]));
        // Just after the first token: the second node.
        let mut after = t[0].0;
        after[19] = after[19].wrapping_add(1);
        assert_eq!(r.owner(&Token(after)), Some(&order[1]));
        // After the largest token: wraps to the smallest.
        assert_eq!(r.owner(&Token([0xff; 20])), Some(&order[0]));
        assert_eq!(r.owner(&Token([0; 20])), Some(&order[0]));
        assert_eq!(
            r.preference_list(&Token([0xff; 20]), 3).to_vec(),
            vec![order[0].clone(), order[1].clone(), order[2].clone()]
        );
    }

    #[test]
    fn small_rings_give_what_they_have() {
        assert!(ring(&[]).preference_list_for_key(b"k", 3).is_empty());
        assert_eq!(names(&ring(&["a"]).preference_list_for_key(b"k", 3)), ["a"]);
        let two = ring(&["a", "b"]).preference_list_for_key(b"k", 3);
        assert_eq!(two.len(), 2);
        assert_ne!(two[0], two[1]);
        let three = ring(&["a", "b", "c"]).preference_list_for_key(b"k", 3);
        assert_eq!(three.len(), 3);
    }

    #[test]
    fn vnodes_still_give_distinct_replicas() {
        let r = Ring::new(["a", "b", "c", "d"].map(NodeName::from), 8);
        for k in 0..200u32 {
            let mut pl = r.preference_list_for_key(&k.to_be_bytes(), 3);
            pl.sort();
            pl.dedup();
            assert_eq!(pl.len(), 3);
        }
    }

    #[test]
    fn shares_add_up_to_one() {
        let r = ring(&["n1", "n2", "n3", "n4", "n5"]);
        let total: f64 = r.nodes().iter().map(|n| r.share(n)).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        assert_eq!(ring(&["solo"]).share("solo"), 1.0);
    }

    /// Sets of names a cluster might use, each `count` long.
    fn name_sets(count: usize) -> Vec<Vec<NodeName>> {
        ["n", "node-", "ringkv-", "db", "cache-", "rk", "pod-"]
            .iter()
            .map(|prefix| {
                (1..=count)
                    .map(|i| NodeName::from(format!("{prefix}{i}")))
                    .collect()
            })
            .chain(std::iter::once(
                [
                    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
                ]
                .iter()
                .cycle()
                .take(count)
                .enumerate()
                .map(|(i, w)| NodeName::from(format!("{w}{}", i / 8)))
                .collect(),
            ))
            .collect()
    }

    #[test]
    fn the_default_tokens_balance_replicas_within_0_8_and_1_25_of_the_mean() {
        let tokens = crate::placement::DEFAULT_TOKENS;
        for count in [3, 5, 8, 16] {
            for names in name_sets(count) {
                let r = Ring::build(names.iter().map(|n| (n.clone(), tokens)));
                let balance = r.replica_balance(3);
                assert_eq!(balance.len(), count);
                for (name, b) in balance {
                    assert!(
                        (0.8..=1.25).contains(&b),
                        "{name} holds {b:.3}x the mean among {names:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn one_token_per_node_is_what_the_default_fixes() {
        // The measurement the issue started from: n4 owns 46.6 % of a
        // 5-node ring of one token each, n1 0.2 %.
        let r = ring(&["n1", "n2", "n3", "n4", "n5"]);
        assert!((r.share("n4") - 0.466).abs() < 0.001, "{}", r.share("n4"));
        assert!(r.share("n1") < 0.003, "{}", r.share("n1"));
        let worst = r
            .replica_balance(3)
            .into_iter()
            .map(|(_, b)| b)
            .fold(0.0, f64::max);
        assert!(worst > 1.25, "{worst}");
    }

    #[test]
    fn a_sixth_node_receives_at_most_1_3_times_its_ideal_share_of_copies() {
        let tokens = crate::placement::DEFAULT_TOKENS;
        let n = 3;
        for names in name_sets(6) {
            let before = Ring::build(names[..5].iter().map(|x| (x.clone(), tokens)));
            let after = Ring::build(names.iter().map(|x| (x.clone(), tokens)));
            // Keys are positions; sample 60,000 of them evenly by hashing.
            let keys = 60_000u32;
            let mut copies = 0usize;
            for k in 0..keys {
                let pos = Token::of(&k.to_be_bytes());
                let old = before.preference_list(&pos, n);
                let new = after.preference_list(&pos, n);
                copies += new.iter().filter(|x| !old.contains(x)).count();
            }
            let ideal = (n * keys as usize) as f64 / 6.0;
            let ratio = copies as f64 / ideal;
            assert!(ratio <= 1.3, "{ratio:.3} of the ideal for {names:?}");
        }
    }

    #[test]
    fn replica_balance_of_a_small_ring_is_even() {
        let r = ring(&["solo"]);
        assert_eq!(r.replica_balance(3), vec![(NodeName::from("solo"), 1.0)]);
        // Three nodes, N = 3: every node holds every key.
        for (_, b) in ring(&["a", "b", "c"]).replica_balance(3) {
            assert!((b - 1.0).abs() < 1e-9, "{b}");
        }
        assert!(ring(&[]).replica_balance(3).is_empty());
    }

    #[test]
    fn tokens_of_lists_a_nodes_tokens_in_ring_order() {
        let r = Ring::build([(NodeName::from("a"), 4), (NodeName::from("b"), 1)]);
        let mut want = node_tokens("a", 4);
        want.sort();
        assert_eq!(r.tokens_of("a"), want);
        assert_eq!(r.tokens_of("b"), vec![Token::of(b"b")]);
        assert!(r.tokens_of("c").is_empty());
    }

    proptest! {
        #[test]
        fn every_key_gets_min_n_nodes_distinct_replicas(
            nodes in proptest::collection::btree_set("[a-z]{1,6}", 1..9),
            key in proptest::collection::vec(any::<u8>(), 0..16),
            n in 1usize..5,
        ) {
            let r = Ring::new(nodes.iter().map(|s| NodeName::from(s.as_str())), 1);
            let pl = r.preference_list_for_key(&key, n);
            let mut distinct = pl.clone();
            distinct.sort();
            distinct.dedup();
            prop_assert_eq!(pl.len(), n.min(nodes.len()));
            prop_assert_eq!(distinct.len(), pl.len());
            prop_assert_eq!(r.owner(&Token::of(&key)), pl.first());
        }

        #[test]
        fn adding_a_node_moves_only_the_ranges_next_to_it(
            nodes in proptest::collection::btree_set("[a-z]{1,6}", 4..9),
            newcomer in "[A-Z]{1,6}",
            keys in proptest::collection::vec(any::<u64>(), 1..64),
        ) {
            let n = 3;
            let before = Ring::new(nodes.iter().map(|s| NodeName::from(s.as_str())), 1);
            let after = Ring::new(
                nodes.iter().map(|s| NodeName::from(s.as_str())).chain([NodeName::from(newcomer.as_str())]),
                1,
            );
            // The keys whose list may change lie in the N arcs that end at the
            // newcomer's token and its N-1 successors... i.e. the positions
            // between the token N places before the newcomer and the newcomer.
            let new_tok = Token::of(newcomer.as_bytes());
            let mut toks: Vec<Token> = before.nodes().iter().map(|x| Token::of(x.as_bytes())).collect();
            toks.sort();
            let idx = toks.partition_point(|t| *t < new_tok);
            let lo = toks[(idx + toks.len() - n) % toks.len()];
            let in_arc = |p: &Token| if lo < new_tok { *p > lo && *p <= new_tok } else { *p > lo || *p <= new_tok };
            for k in keys {
                let pos = Token::of(&k.to_be_bytes());
                let old = before.preference_list(&pos, n);
                let new = after.preference_list(&pos, n);
                if !in_arc(&pos) {
                    prop_assert_eq!(&old, &new, "key outside the newcomer's ranges moved");
                } else {
                    // Inside: the newcomer joins and exactly one old replica leaves.
                    prop_assert!(new.iter().any(|x| **x == *newcomer));
                    prop_assert_eq!(old.iter().filter(|x| !new.contains(x)).count(), 1);
                }
            }
        }

        /// The kept lists and the integer search give what a walk from a
        /// full-token search gives, for every N asked (the first one is
        /// kept, the others walk), at every position, including positions
        /// sharing a point's first 8 bytes.
        #[test]
        fn kept_lists_equal_the_walk(
            nodes in proptest::collection::btree_set("[a-z]{1,6}", 1..7),
            vnodes in 1usize..20,
            keys in proptest::collection::vec(any::<[u8; 20]>(), 1..50),
            ns in proptest::collection::vec(1usize..5, 1..4),
        ) {
            let r = Ring::new(nodes.iter().map(|s| NodeName::from(s.as_str())), vnodes);
            let mut positions: Vec<Token> = keys.into_iter().map(Token).collect();
            // Positions just below, at and above each point, with its prefix.
            for (t, _) in r.points.iter().take(5) {
                let mut below = *t;
                below.0[19] = below.0[19].wrapping_sub(1);
                let mut above = *t;
                above.0[19] = above.0[19].wrapping_add(1);
                positions.extend([below, *t, above]);
            }
            for n in ns {
                for pos in &positions {
                    let start = r.points.partition_point(|(t, _)| t < pos) % r.points.len();
                    prop_assert_eq!(r.preference_list(pos, n), r.walk(start, n));
                    prop_assert_eq!(r.owner(pos), Some(&r.nodes[r.points[start].1]));
                }
            }
        }
    }
}
