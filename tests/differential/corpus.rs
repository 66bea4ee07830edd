//! The two text files of the differential test: `cases.txt` (scripts of
//! commands, with comparison markers) and `differences.txt` (the replies
//! ringkv is allowed to give differently, and why). The formats are
//! described in `tests/differential/README.md`.

/// How a case's two replies are compared, when not byte for byte.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Marker {
    /// Compare only the RESP type tree and aggregate lengths.
    pub shape: bool,
    /// Sort every aggregate's elements (maps by entry) before comparing.
    pub unordered: bool,
    /// Like `unordered`, and flat arrays are sorted two by two (RESP2 maps).
    pub unordered_pairs: bool,
    /// Fields whose values are replaced by `<masked>` (see `Frame::masked`).
    pub mask: Vec<String>,
    /// Why the reply cannot be compared byte for byte.
    pub reason: String,
}

impl Marker {
    /// The markers as written after `#!`.
    pub fn words(&self) -> String {
        let mut words = Vec::new();
        if self.shape {
            words.push("shape".to_string());
        }
        if self.unordered {
            words.push("unordered".into());
        }
        if self.unordered_pairs {
            words.push("unordered-pairs".into());
        }
        if !self.mask.is_empty() {
            words.push(format!("mask={}", self.mask.join(",")));
        }
        words.join(" ")
    }
}

/// One command line.
#[derive(Clone, Debug)]
pub struct Case {
    /// Line number in cases.txt (1-based).
    pub line: usize,
    /// The line as written, trimmed.
    pub text: String,
    pub args: Vec<Vec<u8>>,
    pub marker: Option<Marker>,
}

/// Lines run in order on one connection.
#[derive(Clone, Debug)]
pub struct Script {
    pub section: String,
    pub cases: Vec<Case>,
}

/// Parses cases.txt.
pub fn parse_cases(text: &str) -> Result<Vec<Script>, String> {
    let mut scripts = Vec::new();
    let mut section = String::from("(no section)");
    let mut current: Vec<Case> = Vec::new();
    let mut pending: Option<(usize, Marker)> = None;
    let mut finish = |current: &mut Vec<Case>, section: &str, pending: &Option<(usize, Marker)>| {
        if let Some((line, _)) = pending {
            return Err(format!(
                "line {line}: a marker must be followed by a command"
            ));
        }
        if !current.is_empty() {
            scripts.push(Script {
                section: section.to_string(),
                cases: std::mem::take(current),
            });
        }
        Ok(())
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if let Some(name) = trimmed.strip_prefix("## ") {
            finish(&mut current, &section, &pending)?;
            section = name.trim().to_string();
        } else if let Some(spec) = trimmed.strip_prefix("#!") {
            if pending.is_some() {
                return Err(format!("line {line}: two markers for one command"));
            }
            let marker = parse_marker(spec).map_err(|e| format!("line {line}: {e}"))?;
            pending = Some((line, marker));
        } else if trimmed.starts_with('#') {
            continue;
        } else if trimmed.is_empty() {
            finish(&mut current, &section, &pending)?;
        } else {
            let args = split_args(trimmed).map_err(|e| format!("line {line}: {e}"))?;
            current.push(Case {
                line,
                text: trimmed.to_string(),
                args,
                marker: pending.take().map(|(_, m)| m),
            });
        }
    }
    finish(&mut current, &section, &pending)?;
    Ok(scripts)
}

/// Parses what follows `#!`: markers, then ` -- ` and the reason.
fn parse_marker(spec: &str) -> Result<Marker, String> {
    let (words, reason) = spec
        .split_once(" -- ")
        .ok_or("a marker needs ` -- ` and a reason")?;
    let reason = reason.trim();
    if reason.is_empty() {
        return Err("a marker needs a reason".into());
    }
    let mut m = Marker {
        reason: reason.to_string(),
        ..Marker::default()
    };
    for word in words.split_whitespace() {
        match word {
            "shape" => m.shape = true,
            "unordered" => m.unordered = true,
            "unordered-pairs" => m.unordered_pairs = true,
            _ => match word.strip_prefix("mask=") {
                Some(list) if !list.is_empty() => {
                    m.mask = list.split(',').map(str::to_string).collect();
                }
                _ => return Err(format!("unknown marker `{word}`")),
            },
        }
    }
    if m == (Marker {
        reason: m.reason.clone(),
        ..Marker::default()
    }) {
        return Err("no marker before ` -- `".into());
    }
    Ok(m)
}

