//! The map of a [`super::Rich`] state's hash fields, set members and
//! counter shards: in key order, like the `BTreeMap` it replaces, but held
//! inline while small.
//!
//! Nearly every rich state that travels or is built for a moment is small:
//! a typed write's delta holds the one field or member it writes, an
//! increment's the one share it moves, and a read's part the few it asks
//! for; a counter has as many shards as nodes were ever first for it. A
//! `BTreeMap` allocates a node of about a kilobyte for its first entry and
//! walks it on drop; on the typed paths those maps cost more than the
//! merges themselves. Here up to [`SMALL`] entries live in a vector in key
//! order, found by binary search (one allocation of just the entries); past
//! that the map becomes a `BTreeMap`, so a whole large hash (a snapshot's,
//! a transfer's, `Cell::to_rich`'s) keeps a `BTreeMap`'s costs and never
//! pays a sorted vector's quadratic inserts. The map never shrinks back:
//! a large map that loses entries stays a `BTreeMap`.
//!
//! Two maps with the same entries are equal, hash and serialize alike
//! whichever form they are in: serde sees a map, in key order, exactly as
//! it saw the `BTreeMap` (the log, snapshots and the wire are unchanged).

use std::borrow::Borrow;
use std::collections::{btree_map, BTreeMap};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Entries held in a sorted vector at most; one more makes a `BTreeMap`.
pub const SMALL: usize = 16;

/// A map in key order (see the module doc).
#[derive(Clone)]
pub struct SortedMap<K, V>(Repr<K, V>);

#[derive(Clone)]
enum Repr<K, V> {
    Small(Vec<(K, V)>),
    Large(BTreeMap<K, V>),
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap(Repr::Small(Vec::new()))
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty map with room for `n` entries (up to [`SMALL`]): a decoder
    /// that knows the count allocates once rather than growing.
    pub fn with_capacity(n: usize) -> Self {
        SortedMap(Repr::Small(Vec::with_capacity(n.min(SMALL))))
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Small(v) => v.len(),
            Repr::Large(m) => m.len(),
        }
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where `key` is in a small map, or where it would go.
    fn find<Q>(v: &[(K, V)], key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        v.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// The value under `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match &self.0 {
            Repr::Small(v) => Self::find(v, key).ok().map(|i| &v[i].1),
            Repr::Large(m) => m.get(key),
        }
    }

    /// The value under `key`, to change.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match &mut self.0 {
            Repr::Small(v) => Self::find(v, key).ok().map(|i| &mut v[i].1),
            Repr::Large(m) => m.get_mut(key),
        }
    }

    /// Whether it holds `key`.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Puts `value` under `key`; returns the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let v = match &mut self.0 {
            Repr::Large(m) => return m.insert(key, value),
            Repr::Small(v) => v,
        };
        // In key order (a decoded map, a collected one): at the end.
        if v.last().is_none_or(|(last, _)| *last < key) {
            if v.len() < SMALL {
                v.push((key, value));
                return None;
            }
        } else {
            match Self::find(v, &key) {
                Ok(i) => return Some(std::mem::replace(&mut v[i].1, value)),
                Err(i) if v.len() < SMALL => {
                    v.insert(i, (key, value));
                    return None;
                }
                Err(_) => {}
            }
        }
        let mut m: BTreeMap<K, V> = std::mem::take(v).into_iter().collect();
        m.insert(key, value);
        self.0 = Repr::Large(m);
        None
    }

    /// Takes the value under `key` out.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match &mut self.0 {
            Repr::Small(v) => Self::find(v, key).ok().map(|i| v.remove(i).1),
            Repr::Large(m) => m.remove(key),
        }
    }

    /// Keeps only the entries `keep` says to.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        match &mut self.0 {
            Repr::Small(v) => v.retain_mut(|(k, val)| keep(k, val)),
            Repr::Large(m) => m.retain(|k, val| keep(k, val)),
        }
    }

    /// The entries, in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        match &self.0 {
            Repr::Small(v) => Iter::Small(v.iter()),
            Repr::Large(m) => Iter::Large(m.iter()),
        }
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.iter().map(|(k, _)| k)
    }

    /// The values, in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }
}

