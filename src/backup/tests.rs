use std::collections::BTreeMap;

use super::*;

fn manifest() -> Manifest {
    Manifest {
        backup_format: BACKUP_FORMAT,
        release: "0.3.0".into(),
        log_format: crate::log::FORMAT_VERSION,
        node: "n1".into(),
        data_id: format!("{:016x}", 7u64),
        tokens: 128,
        replication: 3,
        generation: 5,
        incarnation: "00000000000000aa".into(),
        started_ms: 1_000_000,
        finished_ms: 1_000_500,
        tombstone_grace_secs: 60,
        cluster: BTreeMap::from([("n1".into(), "07".into()), ("n2".into(), "08".into())]),
        metadata: String::new(),
        metadata_entries: Vec::new(),
        records: 3,
        bytes: 100,
        sha256: "ab".into(),
    }
}

#[test]
fn a_trailer_splits_back_into_its_manifest_and_the_data_length() {
    let m = manifest();
    let mut stream = vec![9u8; 100];
    stream.extend(m.trailer().unwrap());
    let total = stream.len() as u64;
    let (back, len) = split_trailer(&stream, total).unwrap();
    assert_eq!((back, len), (m.clone(), 100));
    // Only the tail is needed.
    let tail = &stream[90..];
    assert_eq!(split_trailer(tail, total).unwrap().1, 100);
}

#[test]
fn a_stream_cut_anywhere_is_refused() {
    let mut stream = vec![9u8; 100];
    stream.extend(manifest().trailer().unwrap());
    for cut in [0, 10, 100, 150, stream.len() - 1] {
        let err = split_trailer(&stream[..cut], cut as u64).unwrap_err();
        assert!(
            err.to_string().contains("ended before its manifest"),
            "{cut}: {err}"
        );
    }
}

#[test]
fn a_backup_from_a_newer_release_names_both_versions() {
    let mut m = manifest();
    m.log_format = crate::log::FORMAT_VERSION + 1;
    m.release = "9.0.0".into();
    let err = m.check_readable().unwrap_err().to_string();
    assert!(err.contains("ringkv 9.0.0"), "{err}");
    assert!(err.contains(env!("CARGO_PKG_VERSION")), "{err}");
    assert!(
        err.contains(&format!("commit-log format {}", m.log_format)),
        "{err}"
    );
    let mut m = manifest();
    m.backup_format = BACKUP_FORMAT + 1;
    assert!(m.check_readable().is_err());
    assert!(manifest().check_readable().is_ok());
}

#[test]
fn clusters_are_told_apart_by_data_identities_not_names() {
    let ours = manifest().cluster;
    let same = BTreeMap::from([("n2".to_string(), "08".to_string())]);
    let other = BTreeMap::from([
        ("n1".to_string(), "99".to_string()),
        ("n2".to_string(), "98".to_string()),
    ]);
    assert!(same_cluster(&ours, &same));
    assert!(!same_cluster(&ours, &other));
    assert!(!same_cluster(&ours, &BTreeMap::new()));
}

#[test]
fn a_backup_older_than_the_tombstone_grace_is_refused_for_a_running_cluster() {
    let m = manifest();
    assert!(check_age(&m, m.started_ms + 60_000).is_ok());
    let err = check_age(&m, m.started_ms + 61_000)
        .unwrap_err()
        .to_string();
    assert!(err.contains("61 s old"), "{err}");
    assert!(err.contains("tombstone_grace_secs (60 s)"), "{err}");
}
