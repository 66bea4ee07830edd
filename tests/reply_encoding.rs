//! Every reply type, encoded in both protocols, read back by a RESP
//! decoder ringkv does not share (the `redis-protocol` crate): what a
//! client sees must be the reply that was built, and RESP2 must see it in
//! the form Redis 7 degrades it to (a map as a flat array, a set as an
//! array, a double as a bulk string, a boolean as 1 or 0, a verbatim
//! string as a bulk string, both nulls as RESP2's nulls).

use std::collections::HashSet;

use bytes::Bytes;
use proptest::prelude::*;
use redis_protocol::resp2::decode::decode as decode2;
use redis_protocol::resp2::types::OwnedFrame as F2;
use redis_protocol::resp3::decode::complete::decode as decode3;
use redis_protocol::resp3::types::{OwnedFrame as F3, VerbatimStringFormat};
use ringkv::resp::codec::{format_double, Proto, Reply};

fn bulk() -> impl Strategy<Value = Reply> {
    proptest::collection::vec(any::<u8>(), 0..16).prop_map(|b| Reply::Bulk(Bytes::from(b)))
}

fn double() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |d| d.is_finite()),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        (-1_000_000i64..1_000_000).prop_map(|n| n as f64 / 8.0),
    ]
}

fn leaf() -> impl Strategy<Value = Reply> {
    prop_oneof![
        "[ -~]{0,12}".prop_map(Reply::simple),
        "[A-Z]{1,8} [ -~]{0,12}".prop_map(Reply::Error),
        any::<i64>().prop_map(Reply::Integer),
        bulk(),
        Just(Reply::Nil),
        Just(Reply::NilArray),
        double().prop_map(Reply::Double),
        any::<bool>().prop_map(Reply::Bool),
        "[ -~\n]{0,40}".prop_map(|t| Reply::Verbatim(Bytes::from(t))),
    ]
}

/// Distinct bulk strings (map keys and set members must be distinct for a
/// decoder that collects them into hash sets and maps).
fn distinct_bulks(max: usize) -> impl Strategy<Value = Vec<Reply>> {
    proptest::collection::hash_set("[a-z0-9]{0,6}", 0..max)
        .prop_map(|s| s.into_iter().map(|k| Reply::Bulk(Bytes::from(k))).collect())
}

fn reply() -> impl Strategy<Value = Reply> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Reply::Array),
            distinct_bulks(6).prop_map(Reply::Set),
            (distinct_bulks(6), proptest::collection::vec(inner, 6))
                .prop_map(|(keys, values)| { Reply::Map(keys.into_iter().zip(values).collect()) }),
        ]
    })
}

/// What a RESP3 client must read for `r`.
fn as_resp3(r: &Reply) -> F3 {
    match r {
        Reply::Simple(s) => F3::SimpleString {
            data: s.as_bytes().to_vec(),
            attributes: None,
        },
        Reply::Error(e) => F3::SimpleError {
            data: e.clone(),
            attributes: None,
        },
        Reply::Integer(n) => F3::Number {
            data: *n,
            attributes: None,
        },
        Reply::Bulk(b) => F3::BlobString {
            data: b.to_vec(),
            attributes: None,
        },
        Reply::Nil | Reply::NilArray => F3::Null,
        Reply::Array(items) => F3::Array {
            data: items.iter().map(as_resp3).collect(),
            attributes: None,
        },
        Reply::Map(pairs) => F3::Map {
            data: pairs
                .iter()
                .map(|(k, v)| (as_resp3(k), as_resp3(v)))
                .collect(),
            attributes: None,
        },
        Reply::Set(items) => F3::Set {
            data: items.iter().map(as_resp3).collect::<HashSet<_>>(),
            attributes: None,
        },
        Reply::Double(d) => F3::Double {
            data: *d,
            attributes: None,
        },
        Reply::Bool(b) => F3::Boolean {
            data: *b,
            attributes: None,
        },
        Reply::Verbatim(t) => F3::VerbatimString {
            data: t.to_vec(),
            format: VerbatimStringFormat::Text,
            attributes: None,
        },
    }
}

