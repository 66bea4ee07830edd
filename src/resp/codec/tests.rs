//! Tests for the whole codec: exact bytes, Redis's error texts, limits, and
//! property tests that chunking never changes what is decoded.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

use super::*;

/// Feeds `input` to `dec` cut at `cuts`, decoding after every chunk until
/// the decoder wants more; stops at the first error.
fn feed<D: Decoder>(dec: &mut D, input: &[u8], cuts: &[usize]) -> Result<Vec<D::Item>, D::Error> {
    let mut points: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    points.push(input.len());
    points.sort_unstable();
    let (mut buf, mut out, mut start) = (BytesMut::new(), Vec::new(), 0);
    for end in points {
        buf.extend_from_slice(&input[start..end]);
        start = end;
        while let Some(item) = dec.decode(&mut buf)? {
            out.push(item);
        }
    }
    Ok(out)
}

fn commands(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
    feed(&mut RespDecoder::default(), input, &[])
}

fn command_err(input: &[u8]) -> String {
    match commands(input) {
        Ok(cmds) => panic!("{input:?} decoded to {cmds:?}"),
        Err(e) => e.to_string(),
    }
}

fn args(list: &[&str]) -> Vec<Bytes> {
    list.iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect()
}

fn encoded(args: &[&[u8]]) -> Vec<u8> {
    let mut dst = BytesMut::new();
    encode_command(args, &mut dst);
    dst.to_vec()
}

fn wire(reply: &Reply) -> Vec<u8> {
    let mut dst = BytesMut::new();
    reply.encode(&mut dst, Proto::Resp2);
    dst.to_vec()
}

const MIXED: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\r\nal\r\nPING\r\n\r\n \
    \r\n*0\r\nset \"a b\" 'c'\n*1\r\n$0\r\n\r\n";

fn mixed_expected() -> Vec<Vec<Bytes>> {
    vec![
        args(&["SET", "k", "v\r\nal"]),
        args(&["PING"]),
        args(&["set", "a b", "c"]),
        args(&[""]),
    ]
}

#[test]
fn decodes_multibulk_and_inline_mixed() {
    assert_eq!(commands(MIXED).unwrap(), mixed_expected());
}

#[test]
fn every_split_point_and_byte_by_byte_agree() {
    for cut in 0..=MIXED.len() {
        assert_eq!(
            feed(&mut RespDecoder::default(), MIXED, &[cut]).unwrap(),
            mixed_expected()
        );
    }
    let every: Vec<usize> = (0..MIXED.len()).collect();
    assert_eq!(
        feed(&mut RespDecoder::default(), MIXED, &every).unwrap(),
        mixed_expected()
    );
}

