//! ACL users against Redis 7.0.15: rule parsing and its errors, passwords,
//! key patterns, the `ACL LIST` line round trip (property-tested), the
//! permission check, ACL LOG grouping, and users from the metadata record.

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::log::{AclLog, Event, Reason};
use super::perm::universe;
use super::user::{hash_password, valid_name, READ, WRITE};
use super::{entry_name, Acl, Denied, Perms, User, Users};
use crate::clock::Timestamp;
use crate::metadata::Metadata;
use crate::resp::codec::Reply;
use crate::store::Version;

// Redis's reasons, spelled out here rather than taken from user.rs, so a
// change to them there shows up as a failure.
const SYNTAX: &str = "Syntax error";
const UNKNOWN: &str = "Unknown command or category name in ACL";
const AFTER_ALLKEYS: &str = "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns";
const AFTER_ALLCHANNELS: &str = "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels";
const NO_SUCH_PASSWORD: &str = "The password you are trying to remove from the user does not exist";
const BAD_HASH: &str = "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters";
const SUB_FIRST_ARG: &str = "Allowing first-arg of a subcommand is not supported";

/// sha256("pw"), sha256(""), sha256("secret"), sha256("a").
const HASH_PW: &str = "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4";
const HASH_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const HASH_SECRET: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
const HASH_A: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

