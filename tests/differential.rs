//! Differential test: every command of `tests/differential/cases.txt` is
//! sent to a reference `redis-server` and to a 3-node ringkv cluster, on a
//! RESP2 connection and on one that began with `HELLO 3`, and the raw
//! reply bytes are compared. A difference fails the test unless
//! `tests/differential/differences.txt` lists it, and a listed difference
//! that no longer occurs fails it too. `DIFFERENTIAL_SELF=1` compares
//! redis-server with a second redis-server instead, which must show no
//! difference at all: that proves the harness and its markers sound.
//! (The variables are not named `RINGKV_*`: a node reads every such
//! variable as a setting and refuses the ones it does not know.)
//! File formats: `tests/differential/README.md`.

mod common;
#[path = "differential/corpus.rs"]
mod corpus;
#[path = "differential/frame.rs"]
mod frame;
#[path = "differential/wire.rs"]
mod wire;

use std::collections::BTreeMap;
use std::path::Path;

use common::redis_server::RedisServer;
use common::Cluster;
use corpus::{Case, Difference, Marker, Script};
use wire::{Conn, Outcome};

/// The command every RESP3 connection starts with.
const PREAMBLE: &str = "HELLO 3";

/// The server compared with the reference.
enum Target {
    Ringkv(Cluster),
    Redis(RedisServer),
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Ringkv(_) => "ringkv",
            Target::Redis(_) => "redis#2",
        }
    }

    /// Client addresses; scripts take turns over them.
    fn addrs(&self) -> Vec<String> {
        match self {
            Target::Ringkv(c) => c.nodes.iter().map(|n| n.client.clone()).collect(),
            Target::Redis(r) => vec![r.addr.clone()],
        }
    }
}

/// One reply that differed.
struct Mismatch {
    script: usize,
    protocol: u8,
    /// The case within the script; `None` for the HELLO 3 preamble.
    case: Option<usize>,
    addr: String,
    reference: Outcome,
    target: Outcome,
}

#[derive(Default)]
struct Run {
    mismatches: Vec<Mismatch>,
    /// FLUSHALL (or connecting) that failed before scripts: (server, what
    /// happened) and how often.
    setup: BTreeMap<(String, String), usize>,
    setup_conns: BTreeMap<String, Conn>,
    /// Every exchange, when `DIFFERENTIAL_TRANSCRIPT` names a file.
    transcript: Option<String>,
}

