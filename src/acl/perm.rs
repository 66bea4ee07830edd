//! What a user may run and touch, compiled from its rules, and the check
//! made before every command.
//!
//! The commands and their categories come from Redis's own metadata
//! (`resp::cmd::meta`, made from a real redis-server's COMMAND INFO): each
//! command of ringkv's table, and each subcommand it has of CLIENT, CONFIG,
//! COMMAND and ACL, has a bit. A rule naming a Redis command ringkv lacks
//! (`+lpush`) is accepted and kept, so rules written for Redis apply
//! unchanged; it has no bit, since the command cannot run here.
//!
//! Keys are checked as Redis checks them: each key argument, found by the
//! command's key specs, must match a pattern that allows what the command
//! does to it (`%R~` reads, `%W~` writes, `~` both).

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;

use super::user::{User, READ, WRITE};
use crate::resp::cmd::{meta, table, TABLE};
use crate::resp::codec::Reply;

/// The categories, in `ACL CAT`'s order.
pub const CATEGORIES: [&str; 21] = [
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// One key spec of a command: where its keys are and what it does to them.
#[derive(Clone, Debug)]
struct KeySpec {
    begin: usize,
    find: Find,
    needs: u8,
}

#[derive(Clone, Debug)]
enum Find {
    /// Keys from `begin` to `last` (negative: from the end) by `step`.
    Range { last: i64, step: usize, limit: i64 },
    /// The count at `begin + count_at`, keys from `begin + first` by `step`.
    Keynum {
        count_at: usize,
        first: usize,
        step: usize,
    },
}

/// Every command and subcommand ringkv has, with its categories and key
/// specs, and the names of the Redis commands it lacks.
pub struct Universe {
    names: Vec<String>,
    categories: Vec<u32>,
    specs: Vec<Vec<KeySpec>>,
    index: HashMap<String, usize>,
    containers: HashMap<&'static str, Vec<usize>>,
}

/// The one universe, built on first use.
pub fn universe() -> &'static Universe {
    static U: OnceLock<Universe> = OnceLock::new();
    U.get_or_init(Universe::build)
}

impl Universe {
    fn build() -> Universe {
        let mut u = Universe {
            names: Vec::new(),
            categories: Vec::new(),
            specs: Vec::new(),
            index: HashMap::new(),
            containers: HashMap::new(),
        };
        // Top-level commands take their table index as their bit.
        for spec in TABLE.iter() {
            u.add(spec.name.to_string());
        }
        for spec in TABLE.iter() {
            let subs = meta::subcommands(spec.name);
            if !subs.is_empty() {
                let bits = subs.iter().map(|s| u.add(s.to_string())).collect();
                u.containers.insert(spec.name, bits);
            }
        }
        u
    }

    fn add(&mut self, name: String) -> usize {
        let i = self.names.len();
        let cats = meta::acl_categories(&name)
            .iter()
            .filter_map(|c| c.strip_prefix('@'))
            .filter_map(|c| CATEGORIES.iter().position(|k| *k == c))
            .fold(0u32, |m, c| m | (1 << c));
        self.categories.push(cats);
        self.specs.push(key_specs(&name));
        self.index.insert(name.clone(), i);
        self.names.push(name);
        i
    }

    /// The bit of `category` (lower-case), if Redis has it.
    pub fn category(&self, category: &str) -> Option<u32> {
        CATEGORIES
            .iter()
            .position(|c| *c == category)
            .map(|i| 1 << i)
    }

    /// Whether `name` (lower-case, `cmd|sub` for a subcommand) is a command
    /// ringkv has or one Redis has.
    pub fn knows(&self, name: &str) -> bool {
        self.index.contains_key(name) || meta::is_redis_command(name)
    }

    /// Whether `name` has subcommands, in ringkv or in Redis.
    pub fn is_container(&self, name: &str) -> bool {
        self.containers.contains_key(name) || meta::is_redis_container(name)
    }

