//! A rich state as the store keeps it: a [`Cell`], built for one element
//! at a time.
//!
//! On the wire and in the log a rich state is a [`Rich`] (sorted maps,
//! encoded whole). A store holding a hash of a million fields cannot decode
//! and re-encode it for every HSET, so it keeps a cell instead: the key's
//! small pieces (`cleared`, deadline, string, counter shares) as a head,
//! and each field or member as one packed element (`elem.rs`), kept with
//! the others of its kind in one arena (`elems.rs`). A delta of one field costs one lookup and one
//! element rewritten; the cell keeps its digest, its counts of live
//! elements and the newest version of each type up to date as it goes.
//!
//! [`Cell::merge`] must do exactly what [`Rich::merge`] does: the property
//! tests check that a cell built from one state and merged with another
//! reads back as the two `Rich` merged, with the same digest.

use bytes::Bytes;

use super::elems::Elems;
use super::wire::HeadRef;
use super::{elem, Field, Kind, Lww, Part, Rich, Shards, Version, Want};

/// The head of a rich state: everything but its fields and members.
fn head_of(r: &Rich) -> Rich {
    Rich {
        cleared: r.cleared,
        ttl: r.ttl.clone(),
        string: r.string.clone(),
        shards: r.shards.clone(),
        ..Rich::default()
    }
}

/// The head as a cell keeps it: a [`Rich`] without its two maps, which a
/// head never fills, 48 bytes less in every cell.
#[derive(Debug, Clone, Default)]
struct Head {
    cleared: Version,
    ttl: Option<Lww<Option<u64>>>,
    string: Option<Lww<Bytes>>,
    shards: Shards,
}

impl Head {
    /// A head from one ([`head_of`]), moved in.
    fn from_rich(r: Rich) -> Head {
        debug_assert!(r.fields.is_empty() && r.members.is_empty(), "a head");
        Head {
            cleared: r.cleared,
            ttl: r.ttl,
            string: r.string,
            shards: r.shards,
        }
    }

    /// It as a [`Rich`], moved out.
    fn into_rich(self) -> Rich {
        Rich {
            cleared: self.cleared,
            ttl: self.ttl,
            string: self.string,
            shards: self.shards,
            ..Rich::default()
        }
    }

    /// It as a [`Rich`], copied.
    fn to_rich(&self) -> Rich {
        self.clone().into_rich()
    }

    /// It lent for encoding, not copied.
    fn parts(&self) -> HeadRef<'_> {
        HeadRef {
            cleared: self.cleared,
            ttl: &self.ttl,
            string: &self.string,
            shards: &self.shards,
        }
    }
}

/// The digest contribution of a head (a hash of its encoding as a state
/// with no fields and no members).
///
/// The encoding's length is known first ([`super::wire::fixed_len`]: no
/// fields, no members), so a usual head (a counter's few shares) is encoded
/// on the stack, with no allocation.
pub(super) fn head_hash(head: HeadRef<'_>) -> u64 {
    let len = super::wire::fixed_len(head);
    let mut stack = [0u8; 512];
    let mut heap = Vec::new();
    let buf = match stack.get_mut(..len) {
        Some(buf) => buf,
        None => {
            heap.resize(len, 0);
            &mut heap[..]
        }
    };
    let mut out = super::wire::Filling::new(buf);
    super::wire::encode_head_into(head, &mut out);
    debug_assert!(out.is_full(), "fixed_len is the head's exact length");
    crate::encoding::stable_hash(0x6865_6164, out.filled())
}

/// The digest of a rich state: its head's hash and every element's,
/// XORed, so a cell keeps it up to date with a few XORs per change.
pub fn rich_digest(r: &Rich) -> u64 {
    let mut d = head_hash(HeadRef::of(r));
    for (name, f) in &r.fields {
        d ^= elem::with_field(name, f, elem::field_hash);
    }
    for (name, m) in &r.members {
        d ^= elem::with_member(name, m, elem::member_hash);
    }
    d
}

/// A key's rich state, for one element at a time (see the module doc).
#[derive(Debug, Clone)]
pub struct Cell {
    key: Box<[u8]>,
    head: Head,
    fields: Elems,
    members: Elems,
    version: Version,
    hash_newest: Version,
    set_newest: Version,
    head_hash: u64,
    elems_hash: u64,
    live_fields: usize,
    live_members: usize,
}