#[test]
fn replies_match_redis_byte_for_byte() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential");
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let scripts =
        corpus::parse_cases(&read("cases.txt")).unwrap_or_else(|e| panic!("cases.txt: {e}"));
    let differences = corpus::parse_differences(&read("differences.txt"))
        .unwrap_or_else(|e| panic!("differences.txt: {e}"));
    corpus::check_differences_name_cases(&differences, &scripts, PREAMBLE);
    corpus::print_summary(&scripts);

    let self_check = std::env::var("DIFFERENTIAL_SELF").is_ok_and(|v| v == "1");
    let reference = RedisServer::start();
    let target = if self_check {
        Target::Redis(RedisServer::start())
    } else {
        Target::Ringkv(Cluster::start(&["a", "b", "c"], &[]))
    };
    let addrs = target.addrs();
    let transcript_path = std::env::var("DIFFERENTIAL_TRANSCRIPT").ok();
    let mut run = Run {
        transcript: transcript_path.as_ref().map(|_| String::new()),
        ..Run::default()
    };
    for (i, script) in scripts.iter().enumerate() {
        for protocol in [2, 3] {
            run.script(
                i,
                script,
                protocol,
                &reference.addr,
                &addrs[i % addrs.len()],
            );
        }
    }

    let name = target.name();
    if let (Some(path), Some(text)) = (&transcript_path, &run.transcript) {
        std::fs::write(path, text).unwrap_or_else(|e| panic!("transcript {path}: {e}"));
        println!("transcript of every exchange written to {path}");
    }
    let listed = (!self_check).then_some(differences.as_slice());
    let mut failures = judge(&run.mismatches, &scripts, listed, name);
    for ((server, what), n) in &run.setup {
        failures.push(format!(
            "setup before scripts, on {server}, {n} times: {what}"
        ));
    }
    if let Target::Ringkv(mut cluster) = target {
        for i in 0..cluster.nodes.len() {
            if !cluster.alive(i) {
                failures.push(format!(
                    "ringkv node {} exited during the test; log:\n{}",
                    cluster.nodes[i].name,
                    cluster.log(i)
                ));
            }
        }
        // Dropped here so that the failure below does not print every
        // node's whole log.
        drop(cluster);
    }
    let cases: usize = scripts.iter().map(|s| s.cases.len()).sum();
    assert!(
        failures.is_empty(),
        "{} problem(s) comparing {name} with redis-server over {cases} cases x 2 protocols:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The failures among `mismatches`: those `differences` does not list (or
/// lists with a prefix the reply does not start with), and the listed
/// differences that did not occur. With no list (self-check mode) every
/// mismatch fails. A preamble mismatch repeated on many connections is
/// shown once, with a count.
fn judge(
    mismatches: &[Mismatch],
    scripts: &[Script],
    differences: Option<&[Difference]>,
    name: &str,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut used = vec![0usize; differences.map_or(0, |d| d.len())];
    let mut preamble_seen = BTreeMap::new();
    for m in mismatches {
        let text = m
            .case
            .map_or(PREAMBLE, |c| &scripts[m.script].cases[c].text);
        let listed = differences.and_then(|ds| {
            let i = ds.iter().position(|d| d.covers(text, m.protocol))?;
            Some((i, &ds[i]))
        });
        let verdict = match listed {
            Some((i, d)) => {
                used[i] += 1;
                match (&d.expect_prefix, &m.target) {
                    (None, _) => continue,
                    (Some(p), Outcome::Reply(raw, _)) if raw.starts_with(p) => continue,
                    (Some(p), _) => format!(
                        "listed at differences.txt:{}, but {name}'s reply does not start with {:?}",
                        d.line,
                        bytes::Bytes::copy_from_slice(p)
                    ),
                }
            }
            None => "not listed in differences.txt".to_string(),
        };
        if m.case.is_none() {
            let key = (
                m.protocol,
                masked_preamble(&m.reference),
                masked_preamble(&m.target),
            );
            let seen: &mut usize = preamble_seen.entry(key).or_default();
            *seen += 1;
            if *seen > 1 {
                continue;
            }
        }
        failures.push(describe(m, scripts, &verdict, name));
    }
    for ((protocol, r, t), n) in preamble_seen.into_iter().filter(|(_, n)| *n > 1) {
        failures.push(format!(
            "[resp{protocol}] the {PREAMBLE} preamble differed the same way on {n} connections \
             (shown once above; as compared): redis {r}, {name} {t}"
        ));
    }
    for (d, n) in differences.unwrap_or_default().iter().zip(used) {
        if n == 0 {
            failures.push(format!(
                "differences.txt:{}: `{}` no longer differs: remove it from the list ({})",
                d.line, d.pattern, d.reason
            ));
        } else {
            println!("deliberate difference x{n}: {} ({})", d.pattern, d.reason);
        }
    }
    failures
}

impl Run {
    /// Runs `script` on fresh connections of `protocol` to both servers.
    fn script(&mut self, i: usize, script: &Script, protocol: u8, reference: &str, target: &str) {
        self.flush(reference);
        self.flush(target);
        let mut a = Conn::connect(reference).expect("connect to the reference redis-server");
        let mut b = match Conn::connect(target) {
            Ok(c) => c,
            Err(e) => return self.setup_failed(target, format!("connect: {e}")),
        };
        let mut compare = |case: Option<usize>, args: &[Vec<u8>], marker: Option<&Marker>| {
            let (ra, rb) = (a.call(args), b.call(args));
            let agree = same(&ra, &rb, marker);
            if let Some(t) = self.transcript.as_mut() {
                let line = case.map_or(0, |c| script.cases[c].line);
                let text = case.map_or(PREAMBLE, |c| &script.cases[c].text);
                let verdict = if agree { "same" } else { "DIFFERENT" };
                t.push_str(&format!(
                    "[resp{protocol}] {line:>4} {text}\n    reference: {}\n    target:    {} ({verdict})\n",
                    ra.describe(),
                    rb.describe()
                ));
            }
            if !agree {
                self.mismatches.push(Mismatch {
                    script: i,
                    protocol,
                    case,
                    addr: target.to_string(),
                    reference: ra,
                    target: rb,
                });
            }
        };
        if protocol == 3 {
            compare(None, &split(PREAMBLE), Some(&preamble_marker()));
        }
        for (c, case) in script.cases.iter().enumerate() {
            compare(Some(c), &case.args, case.marker.as_ref());
        }
    }

    /// FLUSHALL on a long-lived setup connection to `addr`.
    fn flush(&mut self, addr: &str) {
        let conn = match self.setup_conns.remove(addr) {
            Some(c) => Ok(c),
            None => Conn::connect(addr),
        };
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => return self.setup_failed(addr, format!("connect: {e}")),
        };
        let reply = conn.call(&split("FLUSHALL"));
        if !matches!(&reply, Outcome::Reply(raw, _) if raw == b"+OK\r\n") {
            self.setup_failed(addr, format!("FLUSHALL answered {}", reply.describe()));
        }
        if !matches!(reply, Outcome::Reply(..)) {
            return; // The connection is over; the next flush opens another.
        }
        self.setup_conns.insert(addr.to_string(), conn);
    }

    fn setup_failed(&mut self, addr: &str, what: String) {
        *self.setup.entry((addr.to_string(), what)).or_default() += 1;
    }
}