/// [`SortedMap::iter`]'s iterator.
pub enum Iter<'a, K, V> {
    /// Over a small map.
    Small(std::slice::Iter<'a, (K, V)>),
    /// Over a large one.
    Large(btree_map::Iter<'a, K, V>),
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Small(i) => i.next().map(|(k, v)| (k, v)),
            Iter::Large(i) => i.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Small(i) => i.size_hint(),
            Iter::Large(i) => i.size_hint(),
        }
    }

    /// One match, then the inner iterator's own loop: `fold` (and every
    /// adapter built on it, `max`, `for_each`, `sum`...) does not pay
    /// `next`'s match per entry.
    fn fold<B, F: FnMut(B, Self::Item) -> B>(self, init: B, mut f: F) -> B {
        match self {
            Iter::Small(i) => i.fold(init, |acc, (k, v)| f(acc, (k, v))),
            Iter::Large(i) => i.fold(init, f),
        }
    }
}

// Both inner iterators know their length exactly.
impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

/// [`SortedMap`]'s owning iterator.
pub enum IntoIter<K, V> {
    /// Over a small map.
    Small(std::vec::IntoIter<(K, V)>),
    /// Over a large one.
    Large(btree_map::IntoIter<K, V>),
}

impl<K, V> Iterator for IntoIter<K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            IntoIter::Small(i) => i.next(),
            IntoIter::Large(i) => i.next(),
        }
    }
}

impl<K, V> IntoIterator for SortedMap<K, V> {
    type Item = (K, V);
    type IntoIter = IntoIter<K, V>;

    fn into_iter(self) -> IntoIter<K, V> {
        match self.0 {
            Repr::Small(v) => IntoIter::Small(v.into_iter()),
            Repr::Large(m) => IntoIter::Large(m.into_iter()),
        }
    }
}

impl<'a, K: Ord, V> IntoIterator for &'a SortedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SortedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = SortedMap::new();
        m.extend(iter);
        m
    }
}

impl<K: Ord, V> Extend<(K, V)> for SortedMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K: Ord, V: PartialEq> PartialEq for SortedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<K: Ord, V: Eq> Eq for SortedMap<K, V> {}

impl<K: Ord + Hash, V: Hash> Hash for SortedMap<K, V> {
    /// As a `BTreeMap` hashes: its length, then each entry in order.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for (k, v) in self.iter() {
            k.hash(state);
            v.hash(state);
        }
    }
}

impl<K: Ord + fmt::Debug, V: fmt::Debug> fmt::Debug for SortedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord + Serialize, V: Serialize> Serialize for SortedMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for SortedMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries<K, V>(PhantomData<(K, V)>);

        impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for Entries<K, V> {
            type Value = SortedMap<K, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut m = SortedMap::new();
                while let Some((k, v)) = access.next_entry()? {
                    m.insert(k, v);
                }
                Ok(m)
            }
        }

        d.deserialize_map(Entries(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u32),
        Remove(u8),
        Retain(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k % 40, v)),
            1 => any::<u8>().prop_map(|k| Op::Remove(k % 40)),
            1 => any::<u8>().prop_map(|m| Op::Retain(m % 5 + 2)),
        ]
    }

    /// A map as the wire sees it, and the `BTreeMap` it must look like.
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Ours(SortedMap<u8, u32>);
    #[derive(Serialize)]
    struct Model(BTreeMap<u8, u32>);
    impl crate::encoding::Wire for Ours {}
    impl crate::encoding::Wire for Model {}

    fn hash_of<T: Hash>(t: &T) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    proptest! {
        /// Any sequence of changes leaves the map as a `BTreeMap` would
        /// be: the same answers, order, hash and bytes, through every
        /// form it takes.
        #[test]
        fn behaves_as_a_btree_map(ops in proptest::collection::vec(op(), 0..80)) {
            let mut ours = SortedMap::new();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(ours.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(ours.remove(&k), model.remove(&k)),
                    Op::Retain(m) => {
                        ours.retain(|k, _| k % m != 0);
                        model.retain(|k, _| k % m != 0);
                    }
                }
                prop_assert_eq!(ours.len(), model.len());
                prop_assert!(ours.iter().eq(model.iter()));
            }
            for k in 0..40u8 {
                prop_assert_eq!(ours.get(&k), model.get(&k));
                prop_assert_eq!(ours.contains_key(&k), model.contains_key(&k));
            }
            prop_assert_eq!(hash_of(&ours), hash_of(&model));
            let ours = Ours(ours);
            let bytes = crate::encoding::to_vec(&ours).unwrap();
            prop_assert_eq!(&bytes, &crate::encoding::to_vec(&Model(model.clone())).unwrap());
            let back: Ours = crate::encoding::from_slice(&bytes).unwrap();
            prop_assert_eq!(&back, &ours);
            let Ours(ours) = ours;
            let collected: SortedMap<u8, u32> = model.clone().into_iter().collect();
            prop_assert_eq!(&collected, &ours);
            prop_assert!(ours.clone().into_iter().eq(model.into_iter()));
        }
    }
}