fn args(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

/// A new user `u` with `rules` applied; panics if one is refused.
fn user(rules: &[&str]) -> User {
    User::new(Bytes::from_static(b"u"))
        .with_rules(&args(rules))
        .unwrap_or_else(|e| panic!("{rules:?}: {e}"))
}

/// The error `rules` give on a new user.
fn refused(rules: &[&str]) -> String {
    match User::new(Bytes::from_static(b"u")).with_rules(&args(rules)) {
        Ok(u) => panic!("{rules:?} accepted: {}", text(&u.line())),
        Err(e) => e,
    }
}

fn modifier_error(rule: &str, reason: &str) -> String {
    format!("Error in ACL SETUSER modifier '{rule}': {reason}")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether `perms` allow the call `call` (command name first).
fn check(perms: &Perms, call: &[&str]) -> Result<(), Denied> {
    let spec = crate::resp::cmd::lookup(call[0].as_bytes())
        .unwrap_or_else(|| panic!("no command {}", call[0]));
    let a = args(call);
    assert!(spec.arity_ok(a.len()), "bad arity in the test: {call:?}");
    perms.check(spec, &a)
}

fn denied_command(name: &str) -> Result<(), Denied> {
    Err(Denied::Command(name.to_string()))
}

fn denied_key(key: &str) -> Result<(), Denied> {
    Err(Denied::Key(Bytes::copy_from_slice(key.as_bytes())))
}

// ---------------------------------------------------------------------
// 1. Rule parsing errors, all or nothing.
// ---------------------------------------------------------------------

#[test]
fn refused_rules_give_redis_reasons() {
    let upper_hash = HASH_PW.to_ascii_uppercase();
    let cases: Vec<(Vec<String>, &str)> = vec![
        // (rules, the reason for the last one)
        (vec!["bogus".into()], SYNTAX),
        (
            vec!["on".into(), "(on)".into()],
            "ringkv does not support ACL selectors; give the user one set of rules",
        ),
        (vec!["+nosuchcmd".into()], UNKNOWN),
        (vec!["-nosuchcmd".into()], UNKNOWN),
        (vec!["-@nosuchcat".into()], UNKNOWN),
        (vec!["+@".into()], UNKNOWN),
        (vec!["+".into()], UNKNOWN),
        (vec!["+get|a|b".into()], UNKNOWN),
        (vec!["-select|0".into()], UNKNOWN),
        (vec!["-get|x".into()], UNKNOWN),
        (vec!["+config|nosuch".into()], UNKNOWN),
        (vec!["+select|".into()], SYNTAX),
        (vec!["+config|get|x".into()], SUB_FIRST_ARG),
        (vec!["+CLIENT|KILL|x".into()], SUB_FIRST_ARG),
        (vec!["#abc".into()], BAD_HASH),
        (vec![format!("#{upper_hash}")], BAD_HASH),
        (vec![format!("#{}", &HASH_PW[..63])], BAD_HASH),
        (vec![format!("#{HASH_PW}0")], BAD_HASH),
        (vec![format!("#{}g", &HASH_PW[..63])], BAD_HASH),
        (vec![format!("!{upper_hash}")], BAD_HASH),
        (vec!["<nopw".into()], NO_SUCH_PASSWORD),
        (vec![format!("!{HASH_PW}")], NO_SUCH_PASSWORD),
        (vec![">a".into(), "<pw".into()], NO_SUCH_PASSWORD),
        (vec!["~*".into(), "~foo".into()], AFTER_ALLKEYS),
        (vec!["allkeys".into(), "~foo".into()], AFTER_ALLKEYS),
        (vec!["allkeys".into(), "%R~foo".into()], AFTER_ALLKEYS),
        (
            vec!["ALLKEYS".into(), "~*".into(), "%W~".into()],
            AFTER_ALLKEYS,
        ),
        (vec!["&*".into(), "&foo".into()], AFTER_ALLCHANNELS),
        (vec!["allchannels".into(), "&foo".into()], AFTER_ALLCHANNELS),
        (vec!["%X~a".into()], SYNTAX),
        (vec!["%RR~a".into()], SYNTAX),
        (vec!["%RWR~a".into()], SYNTAX),
        (vec!["~a b".into()], SYNTAX),
        (vec!["~a\tb".into()], SYNTAX),
        (vec!["~a\0b".into()], SYNTAX),
        (vec!["&a b".into()], SYNTAX),
    ];
    for (rules, reason) in cases {
        let last = rules.last().unwrap().clone();
        let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
        assert_eq!(refused(&rules), modifier_error(&last, reason), "{rules:?}");
    }
}

#[test]
fn a_refused_rule_applies_none_of_the_rules() {
    let base = user(&["on", ">pw", "~a", "+get"]);
    let before = base.clone();
    let err = base
        .with_rules(&args(&[
            "off",
            "resetpass",
            "~b",
            "+set",
            "bogus",
            "nopass",
        ]))
        .unwrap_err();
    assert_eq!(err, modifier_error("bogus", SYNTAX));
    assert_eq!(base, before);
    // The same rules without the bad one do change it.
    let changed = base
        .with_rules(&args(&["off", "resetpass", "~b", "+set"]))
        .unwrap();
    assert_ne!(changed, before);
    // Only the first failing rule is reported.
    let err = base.with_rules(&args(&["+nosuch", "bogus"])).unwrap_err();
    assert_eq!(err, modifier_error("+nosuch", UNKNOWN));
}

#[test]
fn the_modifier_in_an_error_has_cr_and_lf_as_spaces() {
    assert_eq!(refused(&["on", "a\r\nb"]), modifier_error("a  b", SYNTAX));
    // Other control bytes stay as they are.
    assert_eq!(refused(&["a\tb"]), modifier_error("a\tb", SYNTAX));
}

#[test]
fn empty_rules_and_no_rules_change_nothing() {
    let base = user(&["on", "~a"]);
    assert_eq!(base.with_rules(&[]).unwrap(), base);
    assert_eq!(base.with_rules(&args(&["", ""])).unwrap(), base);
    // `clearselectors` is accepted (there are never selectors).
    assert_eq!(base.with_rules(&args(&["clearselectors"])).unwrap(), base);
}

// ---------------------------------------------------------------------
// 2. Case.
// ---------------------------------------------------------------------

#[test]
fn keywords_and_command_names_are_case_insensitive_and_shown_lower_case() {
    let u = user(&[
        "ON",
        "NoPass",
        "SKIP-SANITIZE-PAYLOAD",
        "+GET",
        "+@READ",
        "-@Dangerous",
        "+Config|Get",
        "-CLIENT|KILL",
        "AllKeys",
        "ResetChannels",
        "&Ch",
    ]);
    assert!(u.enabled && u.nopass && u.all_keys);
    assert_eq!(u.flags(), ["on", "nopass", "skip-sanitize-payload"]);
    assert_eq!(
        u.describe_commands(),
        "-@all +get +@read -@dangerous +config|get -client|kill"
    );
    // Patterns keep their case.
    assert_eq!(text(&u.describe_channels()), "&Ch");
    let u = user(&["%rw~Key:*", "%r~K2", "~K3"]);
    assert_eq!(text(&u.describe_keys()), "~Key:* %R~K2 ~K3");
    assert_eq!(user(&["ALLCOMMANDS"]).describe_commands(), "+@all");
    assert_eq!(user(&["+@ALL"]).describe_commands(), "+@all");
    assert_eq!(user(&["+@all", "NOCOMMANDS"]).describe_commands(), "-@all");
    assert_eq!(user(&["+@all", "-@ALL"]).describe_commands(), "-@all");
    assert!(user(&["ALLCHANNELS"]).all_channels);
    assert!(!user(&["on", "OFF"]).enabled);
}

// ---------------------------------------------------------------------
// 3. Passwords.
// ---------------------------------------------------------------------

#[test]
fn password_rules() {
    let add_hash = format!("#{HASH_PW}");
    let remove_hash = format!("!{HASH_PW}");
    let cases: &[(&[&str], bool, &[&str])] = &[
        // (rules, nopass, passwords)
        (&[">pw"], false, &[HASH_PW]),
        (&[">"], false, &[HASH_EMPTY]),
        (&[">pw", ">pw"], false, &[HASH_PW]),
        (&[">pw", &add_hash], false, &[HASH_PW]),
        (&[&add_hash], false, &[HASH_PW]),
        (&[">pw", ">a"], false, &[HASH_PW, HASH_A]),
        (&[">a", ">pw", ">a"], false, &[HASH_A, HASH_PW]),
        (&[">pw", "nopass"], true, &[]),
        (&["nopass"], true, &[]),
        (&["nopass", ">pw"], false, &[HASH_PW]),
        (&["nopass", &add_hash], false, &[HASH_PW]),
        (&["nopass", "resetpass"], false, &[]),
        (&[">pw", ">a", "resetpass"], false, &[]),
        (&[">pw", ">a", "<pw"], false, &[HASH_A]),
        (
            &[">pw", ">secret", ">a", "<secret"],
            false,
            &[HASH_PW, HASH_A],
        ),
        (&[">pw", "<pw"], false, &[]),
        (&[">pw", &remove_hash], false, &[]),
    ];
    for (rules, nopass, passwords) in cases {
        let u = user(rules);
        assert_eq!(u.nopass, *nopass, "{rules:?}");
        assert_eq!(u.passwords, *passwords, "{rules:?}");
    }
    assert_eq!(refused(&["<pw"]), modifier_error("<pw", NO_SUCH_PASSWORD));
    // A nopass user has no password to remove.
    assert_eq!(
        refused(&["nopass", "<pw"]),
        modifier_error("<pw", NO_SUCH_PASSWORD)
    );
    assert_eq!(hash_password(b"secret"), HASH_SECRET);
    assert_eq!(hash_password(b""), HASH_EMPTY);
}

#[test]
fn password_ok_needs_on_and_a_matching_password_or_nopass() {
    let add_hash = format!("#{HASH_PW}");
    let cases: &[(&[&str], &str, bool)] = &[
        (&["on", ">pw"], "pw", true),
        (&["on", ">pw"], "PW", false),
        (&["on", ">pw"], "", false),
        (&["on", ">pw", ">a"], "a", true),
        (&["on", ">"], "", true),
        (&["off", ">pw"], "pw", false),
        (&[">pw"], "pw", false), // a new user is off
        (&["on", "nopass"], "anything", true),
        (&["on", "nopass"], "", true),
        (&["off", "nopass"], "anything", false),
        (&["on"], "", false),
        (&["on", "resetpass"], "x", false),
        (&["on", &add_hash], "pw", true),
        (&["on", ">pw", "<pw"], "pw", false),
    ];
    for (rules, password, ok) in cases {
        assert_eq!(
            user(rules).password_ok(password.as_bytes()),
            *ok,
            "{rules:?} with {password:?}"
        );
    }
}

#[test]
fn flags_are_listed_in_redis_order() {
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["off"]),
        (&["on"], &["on"]),
        (&["on", "nopass"], &["on", "nopass"]),
        (
            &["nopass", "sanitize-payload"],
            &["off", "nopass", "sanitize-payload"],
        ),
        (
            &["sanitize-payload", "skip-sanitize-payload"],
            &["off", "skip-sanitize-payload"],
        ),
        (
            &["skip-sanitize-payload", "sanitize-payload", "on"],
            &["on", "sanitize-payload"],
        ),
        (&["on", "reset"], &["off", "sanitize-payload"]),
    ];
    for (rules, flags) in cases {
        assert_eq!(user(rules).flags(), *flags, "{rules:?}");
    }
}

