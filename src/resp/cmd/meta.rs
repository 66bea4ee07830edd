//! Redis's own command metadata: COMMAND INFO and DOCS entries, command
//! families, and CONFIG parameters with their defaults.
//!
//! ringkv answers COMMAND and CONFIG GET as Redis does, and client
//! libraries and redis-cli act on those answers (key positions, flags,
//! the hints redis-cli shows as you type). A table written by hand would
//! drift from Redis one field at a time; this one is what Redis says of
//! itself. `tools/redis-meta.py` starts a pristine `redis-server` 7.0.15,
//! asks it in RESP3 for the COMMAND INFO and DOCS entry of every command
//! in ringkv's table, the group of every command it has, and `CONFIG GET
//! *`, and writes the answers to `redis-7.0.15.json` as RESP3 type trees
//! (the format is in `meta/tree.rs` and `tools/README.md`). ringkv
//! re-encodes a tree for either protocol, so its entries are Redis's bytes.
//!
//! What that Redis lacks is written by hand in `supplement.json`: CLIENT
//! SETINFO and NO-TOUCH (Redis 7.2), merged into CLIENT's entries, and
//! ringkv's own RINGKV. For the container commands (CLIENT, CONFIG,
//! COMMAND) only the subcommands ringkv has are kept, sorted by name.
//!
//! Both files are embedded and parsed once, on first use. A parse error
//! is a bug in the files, not a condition of a running node: the unit
//! tests parse everything, so `cargo test` fails on it first. The tests
//! also check every row of the command table (arity, keys, flags) and the
//! subcommand tables of CLIENT, CONFIG and COMMAND against this data.
//!
//! Deliberately left out: Redis's hidden parameters (CONFIG GET * does not
//! list them, so they are unknown here), and the subcommands of containers
//! ringkv lacks.

mod tree;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::Deserialize;

use crate::resp::codec::Reply;
use tree::Tree;

/// The generated file: Redis's answers (`tools/redis-meta.py`).
const GENERATED: &str = include_str!("redis-7.0.15.json");
/// The hand-written entries for what that Redis lacks.
const SUPPLEMENT: &str = include_str!("supplement.json");

/// Where an entry's subcommands are: COMMAND INFO's tenth element.
const INFO_SUBCOMMANDS: usize = 9;

#[derive(Deserialize)]
struct Generated {
    redis_version: String,
    absent: Vec<String>,
    commands: BTreeMap<String, Entry>,
    groups: BTreeMap<String, String>,
    redis_subcommands: BTreeMap<String, Vec<String>>,
    config_normalized: Vec<String>,
    config: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Supplement {
    subcommands: BTreeMap<String, Entry>,
    commands: BTreeMap<String, Entry>,
}

/// A command's two entries.
#[derive(Deserialize)]
struct Entry {
    info: Tree,
    docs: Tree,
}

/// The metadata, parsed and merged.
struct Meta {
    redis_version: String,
    /// COMMAND INFO entries by lower-case full name (`client|id` too).
    info: HashMap<String, Reply>,
    /// COMMAND DOCS entries (the map value), likewise.
    docs: HashMap<String, Reply>,
    /// The group of every command Redis has.
    groups: HashMap<String, String>,
    /// The full names of every subcommand Redis has (`memory|doctor`).
    redis_subcommands: std::collections::HashSet<String>,
    /// The commands Redis has subcommands of.
    redis_containers: std::collections::HashSet<String>,
    config: Vec<(String, String)>,
    config_normalized: Vec<String>,
}

fn meta() -> &'static Meta {
    static META: OnceLock<Meta> = OnceLock::new();
    META.get_or_init(|| load().unwrap_or_else(|e| panic!("embedded command metadata: {e}")))
}

