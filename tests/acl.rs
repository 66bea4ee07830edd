//! ACL users across a real cluster: a user made through one node holds on
//! every node (refused FLUSHALL and keys outside its patterns everywhere),
//! deleting it closes its connections on every node, users survive
//! restarts and reach a node that was down, `requirepass` gives way to
//! ACL changes of the default user, refusals go to ACL LOG, and passwords
//! never reach a log. Replies are checked against Redis 7.0's wording;
//! byte-for-byte comparisons with redis-server are in
//! `tests/differential/cases.txt`.

mod common;

use std::time::Duration;

use common::{bulk, strings, wait_until, Client, Cluster};
use ringkv::resp::codec::Reply;

const APP_RULES: [&str; 8] = [
    "ACL",
    "SETUSER",
    "app",
    "on",
    ">app-secret-pw",
    "~app:*",
    "+@read",
    "+@write",
];

fn noperm_command(name: &str) -> Reply {
    Reply::error_code(
        "NOPERM",
        format!("this user has no permissions to run the '{name}' command"),
    )
}

fn noperm_key() -> Reply {
    Reply::error_code(
        "NOPERM",
        "this user has no permissions to access one of the keys used as arguments",
    )
}

fn wrongpass() -> Reply {
    Reply::error_code(
        "WRONGPASS",
        "invalid username-password pair or user is disabled.",
    )
}

/// A client of node `i` logged in as `user`.
fn login(c: &Cluster, i: usize, user: &str, pass: &str) -> Client {
    let mut client = c.client(i);
    assert_eq!(
        client.cmd(&["AUTH", user, pass]),
        Reply::ok(),
        "AUTH {user} on node {i}"
    );
    client
}

#[test]
fn a_user_made_through_one_node_is_refused_flushall_and_foreign_keys_on_every_node() {
    let c = Cluster::start(&["n1", "n2", "n3"], &[]);
    let mut admin = c.client(0);
    let mut rules: Vec<&str> = APP_RULES.to_vec();
    rules.push("-@dangerous");
    assert_eq!(admin.cmd(&rules), Reply::ok());
    // Rules add to the user's: MULTI and EXEC are in @transaction.
    assert_eq!(
        admin.cmd(&["ACL", "SETUSER", "app", "+@transaction"]),
        Reply::ok()
    );
    assert_eq!(admin.cmd(&["SET", "other", "x"]), Reply::ok());
    for i in 0..3 {
        // SETUSER answered once every node up had the user on disk.
        let mut app = login(&c, i, "app", "app-secret-pw");
        assert_eq!(
            app.cmd(&["FLUSHALL"]),
            noperm_command("flushall"),
            "node {i}"
        );
        assert_eq!(
            app.cmd(&["CONFIG", "SET", "maxmemory", "1"]),
            noperm_command("config|set")
        );
        assert_eq!(app.cmd(&["GET", "other"]), noperm_key(), "node {i}");
        assert_eq!(app.cmd(&["MSET", "app:a", "1", "other", "2"]), noperm_key());
        let key = format!("app:{i}");
        assert_eq!(app.cmd(&["SET", &key, "v"]), Reply::ok(), "node {i}");
        assert_eq!(app.cmd(&["GET", &key]), bulk("v"));
        assert_eq!(
            app.cmd(&["HSET", "app:h", "f", "1"]),
            Reply::Integer(if i == 0 { 1 } else { 0 })
        );
        // Inside MULTI a refused command is refused when queued, and EXEC
        // then discards the transaction, as in Redis.
        assert_eq!(app.cmd(&["MULTI"]), Reply::ok());
        assert_eq!(app.cmd(&["GET", "other"]), noperm_key());
        assert_eq!(
            app.cmd(&["EXEC"]),
            Reply::error_code(
                "EXECABORT",
                "Transaction discarded because of previous errors."
            )
        );
        let mut log = c.client(i);
        let entries = log.cmd(&["ACL", "LOG"]);
        let Reply::Array(entries) = entries else {
            panic!("{entries:?}")
        };
        let described: Vec<String> = entries.iter().map(|e| format!("{e:?}")).collect();
        assert!(
            described.iter().any(|e| e.contains("flushall")),
            "{described:?}"
        );
        assert!(described
            .iter()
            .any(|e| e.contains("\"other\"") || e.contains("b\"other\"")));
    }
    assert_eq!(
        admin.cmd(&["GET", "other"]),
        bulk("x"),
        "the refused FLUSHALL ran"
    );
    // The default user's other connections are unaffected.
    assert_eq!(c.client(2).cmd(&["FLUSHALL"]), Reply::ok());
}

