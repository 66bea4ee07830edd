//! Rolling upgrades (and downgrades) of a real cluster under load, shared
//! by the tests of `tests/upgrade.rs`: the releases to run ([`Release`],
//! previous ones built by `tools/release.sh` from the commits `RELEASES`
//! names), one node replaced at a time the way an operator would do it
//! ([`Rollout::replace`]), checks that writes cross between the versions
//! while both run, and the end of a run: convergence, the history checker
//! and the count of failed requests ([`Rollout::finish`]).
//!
//! Why this procedure: a leaderless cluster is upgraded by restarting one
//! node at a time on the new binary, on the same data directory, while
//! clients go on through the others. What can go wrong is exactly what
//! this checks: the new binary cannot read the old one's log or snapshot
//! (it is started on them, after the old one compacted its log), the two
//! versions cannot talk (the peer protocol version each link settles on is
//! checked, and writes through one version are read through the other),
//! or requests fail while a node goes and comes back (none may).
//!
//! Included by `tests/upgrade.rs` with `#[path]`, as `load.rs` is.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringkv::resp::codec::Reply;

use crate::common::{bulk, strings, wait_until, Client, Cluster};
use crate::load::{agreed, Done, Failure, Load, Mix, Running, TTL_MS};

/// The node names of a rollout.
pub const NAMES: [&str; 3] = ["n1", "n2", "n3"];

/// Settings every node gets, whatever its release (all of them accept
/// these): a small log segment and compaction threshold, so that each
/// release compacts its log into a snapshot under the load and the next
/// release has to open that snapshot.
pub const FLAGS: [&str; 4] = [
    "--set",
    "log_segment_bytes=16384",
    "--set",
    "compaction_min_bytes=32768",
];

/// Client threads of the load.
const CLIENTS: usize = 4;

/// Requests the load completes after each replacement before the next
/// step (a quarter of them through the replaced node).
const MIXED_REQUESTS: u64 = 400;

/// A release a node can run.
#[derive(Clone, Debug)]
pub struct Release {
    /// Its version, as `RELEASES` names it (the current build: Cargo's).
    pub version: String,
    /// Its binary; `None`: the current build.
    pub binary: Option<PathBuf>,
    /// The newest peer protocol version it speaks.
    pub protocol_max: u32,
    /// Whether its nodes tell their peers when they stop (0.3.0 is the
    /// first release that does: see `node/drain.rs`).
    pub announces_stop: bool,
}

impl Release {
    /// The current build.
    pub fn current() -> Release {
        Release {
            version: env!("CARGO_PKG_VERSION").to_string(),
            binary: None,
            protocol_max: ringkv::message::PROTOCOL_VERSION,
            announces_stop: true,
        }
    }

    /// A previous release named in `RELEASES`, built by `tools/release.sh`
    /// if it is not yet (the first run takes a minute or two).
    pub fn previous(version: &str) -> Release {
        let root = env!("CARGO_MANIFEST_DIR");
        let releases = std::fs::read_to_string(format!("{root}/RELEASES")).expect("RELEASES");
        let line = releases
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .find(|l| l.split_whitespace().next() == Some(version))
            .unwrap_or_else(|| panic!("RELEASES names no release {version}"));
        let protocols = line.split_whitespace().nth(2).expect("a protocol range");
        let protocol_max = protocols
            .rsplit("..")
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad protocol range {protocols:?} in RELEASES"));
        eprintln!("upgrade: finding (or building) ringkv {version} with tools/release.sh");
        let t = Instant::now();
        let out = Command::new(format!("{root}/tools/release.sh"))
            .args(["bin", version])
            .stderr(Stdio::inherit())
            .output()
            .expect("run tools/release.sh");
        assert!(
            out.status.success(),
            "tools/release.sh bin {version} failed"
        );
        let path = String::from_utf8(out.stdout)
            .expect("a path")
            .trim()
            .to_string();
        eprintln!(
            "upgrade: ringkv {version} is {path} ({:.1} s)",
            t.elapsed().as_secs_f64()
        );
        Release {
            version: version.to_string(),
            binary: Some(PathBuf::from(path)),
            protocol_max,
            // Every release before 0.3.0.
            announces_stop: false,
        }
    }
}

