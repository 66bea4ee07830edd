//! The command builder: one line's words become a [`Command`], or an error
//! that names the command and says what it needs.
//!
//! Separate from the line handling in the parent module because this is where
//! the language's vocabulary lives (each command's arity, optional node,
//! name and number rules and usage text), while the parent only cuts text
//! into lines, words and blocks.

use super::{fail, Command, Direction, ParseError};

const COMMANDS: &str = "expected start, stop, kill, restart, set, get, del, split, join, drop, \
                        delay, after, wait or settle";

/// What each command needs, for error messages.
fn usage(cmd: &str) -> &'static str {
    match cmd {
        "start" => "a node name, optionally followed by `--peer-names A,B,...`",
        "stop" | "kill" | "restart" => "one node name",
        "set" => "a key and a value, optionally after a node: `set [NODE] KEY VALUE`",
        "get" => "a key, optionally after a node: `get [NODE] KEY`",
        "del" => "a key, optionally after a node: `del [NODE] KEY`",
        "split" => "a name and a node list",
        "join" => "the name of a split",
        "drop" => "a count, then optionally NODE, `to NODE` or `from NODE`",
        "delay" => "a count, `by` and a time in milliseconds: `delay COUNT by MS`",
        "wait" => "a time in milliseconds",
        "settle" => "nothing after it",
        _ => "a time in milliseconds followed by `{` on the same line",
    }
}

pub(super) fn needs<T>(line: usize, cmd: &str) -> Result<T, ParseError> {
    fail(line, format!("`{cmd}` needs {}", usage(cmd)))
}

/// Rejects a word count outside `min..=max`, naming the first extra word.
fn arity(line: usize, cmd: &str, args: &[&str], min: usize, max: usize) -> Result<(), ParseError> {
    if args.len() < min {
        return needs(line, cmd);
    }
    match args.get(max) {
        Some(extra) => fail(
            line,
            format!(
                "`{cmd}` needs {}; `{extra}` is one word too many",
                usage(cmd)
            ),
        ),
        None => Ok(()),
    }
}

pub(super) fn command(line: usize, cmd: &str, args: &[&str]) -> Result<Command, ParseError> {
    let node = |s: &str| name(line, cmd, "node name", s);
    let key = |s: &str| word(line, cmd, "key", s);
    match cmd {
        "start" => start(line, args),
        "stop" | "kill" | "restart" | "join" => {
            arity(line, cmd, args, 1, 1)?;
            let n = name(
                line,
                cmd,
                if cmd == "join" {
                    "split name"
                } else {
                    "node name"
                },
                args[0],
            )?;
            Ok(match cmd {
                "stop" => Command::Stop(n),
                "kill" => Command::Kill(n),
                "restart" => Command::Restart(n),
                _ => Command::Join(n),
            })
        }
        "set" => {
            arity(line, cmd, args, 2, 3)?;
            let (n, k, v) = match args {
                [n, k, v] => (Some(node(n)?), k, v),
                _ => (None, &args[0], &args[1]),
            };
            let (key, value) = (key(k)?, word(line, cmd, "value", v)?);
            Ok(Command::Set {
                node: n,
                key,
                value,
            })
        }
        "get" | "del" => {
            arity(line, cmd, args, 1, 2)?;
            let (n, k) = match args {
                [n, k] => (Some(node(n)?), key(k)?),
                _ => (None, key(args[0])?),
            };
            Ok(match cmd {
                "get" => Command::Get { node: n, key: k },
                _ => Command::Del { node: n, key: k },
            })
        }
        "split" => {
            let Some((split, list)) = args.split_first() else {
                return needs(line, cmd);
            };
            let nodes = name_list(line, cmd, list)?;
            if nodes.is_empty() {
                return needs(line, cmd);
            }
            let name = name(line, cmd, "split name", split)?;
            Ok(Command::Split { name, nodes })
        }
        "drop" => drop(line, args),
        "delay" => match args {
            [count, "by", ms] => Ok(Command::Delay {
                count: number(line, cmd, "count", count)?,
                ms: number(line, cmd, "time in milliseconds", ms)?,
            }),
            _ if args.len() > 3 && args.contains(&"by") => fail(
                line,
                "`delay` holds every node-to-node message, so it names no node",
            ),
            _ => needs(line, cmd),
        },
        "wait" => {
            arity(line, cmd, args, 1, 1)?;
            number(line, cmd, "time in milliseconds", args[0]).map(Command::Wait)
        }
        "settle" => arity(line, cmd, args, 0, 0).map(|()| Command::Settle),
        "after" => needs(line, cmd),
        other => fail(line, format!("unknown command `{other}`; {COMMANDS}")),
    }
}