#[test]
fn deleting_a_user_closes_its_connections_on_every_node() {
    let c = Cluster::start(&["n1", "n2", "n3"], &[]);
    assert_eq!(
        c.client(0)
            .cmd(&["ACL", "SETUSER", "temp", "on", ">pw", "~*", "+@all"]),
        Reply::ok()
    );
    let mut conns: Vec<Client> = (0..3).map(|i| login(&c, i, "temp", "pw")).collect();
    let mut bystander = c.client(2);
    assert_eq!(
        c.client(1)
            .cmd(&["ACL", "DELUSER", "temp", "nobody", "temp"]),
        Reply::Integer(1)
    );
    for (i, conn) in conns.iter_mut().enumerate() {
        // Closed by the node: the next read sees the end of the stream.
        assert_eq!(
            conn.try_cmd(&["PING"]),
            None,
            "node {i} kept temp's connection"
        );
    }
    assert_eq!(bystander.cmd(&["PING"]), Reply::simple("PONG"));
    for i in 0..3 {
        assert_eq!(c.client(i).cmd(&["AUTH", "temp", "pw"]), wrongpass());
        assert_eq!(c.client(i).cmd(&["ACL", "GETUSER", "temp"]), Reply::Nil);
    }
    // Deleting one's own user: the reply, then the connection closes.
    assert_eq!(
        c.client(0)
            .cmd(&["ACL", "SETUSER", "self", "on", ">pw", "+@all", "~*"]),
        Reply::ok()
    );
    let mut me = login(&c, 0, "self", "pw");
    assert_eq!(me.cmd(&["ACL", "DELUSER", "self"]), Reply::Integer(1));
    assert_eq!(me.read(), None);
    assert_eq!(
        c.client(0).cmd(&["ACL", "DELUSER", "default"]),
        Reply::err("The 'default' user cannot be removed")
    );
}

#[test]
fn users_survive_restarts_and_reach_a_node_that_was_down() {
    let mut c = Cluster::start(&["n1", "n2", "n3"], &[]);
    c.kill(2);
    assert!(
        wait_until(Duration::from_secs(10), || c.up_count(0) == Some(2)),
        "n3 not seen down"
    );
    assert_eq!(
        c.client(0)
            .cmd(&["ACL", "SETUSER", "late", "on", ">pw", "~late:*", "+get"]),
        Reply::ok()
    );
    c.spawn(2);
    assert!(
        wait_until(Duration::from_secs(10), || {
            c.client(2).try_cmd(&["AUTH", "late", "pw"]) == Some(Reply::ok())
        }),
        "the restarted node never learned the user"
    );
    // Every node restarted: the users come back from their disks.
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    for i in 0..3 {
        let mut late = login(&c, i, "late", "pw");
        assert_eq!(late.cmd(&["SET", "late:1", "v"]), noperm_command("set"));
        assert_eq!(late.cmd(&["GET", "late:1"]), Reply::Nil);
        assert_eq!(
            strings(&c.client(i).cmd(&["ACL", "USERS"])),
            ["default", "late"]
        );
    }
}