/// A cluster, the release each node runs, and the load on it.
pub struct Rollout {
    pub c: Cluster,
    pub running: Vec<Release>,
    pub mix: Mix,
    load: Running,
    /// How many times each node's log said it compacted, when it started.
    compactions_at_start: Vec<usize>,
    /// Tokens per node, as the first node that reports them said.
    tokens: Option<usize>,
    /// When (load time, from the drain to the undrain) a node of a release
    /// that does not announce its stop was replaced, and which.
    unannounced: Vec<(f64, f64, String)>,
    t0: Instant,
}

/// How many times node `i`'s log (over all its runs) says it compacted.
fn compactions(c: &Cluster, i: usize) -> usize {
    c.log(i).matches("compacted the commit log").count()
}

impl Rollout {
    /// Starts every node on `release` and the load (`mix`) on them.
    pub fn start(release: &Release, mix: Mix) -> Rollout {
        let c = Cluster::start_binary(&NAMES, &FLAGS, release.binary.as_deref());
        let addrs = c.nodes.iter().map(|n| n.client.clone()).collect();
        let mut r = Rollout {
            running: vec![release.clone(); NAMES.len()],
            compactions_at_start: vec![0; NAMES.len()],
            tokens: None,
            unannounced: Vec::new(),
            load: Load::start(addrs, mix, CLIENTS),
            mix,
            c,
            t0: Instant::now(),
        };
        r.say(&format!(
            "3 nodes on {}, load of {mix:?} from {CLIENTS} clients",
            release.version
        ));
        for i in 0..NAMES.len() {
            r.check_links(i);
        }
        r.check_placement();
        r
    }

    fn say(&self, what: &str) {
        eprintln!("upgrade: {:6.1} s  {what}", self.t0.elapsed().as_secs_f64());
    }

    /// The releases the nodes run, for messages.
    fn versions(&self) -> String {
        let v: Vec<&str> = self.running.iter().map(|r| r.version.as_str()).collect();
        v.join(", ")
    }

    /// Replaces every node, one at a time, by `to`; after each of the
    /// first two replacements (while both versions run), the cross-version
    /// checks.
    pub fn roll_to(&mut self, to: &Release) {
        for i in 0..NAMES.len() {
            self.replace(i, to);
            if i + 1 < NAMES.len() {
                self.cross_check(i, i + 1);
            }
        }
    }

