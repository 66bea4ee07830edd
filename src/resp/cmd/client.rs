//! CLIENT: ID, INFO, LIST, KILL, SETNAME, GETNAME, SETINFO, NO-EVICT,
//! NO-TOUCH and HELP, as Redis 7.2's `networking.c` answers them (7.0
//! has neither SETINFO nor NO-TOUCH, and its CLIENT LIST lines end before
//! `lib-name`).
//!
//! CLIENT LIST and INFO describe ringkv's connections with Redis's fields,
//! so tools that parse them keep working; the buffer and memory fields,
//! which mean nothing here, are 0, and every client is a `normal` one of
//! the `default` user. NO-EVICT and NO-TOUCH are accepted and shown in the
//! flags; ringkv never evicts clients and keeps no access times. CLIENT
//! KILL aborts the killed connections' tasks (see `resp::conn`).

use std::time::Instant;

use bytes::Bytes;

use super::{help, parse_int, subcommand, syntax_error, Call, Run};
use crate::resp::codec::Reply;
use crate::resp::conn::{ClientInfo, ConnState};

pub(super) const SUBS: &[(&str, i32)] = &[
    ("HELP", 2),
    ("ID", 2),
    ("INFO", 2),
    ("LIST", -2),
    ("KILL", -3),
    ("SETNAME", 3),
    ("GETNAME", 2),
    ("SETINFO", 4),
    ("NO-EVICT", 3),
    ("NO-TOUCH", 3),
];

const HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "    * ID <client-id>",
    "      Kill connections by client id.",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "    * ID <client-id> [<client-id> ...]",
    "      Return clients of specified ids.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Will not touch LRU/LFU stats when this mode is on.",
    "HELP",
    "    Print this help.",
];

/// CLIENT <subcommand> ...
pub fn client(call: Call<'_>) -> Run {
    let sub = match subcommand(&call.args, "CLIENT", SUBS) {
        Ok(sub) => sub,
        Err(reply) => return Run::Now(reply),
    };
    let Call {
        shared, conn, args, ..
    } = call;
    Run::Now(match sub {
        "HELP" => help(HELP),
        "ID" => Reply::Integer(conn.id() as i64),
        "INFO" => {
            let mut text = describe(&conn.info, crate::clock::instant());
            text.push('\n');
            Reply::Verbatim(Bytes::from(text))
        }
        "LIST" => list(&shared.clients.list(), &args),
        "KILL" => kill(shared, conn, &args),
        "SETNAME" => match super::connection::set_name(conn, &args[2]) {
            Ok(()) => Reply::ok(),
            Err(reply) => reply,
        },
        "GETNAME" => Reply::bulk_or_nil(conn.info.details().name.clone()),
        "SETINFO" => set_info(conn, &args[2], &args[3]),
        "NO-EVICT" | "NO-TOUCH" => match super::upper(&args[2]).as_str() {
            on @ ("ON" | "OFF") => {
                let mut d = conn.info.details();
                let flag = if sub == "NO-EVICT" {
                    &mut d.no_evict
                } else {
                    &mut d.no_touch
                };
                *flag = on == "ON";
                Reply::ok()
            }
            _ => syntax_error(),
        },
        _ => syntax_error(),
    })
}

/// CLIENT SETINFO LIB-NAME|LIB-VER value
fn set_info(conn: &ConnState, attr: &Bytes, value: &Bytes) -> Reply {
    let attr_text = String::from_utf8_lossy(attr);
    let lib_name = match attr_text.to_ascii_uppercase().as_str() {
        "LIB-NAME" => true,
        "LIB-VER" => false,
        _ => return Reply::err(format!("Unrecognized option '{attr_text}'")),
    };
    if value.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Reply::err(format!(
            "{attr_text} cannot contain spaces, newlines or special characters."
        ));
    }
    let value = (!value.is_empty()).then(|| value.clone());
    let mut d = conn.info.details();
    if lib_name {
        d.lib_name = value;
    } else {
        d.lib_ver = value;
    }
    Reply::ok()
}

/// CLIENT LIST [TYPE type | ID id ...]
fn list(clients: &[std::sync::Arc<ClientInfo>], args: &[Bytes]) -> Reply {
    let now = crate::clock::instant();
    let mut out = String::new();
    let mut add = |c: &ClientInfo| {
        out.push_str(&describe(c, now));
        out.push('\n');
    };
    match args.get(2).map(|a| super::upper(a)).as_deref() {
        None => clients.iter().for_each(|c| add(c)),
        Some("TYPE") if args.len() == 4 => match super::upper(&args[3]).as_str() {
            "NORMAL" => clients.iter().for_each(|c| add(c)),
            "MASTER" | "REPLICA" | "SLAVE" | "PUBSUB" => {}
            _ => {
                return Reply::err(format!(
                    "Unknown client type '{}'",
                    String::from_utf8_lossy(&args[3])
                ))
            }
        },
        Some("ID") if args.len() > 3 => {
            for a in &args[3..] {
                let Some(id) = parse_int(a) else {
                    return Reply::err("Invalid client ID");
                };
                if let Some(c) = clients.iter().find(|c| c.id as i64 == id) {
                    add(c);
                }
            }
        }
        _ => return syntax_error(),
    }
    Reply::Verbatim(Bytes::from(out))
}

