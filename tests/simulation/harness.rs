//! The simulated cluster's harness: the cluster (`Sim`), the seeded
//! generator (`Rng`), polling in simulated time, and what a node's copy
//! of a key reads as for the history checker.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringkv::config::{Config, FsyncMode};
use ringkv::history::Observed;
use ringkv::node::{Network, Node};
use ringkv::transport::mem::MemNet;
use ringkv::values::{Kind, Simple};

/// A simulated cluster: its network, its nodes (`None` while crashed),
/// their configurations and how far each one's wall clock is off
/// (microseconds).
pub struct Sim {
    pub net: Arc<MemNet>,
    pub nodes: Vec<Option<Node>>,
    pub configs: Vec<Config>,
    pub offsets: Vec<i64>,
    _dir: tempfile::TempDir,
}

pub use ringkv::clock::{with_node_offset, with_node_offset_sync};

fn config(dir: &Path, name: &str, all: &[&str]) -> Config {
    let peer = |n: &str| format!("sim-{n}:7000");
    Config {
        client: "127.0.0.1:0".into(),
        admin: "127.0.0.1:0".into(),
        peer: peer(name),
        seeds: all
            .iter()
            .filter(|n| **n != name)
            .map(|n| peer(n))
            .collect(),
        data_dir: dir.join(name),
        fsync: FsyncMode::Never,
        // Periodic repair rounds every few simulated seconds, not 30.
        anti_entropy_interval_ms: 5_000,
        // Every other node compares each rich key by sections (the seeds'
        // hashes and sets are small), so rounds run both ways.
        anti_entropy_sections_min_bytes: match all.iter().position(|n| *n == name) {
            Some(i) if i % 2 == 0 => 0,
            _ => Config::default().anti_entropy_sections_min_bytes,
        },
        ..Config::for_test(name)
    }
}

impl Sim {
    pub async fn start(names: &[&str]) -> Sim {
        Sim::start_skewed(names, &vec![0; names.len()]).await
    }

    /// A cluster whose node `i` has its wall clock `offsets[i]`
    /// microseconds off.
    pub async fn start_skewed(names: &[&str], offsets: &[i64]) -> Sim {
        ringkv::clock::simulate_wall_clock(1_800_000_000_000_000);
        // In memory where the machine has it: the nodes' data directories
        // are real files, and their fsyncs would cost most of a run.
        let shm = Path::new("/dev/shm");
        let dir = match shm.is_dir() {
            true => tempfile::tempdir_in(shm),
            false => tempfile::tempdir(),
        }
        .unwrap();
        let net = MemNet::new();
        let configs: Vec<Config> = names.iter().map(|n| config(dir.path(), n, names)).collect();
        let mut nodes = Vec::new();
        for (cfg, offset) in configs.iter().zip(offsets) {
            net.set_clock_offset(&cfg.peer, *offset);
            let start = Node::start_on(cfg.clone(), Network::Mem(net.clone()));
            let node = with_node_offset(*offset, start)
                .await
                .expect("a simulated node starts");
            nodes.push(Some(node));
        }
        let sim = Sim {
            net,
            nodes,
            configs,
            offsets: offsets.to_vec(),
            _dir: dir,
        };
        sim.settle(names.len()).await;
        sim
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("the node is up")
    }

    /// Waits (in simulated time) until every node up sees `n` nodes up.
    pub async fn settle(&self, n: usize) {
        let all_see = || {
            (self.nodes.iter().flatten())
                .all(|node| node.shared.view.load().ring.nodes().len() == n)
        };
        assert!(
            poll(Duration::from_secs(30), all_see).await,
            "the nodes did not all see {n} up"
        );
    }

    pub async fn set(&self, i: usize, key: &str, value: &str) -> ringkv::error::Result<()> {
        let shared = &self.node(i).shared;
        let q = shared.default_quorum();
        let value = Some(Bytes::from(value.to_string()));
        let write = shared.write(Bytes::from(key.to_string()), value, q);
        with_node_offset(self.offsets[i], write).await.map(|_| ())
    }

    pub async fn get(&self, i: usize, key: &str) -> Option<String> {
        let shared = &self.node(i).shared;
        let q = shared.default_quorum();
        let read = shared.read(Bytes::from(key.to_string()), q);
        let entry = with_node_offset(self.offsets[i], read)
            .await
            .expect("a quorum read");
        entry.as_ref().and_then(string_of)
    }

    /// Node `i`'s own copy of `key`.
    pub fn local(&self, i: usize, key: &str) -> Option<String> {
        self.node(i)
            .shared
            .store
            .get(key.as_bytes())
            .as_ref()
            .and_then(string_of)
    }

    pub async fn crash(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("the node is up");
        with_node_offset(self.offsets[i], node.crash(&self.net)).await;
    }

    /// Restarts crashed node `i` with its wall clock `offset`
    /// microseconds off (an operator who stepped it, say).
    pub async fn restart_with_clock(&mut self, i: usize, offset: i64) {
        self.offsets[i] = offset;
        self.net.set_clock_offset(&self.configs[i].peer, offset);
        self.restart(i).await;
    }

    pub async fn restart(&mut self, i: usize) {
        let start = Node::start_on(self.configs[i].clone(), Network::Mem(self.net.clone()));
        let node = with_node_offset(self.offsets[i], start)
            .await
            .expect("a crashed node restarts");
        self.nodes[i] = Some(node);
    }
}

pub fn string_of(entry: &ringkv::store::Entry) -> Option<String> {
    match entry.as_simple() {
        Some(Simple::Str(v)) => Some(String::from_utf8_lossy(v).into_owned()),
        _ => None,
    }
}

/// Polls `cond` every 10 ms of simulated time, up to `limit` of it.
pub async fn poll(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// A small seeded generator (xorshift64*): the same seed, the same run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What a node's copy of `key` reads as, for the history checker.
pub fn observed(sim: &Sim, i: usize, key: &[u8]) -> Observed {
    let now = with_node_offset_sync(sim.offsets[i], ringkv::clock::wall_millis);
    match sim
        .node(i)
        .shared
        .store
        .get(key)
        .map(|e| e.string_value(now))
    {
        Some(Ok(Some(v))) => Observed::Str(v),
        Some(Ok(None)) | None => Observed::Absent,
        Some(Err(_)) => {
            let entry = sim.node(i).shared.store.get(key).expect("a rich entry");
            match entry.kind(now) {
                Some(Kind::Hash) => Observed::Hash(entry.hash_fields().into_iter().collect()),
                Some(Kind::Set) => Observed::Set(entry.set_members_present().into_iter().collect()),
                None => Observed::Absent,
                Some(other) => panic!("a key of type {other:?} where none is written"),
            }
        }
    }
}