/// Splits a line into arguments as redis-cli does (`sdssplitargs`):
/// words separated by spaces; `"..."` with `\" \\ \n \r \t \b \a \xHH`
/// escapes; `'...'` with only `\'`; a quote inside a word opens quoting
/// too; a closing quote must end the word. Unlike redis-cli, a bad `\x`
/// escape is an error (a typo in the corpus), not literal text.
pub fn split_args(line: &str) -> Result<Vec<Vec<u8>>, String> {
    let b = line.as_bytes();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            return Ok(args);
        }
        let mut word = Vec::new();
        let (mut dq, mut sq) = (false, false);
        loop {
            let Some(&c) = b.get(i) else {
                if dq || sq {
                    return Err("unterminated quote".into());
                }
                break;
            };
            if dq {
                match (c, b.get(i + 1)) {
                    (b'\\', Some(b'x')) if b.len() > i + 3 => {
                        let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap_or("");
                        let v = u8::from_str_radix(hex, 16)
                            .map_err(|_| format!("bad escape \\x{hex}"))?;
                        word.push(v);
                        i += 3;
                    }
                    (b'\\', Some(&e)) => {
                        word.push(match e {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                        i += 1;
                    }
                    (b'"', next) => {
                        if next.is_some_and(|n| !n.is_ascii_whitespace()) {
                            return Err("a closing quote must end the word".into());
                        }
                        i += 1;
                        break;
                    }
                    _ => word.push(c),
                }
            } else if sq {
                match (c, b.get(i + 1)) {
                    (b'\\', Some(b'\'')) => {
                        word.push(b'\'');
                        i += 1;
                    }
                    (b'\'', next) => {
                        if next.is_some_and(|n| !n.is_ascii_whitespace()) {
                            return Err("a closing quote must end the word".into());
                        }
                        i += 1;
                        break;
                    }
                    _ => word.push(c),
                }
            } else if c.is_ascii_whitespace() {
                break;
            } else if c == b'"' {
                dq = true;
            } else if c == b'\'' {
                sq = true;
            } else {
                word.push(c);
            }
            i += 1;
        }
        args.push(word);
    }
}

/// Prints the case count of every section and every marker in use, so a
/// run's output says what it covered and what it compared loosely.
pub fn print_summary(scripts: &[Script]) {
    let mut sections: Vec<(&str, usize, usize)> = Vec::new();
    for s in scripts {
        match sections.last_mut() {
            Some((name, n, k)) if *name == s.section => {
                *n += 1;
                *k += s.cases.len();
            }
            _ => sections.push((&s.section, 1, s.cases.len())),
        }
    }
    for (name, n, k) in &sections {
        println!("section {name:?}: {n} script(s), {k} case(s)");
    }
    for case in scripts.iter().flat_map(|s| &s.cases) {
        if let Some(m) = &case.marker {
            println!(
                "marker at cases.txt:{}: {} -> {} ({})",
                case.line,
                case.text,
                m.words(),
                m.reason
            );
        }
    }
}

/// Panics naming every difference whose pattern matches no line of the
/// corpus (nor `preamble`, the command every RESP3 connection starts
/// with): a typo or a leftover.
pub fn check_differences_name_cases(
    differences: &[Difference],
    scripts: &[Script],
    preamble: &str,
) {
    let orphans: Vec<String> = differences
        .iter()
        .filter(|d| {
            ![2, 3].iter().any(|&p| {
                d.covers(preamble, p)
                    || scripts
                        .iter()
                        .flat_map(|s| &s.cases)
                        .any(|c| d.covers(&c.text, p))
            })
        })
        .map(|d| format!("differences.txt:{}: `{}`", d.line, d.pattern))
        .collect();
    assert!(
        orphans.is_empty(),
        "listed differences that match no line of cases.txt:\n{}",
        orphans.join("\n")
    );
}

/// A deliberate difference: which commands, and why.
#[derive(Clone, Debug)]
pub struct Difference {
    /// Line number in differences.txt.
    pub line: usize,
    /// Only on connections of this protocol (2 or 3), if set.
    pub protocol: Option<u8>,
    /// Glob (`*`, `?`) over a case's text, case-insensitive.
    pub pattern: String,
    /// What ringkv's reply must start with, if set.
    pub expect_prefix: Option<Vec<u8>>,
    pub reason: String,
}

impl Difference {
    /// Whether this entry covers `case_text` on a connection of `protocol`.
    pub fn covers(&self, case_text: &str, protocol: u8) -> bool {
        self.protocol.is_none_or(|p| p == protocol)
            && glob(
                self.pattern.to_ascii_lowercase().as_bytes(),
                case_text.to_ascii_lowercase().as_bytes(),
            )
    }
}

/// Parses differences.txt: `[resp2|resp3] PATTERN [=> "PREFIX"] -- REASON`.
pub fn parse_differences(text: &str) -> Result<Vec<Difference>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (head, reason) = trimmed
            .split_once(" -- ")
            .ok_or(format!("line {line}: needs ` -- ` and a reason"))?;
        let reason = reason.trim().to_string();
        if reason.is_empty() {
            return Err(format!("line {line}: needs a reason"));
        }
        let (head, expect_prefix) = match head.split_once(" => ") {
            Some((h, p)) => {
                let mut words = split_args(p).map_err(|e| format!("line {line}: {e}"))?;
                if words.len() != 1 {
                    return Err(format!("line {line}: `=>` takes one quoted prefix"));
                }
                (h, words.pop())
            }
            None => (head, None),
        };
        let head = head.trim();
        let (protocol, pattern) = match head.split_once(' ') {
            Some(("[resp2]", rest)) => (Some(2), rest.trim()),
            Some(("[resp3]", rest)) => (Some(3), rest.trim()),
            _ => (None, head),
        };
        if pattern.is_empty() {
            return Err(format!("line {line}: no pattern"));
        }
        out.push(Difference {
            line,
            protocol,
            pattern: pattern.to_string(),
            expect_prefix,
            reason,
        });
    }
    Ok(out)
}