/// What CLIENT KILL should kill.
#[derive(Default)]
struct KillFilter {
    addr: Option<String>,
    laddr: Option<String>,
    id: Option<u64>,
    user: Option<Bytes>,
    /// A type that no ringkv client has (master, replica, pubsub).
    no_match: bool,
    skipme: bool,
}

/// CLIENT KILL addr | CLIENT KILL option value [option value ...]
fn kill(shared: &crate::node::shared::Shared, conn: &mut ConnState, args: &[Bytes]) -> Reply {
    let old_style = args.len() == 3;
    let filter = if old_style {
        KillFilter {
            addr: Some(String::from_utf8_lossy(&args[2]).into_owned()),
            ..KillFilter::default()
        }
    } else {
        match kill_filter(shared, args) {
            Ok(f) => f,
            Err(reply) => return reply,
        }
    };
    let me = conn.id();
    let matches = |c: &ClientInfo| {
        !filter.no_match
            && filter
                .addr
                .as_ref()
                .is_none_or(|a| *a == c.addr.to_string())
            && filter
                .laddr
                .as_ref()
                .is_none_or(|a| *a == c.laddr.to_string())
            && filter.id.is_none_or(|id| id == c.id)
            && filter.user.as_ref().is_none_or(|u| *u == c.details().user)
    };
    // This connection is never aborted from here: it is closed after
    // this reply instead, as Redis does.
    let close_me = !filter.skipme && matches(&conn.info);
    let killed = shared.clients.kill(Some(me), |c| matches(c)) + usize::from(close_me);
    if close_me {
        conn.closing = true;
    }
    match (old_style, killed) {
        (true, 0) => Reply::err("No such client"),
        (true, _) => Reply::ok(),
        (false, n) => Reply::Integer(n as i64),
    }
}

fn kill_filter(shared: &crate::node::shared::Shared, args: &[Bytes]) -> Result<KillFilter, Reply> {
    let mut f = KillFilter {
        skipme: true,
        ..KillFilter::default()
    };
    let mut i = 2;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return Err(syntax_error());
        };
        let text = String::from_utf8_lossy(value).into_owned();
        match super::upper(&args[i]).as_str() {
            "ID" => match parse_int(value) {
                Some(id) if id > 0 => f.id = Some(id as u64),
                _ => return Err(Reply::err("client-id should be greater than 0")),
            },
            "TYPE" => match text.to_ascii_uppercase().as_str() {
                "NORMAL" => {}
                "MASTER" | "REPLICA" | "SLAVE" | "PUBSUB" => f.no_match = true,
                _ => return Err(Reply::err(format!("Unknown client type '{text}'"))),
            },
            "ADDR" => f.addr = Some(text),
            "LADDR" => f.laddr = Some(text),
            "USER" if shared.acl.users().get(value).is_some() => f.user = Some(value.clone()),
            "USER" => return Err(Reply::err(format!("No such user '{text}'"))),
            "SKIPME" => match text.to_ascii_uppercase().as_str() {
                "YES" => f.skipme = true,
                "NO" => f.skipme = false,
                _ => return Err(syntax_error()),
            },
            _ => return Err(syntax_error()),
        }
        i += 2;
    }
    Ok(f)
}

/// One line of CLIENT LIST, with Redis 7.2's fields in Redis's order.
pub fn describe(c: &ClientInfo, now: Instant) -> String {
    let d = c.details().clone();
    let (age, idle) = c.age_and_idle(now);
    let mut flags = String::new();
    if d.multi >= 0 {
        flags.push('x');
    }
    if d.no_evict {
        flags.push('e');
    }
    if d.no_touch {
        flags.push('T');
    }
    if flags.is_empty() {
        flags.push('N');
    }
    let text = |b: &Option<Bytes>| {
        b.as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    let cmd = c
        .last_cmd()
        .and_then(|i| super::TABLE.get(i))
        .map_or("NULL", |s| s.name);
    format!(
        "id={} addr={} laddr={} fd={} name={} age={age} idle={idle} flags={flags} db=0 sub=0 psub=0 ssub=0 multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={cmd} user={} redir=-1 resp={} lib-name={} lib-ver={}",
        c.id,
        c.addr,
        c.laddr,
        c.fd,
        text(&d.name),
        d.multi,
        String::from_utf8_lossy(&d.user),
        d.resp,
        text(&d.lib_name),
        text(&d.lib_ver),
    )
}