/// What a RESP2 client must read for `r`.
fn as_resp2(r: &Reply) -> F2 {
    match r {
        Reply::Simple(s) => F2::SimpleString(s.as_bytes().to_vec()),
        Reply::Error(e) => F2::Error(e.clone()),
        Reply::Integer(n) => F2::Integer(*n),
        Reply::Bulk(b) | Reply::Verbatim(b) => F2::BulkString(b.to_vec()),
        Reply::Nil | Reply::NilArray => F2::Null,
        Reply::Array(items) | Reply::Set(items) => F2::Array(items.iter().map(as_resp2).collect()),
        Reply::Map(pairs) => F2::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [as_resp2(k), as_resp2(v)])
                .collect(),
        ),
        Reply::Double(d) => F2::BulkString(format_double(*d).into_bytes()),
        Reply::Bool(b) => F2::Integer(i64::from(*b)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn resp3_replies_read_back_as_built(r in reply()) {
        let wire = r.to_wire(Proto::Resp3);
        let (frame, used) = decode3(&wire).expect("valid RESP3").expect("one whole frame");
        prop_assert_eq!(used, wire.len(), "exactly one frame");
        prop_assert_eq!(frame, as_resp3(&r));
    }

    #[test]
    fn resp2_replies_read_back_in_redis_degraded_forms(r in reply()) {
        let wire = r.to_wire(Proto::Resp2);
        let (frame, used) = decode2(&wire).expect("valid RESP2").expect("one whole frame");
        prop_assert_eq!(used, wire.len(), "exactly one frame");
        prop_assert_eq!(frame, as_resp2(&r));
    }

    #[test]
    fn doubles_are_formatted_as_the_c_library_formats_them(d in double()) {
        prop_assert_eq!(format_double(d), c_format(d));
    }

    #[test]
    fn a_resp2_reply_of_resp2_types_is_the_same_bytes_in_resp3(r in leaf()) {
        // Simple strings, errors, integers and bulk strings are written
        // alike in both protocols: the hot path never looks at the protocol.
        if matches!(r, Reply::Simple(_) | Reply::Error(_) | Reply::Integer(_) | Reply::Bulk(_)) {
            prop_assert_eq!(r.to_wire(Proto::Resp2), r.to_wire(Proto::Resp3));
        }
    }
}

/// `%.17g` by the C library (what Redis calls), `inf`/`-inf` by name.
fn c_format(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let mut buf = [0u8; 64];
    // SAFETY: the buffer is 64 bytes and snprintf writes at most that many,
    // NUL included; the format takes exactly one double.
    let n = unsafe { libc::snprintf(buf.as_mut_ptr().cast(), buf.len(), c"%.17g".as_ptr(), d) };
    String::from_utf8_lossy(&buf[..n as usize]).into_owned()
}

#[test]
fn doubles_are_written_as_c_writes_them_with_17_digits() {
    for (d, text) in [
        (1.5, "1.5"),
        (0.1, "0.10000000000000001"),
        (1e21, "1e+21"),
        (1e-5, "1.0000000000000001e-05"),
        (123456789.0, "123456789"),
        (-0.0, "-0"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
        (100.0, "100"),
        (3.0e-4, "0.00029999999999999997"),
    ] {
        assert_eq!(format_double(d), text, "{d:e}");
    }
    assert_eq!(&Reply::Double(1.5).to_wire(Proto::Resp3)[..], b",1.5\r\n");
    assert_eq!(
        &Reply::Double(1.5).to_wire(Proto::Resp2)[..],
        b"$3\r\n1.5\r\n"
    );
    assert_eq!(&Reply::Bool(true).to_wire(Proto::Resp3)[..], b"#t\r\n");
    assert_eq!(&Reply::Bool(false).to_wire(Proto::Resp2)[..], b":0\r\n");
    assert_eq!(&Reply::Nil.to_wire(Proto::Resp3)[..], b"_\r\n");
    assert_eq!(&Reply::NilArray.to_wire(Proto::Resp2)[..], b"*-1\r\n");
    assert_eq!(
        &Reply::Verbatim(Bytes::from_static(b"hi")).to_wire(Proto::Resp3)[..],
        b"=6\r\ntxt:hi\r\n"
    );
}