#[test]
fn reset_returns_the_user_to_a_new_one_with_sanitize_payload() {
    let u = user(&[
        "on",
        ">pw",
        "nopass",
        "~a",
        "&c",
        "+@all",
        "-get",
        "skip-sanitize-payload",
        "reset",
    ]);
    let mut expected = User::new(Bytes::from_static(b"u"));
    expected.sanitize = Some(true);
    assert_eq!(u, expected);
    assert_eq!(
        text(&u.line()),
        "user u off sanitize-payload resetchannels -@all"
    );
}

// ---------------------------------------------------------------------
// 4. Key and channel patterns.
// ---------------------------------------------------------------------

#[test]
fn key_patterns_merge_their_flags_in_place() {
    let cases: &[(&[&str], &str)] = &[
        // (rules, describe_keys)
        (&[], ""),
        (&["~a"], "~a"),
        (&["%R~a"], "%R~a"),
        (&["%W~a"], "%W~a"),
        (&["%RW~a"], "~a"),
        (&["%WR~a"], "~a"),
        (&["%rw~a"], "~a"),
        (&["~a", "%R~a"], "~a"),
        (&["%R~a", "%W~a"], "~a"),
        (&["%R~a", "%R~a"], "%R~a"),
        (&["%R~a", "~b", "%W~a"], "~a ~b"),
        (&["%W~a", "%R~b", "%R~a", "%W~b"], "~a ~b"),
        (
            &["%R~a", "%W~b", "%RW~c", "%WR~d", "%r~e"],
            "%R~a %W~b ~c ~d %R~e",
        ),
        (&["~"], "~"),
        (&["%R"], "%R~"), // Redis's quirk: `%R` is the empty pattern
        (&["%R~a~b"], "%R~a~b"),
        (&["allkeys"], "~*"),
        (&["~*"], "~*"),
        (&["~a", "allkeys"], "~*"),
        (&["allkeys", "resetkeys"], ""),
        (&["allkeys", "resetkeys", "%W~a"], "%W~a"),
        (&["~a", "%R~b", "resetkeys", "~c"], "~c"),
        // `%RW~*` is a pattern, not allkeys: shown `~*`, and more may follow.
        (&["%RW~*"], "~*"),
        (&["%R~*", "~x"], "%R~* ~x"),
    ];
    for (rules, shown) in cases {
        assert_eq!(text(&user(rules).describe_keys()), *shown, "{rules:?}");
    }
    let u = user(&["%R~a", "%W~b", "~a*"]);
    assert_eq!(
        u.keys,
        [
            (Bytes::from_static(b"a"), READ),
            (Bytes::from_static(b"b"), WRITE),
            (Bytes::from_static(b"a*"), READ | WRITE),
        ]
    );
    assert!(!u.all_keys);
    let u = user(&["%RW~*"]);
    assert!(!u.all_keys);
    assert_eq!(u.keys, [(Bytes::from_static(b"*"), READ | WRITE)]);
}

