//! The permission check: commands, subcommands, first arguments and keys.

use super::*;

// ---------------------------------------------------------------------
// 6. The permission check.
// ---------------------------------------------------------------------

/// (rules, call, what the check answers)
type RulesCallResult<'a> = (&'a [&'a str], &'a [&'a str], Result<(), Denied>);

fn perms(rules: &[&str]) -> Perms {
    Perms::of(&user(rules))
}

#[test]
fn dangerous_commands_are_refused_by_their_full_name() {
    let p = perms(&["+@all", "-@dangerous", "~*"]);
    let cases: &[(&[&str], Result<(), Denied>)] = &[
        (&["GET", "k"], Ok(())),
        (&["SET", "k", "v"], Ok(())),
        (&["flushall"], denied_command("flushall")),
        (&["FLUSHALL", "ASYNC"], denied_command("flushall")),
        (&["FLUSHDB"], denied_command("flushdb")),
        (&["KEYS", "*"], denied_command("keys")),
        (&["CONFIG", "SET", "x", "y"], denied_command("config|set")),
        (&["config", "set", "x", "y"], denied_command("config|set")),
        (&["CONFIG", "GET", "x"], denied_command("config|get")),
        (
            &["CLIENT", "KILL", "ID", "1"],
            denied_command("client|kill"),
        ),
        (&["CLIENT", "ID"], Ok(())),
        (&["ACL", "SETUSER", "x"], denied_command("acl|setuser")),
        (&["ACL", "WHOAMI"], Ok(())),
    ];
    for (call, expected) in cases {
        assert_eq!(check(&p, call), *expected, "{call:?}");
    }
    assert!(!p.unrestricted);
}

#[test]
fn subcommands_have_their_own_bits() {
    let cases: &[RulesCallResult] = &[
        (
            &["-@all", "+client", "-client|kill"],
            &["CLIENT", "ID"],
            Ok(()),
        ),
        (
            &["-@all", "+client", "-client|kill"],
            &["CLIENT", "LIST"],
            Ok(()),
        ),
        (
            &["-@all", "+client", "-client|kill"],
            &["CLIENT", "KILL", "ID", "1"],
            denied_command("client|kill"),
        ),
        (
            &["-@all", "+client", "-client|kill"],
            &["GET", "k"],
            denied_command("get"),
        ),
        (
            &["+@all", "-client", "+client|id"],
            &["CLIENT", "ID"],
            Ok(()),
        ),
        (
            &["+@all", "-client", "+client|id"],
            &["CLIENT", "LIST"],
            denied_command("client|list"),
        ),
        (&["+@all", "-client", "+client|id"], &["GET", "k"], Ok(())),
        (&["-@all", "+config|get"], &["CONFIG", "GET", "x"], Ok(())),
        (&["-@all", "+config|get"], &["config", "Get", "x"], Ok(())),
        (
            &["-@all", "+config|get"],
            &["CONFIG", "SET", "x", "y"],
            denied_command("config|set"),
        ),
        // A subcommand ringkv lacks is left for the command to refuse.
        (&["-@all"], &["CONFIG", "NOSUCH"], Ok(())),
        // `-config` after `+@all` takes every subcommand away.
        (
            &["+@all", "-config"],
            &["CONFIG", "GET", "x"],
            denied_command("config|get"),
        ),
        (
            &["+@all", "-config", "+config"],
            &["CONFIG", "GET", "x"],
            Ok(()),
        ),
    ];
    for (rules, call, expected) in cases {
        let p = perms(&[rules, &["allkeys"][..]].concat());
        assert_eq!(check(&p, call), *expected, "{rules:?} {call:?}");
    }
}

#[test]
fn first_arg_allowances() {
    let cases: &[RulesCallResult] = &[
        (&["+select|0"], &["SELECT", "0"], Ok(())),
        (&["+select|0"], &["SELECT", "1"], denied_command("select")),
        (&["+select|0", "+select|1"], &["SELECT", "1"], Ok(())),
        (&["+select|0", "+select"], &["SELECT", "1"], Ok(())),
        (
            &["+select|0", "-select"],
            &["SELECT", "0"],
            denied_command("select"),
        ),
        // A category rule drops the first-args of its commands.
        (
            &["+select|0", "-@connection"],
            &["SELECT", "0"],
            denied_command("select"),
        ),
        (
            &["+select|0", "-@all"],
            &["SELECT", "0"],
            denied_command("select"),
        ),
        (&["+select|0", "-@read"], &["SELECT", "0"], Ok(())),
        // Compared case-insensitively.
        (&["+get|Foo"], &["GET", "foo"], Ok(())),
        (&["+get|foo"], &["get", "FOO"], Ok(())),
        (&["+get|foo"], &["GET", "bar"], denied_command("get")),
    ];
    for (rules, call, expected) in cases {
        let p = perms(&[rules, &["allkeys"][..]].concat());
        assert_eq!(check(&p, call), *expected, "{rules:?} {call:?}");
    }
}

#[test]
fn keys_need_what_the_command_does_to_them() {
    // w:* write only, r:* read only, rw:* both.
    let p = perms(&["+@all", "%W~w:*", "%R~r:*", "~rw:*"]);
    let cases: &[(&[&str], Result<(), Denied>)] = &[
        (&["GET", "r:1"], Ok(())),
        (&["GET", "rw:1"], Ok(())),
        (&["GET", "w:1"], denied_key("w:1")),
        (&["GET", "x"], denied_key("x")),
        (&["MGET", "r:1", "rw:1"], Ok(())),
        (&["MGET", "r:1", "w:1", "x"], denied_key("w:1")),
        // MSET: keys at 1, 3, ...; values are not checked.
        (&["MSET", "w:1", "r:1", "w:2", "x"], Ok(())),
        (&["MSET", "w:1", "v", "r:1", "v"], denied_key("r:1")),
        (
            &["MSET", "rw:1", "v", "w:2", "v", "x", "v"],
            denied_key("x"),
        ),
        // COPY: the source is read, the destination written.
        (&["COPY", "r:1", "w:1"], Ok(())),
        (&["COPY", "rw:1", "rw:2"], Ok(())),
        (&["COPY", "w:1", "w:2"], denied_key("w:1")),
        (&["COPY", "r:1", "r:2"], denied_key("r:2")),
        // SET without GET only writes; with GET it reads too.
        (&["SET", "w:1", "v"], Ok(())),
        (&["SET", "w:1", "v", "EX", "10", "NX"], Ok(())),
        (&["SET", "r:1", "v"], denied_key("r:1")),
        (&["SET", "w:1", "v", "GET"], denied_key("w:1")),
        (&["SET", "w:1", "v", "get"], denied_key("w:1")),
        (&["SET", "w:1", "v", "NX", "GeT"], denied_key("w:1")),
        (&["SET", "r:1", "v", "GET"], denied_key("r:1")),
        (&["SET", "rw:1", "v", "GET"], Ok(())),
        // `GET` as the value is not the option.
        (&["SET", "w:1", "GET"], Ok(())),
        // Read-modify-write needs both.
        (&["INCR", "rw:1"], Ok(())),
        (&["INCR", "w:1"], denied_key("w:1")),
        (&["INCR", "r:1"], denied_key("r:1")),
        (&["HSET", "w:1", "f", "v"], Ok(())),
        (&["HSET", "r:1", "f", "v"], denied_key("r:1")),
        (&["DEL", "w:1", "rw:1"], Ok(())),
        (&["DEL", "w:1", "r:1"], denied_key("r:1")),
        // Neither read nor write: any matching pattern will do.
        (&["EXISTS", "r:1", "w:1", "rw:1"], Ok(())),
        (&["EXISTS", "r:1", "x"], denied_key("x")),
        (&["TYPE", "w:1"], Ok(())),
        // SINTERCARD: a count, then that many keys.
        (&["SINTERCARD", "2", "r:1", "rw:1"], Ok(())),
        (&["SINTERCARD", "2", "r:1", "x"], denied_key("x")),
        (&["SINTERCARD", "1", "r:1", "LIMIT", "5"], Ok(())),
        // Patterns are case-sensitive globs.
        (&["GET", "R:1"], denied_key("R:1")),
        // No key specs: no key check.
        (&["KEYS", "*"], Ok(())),
        (&["DBSIZE"], Ok(())),
        (&["PING"], Ok(())),
    ];
    for (call, expected) in cases {
        assert_eq!(check(&p, call), *expected, "{call:?}");
    }
}

#[test]
fn the_command_is_checked_before_the_keys() {
    let p = perms(&["-@all", "+get", "%R~r:*"]);
    assert_eq!(check(&p, &["SET", "x", "v"]), denied_command("set"));
    assert_eq!(check(&p, &["GET", "x"]), denied_key("x"));
    assert_eq!(check(&p, &["GET", "r:x"]), Ok(()));
    // No patterns at all: every key refused.
    let p = perms(&["+@all"]);
    assert_eq!(check(&p, &["GET", "k"]), denied_key("k"));
    assert_eq!(check(&p, &["PING"]), Ok(()));
}

#[test]
fn no_auth_commands_are_always_allowed() {
    for p in [Perms::none(), perms(&[]), perms(&["+@all", "-@connection"])] {
        for call in [
            &["AUTH", "pw"][..],
            &["AUTH", "u", "pw"],
            &["HELLO"],
            &["HELLO", "3", "AUTH", "u", "pw"],
            &["QUIT"],
            &["RESET"],
        ] {
            assert_eq!(check(&p, call), Ok(()), "{call:?}");
        }
        assert_eq!(check(&p, &["PING"]), denied_command("ping"));
    }
    assert_eq!(check(&Perms::none(), &["GET", "k"]), denied_command("get"));
}

#[test]
fn unrestricted_means_every_command_and_every_key() {
    let cases: &[(&[&str], bool)] = &[
        (&["+@all", "~*"], true),
        (&["allcommands", "allkeys"], true),
        (&["-@all", "+@all", "allkeys", "resetchannels"], true),
        // A command Redis has and ringkv lacks changes nothing here.
        (&["+@all", "-lpush", "~*"], true),
        (&["+@all"], false),
        (&["+@all", "%RW~*"], false),
        (&["+@all", "-get", "~*"], false),
        (&["+@all", "-get", "+get", "~*"], true),
        (&["+@read", "~*"], false),
        (&[], false),
    ];
    for (rules, unrestricted) in cases {
        assert_eq!(perms(rules).unrestricted, *unrestricted, "{rules:?}");
    }
    assert!(Perms::of(&User::default_user(None)).unrestricted);
    assert!(Perms::of(&User::default_user(Some("pw"))).unrestricted);
    assert!(!Perms::none().unrestricted);
}

#[test]
fn categories_cover_subcommands_and_every_bit() {
    let u = universe();
    let read = u.category("read").unwrap();
    let dangerous = u.category("dangerous").unwrap();
    assert!(u.category("all").is_none() && u.category("nosuch").is_none());
    assert!(u.in_category(read).contains(&"get"));
    assert!(u.in_category(dangerous).contains(&"config|set"));
    assert!(u.in_category(dangerous).contains(&"flushall"));
    assert!(!u.in_category(dangerous).contains(&"get"));
    assert!(u.is_container("config") && u.is_container("client"));
    assert!(!u.is_container("get"));
    assert!(u.knows("get") && u.knows("config|get") && u.knows("lpush"));
    assert!(!u.knows("nosuch") && !u.knows("config|nosuch"));
    // `+@read -@read` is no command at all, `+@all -@all` too.
    let p = perms(&["+@read", "-@read", "allkeys"]);
    assert_eq!(check(&p, &["GET", "k"]), denied_command("get"));
    // `-@dangerous +@write` re-adds dangerous writes; the other way not.
    let p = perms(&["-@dangerous", "+@write", "allkeys"]);
    assert_eq!(check(&p, &["FLUSHALL"]), Ok(()));
    let p = perms(&["+@write", "-@dangerous", "allkeys"]);
    assert_eq!(check(&p, &["FLUSHALL"]), denied_command("flushall"));
    assert_eq!(check(&p, &["SET", "k", "v"]), Ok(()));
    assert_eq!(check(&p, &["GET", "k"]), denied_command("get"));
}

#[test]
fn subcommands_of_redis_containers_ringkv_lacks_can_be_taken_away() {
    let rules = [
        "-memory|doctor",
        "-client|pause",
        "+client|pause",
        "-object|encoding",
        "-xgroup|help",
    ];
    let refused: Vec<String> = rules
        .iter()
        .filter_map(|r| user(&["+@all"]).with_rules(&args(&[r])).err())
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
}

#[test]
fn unknown_subcommands_of_redis_containers_are_refused() {
    let rules = ["+memory|nosuch", "+xinfo|nosuch", "+object|nosuch"];
    let accepted: Vec<&str> = rules
        .iter()
        .copied()
        .filter(|r| {
            User::new(Bytes::from_static(b"u"))
                .with_rules(&args(&[r]))
                .is_ok()
        })
        .collect();
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
}

#[test]
fn taking_away_a_first_arg_of_a_subcommand_is_an_unknown_command() {
    assert_eq!(
        refused(&["-config|get|x"]),
        modifier_error("-config|get|x", UNKNOWN)
    );
}

#[test]
fn an_empty_subcommand_of_a_container_is_a_syntax_error() {
    assert_eq!(refused(&["+config|"]), modifier_error("+config|", SYNTAX));
}

#[test]
fn a_bad_percent_pattern_after_allkeys_is_reported_as_after_allkeys() {
    assert_eq!(
        refused(&["allkeys", "%X~a"]),
        modifier_error("%X~a", AFTER_ALLKEYS)
    );
}