    /// Replaces node `i` by `to`, as an operator would: wait until it has
    /// compacted its log at least once (so `to` opens a snapshot its
    /// release wrote), drain it, stop it with SIGTERM, start `to` on the
    /// same data directory, wait until every node sees it up in its new
    /// generation, undrain it. The load must make progress meanwhile.
    pub fn replace(&mut self, i: usize, to: &Release) {
        let (name, from) = (NAMES[i], self.running[i].version.clone());
        let announced = self.running[i].announces_stop;
        let at_start = self.compactions_at_start[i];
        assert!(
            wait_until(Duration::from_secs(60), || compactions(&self.c, i)
                > at_start),
            "{name} ({from}) never compacted its log under the load"
        );
        let snapshots = std::fs::read_dir(self.c.nodes[i].data_dir.join("log"))
            .expect("a log directory")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".snap"))
            })
            .count();
        assert!(snapshots > 0, "{name} ({from}) left no snapshot");
        let done_before = self.load.load.done();
        let drained_at = self.load.load.elapsed();
        self.load.load.drain(i);
        let status = self
            .c
            .stop(i, Duration::from_secs(20))
            .expect("it was running");
        assert!(
            status.success(),
            "{name} ({from}) exited with {status} on SIGTERM"
        );
        self.c.nodes[i].binary = to.binary.clone();
        self.compactions_at_start[i] = compactions(&self.c, i);
        self.running[i] = to.clone();
        self.c.spawn(i);
        let (generation, release) = wait_for(Duration::from_secs(20), || {
            let s = self.c.status(i)?;
            Some((s.generation, s.release))
        })
        .unwrap_or_else(|| panic!("{name} ({}) has no /status", to.version));
        // `/status` names the release from 0.3.0 on (empty before).
        assert!(
            release == to.version || (release.is_empty() && to.binary.is_some()),
            "{name}'s /status names release {release:?}, not {}",
            to.version
        );
        let sees_it = |j: usize| {
            let s = self.c.status(j)?;
            let up = s
                .nodes
                .iter()
                .filter(|n| n.state == ringkv::membership::State::Up);
            let me = s.nodes.iter().find(|n| n.name == name)?;
            Some(up.count() == NAMES.len() && me.generation == generation)
        };
        assert!(
            wait_until(Duration::from_secs(30), || (0..NAMES.len())
                .all(|j| sees_it(j) == Some(true))),
            "not every node sees all {} up with {name} ({}) in its new generation {generation}; \
             their views:\n{}",
            NAMES.len(),
            to.version,
            self.views()
        );
        self.check_placement();
        if !announced {
            let window = (
                drained_at,
                self.load.load.elapsed(),
                format!("{name} ({from})"),
            );
            self.unannounced.push(window);
        }
        self.load.load.undrain(i);
        let during = self.load.load.done() - done_before;
        assert!(during > 0, "the load stalled while {name} was replaced");
        // The versions run side by side under the load for a while, and
        // the new process serves its share of it, before the next step.
        let (all, mine) = (self.load.load.done(), self.load.load.done_through(i));
        assert!(
            wait_until(Duration::from_secs(30), || self.load.load.done()
                >= all + MIXED_REQUESTS
                && self.load.load.done_through(i) >= mine + MIXED_REQUESTS / 4),
            "the load made too little progress after {name} came back"
        );
        self.say(&format!(
            "{name}: {from} -> {} ({during} requests meanwhile, {} failed so far); running {}",
            to.version,
            self.load.load.failures(),
            self.versions()
        ));
        for j in 0..NAMES.len() {
            self.check_links(j);
        }
    }

    /// What every node's `/status` says of every node (state, generation,
    /// the protocol of its link), for failure messages.
    fn views(&self) -> String {
        let mut out = String::new();
        for (i, name) in NAMES.iter().enumerate() {
            let row = match self.c.status(i) {
                Some(s) => s
                    .nodes
                    .iter()
                    .map(|n| {
                        format!(
                            "{} {:?} gen {} protocol {:?}",
                            n.name, n.state, n.generation, n.protocol
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                None => "no /status".to_string(),
            };
            out += &format!("  {name} ({}): {row}\n", self.running[i].version);
        }
        out
    }

    /// Every node that reports tokens (0.1.0 does not) gives every node
    /// the number of tokens the cluster's data directories were made with:
    /// a data directory keeps its placement across versions.
    fn check_placement(&mut self) {
        for (i, name) in NAMES.iter().enumerate() {
            let Some(s) = self.c.status(i) else { continue };
            for n in s.nodes.iter().filter(|n| !n.tokens.is_empty()) {
                let first = *self.tokens.get_or_insert(n.tokens.len());
                assert_eq!(
                    n.tokens.len(),
                    first,
                    "{name} ({}) gives {} {} tokens; the cluster had {first}",
                    self.running[i].version,
                    n.name,
                    n.tokens.len()
                );
            }
        }
    }

    /// How many ring tokens each node has, once a node reported it.
    pub fn tokens(&self) -> Option<usize> {
        self.tokens
    }

    /// Every link node `i` reports settles on the newest protocol both
    /// ends speak (a release that reports no link versions is skipped).
    fn check_links(&self, i: usize) {
        let want = |j: usize| {
            self.running[i]
                .protocol_max
                .min(self.running[j].protocol_max)
        };
        let settled = || {
            let Some(s) = self.c.status(i) else {
                return false;
            };
            if s.protocol_max == 0 {
                return true; // a release from before /status said it
            }
            s.protocol_max == self.running[i].protocol_max
                && (0..NAMES.len()).all(|j| {
                    let node = s.nodes.iter().find(|n| n.name == NAMES[j]);
                    node.and_then(|n| n.protocol) == Some(want(j))
                })
        };
        assert!(
            wait_until(Duration::from_secs(10), settled),
            "{} ({}) does not report the expected protocol versions (running {}): {:?}",
            NAMES[i],
            self.running[i].version,
            self.versions(),
            self.c.status(i).map(|s| s
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.protocol))
                .collect::<Vec<_>>())
        );
    }

    /// Writes through node `a` read through node `b` and the reverse (the
    /// two run different releases), for every type of the mix, on keys of
    /// their own (not the load's): a counter incremented through both
    /// reads their sum through both, a hash and a set written through both
    /// hold what each wrote.
    pub fn cross_check(&self, a: usize, b: usize) {
        let (va, vb) = (&self.running[a].version, &self.running[b].version);
        assert_ne!(va, vb, "cross-check between nodes of one version");
        let tag = format!("xv-{}-{a}{b}", self.t0.elapsed().as_millis());
        let mut checked = vec!["strings"];
        for (w, r) in [(a, b), (b, a)] {
            let (mut wc, mut rc) = (self.c.client(w), self.c.client(r));
            let how = format!(
                "written through {} ({}), read through {} ({})",
                NAMES[w], self.running[w].version, NAMES[r], self.running[r].version
            );
            let k = format!("{tag}-str-{w}");
            assert_eq!(wc.cmd(&["SET", &k, "v1"]), Reply::ok());
            assert_eq!(rc.cmd(&["GET", &k]), bulk("v1"), "a string {how}");
            assert_eq!(wc.cmd(&["DEL", &k]), Reply::Integer(1));
            assert_eq!(rc.cmd(&["GET", &k]), Reply::Nil, "a delete {how}");
            if self.mix == Mix::Strings {
                continue;
            }
            let k = format!("{tag}-ttl-{w}");
            assert_eq!(
                wc.cmd(&["SET", &k, "v", "PX", &TTL_MS.to_string()]),
                Reply::ok()
            );
            let ttl = rc.cmd(&["PTTL", &k]);
            assert!(
                matches!(ttl, Reply::Integer(ms) if ms > TTL_MS - 60_000 && ms <= TTL_MS),
                "an expiry {how}: PTTL {ttl:?}"
            );
        }
        if self.mix == Mix::Every {
            checked.extend(["expiry", "counters", "hashes", "sets"]);
            let (mut ca, mut cb) = (self.c.client(a), self.c.client(b));
            let k = format!("{tag}-counter");
            assert_eq!(ca.cmd(&["INCRBY", &k, "5"]), Reply::Integer(5));
            assert_eq!(cb.cmd(&["INCRBY", &k, "7"]), Reply::Integer(12));
            for (cl, v) in [(&mut ca, va), (&mut cb, vb)] {
                assert_eq!(
                    cl.cmd(&["GET", &k]),
                    bulk("12"),
                    "the counter's sum through {v}"
                );
            }
            let k = format!("{tag}-hash");
            assert_eq!(ca.cmd(&["HSET", &k, "fa", "va"]), Reply::Integer(1));
            assert_eq!(cb.cmd(&["HSET", &k, "fb", "vb"]), Reply::Integer(1));
            let k2 = format!("{tag}-set");
            assert_eq!(ca.cmd(&["SADD", &k2, "ma"]), Reply::Integer(1));
            assert_eq!(cb.cmd(&["SADD", &k2, "mb"]), Reply::Integer(1));
            for (cl, v) in [(&mut ca, va), (&mut cb, vb)] {
                let flat = strings(&cl.cmd(&["HGETALL", &k]));
                let mut pairs: Vec<String> = flat.chunks(2).map(|p| p.join("=")).collect();
                pairs.sort();
                assert_eq!(pairs, ["fa=va", "fb=vb"], "the hash through {v}");
                let mut members = strings(&cl.cmd(&["SMEMBERS", &k2]));
                members.sort();
                assert_eq!(members, ["ma", "mb"], "the set through {v}");
            }
        }
        self.say(&format!(
            "cross-version check {} ({va}) <-> {} ({vb}): {} pass",
            NAMES[a],
            NAMES[b],
            checked.join(", ")
        ));
    }

    /// Stops the load, waits until every node reads the same for every key
    /// the load touched, and checks: no history violation, no failed
    /// request, every key written with PX still has an expiry. Prints
    /// what the load did.
    pub fn finish(self) -> Done {
        let done = self.load.stop();
        let addrs: Vec<String> = self.c.nodes.iter().map(|n| n.client.clone()).collect();
        let keys = self.mix.keys();
        let t = Instant::now();
        let state = agreed(&addrs, &keys, Duration::from_secs(60))
            .expect("the nodes did not agree on every key within 60 s of the end of the load");
        let agreed_in = t.elapsed();
        let violations = done
            .history
            .check(|k| state[&String::from_utf8_lossy(k).into_owned()].clone());
        let mut expiring = 0;
        for addr in &addrs {
            let mut cl = Client::connect(addr);
            for k in keys.iter().filter(|k| k.starts_with('x')) {
                match cl.cmd(&["PTTL", k]) {
                    Reply::Integer(-2) => {}
                    Reply::Integer(ms) if ms > 0 && ms <= TTL_MS => expiring += 1,
                    other => panic!("{k} through {addr}: PTTL {other:?}, not its expiry"),
                }
            }
        }
        let t = &done.tally;
        eprintln!(
            "upgrade: {} requests, {} writes in the history ({} acknowledged); answered/sent by type:",
            t.sent(),
            done.history.len(),
            done.history.acked()
        );
        let mut by_type: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (label, (sent, ok)) in &t.by_command {
            let (kind, cmd) = label.split_once(' ').unwrap_or(("", label));
            by_type
                .entry(kind)
                .or_default()
                .push(format!("{cmd} {ok}/{sent}"));
        }
        for (kind, cmds) in by_type {
            eprintln!("upgrade:   {kind:9} {}", cmds.join(", "));
        }
        // A release before 0.3.0 stops without telling its peers, which
        // go on forwarding it the increments of the keys it is first
        // replica of until they see it down; those fail as indeterminate.
        // That is the old release's bug, excused only for a request in
        // flight while such a node was replaced, only for INCRBY, and only
        // with that error.
        let (excused, failed): (Vec<&Failure>, Vec<&Failure>) =
            done.failures.iter().partition(|f| {
                f.what.contains("\"INCRBY\"")
                    && f.what.contains("may or may not have been applied")
                    && self
                        .unannounced
                        .iter()
                        .any(|(from, to, _)| f.answered >= *from && f.sent <= *to)
            });
        eprintln!(
            "upgrade: every node agreed on {} keys {} ms after the load stopped; {} key copies with an expiry; \
             {} history violations; {} failed requests ({} excused: an older release's stop)",
            keys.len(),
            agreed_in.as_millis(),
            expiring,
            violations.len(),
            done.failures.len(),
            excused.len()
        );
        for f in excused.iter().take(10) {
            eprintln!("upgrade: failed (an older release's unannounced stop): {f}");
        }
        for f in failed.iter().take(20) {
            eprintln!("upgrade: failed: {f}");
        }
        assert!(violations.is_empty(), "{violations:#?}");
        assert!(
            failed.is_empty(),
            "{} failed requests (first ones above)",
            failed.len()
        );
        done
    }
}

/// Polls `read` until it gives a value or `limit` passes.
fn wait_for<T>(limit: Duration, mut read: impl FnMut() -> Option<T>) -> Option<T> {
    let mut out = None;
    wait_until(limit, || {
        out = read();
        out.is_some()
    });
    out
}
