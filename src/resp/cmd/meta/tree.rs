//! The JSON form of a RESP3 reply tree, read into a [`Reply`].
//!
//! `tools/redis-meta.py` writes each frame Redis sent as one JSON value
//! (tools/README.md): a number is an integer, `"$text"` a bulk string,
//! `"+text"` a simple string, `null` a null, an array an array, an array
//! opened by a bare `"~"` a set, and an object a map with bulk-string keys,
//! in the order written. A bare `"~"` is never an element (every string
//! element carries `$` or `+`), so a set cannot be mistaken for an array.
//! Objects are read entry by entry, so the order survives without
//! serde_json's `preserve_order`.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::resp::codec::Reply;

/// A reply read from its JSON form.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree(pub Reply);

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tree, D::Error> {
        match Node::deserialize(d)? {
            Node::Reply(r) => Ok(Tree(r)),
            Node::SetMark => Err(de::Error::custom(r#"a bare "~" may only open an array"#)),
        }
    }
}

/// One JSON value: a reply, or the `"~"` that opens a set.
enum Node {
    Reply(Reply),
    SetMark,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            r#"a reply tree: an integer, "$bulk", "+simple", null, [...], ["~", ...] or {...}"#,
        )
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Reply(Reply::Integer(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        let v = i64::try_from(v).map_err(|_| E::custom(format!("integer {v} out of range")))?;
        self.visit_i64(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Reply(Reply::Nil))
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        self.visit_unit()
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        if v == "~" {
            Ok(Node::SetMark)
        } else if let Some(bulk) = v.strip_prefix('$') {
            Ok(Node::Reply(Reply::Bulk(Bytes::copy_from_slice(
                bulk.as_bytes(),
            ))))
        } else if let Some(simple) = v.strip_prefix('+') {
            Ok(Node::Reply(Reply::simple(simple.to_string())))
        } else {
            Err(E::custom(format!("a string must start with $ or +: {v:?}")))
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        let mut set = false;
        let mut first = true;
        while let Some(node) = seq.next_element::<Node>()? {
            match node {
                Node::SetMark if first => set = true,
                Node::SetMark => {
                    return Err(de::Error::custom(r#"a bare "~" may only open an array"#))
                }
                Node::Reply(r) => items.push(r),
            }
            first = false;
        }
        Ok(Node::Reply(if set {
            Reply::Set(items)
        } else {
            Reply::Array(items)
        }))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut pairs: Vec<(Reply, Reply)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let key = Reply::Bulk(Bytes::from(key));
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format!("map key {key:?} repeated")));
            }
            match map.next_value::<Node>()? {
                Node::Reply(value) => pairs.push((key, value)),
                Node::SetMark => {
                    return Err(de::Error::custom(r#"a bare "~" may only open an array"#))
                }
            }
        }
        Ok(Node::Reply(Reply::Map(pairs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::codec::Proto;

    fn parse(json: &str) -> Result<Reply, serde_json::Error> {
        serde_json::from_str::<Tree>(json).map(|t| t.0)
    }

    #[test]
    fn every_frame_type_is_read_and_map_order_kept() {
        let tree = parse(
            r#"["$get", 2, ["~", "+readonly", "+fast"], null, [], ["~"],
                {"z": 1, "a": "$x", "m": {}}]"#,
        )
        .unwrap();
        let want = Reply::Array(vec![
            Reply::bulk("get"),
            Reply::Integer(2),
            Reply::Set(vec![Reply::simple("readonly"), Reply::simple("fast")]),
            Reply::Nil,
            Reply::Array(vec![]),
            Reply::Set(vec![]),
            Reply::map([
                ("z", Reply::Integer(1)),
                ("a", Reply::bulk("x")),
                ("m", Reply::Map(vec![])),
            ]),
        ]);
        assert_eq!(tree, want);
        assert_eq!(
            &parse(r#"{"k": ["~", "+a"]}"#)
                .unwrap()
                .to_wire(Proto::Resp3)[..],
            b"%1\r\n$1\r\nk\r\n~1\r\n+a\r\n"
        );
    }

    #[test]
    fn malformed_trees_are_refused() {
        for bad in [
            r#""plain""#,
            r#""~""#,
            r#"["$a", "~"]"#,
            r#"{"k": "~"}"#,
            r#"{"k": 1, "k": 2}"#,
            "1.5",
            "true",
            "18446744073709551615",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