impl Cell {
    /// The cell of `key` holding `rich`.
    pub fn new(key: &[u8], rich: &Rich) -> Cell {
        let head = head_of(rich);
        let mut cell = Cell {
            key: key.into(),
            head_hash: head_hash(HeadRef::of(&head)),
            head: Head::from_rich(head),
            fields: Elems::default(),
            members: Elems::default(),
            version: rich.newest(),
            hash_newest: Version::ZERO,
            set_newest: Version::ZERO,
            elems_hash: 0,
            live_fields: 0,
            live_members: 0,
        };
        for (name, f) in &rich.fields {
            elem::with_field(name, f, |e| cell.insert_field(e));
            cell.hash_newest = cell.hash_newest.max(f.newest());
        }
        for (name, m) in &rich.members {
            elem::with_member(name, m, |e| cell.insert_member(e));
            cell.set_newest = cell.set_newest.max(m.version);
        }
        cell
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The newest version in it.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Its digest (see [`rich_digest`]).
    pub fn digest(&self) -> u64 {
        self.head_hash ^ self.elems_hash
    }

    /// About how many bytes it takes beyond its key.
    pub fn mem_bytes(&self) -> usize {
        let head =
            self.head.string.as_ref().map_or(0, |s| s.value.len()) + 48 * self.head.shards.len();
        std::mem::size_of::<Cell>() + head + self.fields.mem_bytes() + self.members.mem_bytes()
    }

    /// The expiry deadline, if any.
    pub fn deadline(&self) -> Option<u64> {
        self.head.ttl.as_ref().and_then(|t| t.value)
    }

    /// Live hash fields.
    pub fn live_fields(&self) -> usize {
        self.live_fields
    }

    /// Set members present.
    pub fn live_members(&self) -> usize {
        self.live_members
    }

    /// Whether nothing of it is live, expiry aside ([`super::Entry::is_tombstone`]).
    pub fn is_tombstone(&self) -> bool {
        self.head.string.is_none()
            && self.head.shards.is_empty()
            && self.live_fields == 0
            && self.live_members == 0
    }

    /// The key's type at `now_ms`, or `None` when it is absent (see
    /// `view.rs`: the type of the newest piece, which must be live).
    pub fn kind(&self, now_ms: u64) -> Option<Kind> {
        if self.deadline().is_some_and(|d| d <= now_ms) {
            return None;
        }
        let cleared = self.head.cleared;
        let alive = |v: Version| (v > cleared).then_some(v);
        super::view::kind_from(
            super::view::string_newest_of(&self.head.string, &self.head.shards),
            alive(self.hash_newest),
            alive(self.set_newest),
            (
                self.head.string.is_some() || !self.head.shards.is_empty(),
                self.live_fields > 0,
                self.live_members > 0,
            ),
        )
    }

    /// The state as a plain string or a tombstone, if it is one of those
    /// (see [`super::Entry::canonical`]): such a cell is packed again.
    pub fn simple(&self) -> Option<super::Entry> {
        let headless = self.fields.is_empty()
            && self.members.is_empty()
            && self.head.ttl.is_none()
            && self.head.shards.is_empty();
        if !headless {
            return None;
        }
        let e = super::Entry::rich(self.head.to_rich());
        e.as_simple().is_some().then_some(e)
    }

    /// Whether hash field `name` holds something live.
    pub fn has_field(&self, name: &[u8]) -> bool {
        self.fields.find(name).is_some_and(elem::field_live)
    }

    /// Hash field `name`, if the cell has it (live or removed).
    pub fn field(&self, name: &[u8]) -> Option<Field> {
        self.fields.find(name).map(elem::read_field)
    }

    /// The key's own string and counter shares, borrowed (an increment
    /// reads them on every INCR: copying the head cost 4 % of one).
    pub fn counter(&self) -> (&Option<super::Lww<Bytes>>, &super::Shards) {
        (&self.head.string, &self.head.shards)
    }

    /// Whether set member `name` is present.
    pub fn has_member(&self, name: &[u8]) -> bool {
        self.members.find(name).is_some_and(elem::member_present)
    }

    /// The whole state as a [`Rich`].
    pub fn to_rich(&self) -> Rich {
        self.to_rich_where(|_| true)
    }

    /// The state with only the fields and members whose name `keep`
    /// accepts, and the whole head: a piece of it that merges like any
    /// delta (see `sections.rs`).
    pub fn to_rich_where(&self, keep: impl Fn(&[u8]) -> bool) -> Rich {
        let mut r = self.head.to_rich();
        for e in self.fields.iter().filter(|e| keep(elem::name(e))) {
            r.fields
                .insert(Bytes::copy_from_slice(elem::name(e)), elem::read_field(e));
        }
        for e in self.members.iter().filter(|e| keep(elem::name(e))) {
            r.members
                .insert(Bytes::copy_from_slice(elem::name(e)), elem::read_member(e));
        }
        r
    }

    /// Calls `f` with every element's name and digest contribution (the
    /// pieces of [`Cell::digest`] besides the head's), and returns the
    /// head's.
    pub fn element_hashes(&self, mut f: impl FnMut(&[u8], u64)) -> u64 {
        for e in self.fields.iter() {
            f(elem::name(e), elem::field_hash(e));
        }
        for e in self.members.iter() {
            f(elem::name(e), elem::member_hash(e));
        }
        self.head_hash
    }

    /// Its encoding, the bytes `wire::encode_into` makes of
    /// [`Cell::to_rich`], written without building the maps: a snapshot
    /// of a hash of 100,000 fields sorts their names instead.
    pub fn encode(&self) -> Vec<u8> {
        let head = self.head.parts();
        let (fields, members) = (self.fields.sorted(), self.members.sorted());
        // An element's encoding spells out the lengths and versions that
        // the element packs: at most 48 bytes more.
        let elements: usize = fields
            .iter()
            .chain(&members)
            .map(|(_, e)| e.len() + 48)
            .sum();
        let mut out = Vec::with_capacity(super::wire::fixed_len(head) + elements);
        super::wire::encode_parts_into(
            head,
            fields.iter().map(|&(name, e)| (name, elem::read_field(e))),
            members
                .iter()
                .map(|&(name, e)| (name, elem::read_member(e))),
            &mut out,
        );
        out
    }

    /// The part of it `want` asks for.
    pub fn part(&self, want: &Want) -> Part {
        let mut rich = self.head.to_rich();
        match want {
            Want::Head => {}
            Want::Fields(names) => {
                for name in names {
                    if let Some(e) = self.fields.find(name) {
                        rich.fields.insert(name.clone(), elem::read_field(e));
                    }
                }
            }
            Want::Members(names) => {
                for name in names {
                    if let Some(e) = self.members.find(name) {
                        rich.members.insert(name.clone(), elem::read_member(e));
                    }
                }
            }
        }
        Part {
            version: self.version,
            digest: self.digest(),
            rich,
            hash_newest: self.hash_newest,
            set_newest: self.set_newest,
            fields: self.live_fields as u64,
            members: self.live_members as u64,
        }
    }

    /// Whether it holds markers of removed fields or members older than
    /// `before` (see [`Rich::purge_removed`]).
    pub fn has_removed_before(&self, before: crate::clock::Timestamp) -> bool {
        let fields = self.fields.len() > self.live_fields
            && self
                .fields
                .iter()
                .any(|e| !elem::field_live(e) && elem::read_field(e).newest().ts < before);
        let members = self.members.len() > self.live_members
            && self
                .members
                .iter()
                .any(|e| !elem::member_present(e) && elem::read_member(e).version.ts < before);
        fields || members
    }

    /// [`Rich::purge_removed`] on the cell: rebuilt, versions included, as
    /// a cell made from the purged state would be (so that replicas that
    /// purged and replicas that received the purged state agree).
    pub fn purge_removed(&mut self, before: crate::clock::Timestamp) -> bool {
        if !self.has_removed_before(before) {
            return false;
        }
        let mut rich = self.to_rich();
        rich.purge_removed(before);
        *self = Cell::new(&self.key, &rich);
        true
    }

    /// Merges `delta` in, as [`Rich::merge`] would. Returns whether
    /// anything changed.
    pub fn merge(&mut self, delta: &Rich) -> bool {
        self.merge_newest(delta, delta.newest())
    }

    /// [`Cell::merge`] for a caller that knows `delta`'s newest version
    /// (a rich entry's: see [`super::Entry::merge_into`]), which spares a
    /// walk over the delta on every node that applies a typed write.
    pub(super) fn merge_newest(&mut self, delta: &Rich, newest: Version) -> bool {
        debug_assert_eq!(newest, delta.newest(), "the delta's newest version");
        let mut changed = false;
        // Most deltas (HSET, SADD, HDEL, SREM) carry no head at all.
        let empty_head = delta.cleared == Version::ZERO
            && delta.ttl.is_none()
            && delta.string.is_none()
            && delta.shards.is_empty();
        if !empty_head {
            let before = self.head.cleared;
            // Moved out and back: a head merges as a `Rich`, with no copy.
            let mut head = std::mem::take(&mut self.head).into_rich();
            // A delta of a head alone (an increment, an expiry, a string)
            // merges as it is; one with elements, through a copy of its head.
            changed = match delta.fields.is_empty() && delta.members.is_empty() {
                true => head.merge(delta),
                false => head.merge(&head_of(delta)),
            };
            if changed {
                self.head_hash = head_hash(HeadRef::of(&head));
            }
            self.head = Head::from_rich(head);
            if self.head.cleared > before {
                self.prune(self.head.cleared);
            }
        }
        let cleared = self.head.cleared;
        for (name, f) in &delta.fields {
            changed |= self.merge_field(name, f, cleared);
        }
        for (name, m) in &delta.members {
            changed |= self.merge_member(name, m, cleared);
        }
        if changed {
            self.version = self.version.max(newest);
        }
        changed
    }

    /// Puts in a field element whose name the cell does not hold.
    fn insert_field(&mut self, e: &[u8]) {
        self.count_field(e);
        self.fields.insert_new(e);
    }

    fn count_field(&mut self, e: &[u8]) {
        self.elems_hash ^= elem::field_hash(e);
        self.live_fields += usize::from(elem::field_live(e));
    }

    fn forget_field(&mut self, gone: Gone) {
        self.elems_hash ^= gone.hash;
        self.live_fields -= usize::from(gone.live);
    }

    /// Puts in a member element whose name the cell does not hold.
    fn insert_member(&mut self, e: &[u8]) {
        self.count_member(e);
        self.members.insert_new(e);
    }

    fn count_member(&mut self, e: &[u8]) {
        self.elems_hash ^= elem::member_hash(e);
        self.live_members += usize::from(elem::member_present(e));
    }

    fn forget_member(&mut self, gone: Gone) {
        self.elems_hash ^= gone.hash;
        self.live_members -= usize::from(gone.live);
    }

    /// Drops every piece at or before `cleared` (a new `cleared` arrived).
    fn prune(&mut self, cleared: Version) {
        let fields = std::mem::take(&mut self.fields);
        for e in fields.iter() {
            self.forget_field(Gone::field(e));
            let mut f = elem::read_field(e);
            f.prune_with(cleared);
            if f.is_live() || f.cleared > cleared {
                elem::with_field(elem::name(e), &f, |x| self.insert_field(x));
            }
        }
        let members = std::mem::take(&mut self.members);
        for e in members.iter() {
            self.forget_member(Gone::member(e));
            if elem::read_member(e).version > cleared {
                self.insert_member(e);
            }
        }
    }

    fn merge_field(&mut self, name: &Bytes, other: &Field, cleared: Version) -> bool {
        let at = self.fields.locate(name);
        let merged = match at {
            Some(at) => {
                let old = self.fields.get(at);
                let mut mine = elem::read_field(old);
                if !mine.merge(other, cleared) {
                    return false;
                }
                let gone = Gone::field(old);
                self.forget_field(gone);
                mine
            }
            // A new field that nothing in the key clears (an HSET's):
            // written as it came, not copied and pruned first.
            None if other.survives_as_is(cleared) => {
                elem::with_field(name, other, |e| {
                    self.count_field(e);
                    self.fields.insert_new(e);
                });
                self.hash_newest = self.hash_newest.max(other.newest());
                return true;
            }
            None => {
                let mut f = other.clone();
                f.prune_with(cleared);
                if !(f.is_live() || f.cleared > cleared) {
                    return false;
                }
                f
            }
        };
        if merged.is_live() || merged.cleared > cleared {
            elem::with_field(name, &merged, |e| {
                self.count_field(e);
                match at {
                    Some(at) => self.fields.replace(at, e),
                    None => self.fields.insert_new(e),
                }
            });
        } else if let Some(at) = at {
            self.fields.remove(at);
        }
        self.hash_newest = self.hash_newest.max(other.newest());
        true
    }

    fn merge_member(&mut self, name: &Bytes, other: &Lww<bool>, cleared: Version) -> bool {
        if other.version <= cleared {
            return false;
        }
        let at = self.members.locate(name);
        if let Some(at) = at {
            let old = self.members.get(at);
            let mine = elem::read_member(old);
            if (mine.version, mine.value) >= (other.version, other.value) {
                return false;
            }
            let gone = Gone::member(old);
            self.forget_member(gone);
        }
        elem::with_member(name, other, |e| {
            self.count_member(e);
            match at {
                Some(at) => self.members.replace(at, e),
                None => self.members.insert_new(e),
            }
        });
        self.set_newest = self.set_newest.max(other.version);
        true
    }
}

/// What a cell's counts and digest must forget of an element replaced or
/// removed, taken before the element changes.
#[derive(Clone, Copy)]
struct Gone {
    hash: u64,
    live: bool,
}

impl Gone {
    fn field(e: &[u8]) -> Gone {
        Gone {
            hash: elem::field_hash(e),
            live: elem::field_live(e),
        }
    }

    fn member(e: &[u8]) -> Gone {
        Gone {
            hash: elem::member_hash(e),
            live: elem::member_present(e),
        }
    }
}