#[test]
fn requirepass_is_the_default_users_password_until_acl_changes_it() {
    let mut c = Cluster::start(&["n1", "n2", "n3"], &["--requirepass", "first-pw"]);
    let mut one = c.client(0);
    assert_eq!(
        one.cmd(&["GET", "k"]),
        Reply::error_code("NOAUTH", "Authentication required.")
    );
    assert_eq!(one.cmd(&["AUTH", "first-pw"]), Reply::ok());
    assert_eq!(
        one.cmd(&["ACL", "SETUSER", "default", "resetpass", ">second-pw"]),
        Reply::ok()
    );
    for i in 0..3 {
        assert_eq!(
            c.client(i).cmd(&["AUTH", "first-pw"]),
            wrongpass(),
            "node {i}"
        );
        assert_eq!(
            c.client(i).cmd(&["AUTH", "default", "second-pw"]),
            Reply::ok()
        );
    }
    // A restart with the same requirepass: the record's default user wins.
    c.restart(1);
    assert_eq!(c.client(1).cmd(&["AUTH", "first-pw"]), wrongpass());
    assert_eq!(c.client(1).cmd(&["AUTH", "second-pw"]), Reply::ok());
    // Neither password reached any log (failed logins are logged by user).
    for i in 0..3 {
        let log = c.log(i);
        assert!(
            log.contains("client AUTH failed"),
            "node {i} logged no failure"
        );
        for secret in ["first-pw", "second-pw"] {
            assert!(!log.contains(secret), "node {i} logged a password");
        }
    }
}

#[test]
fn users_and_their_rules_read_back_as_redis_shows_them() {
    let c = Cluster::start(&["n1"], &[]);
    let mut a = c.client(0);
    let rules = [
        "ACL",
        "SETUSER",
        "r",
        "on",
        ">pw",
        "%R~read:*",
        "~rw:*",
        "&news",
        "+@read",
        "-get",
        "+config|get",
    ];
    assert_eq!(a.cmd(&rules), Reply::ok());
    let hash = "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4";
    assert_eq!(
        strings(&a.cmd(&["ACL", "LIST"])),
        [
            "user default on nopass ~* &* +@all".to_string(),
            format!("user r on #{hash} %R~read:* ~rw:* resetchannels &news -@all +@read -get +config|get"),
        ]
    );
    let mut r = login(&c, 0, "r", "pw");
    assert_eq!(r.cmd(&["GET", "read:1"]), noperm_command("get"));
    assert_eq!(r.cmd(&["STRLEN", "read:1"]), Reply::Integer(0));
    assert_eq!(
        strings(&r.cmd(&["CONFIG", "GET", "maxmemory"])),
        ["maxmemory", "0"]
    );
    assert_eq!(
        r.cmd(&["CONFIG", "SET", "maxmemory", "0"]),
        noperm_command("config|set")
    );
    // %R~ allows reads only: a write to read:* is refused by key.
    assert_eq!(a.cmd(&["ACL", "SETUSER", "r", "+set"]), Reply::ok());
    assert_eq!(r.cmd(&["SET", "read:1", "v"]), noperm_key());
    assert_eq!(r.cmd(&["SET", "rw:1", "v"]), Reply::ok());
    assert_eq!(
        a.cmd(&["ACL", "DRYRUN", "r", "set", "read:1", "v"]),
        bulk("This user has no permissions to access the 'read:1' key")
    );
    assert_eq!(r.cmd(&["ACL", "WHOAMI"]), noperm_command("acl|whoami"));
    assert_eq!(a.cmd(&["ACL", "WHOAMI"]), bulk("default"));
}

