//! SCAN's cursor, options and pages, shared by SCAN, HSCAN and SSCAN.
//!
//! Redis's cursor walks its hash table in reverse-binary order so that
//! everything present for a whole iteration is returned whatever is added
//! or removed in between. ringkv gets the same guarantee from a simpler
//! order: every name (key, hash field, set member) sorts by a fixed hash of
//! it, and the cursor is the hash to resume from. A page never ends between
//! two names of equal hash, so nothing is skipped; a name may come twice
//! only if it was removed and added again, as in Redis.
//!
//! A hash or set of at most [`WHOLE`] elements is answered in one page
//! with cursor 0, as Redis answers its small (listpack and intset encoded)
//! collections whatever COUNT says.

use bytes::Bytes;

use super::{parse_int, syntax_error, upper};
use crate::resp::codec::Reply;
use crate::resp::glob;

/// Collections up to this size are scanned in one page (Redis's default
/// `hash-max-listpack-entries` and `set-max-intset-entries` are 128 and
/// 512; the smaller serves both).
pub const WHOLE: usize = 128;

/// The options of a SCAN-family command.
#[derive(Debug, Default)]
pub struct ScanOpts {
    /// MATCH's pattern (`None`: everything).
    pub pattern: Option<Bytes>,
    /// COUNT: how many names a page looks at (default 10).
    pub count: usize,
    /// SCAN's TYPE, lower-cased.
    pub type_name: Option<String>,
}

/// The cursor argument, or Redis's `invalid cursor`.
pub fn parse_cursor(arg: &[u8]) -> Result<u64, Reply> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Reply::err("invalid cursor"))
}

impl ScanOpts {
    /// The options in `args[first..]`, as Redis's `scanGenericCommand`
    /// parses them; TYPE only for the keyspace (`keyspace`).
    pub fn parse(args: &[Bytes], first: usize, keyspace: bool) -> Result<ScanOpts, Reply> {
        let mut opts = ScanOpts {
            count: 10,
            ..ScanOpts::default()
        };
        let mut i = first;
        while i < args.len() {
            let Some(value) = args.get(i + 1) else {
                return Err(syntax_error());
            };
            match upper(&args[i]).as_str() {
                "COUNT" => match parse_int(value) {
                    None => return Err(super::not_an_integer()),
                    Some(c) if c < 1 => return Err(syntax_error()),
                    Some(c) => opts.count = usize::try_from(c).unwrap_or(usize::MAX),
                },
                "MATCH" => opts.pattern = (&value[..] != b"*").then(|| value.clone()),
                "TYPE" if keyspace => {
                    opts.type_name = Some(String::from_utf8_lossy(value).to_ascii_lowercase())
                }
                _ => return Err(syntax_error()),
            }
            i += 2;
        }
        Ok(opts)
    }

    /// Whether `name` passes MATCH.
    pub fn matches(&self, name: &[u8]) -> bool {
        self.pattern.as_ref().is_none_or(|p| glob::matches(p, name))
    }
}

/// Where `name` sorts in a scan, from 1 up (0 is the cursor that starts
/// and ends an iteration).
fn place(name: &[u8]) -> u64 {
    (crate::encoding::stable_hash(0x5ca9, name) >> 1) + 1
}

/// The page of `items` (each with its name, `name_of`) that starts at
/// `cursor` and looks at about `count` of them, and the cursor after it
/// (0 at the end). `items` may come in any order.
pub fn page<T>(
    mut items: Vec<T>,
    name_of: impl Fn(&T) -> &[u8],
    cursor: u64,
    count: usize,
) -> (u64, Vec<T>) {
    let mut placed: Vec<(u64, T)> = items
        .drain(..)
        .map(|t| (place(name_of(&t)), t))
        .filter(|(p, _)| *p >= cursor)
        .collect();
    placed.sort_unstable_by_key(|(p, _)| *p);
    let mut end = count.min(placed.len());
    // Never between two names of one place.
    while end > 0 && end < placed.len() && placed[end].0 == placed[end - 1].0 {
        end += 1;
    }
    let next = placed.get(end).map_or(0, |(p, _)| *p);
    placed.truncate(end);
    (next, placed.into_iter().map(|(_, t)| t).collect())
}

