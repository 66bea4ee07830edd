//! One anti-entropy round between two in-memory stores, step for step as
//! the network driver (`mod.rs`) runs it, with every message's encoded
//! size counted: what the property tests and `bench/ae_convergence.rs`
//! run. No network, no clock, no log: the stores merge what they are sent
//! at once.

use bytes::Bytes;

use super::digest::*;
use super::{wire_size, RoundReport};
use crate::message::PeerMsg;
use crate::ring::Token;
use crate::store::Store;

/// One round, `a` starting it, between two sides of protocol 12 (`Some`:
/// the answerer's and the initiator's sections threshold) or older
/// (`None`), as the network driver runs it.
pub fn round(a: &Store, b: &Store, ranges: &Ranges, by_sections: Option<usize>) -> RoundReport {
    let mut r = RoundReport::default();
    let root = root_digest(a, ranges);
    r.bytes_sent += wire_size(&PeerMsg::AeRoot {
        id: 1,
        ranges: ranges.fingerprint(),
        root,
    });
    let agree = root_digest(b, ranges) == root;
    r.bytes_received += wire_size(&PeerMsg::AeRootReply {
        id: 1,
        agree,
        filling: false,
    });
    if agree {
        return r;
    }
    let groups = group_digests(a, ranges);
    r.bytes_sent += wire_size(&PeerMsg::AeGroups {
        id: 1,
        ranges: ranges.clone(),
        groups: groups.clone(),
    });
    let leaves = leaves_of_differing_groups(b, ranges, &groups);
    r.bytes_received += wire_size(&PeerMsg::AeGroupsReply {
        id: 1,
        leaves: leaves.clone(),
    });
    let differing = differing_leaves(a, ranges, &leaves);
    r.differing_leaves = differing.len() as u64;
    for chunk in differing.chunks(256) {
        let keys = summaries(a, ranges, chunk);
        r.bytes_sent += wire_size(&PeerMsg::AeKeys {
            id: 2,
            ranges: ranges.clone(),
            leaves: chunk.to_vec(),
            keys: keys.clone(),
        });
        let (push, want) = exchange(b, ranges, chunk, &keys, by_sections);
        r.bytes_received += wire_size(&PeerMsg::AeKeysReply {
            id: 2,
            push: push.clone(),
            want: want.clone(),
        });
        let plan = plan(push, want, by_sections.is_some(), |k| {
            by_sections
                .is_some_and(|min| a.rich_bytes_at(&Token::of(k), k).is_some_and(|b| b >= min))
        });
        r.keys_received += plan.merge.len() as u64;
        for (k, e) in plan.merge {
            a.apply(&k, e);
        }
        let mut whole = plan.whole;
        for key in plan.sectioned {
            let pos = Token::of(&key);
            let Some(digests) = a.with_cell_at(&pos, &key, crate::values::sections::digests) else {
                whole.push(key);
                continue;
            };
            r.bytes_sent += wire_size(&PeerMsg::AeSections {
                id: 4,
                key: key.clone(),
                digests: digests.clone(),
            });
            let (push, want) = answer_sections(b, &key, &digests);
            r.bytes_received += wire_size(&PeerMsg::AeSectionsReply {
                id: 4,
                push: push.clone(),
                want: want.clone(),
            });
            if let Some(e) = push {
                r.keys_received += 1;
                a.apply(&key, e);
            }
            if want.is_empty() {
                continue;
            }
            let piece = a.piece_at(&pos, &key, &want).map(|e| (key, e));
            transfer(b, piece.into_iter().collect(), &mut r);
        }
        transfer(b, entries(a, &whole), &mut r);
    }
    r
}

/// `items` sent to `b` in `Transfer`s of 512 entries (the default
/// `transfer_batch`), and merged there.
fn transfer(b: &Store, items: Vec<(Bytes, crate::store::Entry)>, r: &mut RoundReport) {
    r.keys_sent += items.len() as u64;
    for batch in items.chunks(512) {
        r.bytes_sent += wire_size(&PeerMsg::Transfer {
            id: 3,
            items: batch.to_vec(),
        });
    }
    for (k, e) in items {
        b.apply(&k, e);
    }
}