/// How the HELLO 3 preamble's reply is compared: its `id` is the
/// connection's, which differs between servers.
fn preamble_marker() -> Marker {
    Marker {
        mask: vec!["id".into()],
        reason: "the connection id differs between servers".into(),
        ..Marker::default()
    }
}

/// A preamble outcome as compared (its `id` masked), for grouping.
fn masked_preamble(o: &Outcome) -> String {
    match o {
        Outcome::Reply(_, f) => show(&normalize(f, &preamble_marker()), false),
        other => other.describe(),
    }
}

fn split(line: &str) -> Vec<Vec<u8>> {
    corpus::split_args(line).expect("a valid command line")
}

/// Whether two outcomes agree, under `marker` if there is one.
fn same(a: &Outcome, b: &Outcome, marker: Option<&Marker>) -> bool {
    match (a, b, marker) {
        (Outcome::Reply(ra, _), Outcome::Reply(rb, _), None) => ra == rb,
        (Outcome::Reply(_, fa), Outcome::Reply(_, fb), Some(m)) => {
            normalize(fa, m) == normalize(fb, m)
        }
        _ => a == b,
    }
}

/// A reply as `marker` compares it.
fn normalize(f: &frame::Frame, m: &Marker) -> Vec<u8> {
    let mut f = f.clone();
    if !m.mask.is_empty() {
        f = f.masked(&m.mask);
    }
    if m.unordered || m.unordered_pairs {
        f = f.sorted(m.unordered_pairs);
    }
    if m.shape {
        return f.shape().into_bytes();
    }
    let mut out = Vec::new();
    f.encode(&mut out);
    out
}

/// The failure report for one mismatch: protocol, where, the script with
/// the command marked, the comparison used, and both replies escaped.
fn describe(m: &Mismatch, scripts: &[Script], verdict: &str, name: &str) -> String {
    let script = &scripts[m.script];
    let case: Option<&Case> = m.case.map(|c| &script.cases[c]);
    let mut out = format!(
        "[resp{}] section \"{}\", script at cases.txt:{}, {name} at {}: {verdict}\n  script:\n",
        m.protocol, script.section, script.cases[0].line, m.addr
    );
    if m.protocol == 3 {
        let mark = if case.is_none() { '>' } else { ' ' };
        out += &format!("    {mark}  (first) {PREAMBLE}\n");
    }
    for (c, line) in script.cases.iter().enumerate() {
        let mark = if m.case == Some(c) { '>' } else { ' ' };
        out += &format!("    {mark} {:>7} {}\n", line.line, line.text);
    }
    let (text, marker) = match case {
        Some(c) => (c.text.as_str(), c.marker.clone()),
        None => (PREAMBLE, Some(preamble_marker())),
    };
    out += &format!("  command:  {text}\n");
    if let Some(mk) = marker {
        let (a, b) = match (&m.reference, &m.target) {
            (Outcome::Reply(_, fa), Outcome::Reply(_, fb)) => (
                show(&normalize(fa, &mk), mk.shape),
                show(&normalize(fb, &mk), mk.shape),
            ),
            _ => ("-".into(), "-".into()),
        };
        out += &format!(
            "  compared: {} ({})\n    redis as compared:  {a}\n    {name} as compared: {b}\n",
            mk.words(),
            mk.reason
        );
    }
    out += &format!(
        "  redis:  {}\n  {name}: {}",
        m.reference.describe(),
        m.target.describe()
    );
    out
}