#[test]
fn channel_patterns() {
    let cases: &[(&[&str], &str)] = &[
        (&[], ""),
        (&["&a"], "&a"),
        (&["&a", "&b", "&a"], "&a &b"),
        (&["allchannels"], "&*"),
        (&["&*"], "&*"),
        (&["&a", "allchannels"], "&*"),
        (&["allchannels", "resetchannels"], ""),
        (&["allchannels", "resetchannels", "&x"], "&x"),
        (&["&"], "&"),
    ];
    for (rules, shown) in cases {
        assert_eq!(text(&user(rules).describe_channels()), *shown, "{rules:?}");
    }
}

// ---------------------------------------------------------------------
// The ACL LIST line.
// ---------------------------------------------------------------------

#[test]
fn lines_as_redis_lists_them() {
    let named = |name: &'static str, rules: &[&str]| {
        User::new(Bytes::from_static(name.as_bytes()))
            .with_rules(&args(rules))
            .unwrap()
    };
    let cases: Vec<(User, String)> = vec![
        (
            User::default_user(None),
            "user default on nopass ~* &* +@all".into(),
        ),
        (
            User::default_user(Some("secret")),
            format!("user default on #{HASH_SECRET} ~* &* +@all"),
        ),
        (named("u1", &[]), "user u1 off resetchannels -@all".into()),
        (
            named(
                "u2",
                &[
                    "on", "nopass", "%R~", "~Foo", "%R~bar", "%W~baz", "~qux", "~qux2", "&CH*",
                    "+get",
                ],
            ),
            "user u2 on nopass %R~ ~Foo %R~bar %W~baz ~qux ~qux2 resetchannels &CH* -@all +get"
                .into(),
        ),
        (
            named("u2", &["on", ">x", "reset"]),
            "user u2 off sanitize-payload resetchannels -@all".into(),
        ),
        (
            named("hpuser", &["on", "nopass", "&foo", "+@all"]),
            "user hpuser on nopass resetchannels &foo +@all".into(),
        ),
        (
            named("s", &["on", "sanitize-payload", ">a", "~w:*", "+set"]),
            format!("user s on sanitize-payload #{HASH_A} ~w:* resetchannels -@all +set"),
        ),
    ];
    for (u, line) in cases {
        assert_eq!(text(&u.line()), line);
        assert_eq!(User::from_line(line.as_bytes()), Ok(u));
    }
}

#[test]
fn command_rules_as_shown() {
    let cases: &[(&[&str], &str)] = &[
        (&["+@all", "-@dangerous"], "+@all -@dangerous"),
        (&["+get", "+set"], "-@all +get +set"),
        (&["+@read", "-get"], "-@all +@read -get"),
        (&["+@all", "-@write", "+set"], "+@all -@write +set"),
        (&["-@all", "+@string", "+@hash"], "-@all +@string +@hash"),
        (
            &["allcommands", "-flushall", "-config|set"],
            "+@all -flushall -config|set",
        ),
        (
            &["nocommands", "+client", "-client|kill"],
            "-@all +client -client|kill",
        ),
        (
            &["+@all", "-client", "+client|id"],
            "+@all -client +client|id",
        ),
        // `+get` drops get's first-args, as in Redis.
        (&["+select|0", "+get|x", "+get"], "-@all +select|0 +get"),
        (&["+get|foo"], "-@all +get|foo"),
        // A later rule for the same name replaces the earlier one; one for a
        // container replaces its subcommands'.
        (&["+get", "-get"], "-@all -get"),
        (&["+@read", "-get", "+@read"], "-@all -get +@read"),
        (&["-client|kill", "+client|id", "+client"], "-@all +client"),
        (&["+select|0", "-select"], "-@all -select"),
        (&["+get", "+@all", "-set"], "+@all -set"),
        // Commands Redis has and ringkv lacks are kept.
        (&["+lpush", "-@list"], "-@all +lpush -@list"),
    ];
    for (rules, shown) in cases {
        assert_eq!(user(rules).describe_commands(), *shown, "{rules:?}");
    }
}

