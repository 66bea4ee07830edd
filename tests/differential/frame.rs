//! RESP2 and RESP3 framing, written for this test and not shared with the
//! server under test: where one reply ends, its tree, and the normalizers
//! the case markers ask for (shape only, unordered, masked fields).

/// One reply, as a tree.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Frame {
    /// A one-line frame, `+ - : _ , # (`: its type byte and text.
    Line(u8, Vec<u8>),
    /// A length-prefixed string, `$ ! =`: its type byte and payload.
    Blob(u8, Vec<u8>),
    /// A RESP2 null, `$-1` or `*-1`: its type byte.
    Null(u8),
    /// An aggregate, `* ~ > %`; a map's entries are flattened, key then value.
    Agg(u8, Vec<Frame>),
    /// A RESP3 attribute (`|`, flattened like a map) and the reply after it.
    Attributed(Vec<Frame>, Box<Frame>),
}

/// Parses one complete reply at the start of `buf`: `Ok(None)` while more
/// bytes are needed, else the frame and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    parse_at(buf, 0)
}

fn parse_at(buf: &[u8], at: usize) -> Result<Option<(Frame, usize)>, String> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some(crlf) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let body = &buf[at + 1..at + crlf];
    let next = at + crlf + 2;
    match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
            Ok(Some((Frame::Line(kind, body.to_vec()), next)))
        }
        b'$' | b'!' | b'=' => {
            let len = length(body)?;
            if len == -1 && kind == b'$' {
                return Ok(Some((Frame::Null(kind), next)));
            }
            let len = usize::try_from(len).map_err(|_| format!("bad length {len}"))?;
            let end = next + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(format!("{} bytes of payload not followed by CRLF", len));
            }
            Ok(Some((Frame::Blob(kind, buf[next..end].to_vec()), end + 2)))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = length(body)?;
            if n == -1 && kind == b'*' {
                return Ok(Some((Frame::Null(kind), next)));
            }
            let n = usize::try_from(n).map_err(|_| format!("bad count {n}"))?;
            let count = if matches!(kind, b'%' | b'|') {
                2 * n
            } else {
                n
            };
            let mut kids = Vec::with_capacity(count.min(1024));
            let mut pos = next;
            for _ in 0..count {
                let Some((kid, after)) = parse_at(buf, pos)? else {
                    return Ok(None);
                };
                kids.push(kid);
                pos = after;
            }
            if kind != b'|' {
                return Ok(Some((Frame::Agg(kind, kids), pos)));
            }
            Ok(parse_at(buf, pos)?
                .map(|(reply, after)| (Frame::Attributed(kids, Box::new(reply)), after)))
        }
        other => Err(format!("{:?} is not a RESP type byte", other as char)),
    }
}

fn length(body: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(body)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad length {:?}", String::from_utf8_lossy(body)))
}

