//! The embedded metadata parses, and ringkv's tables agree with it.

use super::*;
use crate::resp::cmd::table::{NO_AUTH, READONLY, TABLE, WRITE};
use crate::resp::cmd::{client, command, connection, server};
use crate::resp::codec::Proto;

/// Rows of the command table that differ from Redis on purpose, with the
/// reason. Today there are none: every row has Redis's arity, keys and
/// flags.
const DELIBERATE: &[(&str, &str)] = &[];

/// The fields of an INFO entry the table has: arity, flags, first, last, step.
fn info_fields(name: &str) -> (i64, Vec<String>, i64, i64, i64) {
    let Some(Reply::Array(f)) = command_info(name) else {
        panic!("{name}: no INFO entry");
    };
    let int = |i: usize| match &f[i] {
        Reply::Integer(n) => *n,
        other => panic!("{name}: field {i} is {other:?}"),
    };
    let Reply::Set(flags) = &f[2] else {
        panic!("{name}: flags are {:?}", f[2]);
    };
    let flags = flags
        .iter()
        .map(|r| match r {
            Reply::Simple(s) => s.to_string(),
            other => panic!("{name}: flag {other:?}"),
        })
        .collect();
    (int(1), flags, int(3), int(4), int(5))
}

#[test]
fn the_embedded_data_parses_and_covers_every_command() {
    let meta = load().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(meta.redis_version, connection::REDIS_VERSION);
    for spec in TABLE {
        assert!(meta.info.contains_key(spec.name), "{}: no INFO", spec.name);
        assert!(meta.docs.contains_key(spec.name), "{}: no DOCS", spec.name);
    }
    // Every entry re-encodes (no tree is malformed for either protocol).
    for reply in meta.info.values().chain(meta.docs.values()) {
        assert!(!reply.to_wire(Proto::Resp2).is_empty());
    }
    assert!(meta.groups.len() > 200, "every Redis command has a group");
    assert!(
        meta.config.windows(2).all(|w| w[0].0 < w[1].0),
        "config sorted"
    );
}