#[test]
fn from_line_refuses_what_is_not_a_line() {
    assert!(User::from_line(b"").is_err());
    assert!(User::from_line(b"usr u on").is_err());
    assert!(User::from_line(b"user").is_err());
    assert_eq!(
        User::from_line(b"user u on bogus"),
        Err(modifier_error("bogus", SYNTAX))
    );
    assert_eq!(
        User::from_line(b"user u"),
        Ok(User::new(Bytes::from_static(b"u")))
    );
}

#[test]
fn a_user_with_an_empty_name_survives_its_line() {
    assert!(valid_name(b""));
    let u = User::new(Bytes::new())
        .with_rules(&args(&["on", "+get"]))
        .unwrap();
    assert_eq!(text(&u.line()), "user  on resetchannels -@all +get");
    assert_eq!(User::from_line(&u.line()), Ok(u));
}

#[test]
fn user_names() {
    for ok in [&b"alice"[..], b"a:b", b"Zed", b"\xff"] {
        assert!(valid_name(ok), "{ok:?}");
    }
    for bad in [&b"a b"[..], b"a\tb", b"a\nb", b"a\rb", b"a\x0cb", b"a\0b"] {
        assert!(!valid_name(bad), "{bad:?}");
    }
}

#[test]
fn vertical_tab_counts_as_space_as_in_redis() {
    assert!(!valid_name(b"a\x0bb"));
    assert_eq!(refused(&["~a\x0bb"]), modifier_error("~a\x0bb", SYNTAX));
    assert_eq!(refused(&["&a\x0bb"]), modifier_error("&a\x0bb", SYNTAX));
}

#[test]
fn a_star_pattern_is_listed_as_allkeys_as_redis_lists_it() {
    // Redis shows the pattern `*` (R and W) as `~*`, which reads back as
    // allkeys: not the same user, but the same permissions.
    let u = user(&["on", "%R~*", "%W~*", "+@all"]);
    assert!(!u.all_keys);
    assert_eq!(text(&u.line()), "user u on ~* resetchannels +@all");
    let back = User::from_line(&u.line()).unwrap();
    assert!(back.all_keys && back.keys.is_empty());
    for call in SAMPLE_CALLS {
        assert_eq!(check(&Perms::of(&back), call), check(&Perms::of(&u), call));
    }
}

// ---------------------------------------------------------------------
// 5. Round trip, property-tested.
// ---------------------------------------------------------------------

const VOCABULARY: &[&str] = &[
    "on",
    "off",
    "nopass",
    "resetpass",
    ">pw1",
    ">pw2",
    "<pw1",
    "~a*",
    "~app:*",
    "%R~app:*",
    "%W~app:*",
    "%R~k",
    "%W~k",
    "~k",
    "allkeys",
    "resetkeys",
    "&ch",
    "&ch2",
    "allchannels",
    "resetchannels",
    "+@read",
    "-@read",
    "+@write",
    "-@dangerous",
    "+@connection",
    "+get",
    "-set",
    "+set",
    "+mget",
    "+hset",
    "+config|get",
    "-config",
    "-client|kill",
    "+client",
    "+client|id",
    "+select|0",
    "+select",
    "-select",
    "allcommands",
    "nocommands",
    "+@all",
    "-@all",
    "reset",
    "sanitize-payload",
    "skip-sanitize-payload",
];

const SAMPLE_CALLS: &[&[&str]] = &[
    &["GET", "k"],
    &["GET", "app:1"],
    &["SET", "k", "v"],
    &["SET", "app:1", "v"],
    &["SET", "k", "v", "GET"],
    &["FLUSHALL"],
    &["CONFIG", "GET", "x"],
    &["CONFIG", "SET", "x", "y"],
    &["CLIENT", "KILL", "ID", "1"],
    &["CLIENT", "ID"],
    &["SELECT", "0"],
    &["SELECT", "1"],
    &["HSET", "app:1", "f", "v"],
    &["MGET", "a", "b"],
    &["MGET", "app:1", "k"],
    &["AUTH", "p"],
];