impl Frame {
    /// The frame encoded back to bytes (as the server would have sent it).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Line(t, text) => {
                out.push(*t);
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Blob(t, data) => {
                out.push(*t);
                out.extend_from_slice(format!("{}\r\n", data.len()).as_bytes());
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Null(t) => {
                out.push(*t);
                out.extend_from_slice(b"-1\r\n");
            }
            Frame::Agg(t, kids) => {
                let n = if *t == b'%' {
                    kids.len() / 2
                } else {
                    kids.len()
                };
                out.push(*t);
                out.extend_from_slice(format!("{n}\r\n").as_bytes());
                kids.iter().for_each(|k| k.encode(out));
            }
            Frame::Attributed(attrs, reply) => {
                out.extend_from_slice(format!("|{}\r\n", attrs.len() / 2).as_bytes());
                attrs.iter().for_each(|k| k.encode(out));
                reply.encode(out);
            }
        }
    }

    /// The type tree: type bytes, and the element count of aggregates.
    /// Scalars' contents and lengths are left out.
    pub fn shape(&self) -> String {
        let mut s = String::new();
        self.write_shape(&mut s);
        s
    }

    fn write_shape(&self, s: &mut String) {
        match self {
            Frame::Line(t, _) | Frame::Blob(t, _) => s.push(*t as char),
            Frame::Null(t) => s.push_str(&format!("{}-1", *t as char)),
            Frame::Agg(t, kids) => {
                s.push_str(&format!("{}{}[", *t as char, kids.len()));
                for k in kids {
                    k.write_shape(s);
                    s.push(' ');
                }
                s.push(']');
            }
            Frame::Attributed(attrs, reply) => {
                Frame::Agg(b'|', attrs.clone()).write_shape(s);
                reply.write_shape(s);
            }
        }
    }

    /// The frame with every aggregate's elements sorted, at every depth, so
    /// that two replies listing the same things in different orders are
    /// equal. A map's entries are sorted as (key, value) pairs; with
    /// `pairs`, so are a flat array's (RESP2's form of a map).
    pub fn sorted(&self, pairs: bool) -> Frame {
        match self {
            Frame::Agg(t, kids) => {
                let kids: Vec<Frame> = kids.iter().map(|k| k.sorted(pairs)).collect();
                let by_pairs = *t == b'%' || (pairs && *t == b'*' && kids.len() % 2 == 0);
                Frame::Agg(
                    *t,
                    if by_pairs {
                        sort_pairs(kids)
                    } else {
                        sort(kids)
                    },
                )
            }
            Frame::Attributed(attrs, reply) => Frame::Attributed(
                sort_pairs(attrs.iter().map(|k| k.sorted(pairs)).collect()),
                Box::new(reply.sorted(pairs)),
            ),
            other => other.clone(),
        }
    }

    /// The frame with the values of the named fields replaced by
    /// `<masked>`, their type kept: in maps and in flat arrays (a string
    /// at an even index names the element after it), and in text as
    /// space- or newline-separated `name=value` tokens (CLIENT INFO).
    pub fn masked(&self, names: &[String]) -> Frame {
        match self {
            Frame::Agg(t, kids) => {
                let mut out: Vec<Frame> = kids.iter().map(|k| k.masked(names)).collect();
                if matches!(t, b'%' | b'*') {
                    for i in (0..out.len().saturating_sub(1)).step_by(2) {
                        if kids[i]
                            .text()
                            .is_some_and(|k| names.iter().any(|n| n.as_bytes() == k))
                        {
                            out[i + 1] = kids[i + 1].placeholder();
                        }
                    }
                }
                Frame::Agg(*t, out)
            }
            Frame::Attributed(attrs, reply) => Frame::Attributed(
                attrs.iter().map(|k| k.masked(names)).collect(),
                Box::new(reply.masked(names)),
            ),
            Frame::Blob(b'=', data) if data.len() >= 4 => {
                let mut out = data[..4].to_vec();
                out.extend(mask_tokens(&data[4..], names));
                Frame::Blob(b'=', out)
            }
            Frame::Blob(t @ b'$', data) | Frame::Line(t @ b'+', data) => {
                let masked = mask_tokens(data, names);
                if matches!(self, Frame::Blob(..)) {
                    Frame::Blob(*t, masked)
                } else {
                    Frame::Line(*t, masked)
                }
            }
            other => other.clone(),
        }
    }

    /// The text of a string-like frame.
    fn text(&self) -> Option<&[u8]> {
        match self {
            Frame::Line(b'+', t) | Frame::Blob(b'$', t) => Some(t),
            _ => None,
        }
    }

    /// A frame of the same type whose content reads `<masked>`.
    fn placeholder(&self) -> Frame {
        const M: &[u8] = b"<masked>";
        match self {
            Frame::Line(t, _) => Frame::Line(*t, M.to_vec()),
            Frame::Blob(t, _) => Frame::Blob(*t, M.to_vec()),
            Frame::Agg(t, _) => Frame::Agg(*t, vec![]),
            other => other.clone(),
        }
    }
}

fn sort(mut kids: Vec<Frame>) -> Vec<Frame> {
    kids.sort();
    kids
}

fn sort_pairs(kids: Vec<Frame>) -> Vec<Frame> {
    let mut pairs: Vec<Vec<Frame>> = kids.chunks(2).map(|c| c.to_vec()).collect();
    pairs.sort();
    pairs.into_iter().flatten().collect()
}