#[test]
fn partial_input_waits_and_resumes() {
    let mut dec = RespDecoder::default();
    let mut buf = BytesMut::from(&b"*2\r\n$4\r\nEC"[..]);
    assert!(dec.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(b"HO\r\n$2\r\nhi\r");
    assert!(dec.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(b"\n");
    assert_eq!(dec.decode(&mut buf).unwrap(), Some(args(&["ECHO", "hi"])));
    assert!(buf.is_empty());
}

#[test]
fn big_bulk_in_chunks_is_zero_copy() {
    let payload = vec![b'x'; 8 << 20];
    let input = encoded(&[b"SET", b"k", &payload]);
    let mut dec = RespDecoder::default();
    let mut buf = BytesMut::with_capacity(input.len());
    let mut got = None;
    for chunk in input.chunks(64 << 10) {
        buf.extend_from_slice(chunk);
        if let Some(cmd) = dec.decode(&mut buf).unwrap() {
            got = Some(cmd);
        }
    }
    let cmd = got.expect("command decoded");
    assert_eq!(cmd[2].len(), payload.len());
    // The payload points into the read buffer's allocation: no copy.
    let header = input.len() - payload.len() - 2;
    assert_eq!(cmd[2].as_ptr(), cmd[0].as_ptr().wrapping_add(header - 8));
}

#[test]
fn malformed_commands_give_redis_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"*-1\r\n", "Protocol error: invalid multibulk length"),
        (b"*abc\r\n", "Protocol error: invalid multibulk length"),
        (b"*\r\n", "Protocol error: invalid multibulk length"),
        (b"*+3\r\n", "Protocol error: invalid multibulk length"),
        (b"*3\n", "Protocol error: invalid multibulk length"),
        (b"*3\rX", "Protocol error: invalid multibulk length"),
        (
            b"*99999999999999999999\r\n",
            "Protocol error: invalid multibulk length",
        ),
        (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
        (
            b"*1\r\n$03\r\nabc\r\n",
            "Protocol error: invalid bulk length",
        ),
        (b"*1\r\n$3\r\nabcXY", "Protocol error: expected CRLF"),
        (b"*1\r\n$3\r\nabcd\r\n", "Protocol error: expected CRLF"),
        (b"*1\r\nx", "Protocol error: expected '$', got 'x'"),
        (
            b"*1\r\n*1\r\n$1\r\na\r\n",
            "Protocol error: expected '$', got '*'",
        ),
        (b"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
        (b"*1\r\n\x00", "Protocol error: expected '$', got '\\x00'"),
        (
            b"*11111111111111111111111111111111111",
            "Protocol error: too big mbulk count string",
        ),
        (
            b"*1\r\n$1111111111111111111111111111111111",
            "Protocol error: too big bulk count string",
        ),
        (
            b"*2000000000\r\n",
            "Protocol error: array of 2000000000 elements exceeds max-array-len 1048576",
        ),
        (
            b"*1\r\n$99999999999\r\n",
            "Protocol error: bulk string of 99999999999 bytes exceeds max-bulk-len 536870912",
        ),
        (b"set \"a\n", "Protocol error: unbalanced quotes in request"),
    ];
    for (input, want) in cases {
        assert_eq!(
            command_err(input),
            *want,
            "input {:?}",
            input.escape_ascii().to_string()
        );
    }
}

#[test]
fn limits_are_enforced_before_payload_arrives() {
    let limits = Limits {
        max_array_len: 2,
        max_bulk_len: 4,
        max_inline_len: 8,
    };
    let dec = || RespDecoder::new(limits);
    let err = |input: &[u8]| feed(&mut dec(), input, &[]).unwrap_err().to_string();
    assert_eq!(
        err(b"*3\r\n"),
        "Protocol error: array of 3 elements exceeds max-array-len 2"
    );
    assert_eq!(
        err(b"*1\r\n$5\r\n"),
        "Protocol error: bulk string of 5 bytes exceeds max-bulk-len 4"
    );
    assert_eq!(
        err(b"a b c\r\n"),
        "Protocol error: array of 3 elements exceeds max-array-len 2"
    );
    assert_eq!(err(b"123456789"), "Protocol error: too big inline request");
    assert_eq!(
        err(b"12345678\r\n"),
        "Protocol error: too big inline request"
    );
    assert_eq!(
        feed(&mut dec(), b"1234567\r\n", &[]).unwrap(),
        vec![args(&["1234567"])]
    );
    assert_eq!(
        feed(&mut dec(), b"*2\r\n$4\r\nabcd\r\n$0\r\n\r\n", &[]).unwrap(),
        vec![args(&["abcd", ""])]
    );
}

#[test]
fn inline_quoting_follows_redis() {
    let cases: &[(&[u8], &[&str])] = &[
        (b"PING\r\n", &["PING"]),
        (b"set a b\n", &["set", "a", "b"]),
        (b"  get\t \tkey  \r\n", &["get", "key"]),
        (b"set \"hello world\" x\r\n", &["set", "hello world", "x"]),
        (b"set 'it''s' x\n", &[]), // closing quote followed by a quote: error below
        (b"echo \"a\\nb\\t\\x41\\\"q\"\n", &["echo", "a\nb\tA\"q"]),
        (b"echo \"\\xZZ\"\n", &["echo", "xZZ"]),
        (b"echo 'a\\'b' 'c\\n'\n", &["echo", "a'b", "c\\n"]),
        (b"echo \"\"\n", &["echo", ""]),
        (b"echo a\"b c\"\n", &["echo", "ab c"]),
    ];
    for (input, want) in cases {
        if want.is_empty() {
            assert_eq!(
                command_err(input),
                "Protocol error: unbalanced quotes in request"
            );
        } else {
            assert_eq!(commands(input).unwrap(), vec![args(want)]);
        }
    }
    for bad in [
        &b"echo \"abc\n"[..],
        b"echo 'abc\n",
        b"echo \"a\"b\n",
        b"echo \"a\\\"\n",
    ] {
        assert_eq!(
            command_err(bad),
            "Protocol error: unbalanced quotes in request"
        );
    }
}

#[test]
fn reply_encoding_is_exact() {
    assert_eq!(wire(&Reply::ok()), b"+OK\r\n");
    assert_eq!(
        wire(&Reply::err("unknown command")),
        b"-ERR unknown command\r\n"
    );
    assert_eq!(
        wire(&Reply::error_code("WRONGTYPE", "nope")),
        b"-WRONGTYPE nope\r\n"
    );
    assert_eq!(
        wire(&Reply::err("line\r\nbreak\n")),
        b"-ERR line  break \r\n"
    );
    assert_eq!(wire(&Reply::simple("a\rb")), b"+a b\r\n");
    assert_eq!(wire(&Reply::Integer(-42)), b":-42\r\n");
    assert_eq!(
        wire(&Reply::Integer(i64::MIN)),
        b":-9223372036854775808\r\n"
    );
    assert_eq!(wire(&Reply::bulk(&b"hi"[..])), b"$2\r\nhi\r\n");
    assert_eq!(wire(&Reply::Nil), b"$-1\r\n");
    assert_eq!(wire(&Reply::NilArray), b"*-1\r\n");
    let nested = Reply::Array(vec![Reply::Integer(0), Reply::Array(vec![]), Reply::Nil]);
    assert_eq!(wire(&nested), b"*3\r\n:0\r\n*0\r\n$-1\r\n");
    let mut dst = BytesMut::new();
    RespEncoder::default()
        .encode(Reply::ok(), &mut dst)
        .unwrap();
    RespDecoder::default()
        .encode(Reply::Integer(7), &mut dst)
        .unwrap();
    assert_eq!(&dst[..], b"+OK\r\n:7\r\n");
    let err = ProtocolError::InvalidBulkLength;
    assert_eq!(
        wire(&Reply::err(&err)),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
}

#[test]
fn client_encoder_matches_encode_command() {
    let mut dst = BytesMut::new();
    ReplyDecoder::default()
        .encode(args(&["GET", "k"]), &mut dst)
        .unwrap();
    assert_eq!(&dst[..], &encoded(&[b"GET", b"k"])[..]);
    assert_eq!(&dst[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
}

#[test]
fn malformed_replies_give_errors() {
    let limits = Limits {
        max_array_len: 3,
        max_bulk_len: 4,
        max_inline_len: 16,
    };
    let cases: &[(&[u8], &str)] = &[
        (b"?x\r\n", "Protocol error: unknown reply type '?'"),
        (b"\r\n", "Protocol error: unknown reply type '\\r'"),
        (b"+OK\n", "Protocol error: expected CRLF"),
        (b":12a\r\n", "Protocol error: invalid integer"),
        (b":\r\n", "Protocol error: invalid integer"),
        (b"$-2\r\n", "Protocol error: invalid bulk length"),
        (b"*-2\r\n", "Protocol error: invalid multibulk length"),
        (
            b"$5\r\n",
            "Protocol error: bulk string of 5 bytes exceeds max-bulk-len 4",
        ),
        (
            b"*4\r\n",
            "Protocol error: array of 4 elements exceeds max-array-len 3",
        ),
        (b"$2\r\nabc\r\n", "Protocol error: expected CRLF"),
        (
            b"+\xff\r\n",
            "Protocol error: reply line is not valid UTF-8",
        ),
        (
            b"+0123456789abcdefg",
            "Protocol error: too big inline request",
        ),
    ];
    for (input, want) in cases {
        let err = feed(&mut ReplyDecoder::new(limits), input, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            *want,
            "input {:?}",
            input.escape_ascii().to_string()
        );
    }
    let deep = b"*1\r\n".repeat(MAX_REPLY_DEPTH + 1);
    let err = feed(&mut ReplyDecoder::default(), &deep, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Protocol error: reply nested deeper than 64 arrays"
    );
    let ok = [b"*1\r\n".repeat(MAX_REPLY_DEPTH), b":1\r\n".to_vec()].concat();
    assert_eq!(
        feed(&mut ReplyDecoder::default(), &ok, &[]).unwrap().len(),
        1
    );
}

fn arb_reply() -> impl Strategy<Value = Reply> {
    let leaf = prop_oneof![
        "[ -~]{0,12}".prop_map(Reply::simple),
        "[ -~]{0,12}".prop_map(Reply::Error),
        any::<i64>().prop_map(Reply::Integer),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(Reply::bulk),
        Just(Reply::Nil),
        Just(Reply::NilArray),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        proptest::collection::vec(inner, 0..5).prop_map(Reply::Array)
    })
}

fn arb_cuts() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0usize..600, 0..12)
}

/// Fragments that make decoders walk their less common paths.
fn arb_wire() -> impl Strategy<Value = Vec<u8>> {
    const TOKENS: &[&[u8]] = &[
        b"*",
        b"$",
        b"\r\n",
        b"\n",
        b"\r",
        b"-1",
        b"2",
        b"0",
        b"99999999999",
        b"\"",
        b"'",
        b"\\x4",
        b"\\",
        b"a",
        b" ",
        b":",
        b"+",
        b"-",
        b"\xff",
    ];
    let token = proptest::sample::select(TOKENS);
    let tokens = proptest::collection::vec(token, 0..60).prop_map(|t| t.concat());
    prop_oneof![tokens, proptest::collection::vec(any::<u8>(), 0..300)]
}

proptest! {
    #[test]
    fn commands_round_trip_under_any_chunking(
        cmds in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6), 0..6),
        cuts in arb_cuts(),
    ) {
        let mut input = Vec::new();
        for cmd in &cmds {
            let refs: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
            input.extend(encoded(&refs));
        }
        let got = feed(&mut RespDecoder::default(), &input, &cuts).unwrap();
        let want: Vec<Vec<Bytes>> =
            cmds.iter().map(|c| c.iter().map(|a| Bytes::copy_from_slice(a)).collect()).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn inline_words_round_trip(words in proptest::collection::vec("[a-zA-Z0-9_]{1,8}", 1..6), cuts in arb_cuts()) {
        let input = format!("{}\r\n", words.join(" "));
        let got = feed(&mut RespDecoder::default(), input.as_bytes(), &cuts).unwrap();
        let want: Vec<&str> = words.iter().map(String::as_str).collect();
        prop_assert_eq!(got, vec![args(&want)]);
    }

    #[test]
    fn replies_round_trip_under_any_chunking(replies in proptest::collection::vec(arb_reply(), 0..4), cuts in arb_cuts()) {
        let input: Vec<u8> = replies.iter().flat_map(wire).collect();
        prop_assert_eq!(feed(&mut ReplyDecoder::default(), &input, &cuts).unwrap(), replies);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_chunking_never_matters(input in arb_wire(), cuts in arb_cuts()) {
        let limits = Limits { max_array_len: 8, max_bulk_len: 64, max_inline_len: 32 };
        let whole = feed(&mut RespDecoder::new(limits), &input, &[]).map_err(|e| e.to_string());
        let split = feed(&mut RespDecoder::new(limits), &input, &cuts).map_err(|e| e.to_string());
        prop_assert_eq!(whole, split);
        let whole = feed(&mut ReplyDecoder::new(limits), &input, &[]).map_err(|e| e.to_string());
        let split = feed(&mut ReplyDecoder::new(limits), &input, &cuts).map_err(|e| e.to_string());
        prop_assert_eq!(whole, split);
    }
}

/// Commands that arrive whole take a one-pass path; split byte by byte they
/// go through the state machine. Both must agree, on odd input too.
#[test]
fn whole_commands_decode_as_the_state_machine_does() {
    let limits = Limits {
        max_array_len: 8,
        max_bulk_len: 64,
        max_inline_len: 32,
    };
    let cases: &[&[u8]] = &[
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n",
        b"*1\r\n$0\r\n\r\n",
        b"*2\r\n$3\r\nGET\r\n$01\r\nk\r\n",
        b"*02\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        b"*1\r\n$-1\r\n",
        b"*-1\r\n*1\r\n$1\r\nx\r\n",
        b"*0\r\n*1\r\n$1\r\nx\r\n",
        b"*1\r\n$1\r\nxy\r\n",
        b"*1\r\n$65\r\n",
        b"*9\r\n$1\r\na\r\n",
        b"*1\r\n$99999999999999999999\r\n",
        b"*1\r\n:1\r\n",
        b"*1\r\n$1\r\nx\n",
    ];
    for input in cases {
        let bytewise: Vec<usize> = (1..input.len()).collect();
        let whole = feed(&mut RespDecoder::new(limits), input, &[]).map_err(|e| e.to_string());
        let split =
            feed(&mut RespDecoder::new(limits), input, &bytewise).map_err(|e| e.to_string());
        assert_eq!(whole, split, "input {:?}", input.escape_ascii().to_string());
    }
}