/// A rule of the vocabulary, sometimes upper-cased.
fn rule() -> impl Strategy<Value = String> {
    (proptest::sample::select(VOCABULARY), any::<bool>()).prop_map(|(r, upper)| {
        if upper {
            r.to_ascii_uppercase()
        } else {
            r.to_string()
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn a_line_reads_back_as_the_same_user_with_the_same_permissions(
        name in proptest::sample::select(&["u", "Zed", "app:x", "default"][..]),
        rules in proptest::collection::vec(rule(), 0..24),
    ) {
        let mut u = User::new(Bytes::from_static(name.as_bytes()));
        for r in &rules {
            // A refused rule (`<pw1` with no such password, a pattern
            // after allkeys) is skipped, as a failed SETUSER would be.
            if let Ok(next) = u.with_rules(&[Bytes::copy_from_slice(r.as_bytes())]) {
                u = next;
            }
        }
        let line = u.line();
        let back = User::from_line(&line);
        prop_assert_eq!(back.as_ref(), Ok(&u), "line {}", text(&line));
        let back = back.unwrap();
        prop_assert_eq!(&back.line(), &line);
        let (p, q) = (Perms::of(&u), Perms::of(&back));
        prop_assert_eq!(p.unrestricted, q.unrestricted);
        for call in SAMPLE_CALLS {
            prop_assert_eq!(check(&p, call), check(&q, call), "{:?} for {}", call, text(&line));
        }
    }

    #[test]
    fn rules_applied_in_two_setusers_equal_them_in_one(
        first in proptest::collection::vec(rule(), 0..10),
        second in proptest::collection::vec(rule(), 0..10),
    ) {
        let new = User::new(Bytes::from_static(b"u"));
        let all: Vec<Bytes> = first.iter().chain(&second).map(|r| Bytes::from(r.clone())).collect();
        let first: Vec<Bytes> = first.into_iter().map(Bytes::from).collect();
        let second: Vec<Bytes> = second.into_iter().map(Bytes::from).collect();
        let once = new.with_rules(&all);
        let twice = new.with_rules(&first).and_then(|u| u.with_rules(&second));
        match (once, twice) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "one SETUSER gave {:?}, two gave {:?}", a, b),
        }
    }
}

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

// ---------------------------------------------------------------------
// 7. ACL LOG.
// ---------------------------------------------------------------------

fn event(reason: Reason, object: &str, username: &str, info: &str) -> Event {
    Event {
        reason,
        multi: false,
        object: Bytes::copy_from_slice(object.as_bytes()),
        username: Bytes::copy_from_slice(username.as_bytes()),
        client_info: info.to_string(),
    }
}

fn cmd(object: &str) -> Event {
    event(Reason::Command, object, "bob", "id=1")
}

/// (count, object) of each entry, newest first.
fn entries(log: &AclLog, now: Instant) -> Vec<(i64, String)> {
    let Reply::Array(entries) = log.reply(usize::MAX, now) else {
        panic!("not an array");
    };
    entries
        .iter()
        .map(|e| {
            let Reply::Map(fields) = e else {
                panic!("not a map")
            };
            let get = |k: &str| {
                &fields
                    .iter()
                    .find(|(n, _)| n.as_text() == Some(k))
                    .unwrap()
                    .1
            };
            let Reply::Integer(count) = get("count") else {
                panic!("count")
            };
            (*count, get("object").as_text().unwrap().to_string())
        })
        .collect()
}

fn counted(pairs: &[(i64, &str)]) -> Vec<(i64, String)> {
    pairs.iter().map(|(c, o)| (*c, o.to_string())).collect()
}

#[test]
fn log_entries_as_redis_shows_them() {
    let log = AclLog::default();
    let t0 = Instant::now();
    log.add(event(Reason::Key, "r:1", "bob", "id=7 cmd=get"), t0);
    let reply = log.reply(10, t0 + Duration::from_millis(1653));
    let expected = Reply::Array(vec![Reply::map([
        ("count", Reply::Integer(1)),
        ("reason", Reply::bulk("key")),
        ("context", Reply::bulk("toplevel")),
        ("object", Reply::bulk("r:1")),
        ("username", Reply::bulk("bob")),
        ("age-seconds", Reply::Double(1.653)),
        ("client-info", Reply::bulk("id=7 cmd=get")),
    ])]);
    assert_eq!(reply, expected);
    let mut e = event(Reason::Auth, "AUTH", "alice", "id=8");
    e.multi = true;
    log.add(e, t0);
    let Reply::Array(shown) = log.reply(1, t0) else {
        panic!()
    };
    let Reply::Map(fields) = &shown[0] else {
        panic!()
    };
    assert_eq!(fields[1].1, Reply::bulk("auth"));
    assert_eq!(fields[2].1, Reply::bulk("multi"));
    assert_eq!(fields[3].1, Reply::bulk("AUTH"));
    assert_eq!(fields[4].1, Reply::bulk("alice"));
}

#[test]
fn equal_events_within_a_minute_are_counted_together_and_move_to_the_front() {
    let log = AclLog::default();
    let t0 = Instant::now();
    let s = Duration::from_secs;
    log.add(cmd("get"), t0);
    log.add(cmd("set"), t0 + s(1));
    log.add(cmd("get"), t0 + s(30));
    assert_eq!(
        entries(&log, t0 + s(30)),
        counted(&[(2, "get"), (1, "set")])
    );
    // The time is that of the last event: grouping reaches further.
    log.add(cmd("get"), t0 + s(85));
    assert_eq!(
        entries(&log, t0 + s(85)),
        counted(&[(3, "get"), (1, "set")])
    );
    // The client info is the last one's.
    log.add(event(Reason::Command, "get", "bob", "id=99"), t0 + s(86));
    let Reply::Array(shown) = log.reply(1, t0 + s(86)) else {
        panic!()
    };
    let Reply::Map(fields) = &shown[0] else {
        panic!()
    };
    assert_eq!(fields[6].1, Reply::bulk("id=99"));
    assert_eq!(fields[5].1, Reply::Double(0.0));
    // Over a minute later: a new entry.
    log.add(cmd("get"), t0 + s(86 + 61));
    assert_eq!(
        entries(&log, t0 + s(200)),
        counted(&[(1, "get"), (4, "get"), (1, "set")])
    );
}

#[test]
fn events_differing_in_anything_are_not_grouped() {
    let log = AclLog::default();
    let t0 = Instant::now();
    let base = cmd("get");
    let mut multi = cmd("get");
    multi.multi = true;
    let others = [
        event(Reason::Command, "set", "bob", "id=1"),
        event(Reason::Key, "get", "bob", "id=1"),
        event(Reason::Auth, "get", "bob", "id=1"),
        event(Reason::Command, "get", "alice", "id=1"),
        event(Reason::Command, "GET", "bob", "id=1"),
        multi,
    ];
    log.add(base, t0);
    for e in others {
        log.add(e, t0);
    }
    assert_eq!(entries(&log, t0).len(), 7);
    assert!(entries(&log, t0).iter().all(|(c, _)| *c == 1));
}

#[test]
fn only_the_ten_newest_entries_are_grouped_with() {
    let log = AclLog::default();
    let t0 = Instant::now();
    log.add(cmd("old"), t0);
    for i in 0..9 {
        log.add(cmd(&format!("c{i}")), t0);
    }
    // `old` is the tenth newest: still grouped.
    log.add(cmd("old"), t0);
    assert_eq!(entries(&log, t0)[0], (2, "old".to_string()));
    for i in 0..10 {
        log.add(cmd(&format!("d{i}")), t0);
    }
    // Now the eleventh: a new entry.
    log.add(cmd("old"), t0);
    let shown = entries(&log, t0);
    assert_eq!(shown.len(), 21);
    assert_eq!(shown[0], (1, "old".to_string()));
    assert_eq!(shown[11], (2, "old".to_string()));
}

#[test]
fn an_event_exactly_a_minute_later_is_still_grouped() {
    let log = AclLog::default();
    let t0 = Instant::now();
    log.add(cmd("get"), t0);
    log.add(cmd("get"), t0 + Duration::from_secs(60));
    assert_eq!(
        entries(&log, t0 + Duration::from_secs(60)),
        counted(&[(2, "get")])
    );
}

#[test]
fn the_log_keeps_128_entries_and_resets() {
    let log = AclLog::default();
    let t0 = Instant::now();
    for i in 0..200 {
        log.add(cmd(&format!("c{i}")), t0);
    }
    let shown = entries(&log, t0);
    assert_eq!(shown.len(), 128);
    assert_eq!(shown[0].1, "c199");
    assert_eq!(shown[127].1, "c72");
    let Reply::Array(two) = log.reply(2, t0) else {
        panic!()
    };
    assert_eq!(two.len(), 2);
    let Reply::Array(none) = log.reply(0, t0) else {
        panic!()
    };
    assert!(none.is_empty());
    log.reset();
    assert_eq!(log.reply(10, t0), Reply::Array(vec![]));
    // And it fills again after a reset.
    log.add(cmd("get"), t0);
    assert_eq!(entries(&log, t0), counted(&[(1, "get")]));
}

// ---------------------------------------------------------------------
// 8. Users from the metadata record.
// ---------------------------------------------------------------------

fn version(ts: u64) -> Version {
    Version {
        ts: Timestamp(ts),
        node: 1,
    }
}

fn record(entries: &[(&str, &str)]) -> Metadata {
    let mut meta = Metadata::default();
    for (i, (name, line)) in entries.iter().enumerate() {
        let name = entry_name(name.as_bytes());
        assert!(meta.set(
            &name,
            version(10 + i as u64),
            Bytes::copy_from_slice(line.as_bytes())
        ));
    }
    meta
}

fn line_of(users: &Users, name: &str) -> Option<String> {
    users.get(name.as_bytes()).map(|e| text(&e.user.line()))
}

#[test]
fn entry_names_are_the_hex_of_the_user_name() {
    assert_eq!(entry_name(b"default"), "user/64656661756c74");
    assert_eq!(entry_name(b""), "user/");
    assert_eq!(entry_name(b"\xff "), "user/ff20");
}

#[test]
fn the_default_user_comes_from_requirepass_until_the_record_has_one() {
    let empty = Metadata::default();
    let users = Users::from_record(&empty, None);
    let default = &users.get(b"default").unwrap().user;
    assert_eq!(*default, User::default_user(None));
    assert!(default.nopass && default.enabled && default.passwords.is_empty());
    assert_eq!(
        line_of(&users, "default").unwrap(),
        "user default on nopass ~* &* +@all"
    );
    assert_eq!(users.all().count(), 1);

    let users = Users::from_record(&empty, Some("secret"));
    let default = &users.get(b"default").unwrap().user;
    assert!(!default.nopass);
    assert_eq!(default.passwords, [HASH_SECRET]);
    assert!(default.password_ok(b"secret") && !default.password_ok(b"other"));
    assert!(users.get(b"default").unwrap().perms.unrestricted);

    // An entry for `default` wins over requirepass.
    let line = format!("user default on #{HASH_PW} ~k:* resetchannels -@all +get");
    let meta = record(&[("default", &line)]);
    let users = Users::from_record(&meta, Some("secret"));
    assert_eq!(line_of(&users, "default").unwrap(), line);
    let entry = users.get(b"default").unwrap();
    assert!(entry.user.password_ok(b"pw") && !entry.user.password_ok(b"secret"));
    assert!(!entry.perms.unrestricted);
    assert_eq!(check(&entry.perms, &["GET", "k:1"]), Ok(()));
    assert_eq!(
        check(&entry.perms, &["SET", "k:1", "v"]),
        denied_command("set")
    );

    // A deleted default entry: back to requirepass.
    let mut meta = meta;
    assert!(meta.set(&entry_name(b"default"), version(99), Bytes::new()));
    let users = Users::from_record(&meta, Some("secret"));
    assert_eq!(
        users.get(b"default").unwrap().user,
        User::default_user(Some("secret"))
    );
}

#[test]
fn deleted_and_unreadable_users_are_left_out() {
    let mut meta = record(&[
        ("alice", "user alice on nopass ~* resetchannels -@all +get"),
        ("bob", "user bob on >x resetchannels -@all"),
        ("carol", "user carol on bogus"),
        ("Zed", "user Zed off resetchannels -@all"),
    ]);
    assert!(meta.set(&entry_name(b"bob"), version(50), Bytes::new()));
    // Not a user entry.
    meta.set("flushall", version(5), Bytes::new());
    let users = Users::from_record(&meta, None);
    assert!(users.get(b"bob").is_none());
    assert!(users.get(b"carol").is_none());
    let names: Vec<String> = users.all().map(|e| text(&e.user.name)).collect();
    // Byte order, as Redis lists them.
    assert_eq!(names, ["Zed", "alice", "default"]);
    let alice = users.get(b"alice").unwrap();
    assert_eq!(check(&alice.perms, &["GET", "x"]), Ok(()));
    assert_eq!(
        check(&alice.perms, &["SET", "x", "v"]),
        denied_command("set")
    );
}

#[test]
fn the_registry_follows_the_record() {
    let mut meta = record(&[("alice", "user alice on nopass ~* resetchannels -@all +get")]);
    let acl = Acl::new(&meta, None);
    assert!(acl.default_needs_no_auth());
    let generation = acl.generation();
    assert_eq!(check(&acl.perms_of(b"alice"), &["GET", "k"]), Ok(()));
    assert_eq!(
        check(&acl.perms_of(b"nosuch"), &["GET", "k"]),
        denied_command("get")
    );

    assert!(meta.set(&entry_name(b"alice"), version(100), Bytes::new()));
    let default_off = "user default off nopass ~* &* +@all";
    assert!(meta.set(
        &entry_name(b"default"),
        version(101),
        Bytes::from(default_off)
    ));
    let gone = acl.rebuild(&meta);
    assert_eq!(gone, [Bytes::from_static(b"alice")]);
    assert!(acl.generation() > generation);
    assert!(acl.users().get(b"alice").is_none());
    assert!(!acl.default_needs_no_auth());
    assert_eq!(
        check(&acl.perms_of(b"alice"), &["GET", "k"]),
        denied_command("get")
    );

    // With requirepass the default user needs a password.
    assert!(!Acl::new(&Metadata::default(), Some("pw".into())).default_needs_no_auth());
}