/// Parses both files and merges the supplement in.
fn load() -> Result<Meta, String> {
    let generated: Generated =
        serde_json::from_str(GENERATED).map_err(|e| format!("redis-7.0.15.json: {e}"))?;
    let supplement: Supplement =
        serde_json::from_str(SUPPLEMENT).map_err(|e| format!("supplement.json: {e}"))?;
    let mut commands = generated.commands;
    for (name, entry) in supplement.subcommands {
        add_subcommand(&mut commands, &name, entry)?;
    }
    for (name, entry) in supplement.commands {
        if commands.insert(name.clone(), entry).is_some() {
            return Err(format!(
                "supplement.json: {name} is in the generated file too"
            ));
        }
    }
    let mut info = HashMap::new();
    let mut docs = HashMap::new();
    for (name, Entry { info: i, docs: d }) in commands {
        for sub in subcommands_info(&i.0)? {
            info.insert(info_name(sub)?, sub.clone());
        }
        for (sub, entry) in subcommands_docs(&d.0)? {
            docs.insert(bulk_text(sub)?, entry.clone());
        }
        info.insert(name.clone(), i.0);
        docs.insert(name, d.0);
    }
    for name in &generated.absent {
        if !info.contains_key(name) || !docs.contains_key(name) {
            return Err(format!(
                "{name}: absent from Redis and not in supplement.json"
            ));
        }
    }
    Ok(Meta {
        redis_version: generated.redis_version,
        info,
        docs,
        groups: generated.groups.into_iter().collect(),
        redis_containers: generated.redis_subcommands.keys().cloned().collect(),
        redis_subcommands: generated
            .redis_subcommands
            .into_values()
            .flatten()
            .collect(),
        config: generated.config.into_iter().collect(),
        config_normalized: generated.config_normalized,
    })
}

/// Adds subcommand `name` (`parent|sub`) to its parent's INFO and DOCS
/// entries, keeping them sorted by name.
fn add_subcommand(
    commands: &mut BTreeMap<String, Entry>,
    name: &str,
    entry: Entry,
) -> Result<(), String> {
    let parent = name.split_once('|').map_or(name, |(p, _)| p);
    let Some(p) = commands.get_mut(parent) else {
        return Err(format!("supplement.json: {name}: no command {parent}"));
    };
    let Some(Reply::Array(subs)) = array_field(&mut p.info.0, INFO_SUBCOMMANDS) else {
        return Err(format!("{parent}: INFO entry has no subcommand list"));
    };
    subs.push(entry.info.0);
    subs.sort_by_key(|s| info_name(s).unwrap_or_default());
    let Some(Reply::Map(subs)) = map_field(&mut p.docs.0, "subcommands") else {
        return Err(format!("{parent}: DOCS entry has no subcommands"));
    };
    subs.push((Reply::bulk(name.to_string()), entry.docs.0));
    subs.sort_by_key(|(k, _)| bulk_text(k).unwrap_or_default());
    Ok(())
}

fn array_field(reply: &mut Reply, i: usize) -> Option<&mut Reply> {
    match reply {
        Reply::Array(items) => items.get_mut(i),
        _ => None,
    }
}

fn map_field<'a>(reply: &'a mut Reply, key: &str) -> Option<&'a mut Reply> {
    match reply {
        Reply::Map(pairs) => pairs
            .iter_mut()
            .find(|(k, _)| matches!(k, Reply::Bulk(b) if b == key.as_bytes()))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// The INFO entries of an INFO entry's subcommands (none for most).
fn subcommands_info(info: &Reply) -> Result<&[Reply], String> {
    match info {
        Reply::Array(fields) => match fields.get(INFO_SUBCOMMANDS) {
            Some(Reply::Array(subs) | Reply::Set(subs)) => Ok(subs),
            _ => Err(format!("INFO entry without subcommand list: {info:?}")),
        },
        _ => Err(format!("INFO entry is not an array: {info:?}")),
    }
}

/// The `(name, docs)` pairs of a DOCS entry's subcommands (none for most).
fn subcommands_docs(docs: &Reply) -> Result<&[(Reply, Reply)], String> {
    match docs {
        Reply::Map(pairs) => Ok(pairs
            .iter()
            .find(|(k, _)| matches!(k, Reply::Bulk(b) if &b[..] == b"subcommands"))
            .map_or(&[][..], |(_, v)| match v {
                Reply::Map(subs) => &subs[..],
                _ => &[],
            })),
        _ => Err(format!("DOCS entry is not a map: {docs:?}")),
    }
}

/// An INFO entry's first element, the command's full name.
fn info_name(info: &Reply) -> Result<String, String> {
    match info {
        Reply::Array(fields) if !fields.is_empty() => bulk_text(&fields[0]),
        _ => Err(format!("INFO entry without a name: {info:?}")),
    }
}

fn bulk_text(reply: &Reply) -> Result<String, String> {
    match reply {
        Reply::Bulk(b) => String::from_utf8(b.to_vec()).map_err(|e| e.to_string()),
        other => Err(format!("expected a bulk string, got {other:?}")),
    }
}

/// The family of a Redis command ringkv does not have ("lists", "sorted
/// sets"...), for its unknown-command error; `None` for a command ringkv
/// has, a name Redis does not have, and a command of a group ringkv has in
/// part (strings, generic key commands, server, connection, transactions),
/// where naming the group would mislead.
pub fn missing_family(name: &[u8]) -> Option<&'static str> {
    if super::lookup(name).is_some() {
        return None;
    }
    let name = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
    Some(match meta().groups.get(&name)?.as_str() {
        "list" => "lists",
        "sorted-set" => "sorted sets",
        "stream" => "streams",
        "pubsub" => "pub/sub",
        "scripting" => "scripting",
        "geo" => "geo",
        "hyperloglog" => "hyperloglog",
        "bitmap" => "bitmaps",
        "cluster" => "Redis Cluster commands",
        _ => return None,
    })
}

