//! The settings' tests: parsing, overrides, validation, and the
//! documented example file.

use super::*;

#[test]
fn defaults_are_valid_and_documented_values_hold() {
    let c = Config::default();
    c.validate().unwrap();
    assert!(c.heartbeat_interval_ms <= 250 && c.failure_timeout_ms <= 1500);
    assert_eq!(
        (c.replication, c.read_quorum, c.write_quorum, c.vnodes),
        (3, 2, 2, 0)
    );
    Config::for_test("t").validate().unwrap();
}

#[test]
fn overrides_parse_by_type() {
    let c = Config::default()
        .with_overrides([
            ("HEARTBEAT_INTERVAL_MS", "100"),
            ("seeds", "a:1, b:2"),
            ("fault_injection", "true"),
            ("cluster_secret", "s3cret"),
            ("data_dir", "/tmp/x"),
        ])
        .unwrap();
    assert_eq!(c.heartbeat_interval_ms, 100);
    assert_eq!(c.seeds, vec!["a:1".to_string(), "b:2".to_string()]);
    assert!(c.fault_injection);
    assert_eq!(c.cluster_secret.as_deref(), Some("s3cret"));
    assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
}

#[test]
fn bad_values_name_their_key() {
    let err = Config::default()
        .with_overrides([("vnodes", "many")])
        .unwrap_err();
    assert_eq!(err.to_string(), "config: vnodes: `many` is not an integer");
    let err = Config::default()
        .with_overrides([("bogus", "1")])
        .unwrap_err();
    assert!(err.to_string().contains("bogus"), "{err}");
    let c = Config {
        write_quorum: 4,
        ..Config::default()
    };
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .starts_with("config: write_quorum:"));
    let c = Config {
        failure_timeout_ms: 100,
        ..Config::default()
    };
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("failure_timeout_ms"));
}

#[test]
fn peer_protocol_max_is_settable_and_bounded_by_what_this_build_speaks() {
    let c = Config::default()
        .with_overrides([("PEER_PROTOCOL_MAX", MIN_PROTOCOL_VERSION.to_string())])
        .unwrap();
    assert_eq!(c.peer_protocol_max, MIN_PROTOCOL_VERSION);
    c.validate().unwrap();
    assert_eq!(Config::default().peer_protocol_max, PROTOCOL_VERSION);
    for bad in [MIN_PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1] {
        let c = Config {
            peer_protocol_max: bad,
            ..Config::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "config: peer_protocol_max: {bad} is not a protocol version this build \
                 speaks ({MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION})"
            )
        );
    }
}

#[test]
fn toml_files_are_read_over_defaults() {
    let dir = std::env::temp_dir().join(format!("ringkv-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    std::fs::write(&path, "name = \"x\"\nread_quorum = 1\n").unwrap();
    let c = Config::from_file(&path).unwrap();
    assert_eq!(
        (c.name.as_str(), c.read_quorum, c.write_quorum),
        ("x", 1, 2)
    );
    std::fs::write(&path, "nmae = \"x\"\n").unwrap();
    assert!(Config::from_file(&path)
        .unwrap_err()
        .to_string()
        .contains("nmae"));
    std::fs::remove_dir_all(&dir).unwrap();
}

mod example_file {
    use super::*;

    #[test]
    fn the_documented_example_file_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ringkv.toml");
        assert_eq!(Config::from_file(&path).unwrap(), Config::default());
    }
}
