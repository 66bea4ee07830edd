//! Replays every committed fuzz input (the minimised corpus and any crash
//! found) through the same functions the libFuzzer targets call, so the
//! regular test suite guards them and CI needs no fuzzer. See fuzz/run.sh.
//!
//! `cargo test --test fuzz_corpus -- --ignored` rewrites the hand-made
//! seeds (`seed-*`) from which a fresh fuzzing run starts.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use ringkv::encoding::FrameCodec;
use ringkv::log::{CommitLog, LogOptions, Record, RecordBody};
use ringkv::message::{Hello, HelloProof, HelloReply, PeerMsg, MAGIC, PROTOCOL_VERSION};
use ringkv::resp::codec::encode_command;
use tokio_util::codec::Encoder;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 3] = [
    ("resp_decoder", ringkv::fuzzing::resp_decoder),
    ("peer_frame", ringkv::fuzzing::peer_frame),
    ("log_recover", ringkv::fuzzing::log_recover),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every file under fuzz/corpus/TARGET and fuzz/artifacts/TARGET.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in ["corpus", "artifacts"] {
        let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
            continue;
        };
        files.extend(dir.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
    }
    files.sort();
    files
}

#[test]
fn every_corpus_and_crash_input_replays_without_a_panic() {
    for (target, run) in TARGETS {
        let files = inputs(target);
        assert!(!files.is_empty(), "no corpus for {target}: run fuzz/run.sh");
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target} panicked on {}", file.display());
        }
    }
}

fn frame<T: serde::Serialize + ringkv::encoding::Wire>(msg: &T) -> Vec<u8> {
    let mut out = BytesMut::new();
    FrameCodec::<T>::new(1 << 20).encode(msg, &mut out).unwrap();
    out.to_vec()
}

fn write_seeds(target: &str, seeds: Vec<Vec<u8>>) {
    let dir = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), s).unwrap();
    }
}

fn resp_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = [
        &b"PING\r\n"[..],
        b"SET \"a b\" 'c'\r\nGET x\n",
        b"*-1\r\n*0\r\n$-1\r\n",
        b"+OK\r\n-ERR no\r\n:42\r\n$3\r\nabc\r\n*2\r\n$1\r\na\r\n$-1\r\n",
        b"*1\r\n$99999999999\r\n",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect();
    let mut out = BytesMut::new();
    encode_command(&[b"MSET", b"k1", b"v1", b"k2", b"v2"], &mut out);
    encode_command(&[b"GET", b"k1"], &mut out);
    seeds.push(out.to_vec());
    // The first byte is where the input is split.
    seeds
        .into_iter()
        .map(|s| [&[3u8][..], &s].concat())
        .collect()
}

fn peer_seeds() -> Vec<Vec<u8>> {
    let hello = Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        name: "n1".into(),
        generation: 9,
        reply_to: "127.0.0.1:7101".into(),
    };
    let entry_put = PeerMsg::Keys {
        id: 3,
        pattern: Bytes::from_static(b"k*"),
    };
    vec![
        frame(&hello),
        frame(&HelloReply::Challenge {
            nonce: [1; 32],
            secured: true,
        }),
        frame(&HelloReply::Negotiated {
            version: PROTOCOL_VERSION,
            nonce: [4; 32],
            secured: true,
        }),
        frame(&HelloReply::Reject {
            reason: "no".into(),
        }),
        frame(&HelloProof {
            nonce: [2; 32],
            secured: false,
            proof: [3; 32],
        }),
        [
            frame(&PeerMsg::Get {
                id: 1,
                key: Bytes::from_static(b"key"),
            }),
            frame(&entry_put),
            frame(&PeerMsg::TransferAck { id: 4 }),
            frame(&PeerMsg::KeysReply {
                id: 5,
                keys: vec![Bytes::from_static(b"a")],
            }),
        ]
        .concat(),
    ]
}

fn log_seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (log, _) = CommitLog::open(dir.path(), LogOptions::for_test(), |_| {}).unwrap();
        for i in 0..4u64 {
            let body = match i {
                2 => RecordBody::Tombstone,
                3 => {
                    // A set with one member: a rich record.
                    let mut rich = ringkv::values::Rich::default();
                    rich.members.insert(
                        Bytes::from_static(b"m"),
                        ringkv::values::Lww {
                            version: ringkv::values::Version {
                                ts: ringkv::clock::Timestamp(1000 + i),
                                node: 7,
                            },
                            value: true,
                        },
                    );
                    RecordBody::Rich(ringkv::values::codec::encode(&rich).unwrap().into())
                }
                _ => RecordBody::Value(Bytes::from(format!("value{i}"))),
            };
            let rec = Record {
                key: Bytes::from(format!("key{i}")),
                body,
                ts: 1000 + i,
                node: 7,
            };
            log.append(rec).await.unwrap();
        }
        log.shutdown().await.unwrap();
    });
    let mut seeds = Vec::new();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".seg") && data.len() > 64 {
            seeds.push([&[0u8][..], &data].concat());
            // Torn in the middle of the last record.
            seeds.push([&[0u8][..], &data[..data.len() - 5]].concat());
        }
    }
    assert!(!seeds.is_empty(), "the log wrote no segment");
    seeds
}

#[test]
#[ignore = "writes the seed corpus; run by hand before a first fuzz/run.sh"]
fn write_seed_corpus() {
    write_seeds("resp_decoder", resp_seeds());
    write_seeds("peer_frame", peer_seeds());
    write_seeds("log_recover", log_seeds());
}