#[test]
fn every_table_row_has_redis_s_arity_keys_and_flags() {
    let mut wrong = Vec::new();
    for spec in TABLE {
        if let Some((_, why)) = DELIBERATE.iter().find(|(n, _)| *n == spec.name) {
            println!("{}: differs from Redis on purpose: {why}", spec.name);
            continue;
        }
        let (arity, flags, first, last, step) = info_fields(spec.name);
        let (f, l, s) = spec.key_args;
        if i64::from(spec.arity) != arity {
            wrong.push(format!(
                "{}: arity {} (Redis {arity})",
                spec.name, spec.arity
            ));
        }
        if (f as i64, i64::from(l), s as i64) != (first, last, step) {
            wrong.push(format!(
                "{}: keys {:?} (Redis ({first}, {last}, {step}))",
                spec.name, spec.key_args
            ));
        }
        for (flag, redis) in [
            (NO_AUTH, "no_auth"),
            (WRITE, "write"),
            (READONLY, "readonly"),
        ] {
            let in_redis = flags.iter().any(|f| f == redis);
            if spec.has(flag) != in_redis {
                wrong.push(format!(
                    "{}: {redis} is {} here, {in_redis} in Redis",
                    spec.name,
                    spec.has(flag)
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the command table differs from Redis:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn containers_list_the_subcommands_ringkv_has_with_their_arity() {
    for (container, subs) in [
        ("client", client::SUBS),
        ("config", server::CONFIG_SUBS),
        ("command", command::SUBS),
    ] {
        let Some(Reply::Array(f)) = command_info(container) else {
            panic!("{container}: no INFO entry");
        };
        let Reply::Array(listed) = &f[INFO_SUBCOMMANDS] else {
            panic!("{container}: no subcommand list");
        };
        let mut listed: Vec<String> = listed.iter().map(|s| info_name(s).unwrap()).collect();
        let mut ours: Vec<String> = subs
            .iter()
            .map(|(n, _)| format!("{container}|{}", n.to_ascii_lowercase()))
            .collect();
        assert!(listed.is_sorted(), "{container}: {listed:?}");
        listed.sort();
        ours.sort();
        assert_eq!(listed, ours, "{container}: INFO lists other subcommands");
        for (sub, arity) in subs {
            let full = format!("{container}|{}", sub.to_ascii_lowercase());
            assert_eq!(info_fields(&full).0, i64::from(*arity), "{full}: arity");
            assert!(command_docs(&full).is_some(), "{full}: no DOCS");
        }
        let Some(Reply::Map(docs)) = command_docs(container) else {
            panic!("{container}: no DOCS entry");
        };
        let subs_docs = docs
            .iter()
            .find(|(k, _)| *k == Reply::bulk("subcommands"))
            .map(|(_, v)| v);
        let Some(Reply::Map(subs_docs)) = subs_docs else {
            panic!("{container}: DOCS without subcommands");
        };
        let names: Vec<String> = subs_docs
            .iter()
            .map(|(k, _)| bulk_text(k).unwrap())
            .collect();
        assert_eq!(names, listed, "{container}: DOCS lists other subcommands");
    }
    assert!(
        command_info("client|pause").is_none(),
        "ringkv has no CLIENT PAUSE"
    );
    assert!(command_info("CLIENT|SETINFO").is_some(), "any case");
}

#[test]
fn families_ringkv_lacks_are_named() {
    for (name, family) in [
        (&b"lpush"[..], Some("lists")),
        (b"LPUSH", Some("lists")),
        (b"zadd", Some("sorted sets")),
        (b"xadd", Some("streams")),
        (b"subscribe", Some("pub/sub")),
        (b"eval", Some("scripting")),
        (b"geoadd", Some("geo")),
        (b"pfadd", Some("hyperloglog")),
        (b"setbit", Some("bitmaps")),
        (b"cluster", Some("Redis Cluster commands")),
        // Commands ringkv has, names Redis lacks, groups ringkv has in part.
        (b"get", None),
        (b"readonly", None),
        (b"ringkv", None),
        (b"nosuchcommand", None),
        (b"incr", None),
        (b"expire", None),
        (b"hset", None),
        (b"sadd", None),
        (b"\xff", None),
    ] {
        assert_eq!(
            missing_family(name),
            family,
            "{:?}",
            String::from_utf8_lossy(name)
        );
    }
}

#[test]
fn config_defaults_are_redis_s() {
    let get = |name: &str| {
        config_defaults()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("maxmemory"), Some("0"));
    assert_eq!(get("maxmemory-policy"), Some("noeviction"));
    assert_eq!(get("replica-priority"), get("slave-priority"), "aliases");
    assert_eq!(get("port"), Some("6379"), "normalized to the default");
    assert!(config_normalized().iter().all(|n| get(n).is_some()));
}

#[test]
fn entries_are_redis_s_bytes() {
    let get = command_info("get").unwrap().to_wire(Proto::Resp3);
    assert!(get.starts_with(b"*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n"));
    let get = command_info("get").unwrap().to_wire(Proto::Resp2);
    assert!(get.starts_with(b"*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n"));
}

#[test]
fn subcommands_and_acl_categories_are_read_from_the_entries() {
    assert_eq!(
        subcommands("CONFIG"),
        [
            "config|get",
            "config|help",
            "config|resetstat",
            "config|rewrite",
            "config|set"
        ]
    );
    assert!(subcommands("get").is_empty() && subcommands("lpush").is_empty());
    assert_eq!(acl_categories("get"), ["@read", "@string", "@fast"]);
    assert_eq!(acl_categories("client|setinfo"), ["@slow", "@connection"]);
    assert!(acl_categories("lpush").is_empty());
}