fn show(normalized: &[u8], shape: bool) -> String {
    if shape {
        String::from_utf8_lossy(normalized).into_owned()
    } else {
        format!("{:?}", bytes::Bytes::copy_from_slice(normalized))
    }
}

#[cfg(test)]
mod judge_tests {
    use super::*;

    fn reply(raw: &[u8]) -> Outcome {
        let (f, _) = frame::parse(raw).unwrap().unwrap();
        Outcome::Reply(raw.to_vec(), f)
    }

    fn mismatch(case: Option<usize>, protocol: u8, reference: &[u8], target: &[u8]) -> Mismatch {
        Mismatch {
            script: 0,
            protocol,
            case,
            addr: "x".into(),
            reference: reply(reference),
            target: reply(target),
        }
    }

    #[test]
    fn listed_unlisted_stale_and_wrong_prefix_are_told_apart() {
        let scripts = corpus::parse_cases("READONLY\nLPUSH k v\nGET k\nSELECT 1\n").unwrap();
        let differences = corpus::parse_differences(
            "READONLY => \"+OK\" -- cluster\n\
             LPUSH * => \"-ERR unknown command\" -- lists\n\
             SELECT 1 -- one db\n\
             [resp3] GET k -- only resp3\n",
        )
        .unwrap();
        let ms = [
            // Listed, and the reply has the promised prefix: fine.
            mismatch(Some(0), 2, b"-ERR no cluster\r\n", b"+OK\r\n"),
            // Listed, but the reply is not what the list promises.
            mismatch(Some(1), 2, b":1\r\n", b"+OK\r\n"),
            // Listed for RESP3 only, differing on RESP2: a failure.
            mismatch(Some(2), 2, b"$1\r\nv\r\n", b"$-1\r\n"),
        ];
        let failures = judge(&ms, &scripts, Some(&differences), "ringkv");
        assert_eq!(failures.len(), 4, "{failures:#?}");
        assert!(failures[0].contains("does not start with b\"-ERR unknown command\""));
        assert!(failures[0].contains("> ") && failures[0].contains("LPUSH k v"));
        assert!(failures[1].contains("not listed") && failures[1].contains("[resp2]"));
        assert!(failures[1].contains(r#"b"$1\r\nv\r\n""#), "replies escaped");
        // SELECT 1 and [resp3] GET k never differed: stale.
        assert!(failures[2].contains("`SELECT 1` no longer differs"));
        assert!(failures[3].contains("`GET k` no longer differs"));
        // Without a list (self-check), every mismatch fails, none is stale.
        assert_eq!(judge(&ms, &scripts, None, "redis#2").len(), 3);
    }

    #[test]
    fn a_repeated_preamble_mismatch_is_shown_once_with_a_count() {
        let scripts = corpus::parse_cases("PING\n").unwrap();
        let hello = |id: &str| format!("%2\r\n+proto\r\n:3\r\n+id\r\n:{id}\r\n").into_bytes();
        let ms: Vec<Mismatch> = ["1", "22", "333"]
            .iter()
            .map(|id| mismatch(None, 3, &hello(id), b"-NOPROTO x\r\n"))
            .collect();
        let failures = judge(&ms, &scripts, None, "ringkv");
        assert_eq!(failures.len(), 2, "{failures:#?}");
        assert!(failures[0].contains("(first) HELLO 3"));
        assert!(failures[1].contains("on 3 connections"));
    }
}