/// Users changed on both sides of a partition: each side applies its own
/// changes at once; after the heal every node holds, per user, the later
/// change (last writer wins), and a deletion made later than a change on
/// the other side stays a deletion.
#[test]
fn users_changed_on_both_sides_of_a_partition_merge_last_writer_wins() {
    let flags = [
        "--fault-injection",
        "--set",
        "heartbeat_interval_ms=50",
        "--set",
        "failure_timeout_ms=300",
    ];
    let c = Cluster::start(&["n1", "n2", "n3", "n4"], &flags);
    for user in ["both", "gone"] {
        assert_eq!(
            c.client(0)
                .cmd(&["ACL", "SETUSER", user, "on", ">start", "~*", "+@all"]),
            Reply::ok()
        );
    }
    common::split(&c, &["n1", "n2"]);
    // Each side: its own change holds on its side at once (SETUSER spreads
    // to the nodes it sees up).
    assert_eq!(
        c.client(2)
            .cmd(&["ACL", "SETUSER", "both", "resetpass", ">right-first"]),
        Reply::ok()
    );
    assert_eq!(
        c.client(2)
            .cmd(&["ACL", "SETUSER", "gone", "resetpass", ">kept"]),
        Reply::ok()
    );
    assert_eq!(
        c.client(3).cmd(&["AUTH", "both", "right-first"]),
        Reply::ok()
    );
    assert_eq!(
        c.client(0)
            .cmd(&["ACL", "SETUSER", "both", "resetpass", ">left-later"]),
        Reply::ok()
    );
    assert_eq!(
        c.client(1).cmd(&["ACL", "DELUSER", "gone"]),
        Reply::Integer(1)
    );
    assert_eq!(
        c.client(1).cmd(&["AUTH", "both", "left-later"]),
        Reply::ok()
    );
    assert_eq!(
        c.client(3).cmd(&["AUTH", "both", "left-later"]),
        wrongpass()
    );
    common::heal(&c);
    for i in 0..4 {
        assert!(
            wait_until(Duration::from_secs(10), || {
                c.client(i).try_cmd(&["AUTH", "both", "left-later"]) == Some(Reply::ok())
                    && c.client(i).try_cmd(&["ACL", "GETUSER", "gone"]) == Some(Reply::Nil)
            }),
            "node {i} did not converge on the later changes"
        );
        assert_eq!(
            c.client(i).cmd(&["AUTH", "both", "right-first"]),
            wrongpass()
        );
        assert_eq!(c.client(i).cmd(&["AUTH", "gone", "kept"]), wrongpass());
    }
}

/// A command queued in MULTI and refused at EXEC because the user's rules
/// changed meanwhile: that element of EXEC's reply is Redis's "ACLs rules
/// changed" NOPERM, and the other commands run.
#[test]
fn a_queued_command_whose_permission_was_taken_away_is_refused_at_exec() {
    let c = Cluster::start(&["n1", "n2"], &[]);
    assert_eq!(
        c.client(0)
            .cmd(&["ACL", "SETUSER", "tx", "on", ">pw", "~*", "+@all"]),
        Reply::ok()
    );
    let mut tx = login(&c, 1, "tx", "pw");
    assert_eq!(tx.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(tx.cmd(&["SET", "tx:a", "1"]), Reply::simple("QUEUED"));
    assert_eq!(tx.cmd(&["GET", "tx:a"]), Reply::simple("QUEUED"));
    assert_eq!(
        c.client(0).cmd(&["ACL", "SETUSER", "tx", "-set"]),
        Reply::ok()
    );
    assert_eq!(
        tx.cmd(&["EXEC"]),
        Reply::Array(vec![
            Reply::error_code(
                "NOPERM",
                "ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: no permission to execute the command or subcommand"
            ),
            Reply::Nil,
        ])
    );
}

/// CLIENT KILL USER closes the connections of that user only.
#[test]
fn client_kill_user_closes_that_users_connections_only() {
    let c = Cluster::start(&["n1"], &[]);
    let mut admin = c.client(0);
    assert_eq!(
        admin.cmd(&["ACL", "SETUSER", "k", "on", ">pw", "~*", "+@all"]),
        Reply::ok()
    );
    let mut ks = [login(&c, 0, "k", "pw"), login(&c, 0, "k", "pw")];
    let mut other = c.client(0);
    assert_eq!(
        admin.cmd(&["CLIENT", "KILL", "USER", "k"]),
        Reply::Integer(2)
    );
    for k in &mut ks {
        assert_eq!(k.try_cmd(&["PING"]), None, "a connection of k survived");
    }
    assert_eq!(other.cmd(&["PING"]), Reply::simple("PONG"));
    assert_eq!(
        admin.cmd(&["CLIENT", "KILL", "USER", "nobody"]),
        Reply::err("No such user 'nobody'")
    );
}