/// The page HSCAN or SSCAN answers of a hash's or set's `items` (none:
/// the key does not exist) and the cursor after it: the options (`opts`)
/// count only once the key was found, as in Redis; a collection of at most
/// [`WHOLE`] comes whole; MATCH filters the page.
pub fn collection_page<T>(
    items: Vec<T>,
    name_of: impl Fn(&T) -> &[u8],
    cursor: u64,
    opts: Result<ScanOpts, Reply>,
) -> Result<(u64, Vec<T>), Reply> {
    if items.is_empty() {
        return Ok((0, items));
    }
    let opts = opts?;
    let (next, page) = if items.len() <= WHOLE {
        (0, items)
    } else {
        page(items, &name_of, cursor, opts.count)
    };
    let page = page.into_iter().filter(|t| opts.matches(name_of(t)));
    Ok((next, page.collect()))
}

/// A SCAN-family reply: the cursor and the names (or names and values).
pub fn reply(cursor: u64, items: Vec<Bytes>) -> Reply {
    Reply::Array(vec![Reply::bulk(cursor.to_string()), Reply::bulks(items)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walking a collection page by page returns every name once, even
    /// when names are removed and added between pages.
    #[test]
    fn a_walk_returns_everything_present_throughout() {
        let all: Vec<Bytes> = (0..1000).map(|i| Bytes::from(format!("n{i}"))).collect();
        let mut held = all.clone();
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut turn = 0;
        loop {
            let (next, got) = page(held.clone(), |b| &b[..], cursor, 7);
            assert!(!got.is_empty() || next == 0);
            seen.extend(got);
            // Churn: a few removed, a few new.
            held.retain(|n| !n.ends_with(format!("{turn}9").as_bytes()));
            held.push(Bytes::from(format!("new{turn}")));
            turn += 1;
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let stayed = all.iter().filter(|n| held.contains(n));
        for n in stayed {
            assert!(seen.contains(n), "{n:?} never returned");
        }
    }

    /// HSCAN's and SSCAN's page: a missing key answers an empty page
    /// whatever the options; a small collection comes whole, MATCH
    /// filtering it; a large one comes COUNT at a time.
    #[test]
    fn collections_are_paged_as_redis_pages_its_encodings() {
        let names = |n: usize| {
            (0..n)
                .map(|i| Bytes::from(format!("m{i}")))
                .collect::<Vec<_>>()
        };
        let bad = Err(syntax_error());
        assert_eq!(
            collection_page(Vec::<Bytes>::new(), |b| &b[..], 0, bad),
            Ok((0, vec![]))
        );
        let matching = ScanOpts {
            pattern: Some(Bytes::from_static(b"m1*")),
            count: 1,
            type_name: None,
        };
        let (next, page) = collection_page(names(20), |b| &b[..], 0, Ok(matching)).unwrap();
        assert_eq!(next, 0);
        assert_eq!(page.len(), 11, "m1 and m10..m19: {page:?}");
        let count = || {
            Ok(ScanOpts {
                count: 100,
                ..ScanOpts::default()
            })
        };
        let (next, page) = collection_page(names(1000), |b| &b[..], 0, count()).unwrap();
        assert!(next != 0 && (100..110).contains(&page.len()));
        assert_eq!(
            collection_page(names(200), |b| &b[..], 0, Err(syntax_error())),
            Err(syntax_error())
        );
    }

    #[test]
    fn options_parse_as_redis_parses_them() {
        let args = |s: &[&str]| {
            s.iter()
                .map(|a| Bytes::from(a.to_string()))
                .collect::<Vec<_>>()
        };
        let o = ScanOpts::parse(
            &args(&["HSCAN", "k", "0", "match", "a*", "COUNT", "5"]),
            3,
            false,
        )
        .unwrap();
        assert_eq!((o.pattern.as_deref(), o.count), (Some(&b"a*"[..]), 5));
        assert!(o.matches(b"abc") && !o.matches(b"b"));
        assert_eq!(
            ScanOpts::parse(&args(&["HSCAN", "k", "0", "COUNT", "0"]), 3, false).unwrap_err(),
            syntax_error()
        );
        assert_eq!(
            ScanOpts::parse(&args(&["HSCAN", "k", "0", "TYPE", "hash"]), 3, false).unwrap_err(),
            syntax_error()
        );
        assert!(ScanOpts::parse(&args(&["SCAN", "0", "TYPE", "Hash"]), 2, true).is_ok());
        assert_eq!(
            parse_cursor(b"x").unwrap_err(),
            Reply::err("invalid cursor")
        );
    }
}