    /// The commands of `category` (`ACL CAT category`), subcommands as
    /// `cmd|sub`.
    pub fn in_category(&self, bit: u32) -> Vec<&str> {
        (self.names.iter().zip(&self.categories))
            .filter(|(_, c)| *c & bit != 0)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// The bit of the command a call runs: its subcommand's for CLIENT,
    /// CONFIG, COMMAND and ACL; `None` for a subcommand ringkv lacks
    /// (left for the command to refuse, as Redis refuses it first).
    fn bit_of(&self, spec: &table::Spec, args: &[Bytes]) -> Option<usize> {
        if !self.containers.contains_key(spec.name) {
            return Some(spec.index);
        }
        let sub = String::from_utf8_lossy(args.get(1)?).to_ascii_lowercase();
        self.index.get(&format!("{}|{sub}", spec.name)).copied()
    }
}

/// The key specs of `name` from its COMMAND INFO entry.
fn key_specs(name: &str) -> Vec<KeySpec> {
    let Some(Reply::Array(info)) = meta::command_info(name) else {
        return Vec::new();
    };
    let specs = match info.get(8) {
        Some(Reply::Array(s) | Reply::Set(s)) => s,
        _ => return Vec::new(),
    };
    specs.iter().filter_map(key_spec).collect()
}

fn key_spec(spec: &Reply) -> Option<KeySpec> {
    let Reply::Map(fields) = spec else {
        return None;
    };
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n.as_text() == Some(k))
            .map(|(_, v)| v)
    };
    let flags: Vec<String> = match get("flags")? {
        Reply::Set(f) | Reply::Array(f) => f
            .iter()
            .filter_map(|x| x.as_text().map(str::to_string))
            .collect(),
        _ => return None,
    };
    let has = |f: &str| flags.iter().any(|x| x == f);
    let mut needs = 0;
    if has("access") {
        needs |= READ;
    }
    if has("insert") || has("delete") || has("update") {
        needs |= WRITE;
    }
    let int = |r: &Reply, k: &str| -> Option<i64> {
        let Reply::Map(m) = r else { return None };
        let (_, v) = m.iter().find(|(n, _)| n.as_text() == Some(k))?;
        match v {
            Reply::Integer(i) => Some(*i),
            _ => None,
        }
    };
    let spec_of = |part: &str| -> Option<&Reply> {
        let Reply::Map(m) = get(part)? else {
            return None;
        };
        m.iter()
            .find(|(n, _)| n.as_text() == Some("spec"))
            .map(|(_, v)| v)
    };
    let kind = |part: &str| -> Option<String> {
        let Reply::Map(m) = get(part)? else {
            return None;
        };
        m.iter()
            .find(|(n, _)| n.as_text() == Some("type"))
            .and_then(|(_, v)| v.as_text().map(str::to_string))
    };
    let begin = int(spec_of("begin_search")?, "index")? as usize;
    let find_spec = spec_of("find_keys")?;
    let find = match kind("find_keys")?.as_str() {
        "range" => Find::Range {
            last: int(find_spec, "lastkey")?,
            step: int(find_spec, "keystep")?.max(1) as usize,
            limit: int(find_spec, "limit")?,
        },
        "keynum" => Find::Keynum {
            count_at: int(find_spec, "keynumidx")? as usize,
            first: int(find_spec, "firstkey")? as usize,
            step: int(find_spec, "keystep")?.max(1) as usize,
        },
        _ => return None,
    };
    Some(KeySpec { begin, find, needs })
}

/// The key arguments of a call, by index, with what the command does to
/// each (`READ`, `WRITE`, or 0: touches it without reading or writing).
fn keys_of(specs: &[KeySpec], args: &[Bytes]) -> Vec<(usize, u8)> {
    let n = args.len();
    let mut out = Vec::new();
    for s in specs {
        if s.begin >= n {
            continue;
        }
        match s.find {
            Find::Range { last, step, limit } => {
                let end = if last >= 0 {
                    s.begin + last as usize
                } else if limit > 1 {
                    s.begin + (n - 1 - s.begin) / limit as usize
                } else {
                    (n as i64 + last).max(0) as usize
                };
                let end = end.min(n - 1);
                out.extend((s.begin..=end).step_by(step).map(|i| (i, s.needs)));
            }
            Find::Keynum {
                count_at,
                first,
                step,
            } => {
                let count = args
                    .get(s.begin + count_at)
                    .and_then(|c| std::str::from_utf8(c).ok()?.parse::<usize>().ok())
                    .unwrap_or(0);
                let start = s.begin + first;
                out.extend(
                    (0..count)
                        .map(|k| start + k * step)
                        .take_while(|&i| i < n)
                        .map(|i| (i, s.needs)),
                );
            }
        }
    }
    out
}