/// Whether Redis 7.0 has a command `name` (lower-case, top level), whether
/// or not ringkv does: ACL rules may name it.
pub fn is_redis_command(name: &str) -> bool {
    let m = meta();
    m.groups.contains_key(name) || m.info.contains_key(name) || m.redis_subcommands.contains(name)
}

/// Whether Redis 7.0 has subcommands of `name` (lower-case).
pub fn is_redis_container(name: &str) -> bool {
    meta().redis_containers.contains(name)
}

/// COMMAND INFO's entry for `name` (any case; `client|id` for a
/// subcommand), if ringkv has the command.
pub fn command_info(name: &str) -> Option<&'static Reply> {
    meta().info.get(&name.to_ascii_lowercase())
}

/// Whether Redis refuses `name` past `maxmemory` (its `denyoom` flag: a
/// write that may add data; DEL and the reads are not).
pub fn denyoom(name: &str) -> bool {
    let Some(Reply::Array(info)) = command_info(name) else {
        return false;
    };
    matches!(info.get(2), Some(Reply::Set(flags) | Reply::Array(flags))
        if flags.iter().any(|f| matches!(f, Reply::Simple(s) if s == "denyoom")))
}

/// COMMAND DOCS's entry (the value under the name) for `name`, if ringkv
/// has the command.
pub fn command_docs(name: &str) -> Option<&'static Reply> {
    meta().docs.get(&name.to_ascii_lowercase())
}

/// The full names of the subcommands ringkv has of `name` (`client|id`
/// ...), sorted by name; none for a command without subcommands.
pub fn subcommands(name: &str) -> Vec<&'static str> {
    let subs = command_info(name).and_then(|info| subcommands_info(info).ok());
    subs.unwrap_or_default()
        .iter()
        .filter_map(|sub| match sub {
            Reply::Array(fields) => match fields.first() {
                Some(Reply::Bulk(b)) => std::str::from_utf8(b).ok(),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The ACL categories of `name` (`@read`, `@fast`...), as COMMAND INFO
/// lists them; none for a command ringkv does not have.
pub fn acl_categories(name: &str) -> Vec<&'static str> {
    let categories = match command_info(name) {
        Some(Reply::Array(fields)) => fields.get(6),
        _ => None,
    };
    match categories {
        Some(Reply::Set(cats)) => cats
            .iter()
            .filter_map(|c| match c {
                Reply::Simple(s) => Some(s.as_ref()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Every Redis configuration parameter CONFIG GET * lists, aliases
/// included, with its default value, sorted by name.
pub fn config_defaults() -> &'static [(String, String)] {
    &meta().config
}

/// The parameters whose recorded default is Redis's built-in one rather
/// than what the generator's server had (it chose their values when it
/// started it): port, bind, save, dir. ringkv answers these itself.
pub fn config_normalized() -> &'static [String] {
    &meta().config_normalized
}

/// The Redis release the data came from.
pub fn redis_version() -> &'static str {
    &meta().redis_version
}
