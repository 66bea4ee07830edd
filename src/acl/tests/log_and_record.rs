//! ACL LOG's grouping, and the users read from the metadata record.

use super::*;

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