/// Why a call is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The command (its full name, `config|set` for a subcommand).
    Command(String),
    /// A key (the argument).
    Key(Bytes),
}

/// A user's rules, compiled for the check before every command.
#[derive(Debug)]
pub struct Perms {
    /// Everything allowed: no check at all.
    pub unrestricted: bool,
    bits: Vec<bool>,
    /// `+cmd|arg` allowances: (bit, lower-case first argument).
    first_args: Vec<(usize, String)>,
    all_keys: bool,
    keys: Vec<(Bytes, u8)>,
}

impl Perms {
    /// Compiles `user`'s rules.
    pub fn of(user: &User) -> Perms {
        let u = universe();
        let mut bits = vec![user.all_commands; u.names.len()];
        let mut first_args: Vec<(usize, String)> = Vec::new();
        for rule in &user.command_rules {
            let (allow, what) = (rule.starts_with('+'), &rule[1..]);
            let mut set = |i: usize, first_args: &mut Vec<(usize, String)>| {
                bits[i] = allow;
                first_args.retain(|(b, _)| *b != i);
            };
            if let Some(cat) = what.strip_prefix('@') {
                let Some(bit) = u.category(cat) else { continue };
                for (i, c) in u.categories.iter().enumerate() {
                    if c & bit != 0 {
                        set(i, &mut first_args);
                    }
                }
            } else if let Some(&i) = u.index.get(what) {
                set(i, &mut first_args);
                for &sub in u.containers.get(what).map(Vec::as_slice).unwrap_or(&[]) {
                    set(sub, &mut first_args);
                }
            } else if let Some((cmd, arg)) = what.rsplit_once('|') {
                if let Some(&i) = u.index.get(cmd) {
                    first_args.push((i, arg.to_string()));
                }
            }
        }
        let unrestricted = bits.iter().all(|b| *b) && user.all_keys;
        Perms {
            unrestricted,
            bits,
            first_args,
            all_keys: user.all_keys,
            keys: user.keys.clone(),
        }
    }

    /// Nothing allowed (a user deleted while its client was connected).
    pub fn none() -> Perms {
        Perms {
            unrestricted: false,
            bits: vec![false; universe().names.len()],
            first_args: Vec::new(),
            all_keys: false,
            keys: Vec::new(),
        }
    }

    /// Whether the call `args` of `spec` is allowed; if not, why.
    pub fn check(&self, spec: &table::Spec, args: &[Bytes]) -> Result<(), Denied> {
        if self.unrestricted || spec.has(table::NO_AUTH) {
            return Ok(());
        }
        let u = universe();
        let Some(bit) = u.bit_of(spec, args) else {
            return Ok(());
        };
        let first_arg_ok = || {
            let Some(a) = args.get(1) else { return false };
            let a = String::from_utf8_lossy(a).to_ascii_lowercase();
            self.first_args.iter().any(|(b, x)| *b == bit && *x == a)
        };
        if !self.bits[bit] && !first_arg_ok() {
            return Err(Denied::Command(u.names[bit].clone()));
        }
        if self.all_keys {
            return Ok(());
        }
        // SET's key spec has variable flags: without GET it only writes
        // (Redis's `setGetKeys`).
        let write_only =
            spec.name == "set" && !args[3..].iter().any(|a| a.eq_ignore_ascii_case(b"GET"));
        for (i, needs) in keys_of(&u.specs[bit], args) {
            let needs = if write_only { WRITE } else { needs };
            let key = &args[i];
            let ok = self
                .keys
                .iter()
                .any(|(p, perms)| perms & needs == needs && crate::resp::glob::matches(p, key));
            if !ok {
                return Err(Denied::Key(key.clone()));
            }
        }
        Ok(())
    }
}