/// Glob matching with `*` (any run) and `?` (one byte).
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split_args(line)
            .unwrap()
            .into_iter()
            .map(|w| String::from_utf8_lossy(&w).into_owned())
            .collect()
    }

    #[test]
    fn words_split_as_redis_cli_splits_them() {
        assert_eq!(words("  SET  k   v "), ["SET", "k", "v"]);
        assert_eq!(words(r#"SET "a b" """#), ["SET", "a b", ""]);
        assert_eq!(
            words(r#"ECHO "a\r\nb\x00\xff\"\\""#),
            ["ECHO", "a\r\nb\0\u{fffd}\"\\"]
        );
        assert_eq!(split_args(r#""\xff""#).unwrap(), [vec![0xff]]);
        assert_eq!(words(r"ECHO 'it\'s \n'"), ["ECHO", "it's \\n"]);
        assert_eq!(
            words(r#"a"b c""#),
            ["ab c"],
            "a quote inside a word opens quoting"
        );
        assert!(split_args(r#"ECHO "abc"#).is_err());
        assert!(split_args(r#"ECHO "a"b"#).is_err());
        assert!(split_args(r#"ECHO "\xzz""#).is_err());
    }

    #[test]
    fn scripts_are_split_by_blank_lines_and_sections_and_carry_markers() {
        let text = "\
## one
PING
# a comment does not end a script
#! shape -- the clock
TIME

ECHO a
## two
GET k
";
        let scripts = parse_cases(text).unwrap();
        assert_eq!(scripts.len(), 3);
        assert_eq!(scripts[0].section, "one");
        assert_eq!(scripts[0].cases.len(), 2);
        assert_eq!(scripts[0].cases[1].line, 5);
        let m = scripts[0].cases[1].marker.as_ref().unwrap();
        assert!(m.shape && !m.unordered);
        assert_eq!(m.reason, "the clock");
        assert!(scripts[0].cases[0].marker.is_none());
        assert_eq!(scripts[1].section, "one");
        assert_eq!(scripts[2].section, "two");
        assert_eq!(scripts[2].cases[0].args, [b"GET".to_vec(), b"k".to_vec()]);
    }

    #[test]
    fn bad_markers_and_dangling_markers_are_refused() {
        for bad in [
            "#! shape\nPING\n",
            "#! shape -- \nPING\n",
            "#! wobbly -- why\nPING\n",
            "#!  -- why\nPING\n",
            "#! shape -- why\n\nPING\n",
            "#! shape -- why\n#! unordered -- why\nPING\n",
            "PING\n#! shape -- why\n",
            "ECHO \"open\n",
        ] {
            assert!(parse_cases(bad).is_err(), "{bad:?}");
        }
        let m = parse_cases("#! unordered-pairs mask=id,addr -- why\nPING\n").unwrap()[0].cases[0]
            .marker
            .clone()
            .unwrap();
        assert!(m.unordered_pairs);
        assert_eq!(m.mask, ["id", "addr"]);
    }

    #[test]
    fn differences_parse_with_protocol_prefix_and_reason() {
        let d = parse_differences(
            "# c\n\nREADONLY => \"+OK\" -- cluster clients\n[resp3] HELLO 3 -- why\nLPUSH * -- lists\n",
        )
        .unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].expect_prefix.as_deref(), Some(&b"+OK"[..]));
        assert_eq!(d[0].pattern, "READONLY");
        assert!(d[0].covers("readonly", 2));
        assert_eq!(d[1].protocol, Some(3));
        assert!(d[1].covers("HELLO 3", 3) && !d[1].covers("HELLO 3", 2));
        assert!(d[2].covers("LPUSH fam:l a", 2) && !d[2].covers("LPUSHX k v", 2));
        assert!(parse_differences("READONLY\n").is_err());
        assert!(parse_differences("READONLY -- \n").is_err());
        assert!(parse_differences("READONLY => a b -- why\n").is_err());
    }

    #[test]
    fn glob_matches_stars_and_question_marks() {
        assert!(glob(b"*", b""));
        assert!(glob(b"a*c", b"abbbc"));
        assert!(glob(b"a*c", b"ac"));
        assert!(!glob(b"a*c", b"ab"));
        assert!(glob(b"?b*", b"abz"));
        assert!(!glob(b"?b", b"b"));
        assert!(glob(b"*x*y", b"axbxcy"));
        assert!(!glob(b"abc", b"abcd"));
    }
}
