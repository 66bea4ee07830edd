//! ACL: Redis 7.0's user commands over the cluster's users (see
//! [`crate::acl`]). SETUSER and DELUSER change the metadata record and
//! answer once every node up has it on disk; the others read this node's
//! copy, which every node shares.
//!
//! Differences from Redis, each stated in its reply: selectors (`(...)`)
//! are refused; ACL LOAD and SAVE answer as a Redis without an ACL file
//! does (users live in the record, not in a file); GETUSER and LIST show
//! the command rules in the order given (see `acl/user.rs`).

use bytes::Bytes;
use rand::RngCore;

use super::{help, parse_int, subcommand, Call, Run};
use crate::acl::perm::{universe, CATEGORIES};
use crate::acl::{entry_name, user::valid_name, Denied, User};
use crate::resp::codec::Reply;

/// ACL's subcommands with Redis's arities.
const SUBS: &[(&str, i32)] = &[
    ("CAT", -2),
    ("DELUSER", -3),
    ("DRYRUN", -4),
    ("GENPASS", -2),
    ("GETUSER", 3),
    ("HELP", 2),
    ("LIST", 2),
    ("LOAD", 2),
    ("LOG", -2),
    ("SAVE", 2),
    ("SETUSER", -3),
    ("USERS", 2),
    ("WHOAMI", 2),
];

const HELP: &[&str] = &[
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Prints this help.",
];

/// ACL subcommand ...
pub fn acl(call: Call<'_>) -> Run {
    let sub = match subcommand(&call.args, "ACL", SUBS) {
        Ok(sub) => sub,
        Err(reply) => return Run::Now(reply),
    };
    let wrong = |call: &Call<'_>| {
        Reply::err(format!(
            "unknown subcommand or wrong number of arguments for '{}'. Try ACL HELP.",
            String::from_utf8_lossy(&call.args[1])
        ))
    };
    let acl = &call.shared.acl;
    Run::Now(match sub {
        "HELP" => help(HELP),
        "WHOAMI" => Reply::Bulk(call.conn.info.details().user.clone()),
        "USERS" => Reply::Array(acl.users().all().map(|e| Reply::Bulk(e.user.name.clone())).collect()),
        "LIST" => Reply::Array(acl.users().all().map(|e| Reply::bulk(e.user.line())).collect()),
        "GETUSER" => match acl.users().get(&call.args[2]) {
            Some(e) => getuser(&e.user),
            None => Reply::Nil,
        },
        "CAT" if call.args.len() > 3 => wrong(&call),
        "CAT" => cat(call.args.get(2)),
        "GENPASS" if call.args.len() > 3 => wrong(&call),
        "GENPASS" => genpass(call.args.get(2)),
        "LOG" if call.args.len() > 3 => wrong(&call),
        "LOG" => log(&call),
        "DRYRUN" => dryrun(&call),
        "LOAD" | "SAVE" => Reply::err(
            "This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.",
        ),
        "SETUSER" => return setuser(call),
        "DELUSER" => return deluser(call),
        _ => unreachable!("every subcommand of SUBS is handled"),
    })
}

fn getuser(u: &User) -> Reply {
    let flags = u.flags().into_iter().map(Reply::bulk).collect();
    let passwords = u.passwords.iter().map(|p| Reply::bulk(p.clone())).collect();
    Reply::map([
        ("flags", Reply::Set(flags)),
        ("passwords", Reply::Array(passwords)),
        ("commands", Reply::bulk(u.describe_commands())),
        ("keys", Reply::bulk(u.describe_keys())),
        ("channels", Reply::bulk(u.describe_channels())),
        ("selectors", Reply::Array(Vec::new())),
    ])
}

fn cat(category: Option<&Bytes>) -> Reply {
    let Some(c) = category else {
        return Reply::bulks(CATEGORIES);
    };
    let u = universe();
    match u.category(&String::from_utf8_lossy(c).to_ascii_lowercase()) {
        Some(bit) => Reply::bulks(
            u.in_category(bit)
                .into_iter()
                .map(|n| Bytes::from(n.to_string())),
        ),
        None => Reply::err(format!(
            "Unknown category '{}'",
            String::from_utf8_lossy(&c[..c.len().min(128)])
        )),
    }
}

