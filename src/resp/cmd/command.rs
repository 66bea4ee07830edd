//! COMMAND: COUNT, INFO, DOCS, LIST and HELP, from Redis's own metadata.
//!
//! What COMMAND says of a command ringkv has is what Redis 7.0 says of
//! it (arity, flags, key specs, ACL categories, docs), taken from Redis's
//! metadata (see `meta`), with subcommands ringkv lacks left out. redis-cli
//! 7 reads COMMAND DOCS at start for its hints, and client libraries read
//! COMMAND INFO for key positions.

use super::{help, meta, subcommand, Call, Run, TABLE};
use crate::resp::codec::Reply;
use crate::resp::glob;

pub(super) const SUBS: &[(&str, i32)] = &[
    ("HELP", 2),
    ("COUNT", 2),
    ("INFO", -2),
    ("DOCS", -2),
    ("LIST", -2),
];

const HELP: &[&str] = &[
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "HELP",
    "    Print this help.",
];

/// COMMAND [COUNT | INFO name... | DOCS name... | LIST | HELP]
pub fn command(call: Call<'_>) -> Run {
    let args = &call.args;
    if args.len() == 1 {
        return Run::Now(Reply::Array(
            TABLE
                .iter()
                .filter_map(|s| meta::command_info(s.name).cloned())
                .collect(),
        ));
    }
    let sub = match subcommand(args, "COMMAND", SUBS) {
        Ok(sub) => sub,
        Err(reply) => return Run::Now(reply),
    };
    let names = || {
        args[2..]
            .iter()
            .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
    };
    Run::Now(match sub {
        "HELP" => help(HELP),
        "COUNT" => Reply::Integer(TABLE.len() as i64),
        "INFO" if args.len() == 2 => Reply::Array(
            TABLE
                .iter()
                .filter_map(|s| meta::command_info(s.name).cloned())
                .collect(),
        ),
        "INFO" => Reply::Array(
            names()
                .map(|n| meta::command_info(&n).cloned().unwrap_or(Reply::Nil))
                .collect(),
        ),
        "DOCS" => {
            let wanted: Vec<String> = if args.len() == 2 {
                TABLE.iter().map(|s| s.name.to_string()).collect()
            } else {
                names().collect()
            };
            Reply::Map(
                wanted
                    .iter()
                    .filter_map(|n| {
                        meta::command_docs(n).map(|d| (Reply::bulk(n.clone()), d.clone()))
                    })
                    .collect(),
            )
        }
        "LIST" => list(&args[2..]),
        _ => super::syntax_error(),
    })
}

/// COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]:
/// every command ringkv has, each followed by its subcommands, as Redis
/// 7.0 lists them (Redis in its hash order). A pattern matches the full
/// name (`client|id`) in any case; ringkv has no modules, so MODULE lists
/// nothing; an unknown category lists nothing, as in Redis.
fn list(rest: &[bytes::Bytes]) -> Reply {
    let filter = match rest {
        [] => None,
        [by, kind, arg] if super::upper(by) == "FILTERBY" => {
            let kind = super::upper(kind);
            if !matches!(kind.as_str(), "MODULE" | "ACLCAT" | "PATTERN") {
                return super::syntax_error();
            }
            Some((kind, arg.to_ascii_lowercase()))
        }
        _ => return super::syntax_error(),
    };
    let keep = |name: &str| match &filter {
        None => true,
        Some((kind, pattern)) if kind == "PATTERN" => glob::matches(pattern, name.as_bytes()),
        Some((kind, category)) if kind == "ACLCAT" => meta::acl_categories(name)
            .iter()
            .any(|c| c.strip_prefix('@').map(str::as_bytes) == Some(&category[..])),
        Some(_) => false,
    };
    Reply::bulks(
        TABLE
            .iter()
            .flat_map(|s| std::iter::once(s.name).chain(meta::subcommands(s.name)))
            .filter(|name| keep(name)),
    )
}
