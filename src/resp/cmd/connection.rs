//! Connection commands: PING, ECHO, AUTH, HELLO, QUIT, RESET, SELECT,
//! READONLY and READWRITE.
//!
//! They change only the connection, answer at once, and follow Redis
//! 7.0's `networking.c` and `server.c` word for word. Where ringkv
//! differs it says so: SELECT of a database other than 0 is refused, as
//! Redis Cluster refuses it, and READONLY and READWRITE (which only a
//! cluster-mode Redis accepts) are accepted as no-ops, since every ringkv
//! node serves reads and writes of every key.

use bytes::Bytes;

use super::{parse_int, wrong_args, Call, Run};
use crate::acl::log::{Event, Reason};
use crate::node::shared::Shared;
use crate::resp::codec::{Proto, Reply};
use crate::resp::conn::ConnState;

/// The Redis version ringkv answers as (HELLO, INFO): the release whose
/// replies it reproduces. HELLO's reply is Redis's, field for field;
/// ringkv's own version is INFO's `ringkv_version`.
pub const REDIS_VERSION: &str = "7.0.15";

/// PING [message]
pub fn ping(call: Call<'_>) -> Run {
    Run::Now(match call.args.len() {
        1 => Reply::simple("PONG"),
        2 => Reply::Bulk(call.args[1].clone()),
        _ => wrong_args("ping"),
    })
}

/// ECHO message
pub fn echo(call: Call<'_>) -> Run {
    Run::Now(Reply::Bulk(call.args[1].clone()))
}

/// QUIT: +OK, then the connection closes after the replies before it.
pub fn quit(call: Call<'_>) -> Run {
    call.conn.closing = true;
    Run::Now(Reply::ok())
}

/// SELECT index: only database 0 exists.
pub fn select(call: Call<'_>) -> Run {
    Run::Now(match parse_int(&call.args[1]) {
        None => Reply::err("value is not an integer or out of range"),
        Some(0) => Reply::ok(),
        Some(_) => {
            Reply::err("DB index is out of range (ringkv has only database 0, as Redis Cluster)")
        }
    })
}

/// READONLY / READWRITE: accepted; every node serves every key.
pub fn readonly(_call: Call<'_>) -> Run {
    Run::Now(Reply::ok())
}

/// AUTH [username] password
pub fn auth(call: Call<'_>) -> Run {
    let Call {
        shared, conn, args, ..
    } = call;
    let (user, given) = match &args[..] {
        [_, pass] => (Bytes::from_static(b"default"), pass),
        [_, user, pass] => (user.clone(), pass),
        _ => return Run::Now(super::syntax_error()),
    };
    if args.len() == 2 && shared.acl.default_needs_no_auth() {
        return Run::Now(Reply::err("AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"));
    }
    Run::Now(match authenticate(shared, conn, &args[0], user, given) {
        Ok(()) => Reply::ok(),
        Err(reply) => reply,
    })
}

/// Logs `conn` in as `user` if `given` is one of its passwords (or it
/// needs none) and it is on; otherwise records the failure (ACL LOG, and
/// a rate-limited log line without the password) and answers Redis's
/// WRONGPASS. `typed` is the command as the client typed it.
fn authenticate(
    shared: &Shared,
    conn: &mut ConnState,
    typed: &Bytes,
    user: Bytes,
    given: &[u8],
) -> Result<(), Reply> {
    let ok = (shared.acl.users().get(&user)).is_some_and(|e| e.user.password_ok(given));
    if ok {
        conn.authed = true;
        conn.set_user(&shared.acl, user);
        return Ok(());
    }
    let now = crate::clock::instant();
    if let Some(held_back) = crate::auth::CLIENT_AUTH_FAILURES.check(now) {
        tracing::warn!(
            conn = conn.id(),
            user = %String::from_utf8_lossy(&user),
            held_back,
            "client AUTH failed: wrong user name or password, or the user is off"
        );
    }
    shared.acl.log.add(
        Event {
            reason: Reason::Auth,
            multi: conn.multi.is_some(),
            object: typed.clone(),
            username: user,
            client_info: super::client::describe(&conn.info, now),
        },
        now,
    );
    Err(Reply::error_code(
        "WRONGPASS",
        "invalid username-password pair or user is disabled.",
    ))
}

/// HELLO [protover [AUTH username password] [SETNAME clientname]]
pub fn hello(call: Call<'_>) -> Run {
    let Call {
        shared, conn, args, ..
    } = call;
    let mut proto = None;
    if let Some(v) = args.get(1) {
        match parse_int(v) {
            None => {
                return Run::Now(Reply::err(
                    "Protocol version is not an integer or out of range",
                ))
            }
            Some(2) => proto = Some(Proto::Resp2),
            Some(3) => proto = Some(Proto::Resp3),
            Some(_) => {
                return Run::Now(Reply::error_code("NOPROTO", "unsupported protocol version"))
            }
        }
    }
    let mut j = 2;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let opt = super::upper(&args[j]);
        if opt == "AUTH" && more >= 2 {
            let (user, pass) = (args[j + 1].clone(), &args[j + 2]);
            if let Err(reply) = authenticate(shared, conn, &args[0], user, pass) {
                return Run::Now(reply);
            }
            j += 3;
        } else if opt == "SETNAME" && more >= 1 {
            if let Err(reply) = set_name(conn, &args[j + 1]) {
                return Run::Now(reply);
            }
            j += 2;
        } else {
            return Run::Now(Reply::err(format!(
                "Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&args[j])
            )));
        }
    }
    if !conn.authed {
        return Run::Now(Reply::error_code("NOAUTH", "HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"));
    }
    if let Some(proto) = proto {
        conn.proto = proto;
        conn.info.details().resp = proto.number() as u8;
    }
    Run::Now(Reply::map([
        ("server", Reply::bulk("redis")),
        ("version", Reply::bulk(REDIS_VERSION)),
        ("proto", Reply::Integer(conn.proto.number())),
        ("id", Reply::Integer(conn.id() as i64)),
        ("mode", Reply::bulk("standalone")),
        ("role", Reply::bulk("master")),
        ("modules", Reply::Array(Vec::new())),
    ]))
}

/// Sets the connection's name, refused as Redis refuses it: any byte
/// outside `!`..`~` (spaces, newlines, control and non-ASCII bytes). An
/// empty name clears it.
pub fn set_name(conn: &ConnState, name: &Bytes) -> Result<(), Reply> {
    if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(Reply::err(
            "Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    conn.info.details().name = (!name.is_empty()).then(|| name.clone());
    Ok(())
}

/// RESET: the connection as it was when it connected (RESP2, no name, no
/// transaction or watched keys, default quorums, and unauthenticated if a
/// password is required).
pub fn reset(call: Call<'_>) -> Run {
    let Call { shared, conn, .. } = call;
    conn.proto = Proto::Resp2;
    conn.authed = shared.acl.default_needs_no_auth();
    conn.set_user(&shared.acl, Bytes::from_static(b"default"));
    conn.quorum = shared.default_quorum();
    conn.multi = None;
    conn.last_write = None;
    {
        let mut d = conn.info.details();
        d.name = None;
        d.resp = 2;
        d.multi = -1;
        d.no_evict = false;
        d.no_touch = false;
    }
    // The watched keys are cleared in order with the barriers that use
    // them (see `cmd::multi`).
    let watched = conn.watched.clone();
    Run::later(async move {
        watched.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Reply::simple("RESET")
    })
}
