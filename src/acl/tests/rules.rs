//! Rule parsing and its errors, case, passwords, key and channel patterns,
//! and the `ACL LIST` line, against Redis 7.0.15.

use super::round_trip::SAMPLE_CALLS;
use super::*;

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
