//! What the runner prints: one record per answer, as a readable line or as
//! one JSON object (`--json`), in the order the answers arrive.
//!
//! The JSON fields are CONTRACT's (`op`, `node`, `key`, then `value` and
//! `ok` or `error`), followed by two of ringkv's own: `line`, the script
//! line the request came from, and `ms`, its latency. A read that finds
//! nothing has `"error":"not found"`, as CONTRACT shows; a `del` says how
//! many keys it removed in `deleted`.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::resp::codec::Reply;

/// The three request kinds a script sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// `set`.
    Set,
    /// `get`.
    Get,
    /// `del`.
    Del,
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A `set` was acknowledged.
    Stored,
    /// A `get` found this value.
    Value(String),
    /// A `get` found nothing.
    NotFound,
    /// A `del` removed this many keys (0 or 1).
    Deleted(i64),
    /// An error reply, or no reply; the text says why.
    Error(String),
}

impl Outcome {
    /// Reads a RESP reply to `op` (or the reason there was none).
    pub fn from_reply(op: Op, reply: Result<Reply, String>) -> Outcome {
        let reply = match reply {
            Ok(reply) => reply,
            Err(why) => return Outcome::Error(why),
        };
        match (op, reply) {
            (_, Reply::Error(e)) => Outcome::Error(e),
            (Op::Set, Reply::Simple(s)) if s == "OK" => Outcome::Stored,
            (Op::Get, Reply::Bulk(b)) => Outcome::Value(String::from_utf8_lossy(&b).into_owned()),
            (Op::Get, Reply::Nil) => Outcome::NotFound,
            (Op::Del, Reply::Integer(n)) => Outcome::Deleted(n),
            (_, other) => Outcome::Error(format!("unexpected reply {other:?}")),
        }
    }
}

/// One answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The script line of the request.
    pub line: usize,
    /// Which request.
    pub op: Op,
    /// The node it went to (`None`: no node was running).
    pub node: Option<String>,
    /// The key.
    pub key: String,
    /// The value written, for `set`.
    pub value: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// From sending to the answer.
    pub latency: Duration,
}

/// The `--json` form of an [`Answer`]; fields in CONTRACT's order.
#[derive(Serialize)]
struct Record<'a> {
    op: Op,
    node: Option<&'a str>,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    line: usize,
    ms: f64,
}

impl Answer {
    /// One JSON object, no newline.
    pub fn json(&self) -> String {
        let error = match &self.outcome {
            Outcome::Error(e) => Some(e.as_str()),
            Outcome::NotFound => Some("not found"),
            _ => None,
        };
        let value = match &self.outcome {
            Outcome::Value(v) => Some(v.as_str()),
            _ => self.value.as_deref(),
        };
        let ok = match (self.op, &self.outcome) {
            (Op::Get, _) => None,
            (_, Outcome::Error(_)) => Some(false),
            _ => Some(true),
        };
        let deleted = match self.outcome {
            Outcome::Deleted(n) => Some(n),
            _ => None,
        };
        let record = Record {
            op: self.op,
            node: self.node.as_deref(),
            key: &self.key,
            value,
            ok,
            deleted,
            error,
            line: self.line,
            ms: (self.latency.as_secs_f64() * 10_000.0).round() / 10.0,
        };
        // A struct of strings and numbers always serialises.
        serde_json::to_string(&record).unwrap_or_default()
    }

    /// One readable line, no newline:
    /// `line 12: get a via Able -> 21 (1.3 ms)`.
    pub fn human(&self) -> String {
        let request = match (self.op, &self.value) {
            (Op::Set, Some(v)) => format!("set {}={v}", self.key),
            (Op::Set, None) => format!("set {}", self.key),
            (Op::Get, _) => format!("get {}", self.key),
            (Op::Del, _) => format!("del {}", self.key),
        };
        let result = match &self.outcome {
            Outcome::Stored => "OK".to_string(),
            Outcome::Value(v) => v.clone(),
            Outcome::NotFound => "not found".to_string(),
            Outcome::Deleted(0) => "nothing to delete".to_string(),
            Outcome::Deleted(_) => "deleted".to_string(),
            Outcome::Error(e) => format!("error: {e}"),
        };
        let node = self.node.as_deref().unwrap_or("(no node)");
        let ms = self.latency.as_secs_f64() * 1000.0;
        format!(
            "line {}: {request} via {node} -> {result} ({ms:.1} ms)",
            self.line
        )
    }
}

/// Writes answers to stdout as they come.
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    /// JSON lines instead of readable ones.
    pub json: bool,
}

impl Printer {
    /// Prints one answer as one line and flushes it.
    pub fn print(&self, answer: &Answer) {
        let text = if self.json {
            answer.json()
        } else {
            answer.human()
        };
        let mut out = std::io::stdout().lock();
        // A closed stdout (a pipe to `head`) must not stop the run, which
        // still has nodes to stop; say so where the progress goes.
        if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
            eprintln!("scenario: cannot write an answer to stdout: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(op: Op, value: Option<&str>, outcome: Outcome) -> Answer {
        Answer {
            line: 3,
            op,
            node: Some("Able".into()),
            key: "a".into(),
            value: value.map(str::to_string),
            outcome,
            latency: Duration::from_micros(1250),
        }
    }

    #[test]
    fn json_records_follow_the_contract() {
        let set = answer(Op::Set, Some("11"), Outcome::Stored).json();
        assert_eq!(
            set,
            r#"{"op":"set","node":"Able","key":"a","value":"11","ok":true,"line":3,"ms":1.3}"#
        );
        let get = answer(Op::Get, None, Outcome::Value("0".into())).json();
        assert!(get.starts_with(r#"{"op":"get","node":"Able","key":"a","value":"0","line""#));
        let miss = answer(Op::Get, None, Outcome::NotFound).json();
        assert!(miss.contains(r#""key":"a","error":"not found""#));
        let del = answer(Op::Del, None, Outcome::Deleted(1)).json();
        assert!(del.contains(r#""ok":true,"deleted":1"#));
        let failed = answer(Op::Set, Some("1"), Outcome::Error("too few".into())).json();
        assert!(failed.contains(r#""ok":false,"error":"too few""#));
    }

    #[test]
    fn human_lines_name_the_node_and_the_latency() {
        let get = answer(Op::Get, None, Outcome::Value("21".into())).human();
        assert_eq!(get, "line 3: get a via Able -> 21 (1.2 ms)");
        let set = answer(Op::Set, Some("7"), Outcome::Error("nope".into())).human();
        assert_eq!(set, "line 3: set a=7 via Able -> error: nope (1.2 ms)");
    }

    #[test]
    fn replies_become_outcomes() {
        let ok = Outcome::from_reply(Op::Set, Ok(Reply::ok()));
        assert_eq!(ok, Outcome::Stored);
        assert_eq!(
            Outcome::from_reply(Op::Get, Ok(Reply::Nil)),
            Outcome::NotFound
        );
        let err = Outcome::from_reply(Op::Get, Ok(Reply::Error("ERR x".into())));
        assert_eq!(err, Outcome::Error("ERR x".into()));
        let none = Outcome::from_reply(Op::Del, Err("no answer".into()));
        assert_eq!(none, Outcome::Error("no answer".into()));
    }
}