fn genpass(bits: Option<&Bytes>) -> Reply {
    let bits = match bits.map(|b| parse_int(b)) {
        None => 256,
        Some(None) => return Reply::err("value is not an integer or out of range"),
        Some(Some(b)) if b <= 0 || b > 4096 => return Reply::err(
            "ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096",
        ),
        Some(Some(b)) => b as usize,
    };
    let chars = bits.div_ceil(4);
    let mut raw = vec![0u8; chars.div_ceil(2)];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let mut text = hex::encode(raw);
    text.truncate(chars);
    Reply::bulk(text)
}

fn log(call: &Call<'_>) -> Reply {
    let log = &call.shared.acl.log;
    let count = match call.args.get(2) {
        None => 10,
        Some(a) if a.eq_ignore_ascii_case(b"RESET") => {
            log.reset();
            return Reply::ok();
        }
        Some(a) => match parse_int(a) {
            Some(n) => n.max(0) as usize,
            None => return Reply::err("value is not an integer or out of range"),
        },
    };
    log.reply(count, crate::clock::instant())
}

fn dryrun(call: &Call<'_>) -> Reply {
    let (name, cmd) = (&call.args[2], &call.args[3..]);
    let Some(entry) = call.shared.acl.users().get(name).cloned() else {
        return Reply::err(format!(
            "User '{}' not found",
            String::from_utf8_lossy(name)
        ));
    };
    let Some(spec) = super::lookup(&cmd[0]) else {
        return Reply::err(format!(
            "Command '{}' not found",
            String::from_utf8_lossy(&cmd[0])
        ));
    };
    if !spec.arity_ok(cmd.len()) {
        return super::wrong_args(spec.name);
    }
    match entry.perms.check(spec, cmd) {
        Ok(()) => Reply::ok(),
        Err(Denied::Command(c)) => Reply::bulk(format!(
            "This user has no permissions to run the '{c}' command"
        )),
        Err(Denied::Key(k)) => Reply::bulk(format!(
            "This user has no permissions to access the '{}' key",
            String::from_utf8_lossy(&k)
        )),
    }
}

fn setuser(call: Call<'_>) -> Run {
    let name = call.args[2].clone();
    if !valid_name(&name) {
        return Run::Now(Reply::err(
            "Usernames can't contain spaces or null characters",
        ));
    }
    let shared = call.shared.clone();
    let base = match shared.acl.users().get(&name) {
        Some(e) => e.user.clone(),
        None => User::new(name.clone()),
    };
    let user = match base.with_rules(&call.args[3..]) {
        Ok(user) => user,
        Err(why) => return Run::Now(Reply::err(why)),
    };
    if let Err(e) = shared.check_all_speak_metadata() {
        return Run::Now(super::error_reply(&e));
    }
    Run::later(async move {
        let version = shared.stamp();
        match shared
            .spread(&entry_name(&name), version, Bytes::from(user.line()))
            .await
        {
            Ok(_) => Reply::ok(),
            Err(e) => super::error_reply(&e),
        }
    })
}

fn deluser(call: Call<'_>) -> Run {
    let names = &call.args[2..];
    if names.iter().any(|n| &n[..] == b"default") {
        return Run::Now(Reply::err("The 'default' user cannot be removed"));
    }
    let users = call.shared.acl.users();
    let mut doomed: Vec<Bytes> = names
        .iter()
        .filter(|n| users.get(n).is_some())
        .cloned()
        .collect();
    doomed.sort();
    doomed.dedup();
    // Deleting its own user closes the connection after the reply: it
    // is taken out of the user's connections that the deletion closes at
    // once (no user name has a NUL), and closes itself once answered.
    if doomed.contains(&call.conn.info.details().user) {
        call.conn.closing = true;
        call.conn.info.details().user = Bytes::from_static(b"\0deleted");
    }
    let shared = call.shared.clone();
    if let Err(e) = shared.check_all_speak_metadata() {
        return Run::Now(super::error_reply(&e));
    }
    Run::later(async move {
        let count = doomed.len() as i64;
        for name in doomed {
            let version = shared.stamp();
            if let Err(e) = shared
                .spread(&entry_name(&name), version, Bytes::new())
                .await
            {
                return super::error_reply(&e);
            }
        }
        Reply::Integer(count)
    })
}
