//! `/metrics` against a live 3-node cluster: the text parses as the
//! exposition format, counters move with traffic, histograms have buckets,
//! and failures show in the membership and heartbeat counters.

mod common;
#[path = "support/prom.rs"]
mod prom;

use std::time::Duration;

use common::{bulk, http_get, wait_until, Cluster, FAILURE_MS};
use ringkv::membership::State;
use ringkv::resp::codec::Reply;

fn scrape(c: &Cluster, i: usize) -> prom::Exposition {
    let text = http_get(&c.nodes[i].admin, "/metrics").expect("/metrics answers 200");
    prom::parse(&text).unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"))
}

#[test]
fn metrics_parse_and_move_with_traffic() {
    let mut c = Cluster::start(&["m1", "m2", "m3"], &[]);
    let before = scrape(&c, 0);
    for ty in [
        "ringkv_requests",
        "ringkv_replica_acks",
        "ringkv_heartbeats_sent",
    ] {
        assert_eq!(
            before.types.get(ty).map(String::as_str),
            Some("counter"),
            "{ty}"
        );
    }
    for ty in [
        "ringkv_request_duration_seconds",
        "ringkv_log_fsync_duration_seconds",
    ] {
        assert_eq!(
            before.types.get(ty).map(String::as_str),
            Some("histogram"),
            "{ty}"
        );
    }
    for ty in ["ringkv_keys", "ringkv_tombstones", "ringkv_log_bytes"] {
        assert_eq!(
            before.types.get(ty).map(String::as_str),
            Some("gauge"),
            "{ty}"
        );
    }

    let mut cl = c.client(0);
    for i in 0..20 {
        assert_eq!(cl.cmd(&["SET", &format!("k{i}"), "v"]), Reply::ok());
    }
    for i in 0..20 {
        assert_eq!(cl.cmd(&["GET", &format!("k{i}")]), bulk("v"));
    }
    assert_eq!(cl.cmd(&["DEL", "k0"]), Reply::Integer(1));
    assert!(matches!(cl.cmd(&["NOSUCHCOMMAND"]), Reply::Error(_)));

    let after = scrape(&c, 0);
    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let ok = |cmd| [("command", cmd), ("outcome", "ok")];
    assert_eq!(moved("ringkv_requests_total", &ok("set")), 20.0);
    assert_eq!(moved("ringkv_requests_total", &ok("get")), 20.0);
    assert_eq!(moved("ringkv_requests_total", &ok("del")), 1.0);
    assert_eq!(
        moved(
            "ringkv_requests_total",
            &[("command", "other"), ("outcome", "error")]
        ),
        1.0
    );
    assert!(moved("ringkv_commands_total", &[]) >= 42.0);
    let get = [("command", "get")];
    assert_eq!(moved("ringkv_request_duration_seconds_count", &get), 20.0);
    assert!(after.value("ringkv_request_duration_seconds_sum", &get) > 0.0);
    let buckets = after
        .samples
        .keys()
        .filter(|k| k.starts_with("ringkv_request_duration_seconds_bucket{command=\"get\""))
        .count();
    assert!(buckets >= 10, "only {buckets} latency buckets");
    assert!(moved("ringkv_replica_acks_total", &[("op", "write")]) >= 20.0);
    assert!(moved("ringkv_replica_acks_total", &[("op", "read")]) >= 1.0);
    assert!(
        moved(
            "ringkv_peer_messages_sent_by_kind_total",
            &[("kind", "put")]
        ) >= 20.0
    );
    assert!(moved("ringkv_peer_bytes_sent_by_kind_total", &[("kind", "put")]) > 0.0);
    assert!(
        moved(
            "ringkv_peer_messages_received_by_kind_total",
            &[("kind", "put_ack")]
        ) >= 20.0
    );
    let sent = before.value("ringkv_heartbeats_sent_total", &[]);
    assert!(wait_until(Duration::from_secs(2), || {
        scrape(&c, 0).value("ringkv_heartbeats_sent_total", &[]) >= sent + 2.0
    }));
    assert!(moved("ringkv_log_records_total", &[]) >= 1.0);
    assert!(after.value("ringkv_log_bytes", &[]) > 0.0);
    assert_eq!(after.value("ringkv_nodes_up", &[]), 3.0);
    // Every node holds all 20 keys (N = 3), one of them now a tombstone.
    assert_eq!(after.value("ringkv_keys", &[]), 19.0);
    assert_eq!(after.value("ringkv_tombstones", &[]), 1.0);

    // A node dies: the survivors count missed heartbeats and a down event.
    let down_before = after.value("ringkv_membership_events_total", &[("event", "down")]);
    c.kill(2);
    assert!(wait_until(Duration::from_millis(FAILURE_MS * 10), || {
        c.state_of(0, "m3") == Some(State::Down)
    }));
    let dead = scrape(&c, 0);
    assert_eq!(
        dead.value("ringkv_membership_events_total", &[("event", "down")]) - down_before,
        1.0
    );
    assert!(dead.value("ringkv_heartbeats_missed_total", &[]) >= 1.0);
    assert_eq!(dead.value("ringkv_nodes_up", &[]), 2.0);

    // Writes m3 misses while it is down...
    let mut client = c.client(0);
    for k in 0..10 {
        assert_eq!(
            client.cmd(&["SET", &format!("missed{k}"), "v"]),
            Reply::ok()
        );
    }
    // ...reach it from the survivors by anti-entropy once it is back (from
    // whichever survivor gets there first, so count both).
    let sent_to_m3 = |c: &Cluster| -> f64 {
        (0..2)
            .map(|i| scrape(c, i).value("ringkv_anti_entropy_keys_sent_total", &[("peer", "m3")]))
            .sum()
    };
    let before = sent_to_m3(&c);
    c.spawn(2);
    assert!(wait_until(Duration::from_secs(10), || {
        scrape(&c, 0).value("ringkv_anti_entropy_rounds_total", &[("peer", "m3")]) >= 1.0
            && sent_to_m3(&c) >= before + 10.0
    }));
    let body = http_get(&c.nodes[0].admin, "/api/cluster").unwrap();
    assert!(body.contains("m3 is down"), "{body}");
    // Whichever side started the repairing round records it in its feed.
    assert!(wait_until(Duration::from_secs(2), || (0..3)
        .filter_map(|i| http_get(&c.nodes[i].admin, "/api/cluster"))
        .any(|feed| feed.contains("anti-entropy with"))));
}

#[test]
fn the_parser_rejects_broken_text() {
    assert!(
        prom::parse("ringkv_x 1\n# EOF\n").is_err(),
        "undeclared family"
    );
    assert!(
        prom::parse("# TYPE a counter\na_total one\n# EOF\n").is_err(),
        "bad value"
    );
    assert!(
        prom::parse("# TYPE a counter\na_total 1\n").is_err(),
        "no EOF"
    );
    let hist = "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n# EOF\n";
    assert!(prom::parse(hist).is_err(), "buckets going down");
    assert!(prom::parse("# TYPE a counter\na_total{x=\"1\"} 1\n# EOF\n").is_ok());
}
