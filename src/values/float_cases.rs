//! The INCRBYFLOAT and HINCRBYFLOAT replies recorded from redis-server
//! 7.0.15 (`float_cases.txt`, written by `tools/redis-float-cases.py`), read
//! for the tests: the table is data, kept apart from code.

/// Which command a case runs.
#[derive(Clone, Copy, Debug)]
pub(super) enum Command {
    /// `INCRBYFLOAT k incr` after `SET k stored`.
    S,
    /// `HINCRBYFLOAT k f incr` after `HSET k f stored`.
    H,
}

/// One recorded case.
#[derive(Debug)]
pub(super) struct Case {
    pub command: Command,
    /// The value stored first (`None`: the key is missing).
    pub stored: Option<Vec<u8>>,
    pub incr: Vec<u8>,
    /// Redis's reply: the new value, or the error line.
    pub reply: Result<String, String>,
}

/// Every case of the table.
pub(super) fn cases() -> Vec<Case> {
    include_str!("float_cases.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let [command, stored, incr, kind, reply] = cols[..] else {
                panic!("float_cases.txt: not five columns: {line:?}");
            };
            Case {
                command: match command {
                    "S" => Command::S,
                    "H" => Command::H,
                    other => panic!("float_cases.txt: command {other:?}"),
                },
                stored: (stored != "none").then(|| unquote(stored)),
                incr: unquote(incr),
                reply: match kind {
                    "ok" => Ok(reply.to_string()),
                    "err" => Err(reply.to_string()),
                    other => panic!("float_cases.txt: outcome {other:?}"),
                },
            }
        })
        .collect()
}

/// The bytes of a quoted column: `\\`, `\"` and `\xHH` escapes.
fn unquote(s: &str) -> Vec<u8> {
    let inner = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("float_cases.txt: not quoted: {s:?}"));
    let b = inner.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'x')) => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                i += 4;
            }
            (b'\\', Some(&c)) => {
                out.push(c);
                i += 2;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}