/// `text` with the value of every `name=value` token whose name is listed
/// replaced by `<masked>`; tokens are separated by spaces and line breaks,
/// which are kept.
fn mask_tokens(text: &[u8], names: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut start = 0;
    for i in 0..=text.len() {
        if i < text.len() && !matches!(text[i], b' ' | b'\n') {
            continue;
        }
        let token = &text[start..i];
        match token.iter().position(|&b| b == b'=') {
            Some(eq) if names.iter().any(|n| n.as_bytes() == &token[..eq]) => {
                out.extend_from_slice(&token[..=eq]);
                out.extend_from_slice(b"<masked>");
            }
            _ => out.extend_from_slice(token),
        }
        out.extend(text.get(i));
        start = i + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(raw: &[u8]) -> Frame {
        let (f, used) = parse(raw).unwrap().expect("complete");
        assert_eq!(used, raw.len(), "{raw:?}");
        let mut again = Vec::new();
        f.encode(&mut again);
        assert_eq!(again, raw, "round trip");
        f
    }

    #[test]
    fn every_resp2_and_resp3_type_parses_and_round_trips() {
        for raw in [
            &b"+OK\r\n"[..],
            b"-ERR x\r\n",
            b":-12\r\n",
            b"$0\r\n\r\n",
            b"$4\r\na\r\nb\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"_\r\n",
            b"#t\r\n",
            b",1.5\r\n",
            b"(123456789012345678901234567890\r\n",
            b"!3\r\nERR\r\n",
            b"=7\r\ntxt:a b\r\n",
            b"%1\r\n+a\r\n*2\r\n:1\r\n$-1\r\n",
            b"~2\r\n:1\r\n:2\r\n",
            b">2\r\n$1\r\nx\r\n:1\r\n",
            b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",
        ] {
            one(raw);
        }
    }

    #[test]
    fn an_incomplete_reply_asks_for_more_and_garbage_is_an_error() {
        for raw in [
            &b""[..],
            b"+OK",
            b"+OK\r",
            b"$5\r\nab",
            b"$2\r\nab\r",
            b"*2\r\n:1\r\n",
            b"%1\r\n+a\r\n",
            b"|1\r\n+a\r\n:1\r\n",
        ] {
            assert_eq!(parse(raw), Ok(None), "{raw:?}");
        }
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b"$2\r\nabc\r\n").is_err());
        assert!(parse(b"*x\r\n").is_err());
    }

    #[test]
    fn a_reply_is_read_exactly_leaving_the_next_one() {
        let (f, used) = parse(b"*1\r\n+a\r\n:5\r\n").unwrap().unwrap();
        assert_eq!(used, 8);
        assert_eq!(f, Frame::Agg(b'*', vec![Frame::Line(b'+', b"a".to_vec())]));
    }

    #[test]
    fn shape_keeps_types_and_counts_but_not_contents() {
        let a = one(b"*2\r\n$10\r\n1700000000\r\n$6\r\n123456\r\n");
        let b = one(b"*2\r\n$10\r\n1700000001\r\n$2\r\n12\r\n");
        let c = one(b"*2\r\n:1\r\n$2\r\n12\r\n");
        let d = one(b"*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n");
        assert_eq!(a.shape(), b.shape());
        assert_ne!(a.shape(), c.shape());
        assert_ne!(a.shape(), d.shape());
        assert_ne!(one(b"$-1\r\n").shape(), one(b"$1\r\nx\r\n").shape());
    }

    #[test]
    fn sorting_makes_order_irrelevant_but_keeps_pairs_together() {
        let a = one(b"*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n");
        let b = one(b"*4\r\n$1\r\nb\r\n$1\r\n2\r\n$1\r\na\r\n$1\r\n1\r\n");
        let crossed = one(b"*4\r\n$1\r\na\r\n$1\r\n2\r\n$1\r\nb\r\n$1\r\n1\r\n");
        assert_eq!(a.sorted(true), b.sorted(true));
        assert_ne!(a.sorted(true), crossed.sorted(true));
        // Element-wise sorting cannot tell the crossed pairs apart.
        assert_eq!(a.sorted(false), crossed.sorted(false));
        let m1 = one(b"%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n");
        let m2 = one(b"%2\r\n+b\r\n:2\r\n+a\r\n:1\r\n");
        let m3 = one(b"%2\r\n+b\r\n:1\r\n+a\r\n:2\r\n");
        assert_eq!(m1.sorted(false), m2.sorted(false));
        assert_ne!(m1.sorted(false), m3.sorted(false));
        // Nested arrays (SCAN's key list) are sorted too.
        let s1 = one(b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\nx\r\n$1\r\ny\r\n");
        let s2 = one(b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\ny\r\n$1\r\nx\r\n");
        assert_eq!(s1.sorted(false), s2.sorted(false));
    }

    #[test]
    fn masking_hides_named_values_only_and_keeps_their_type() {
        let names = vec!["id".to_string(), "addr".to_string()];
        let a = one(b"%2\r\n+proto\r\n:3\r\n+id\r\n:7\r\n");
        let b = one(b"%2\r\n+proto\r\n:3\r\n+id\r\n:99\r\n");
        let c = one(b"%2\r\n+proto\r\n:2\r\n+id\r\n:7\r\n");
        let d = one(b"%2\r\n+proto\r\n:3\r\n+id\r\n$2\r\n99\r\n");
        assert_eq!(a.masked(&names), b.masked(&names));
        assert_ne!(a.masked(&names), c.masked(&names));
        assert_ne!(a.masked(&names), d.masked(&names), "type kept");
        let r2a = one(b"*4\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:7\r\n");
        let r2b = one(b"*4\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:8\r\n");
        assert_eq!(r2a.masked(&names), r2b.masked(&names));
        let t1 = one(b"$32\r\nid=3 addr=1.2.3.4:5 name=x db=0\n\r\n");
        let t2 = one(b"$35\r\nid=12 addr=1.2.3.4:555 name=x db=0\n\r\n");
        let t3 = one(b"$35\r\nid=12 addr=1.2.3.4:555 name=y db=0\n\r\n");
        assert_eq!(t1.masked(&names), t2.masked(&names));
        assert_ne!(t1.masked(&names), t3.masked(&names));
        let mut text = Vec::new();
        t1.masked(&names).encode(&mut text);
        assert_eq!(text, b"$38\r\nid=<masked> addr=<masked> name=x db=0\n\r\n");
        let v = one(b"=13\r\ntxt:id=3 db=0\r\n");
        let mut text = Vec::new();
        v.masked(&names).encode(&mut text);
        assert_eq!(text, b"=20\r\ntxt:id=<masked> db=0\r\n");
    }
}