fn start(line: usize, args: &[&str]) -> Result<Command, ParseError> {
    let Some((first, rest)) = args.split_first() else {
        return needs(line, "start");
    };
    let name = name(line, "start", "node name", first)?;
    let peers = match rest.split_first() {
        None => Vec::new(),
        Some((&"--peer-names", list)) => name_list(line, "start", list)?,
        Some((other, _)) => {
            let msg =
                format!("`start` takes only `--peer-names A,B,...` after the name, not `{other}`");
            return fail(line, msg);
        }
    };
    if !rest.is_empty() && peers.is_empty() {
        return fail(line, "`--peer-names` needs a comma-separated list of nodes");
    }
    Ok(Command::Start { name, peers })
}

fn drop(line: usize, args: &[&str]) -> Result<Command, ParseError> {
    arity(line, "drop", args, 1, 3)?;
    let count = number(line, "drop", "count", args[0])?;
    let node = |s: &str| name(line, "drop", "node name", s).map(Some);
    let (dir, node) = match &args[1..] {
        [] => (Direction::Any, None),
        [end @ ("to" | "from")] => return fail(line, format!("`drop` needs a node after `{end}`")),
        [n] => (Direction::To, node(n)?),
        ["to", n] => (Direction::To, node(n)?),
        ["from", n] => (Direction::From, node(n)?),
        [other, _] => {
            let msg = format!("`drop` needs `to` or `from` before the node, not `{other}`");
            return fail(line, msg);
        }
        _ => return needs(line, "drop"),
    };
    Ok(Command::Drop { count, dir, node })
}

/// A key or value: one or more ASCII letters and digits.
fn word(line: usize, cmd: &str, what: &str, s: &str) -> Result<String, ParseError> {
    if s.chars().all(|c| c.is_ascii_alphanumeric()) && !s.is_empty() {
        return Ok(s.to_string());
    }
    fail(
        line,
        format!("`{cmd}` {what} `{s}` must be made of letters and digits only"),
    )
}

/// A node or split name: letters, digits, `-` and `_`, beginning with a letter or digit.
fn name(line: usize, cmd: &str, what: &str, s: &str) -> Result<String, ParseError> {
    let body_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
    let head_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if body_ok && head_ok {
        return Ok(s.to_string());
    }
    let rule = "must be letters, digits, `-` or `_`, beginning with a letter or digit";
    fail(line, format!("`{cmd}` {what} `{s}` {rule}"))
}

/// Comma-separated names, possibly spread over several words (`A, B,C`).
fn name_list(line: usize, cmd: &str, words: &[&str]) -> Result<Vec<String>, ParseError> {
    words
        .iter()
        .flat_map(|w| w.split(','))
        .filter(|piece| !piece.is_empty())
        .map(|piece| name(line, cmd, "node name", piece))
        .collect()
}

/// A whole number of digits only, fitting in 64 bits.
pub(super) fn number(line: usize, cmd: &str, what: &str, s: &str) -> Result<u64, ParseError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return fail(
            line,
            format!("`{cmd}` needs a whole number as its {what}, not `{s}`"),
        );
    }
    s.parse()
        .or_else(|_| fail(line, format!("`{cmd}` {what} `{s}` is too large")))
}
