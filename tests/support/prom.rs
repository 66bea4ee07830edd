//! A strict-enough parser of the Prometheus / OpenMetrics text exposition,
//! for checking `/metrics`: every sample belongs to a declared family of a
//! known type, names and labels are well formed, values are numbers, and
//! every histogram's buckets are cumulative and end at its count.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

/// Samples by `name{sorted labels}`.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: BTreeMap<String, f64>,
    pub types: HashMap<String, String>,
}

impl Exposition {
    /// The value of sample `name` with exactly `labels` (any order).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples.get(&key(name, labels)).copied()
    }

    /// `get`, or 0 when absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    l.sort();
    format!("{name}{{{}}}", l.join(","))
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"").ok_or(format!("bad label in {s}"))?;
        if !valid_name(k) {
            return Err(format!("bad label name {k:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => return Err(format!("bad escape {other:?} in {s}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {s}")),
            }
        };
        out.push((k.to_string(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok(out)
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|e| format!("bad value {v:?}: {e}")),
    }
}

const SUFFIXES: [(&str, &[&str]); 4] = [
    ("counter", &["_total", "_created"]),
    ("gauge", &[""]),
    ("histogram", &["_bucket", "_sum", "_count", "_created"]),
    ("summary", &["", "_sum", "_count", "_created"]),
];

/// Parses the text; any violation is an error naming the line.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut e = Exposition::default();
    let lines: Vec<&str> = text.lines().collect();
    let mut eof = false;
    // histogram family + labels without le -> [(le, count)], and _count
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line:?}", i + 1);
        if eof {
            return Err(at("text after # EOF".into()));
        }
        if *line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if !valid_name(name) {
                return Err(at("bad metric name".into()));
            }
            match kw {
                "HELP" | "UNIT" => {}
                "TYPE" => {
                    let t = parts.next().unwrap_or("");
                    if !SUFFIXES.iter().any(|(k, _)| *k == t) && t != "unknown" && t != "info" {
                        return Err(at(format!("unknown type {t}")));
                    }
                    if e.types.insert(name.to_string(), t.to_string()).is_some() {
                        return Err(at("family declared twice".into()));
                    }
                }
                _ => return Err(at("unknown comment keyword".into())),
            }
            continue;
        }
        if line.is_empty() {
            return Err(at("empty line".into()));
        }
        let (name_labels, value) = match line.find('}') {
            Some(close) => (&line[..=close], line[close + 1..].trim_start()),
            None => line.split_once(' ').ok_or(at("no value".into()))?,
        };
        let value = value.split(' ').next().unwrap_or("");
        let (name, labels) = match name_labels.split_once('{') {
            Some((n, l)) => (n, parse_labels(l.trim_end_matches('}')).map_err(at)?),
            None => (name_labels, Vec::new()),
        };
        if !valid_name(name) {
            return Err(at("bad sample name".into()));
        }
        let v = parse_value(value).map_err(at)?;
        let family = e
            .types
            .iter()
            .find(|(f, t)| {
                let sfx = SUFFIXES
                    .iter()
                    .find(|(k, _)| k == t)
                    .map_or(&[""][..], |s| s.1);
                sfx.iter().any(|s| name.strip_suffix(s) == Some(f.as_str()))
            })
            .map(|(f, t)| (f.clone(), t.clone()))
            .ok_or(at("sample of no declared family".into()))?;
        let mut pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if family.1 == "histogram" {
            let rest: Vec<(&str, &str)> =
                pairs.iter().copied().filter(|(k, _)| *k != "le").collect();
            let series = key(&family.0, &rest);
            if name.ends_with("_bucket") {
                let le = pairs
                    .iter()
                    .find(|(k, _)| *k == "le")
                    .ok_or(at("bucket without le".into()))?;
                buckets
                    .entry(series)
                    .or_default()
                    .push((parse_value(le.1).map_err(at)?, v));
            } else if name.ends_with("_count") {
                counts.insert(series, v);
            }
        }
        pairs.sort();
        if e.samples.insert(key(name, &pairs), v).is_some() {
            return Err(at("duplicate sample".into()));
        }
    }
    if !eof {
        return Err("no # EOF at the end".into());
    }
    for (series, b) in &buckets {
        if !b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1) {
            return Err(format!("{series}: buckets not cumulative: {b:?}"));
        }
        let last = b.last().unwrap();
        if last.0 != f64::INFINITY || Some(&last.1) != counts.get(series) {
            return Err(format!("{series}: +Inf bucket does not match _count"));
        }
    }
    Ok(e)
}
