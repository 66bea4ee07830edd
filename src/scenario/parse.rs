//! The scenario language: text in, a tree of steps out, or one error that
//! says which line is wrong and what the command on it needs.
//!
//! A scenario is a failure story told one command a line (`start`, `set`,
//! `split`, `after 300 { ... }`), descended from the broker scripts of the
//! 2014 chistributed course project. The runner executes the tree this module
//! returns; this module only reads. It is hand-written rather than generated
//! because the language is tiny and line-shaped, and because the thing that
//! matters most is the error: a person edits these files by hand, so every
//! mistake comes back as "line 12: `split` needs a name and a node list",
//! naming the line, the command and what it wanted. ringkv adds `kill`,
//! `restart`, `del` and `wait` to the 2014 commands, and counts `after` and
//! `delay ... by` in milliseconds rather than messages (docs/scenarios.md).
//!
//! How a line is read. Everything from `#` on is a comment. The rest is split
//! on whitespace, and `{` and `}` are split off as tokens of their own even
//! when glued to a word, so `after 300{`, `after 300 {` and the one-liner
//! `after 100 { get a }` all read alike. The words collected so far become a
//! command at the end of the line or just before a `}`; a `{` must close the
//! words `after MS`, and opens a block that the matching `}` closes. Blocks
//! nest, up to [`MAX_DEPTH`] deep, so no input can run the tree walks out of
//! stack.
//!
//! Optional arguments are told apart by counting words, as in 2014:
//! `set A B C` is node A, key B, value C, while `set B C` leaves the node to
//! the runner; `get`/`del` likewise with one or two words. `drop` takes a
//! count and then nothing, a node, `to NODE` or `from NODE`. Keys and values
//! are words of ASCII letters and digits; node and split names may also hold
//! `-` and `_` but must begin with a letter or digit, so a stray flag is never
//! mistaken for a node. Node lists (`split`, `--peer-names`) are separated by
//! commas, and spaces around the commas are forgiven.
//!
//! Parsing is context-free: [`parse`] does not know which nodes exist.
//! [`Script::check_names`] is the second pass the runner makes before it
//! starts anything: every node a command names must be started somewhere in
//! the script, and every `join` must name a `split` the script makes.
//!
//! Deliberately left out: the 2014 `send` (raw JSON to a node) and `tamper`
//! commands and the per-node form of `delay`; quoting, so keys with spaces or
//! punctuation cannot be written; variables, loops and includes; and any check
//! of order or timing, such as a `get` sent to a node that was stopped two
//! lines earlier. Those are facts of the run, and the runner reports them.
//! Also left out: keeping comments and layout, so `Display`, which writes a
//! script back as text that parses to the same tree, gives canonical text.

use std::collections::BTreeSet;
use std::fmt;

/// How deep `after` blocks may nest.
pub const MAX_DEPTH: usize = 32;

/// A parsed scenario: its top-level steps in script order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    pub steps: Vec<Step>,
}

/// One command and the 1-based line it was written on (for `after`, the
/// line of its `{`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub line: usize,
    pub cmd: Command,
}

/// Which end of a node-to-node message a `drop` matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Messages sent to the node (`drop N NODE`, `drop N to NODE`).
    To,
    /// Messages sent by the node (`drop N from NODE`).
    From,
    /// Any message at all (`drop N`).
    Any,
}

/// One scenario command. `node: None` means "a random running node".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start node `name` with `peers` as its seeds.
    Start { name: String, peers: Vec<String> },
    /// SIGTERM: a clean shutdown.
    Stop(String),
    /// SIGKILL: no warning.
    Kill(String),
    /// Start a stopped or killed node again, on its own data.
    Restart(String),
    /// Write `key` = `value` through `node`.
    Set {
        node: Option<String>,
        key: String,
        value: String,
    },
    /// Read `key` through `node`.
    Get { node: Option<String>, key: String },
    /// Delete `key` through `node`.
    Del { node: Option<String>, key: String },
    /// Cut node-to-node traffic between `nodes` and all others until `join`.
    Split { name: String, nodes: Vec<String> },
    /// Remove the split of that name.
    Join(String),
    /// Drop the next `count` node-to-node messages that match `dir` and `node`.
    Drop {
        count: u64,
        dir: Direction,
        node: Option<String>,
    },
    /// Hold each of the next `count` node-to-node messages for `ms` milliseconds.
    Delay { count: u64, ms: u64 },
    /// Run `body` `ms` milliseconds from now, while the script goes on.
    After { ms: u64, body: Vec<Step> },
    /// Pause the script for this many milliseconds.
    Wait(u64),
}

/// A script that cannot run, and the line that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// The error for `line`, as a `Result` so that it can be returned directly.
fn fail<T>(line: usize, message: impl Into<String>) -> Result<T, ParseError> {
    let message = message.into();
    Err(ParseError { line, message })
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// An `after` block whose `}` has not been seen yet.
struct Open {
    line: usize,
    ms: u64,
    body: Vec<Step>,
}

/// Reads a whole script. Stops at the first error.
pub fn parse(src: &str) -> Result<Script, ParseError> {
    let mut top = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    for (index, raw) in src.lines().enumerate() {
        let line = index + 1;
        let text = match raw.find('#') {
            Some(at) => &raw[..at],
            None => raw,
        };
        let mut words: Vec<&str> = Vec::new();
        for token in tokens(text) {
            match token {
                "{" => {
                    let ms = block_start(line, &words)?;
                    if open.len() >= MAX_DEPTH {
                        return fail(
                            line,
                            format!("`after` blocks nest at most {MAX_DEPTH} deep"),
                        );
                    }
                    words.clear();
                    let body = Vec::new();
                    open.push(Open { line, ms, body });
                }
                "}" => {
                    flush(line, &mut words, innermost(&mut top, &mut open))?;
                    let Some(Open { line, ms, body }) = open.pop() else {
                        return fail(line, "`}` without a matching `after ... {`");
                    };
                    let cmd = Command::After { ms, body };
                    innermost(&mut top, &mut open).push(Step { line, cmd });
                }
                word => words.push(word),
            }
        }
        flush(line, &mut words, innermost(&mut top, &mut open))?;
    }
    match open.last() {
        Some(Open { line, ms, .. }) => {
            fail(*line, format!("`after {ms}` is never closed by a `}}`"))
        }
        None => Ok(Script { steps: top }),
    }
}

/// Splits on whitespace and cuts `{` and `}` out of words as tokens of their own.
fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for chunk in text.split_whitespace() {
        let mut rest = chunk;
        while let Some(at) = rest.find(['{', '}']) {
            if at > 0 {
                out.push(&rest[..at]);
            }
            out.push(&rest[at..at + 1]);
            rest = &rest[at + 1..];
        }
        if !rest.is_empty() {
            out.push(rest);
        }
    }
    out
}

/// The step list that new commands go into: the innermost open block, or the top.
fn innermost<'a>(top: &'a mut Vec<Step>, open: &'a mut [Open]) -> &'a mut Vec<Step> {
    match open.last_mut() {
        Some(block) => &mut block.body,
        None => top,
    }
}

/// Turns the words read so far, if any, into a step.
fn flush(line: usize, words: &mut Vec<&str>, into: &mut Vec<Step>) -> Result<(), ParseError> {
    if let Some((name, args)) = words.split_first() {
        let cmd = command(line, name, args)?;
        into.push(Step { line, cmd });
    }
    words.clear();
    Ok(())
}

/// Checks that the words before a `{` are `after MS`, and returns MS.
fn block_start(line: usize, words: &[&str]) -> Result<u64, ParseError> {
    match words {
        ["after", ms] => number(line, "after", "time in milliseconds", ms),
        ["after", ..] => needs(line, "after"),
        [] => fail(line, "`{` must follow `after MS` on the same line"),
        [first, ..] => fail(
            line,
            format!("`{first}` takes no block; only `after MS` opens one"),
        ),
    }
}

const COMMANDS: &str = "expected start, stop, kill, restart, set, get, del, split, join, drop, \
                        delay, after or wait";

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
        _ => "a time in milliseconds followed by `{` on the same line",
    }
}

fn needs<T>(line: usize, cmd: &str) -> Result<T, ParseError> {
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

fn command(line: usize, cmd: &str, args: &[&str]) -> Result<Command, ParseError> {
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
fn number(line: usize, cmd: &str, what: &str, s: &str) -> Result<u64, ParseError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return fail(
            line,
            format!("`{cmd}` needs a whole number as its {what}, not `{s}`"),
        );
    }
    s.parse()
        .or_else(|_| fail(line, format!("`{cmd}` {what} `{s}` is too large")))
}

impl Command {
    /// The nodes this command refers to, other than one it starts.
    pub fn nodes_named(&self) -> Vec<&str> {
        match self {
            Command::Start { peers, .. } => peers.iter().map(String::as_str).collect(),
            Command::Split { nodes, .. } => nodes.iter().map(String::as_str).collect(),
            Command::Stop(n) | Command::Kill(n) | Command::Restart(n) => vec![n.as_str()],
            Command::Set { node, .. }
            | Command::Get { node, .. }
            | Command::Del { node, .. }
            | Command::Drop { node, .. } => node.iter().map(String::as_str).collect(),
            Command::Join(_) | Command::Delay { .. } | Command::After { .. } | Command::Wait(_) => {
                Vec::new()
            }
        }
    }
}

/// Every step, block bodies included, in line order.
fn flatten<'a>(steps: &'a [Step], out: &mut Vec<&'a Step>) {
    for step in steps {
        out.push(step);
        if let Command::After { body, .. } = &step.cmd {
            flatten(body, out);
        }
    }
}

impl Script {
    /// Every step, block bodies included, in line order.
    pub fn all_steps(&self) -> Vec<&Step> {
        let mut out = Vec::new();
        flatten(&self.steps, &mut out);
        out
    }

    /// Every node the script starts, anywhere, blocks included.
    pub fn node_names(&self) -> BTreeSet<String> {
        let started = self
            .all_steps()
            .into_iter()
            .filter_map(|step| match &step.cmd {
                Command::Start { name, .. } => Some(name.clone()),
                _ => None,
            });
        started.collect()
    }

    /// Checks that every node named is started somewhere in the script and
    /// every `join` names a split the script makes; the first miss, in line
    /// order, is the error.
    pub fn check_names(&self) -> Result<(), ParseError> {
        let started = self.node_names();
        let steps = self.all_steps();
        let splits: BTreeSet<&str> = (steps.iter())
            .filter_map(|step| match &step.cmd {
                Command::Split { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        for step in steps {
            let named = step.cmd.nodes_named();
            if let Some(unknown) = named.into_iter().find(|n| !started.contains(*n)) {
                return fail(step.line, format!("unknown node `{unknown}`"));
            }
            if let Command::Join(split) = &step.cmd {
                if !splits.contains(split.as_str()) {
                    let msg =
                        format!("unknown split `{split}`: no `split {split} ...` in the script");
                    return fail(step.line, msg);
                }
            }
        }
        Ok(())
    }
}

/// Writes a command back as script text that [`parse`] reads to the same
/// command; an `after` block spans several lines, indented by nesting.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |node: &Option<String>| node.as_ref().map(|n| format!("{n} ")).unwrap_or_default();
        match self {
            Command::Start { name, peers } if peers.is_empty() => write!(f, "start {name}"),
            Command::Start { name, peers } => {
                write!(f, "start {name} --peer-names {}", peers.join(","))
            }
            Command::Stop(n) => write!(f, "stop {n}"),
            Command::Kill(n) => write!(f, "kill {n}"),
            Command::Restart(n) => write!(f, "restart {n}"),
            Command::Set { node, key, value } => write!(f, "set {}{key} {value}", at(node)),
            Command::Get { node, key } => write!(f, "get {}{key}", at(node)),
            Command::Del { node, key } => write!(f, "del {}{key}", at(node)),
            Command::Split { name, nodes } => write!(f, "split {name} {}", nodes.join(",")),
            Command::Join(name) => write!(f, "join {name}"),
            Command::Drop { count, dir, node } => match (dir, node) {
                (Direction::From, Some(n)) => write!(f, "drop {count} from {n}"),
                (_, Some(n)) => write!(f, "drop {count} to {n}"),
                (_, None) => write!(f, "drop {count}"),
            },
            Command::Delay { count, ms } => write!(f, "delay {count} by {ms}"),
            Command::Wait(ms) => write!(f, "wait {ms}"),
            Command::After { ms, body } => {
                writeln!(f, "after {ms} {{")?;
                for step in body {
                    let inner = step.cmd.to_string();
                    for text in inner.lines() {
                        writeln!(f, "    {text}")?;
                    }
                }
                write!(f, "}}")
            }
        }
    }
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.steps
            .iter()
            .try_for_each(|step| writeln!(f, "{}", step.cmd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NODES: [&str; 8] = [
        "Alpha", "Beta", "Gamma", "Omega", "Able", "Baker", "Charlie", "Delta",
    ];

    /// Listing 1 of the 2014 report, rebuilt line for line (the scenario
    /// tests keep the file itself in tests/scenarios/fail_stop.chi).
    fn fail_stop_copy() -> String {
        let mut s = String::from(
            "# Fail-stop script (Listing 1 of the CMSC 23310 DHT report, Spring 2014).\n\
             # 52 keys over 8 nodes; then Able, Baker, Charlie and Delta are cut off from the rest\n\
             # and every key is read back through them.\n",
        );
        for name in NODES {
            let peers: Vec<&str> = NODES.into_iter().filter(|n| *n != name).collect();
            s += &format!("start {name} --peer-names {}\n", peers.join(","));
        }
        let keys: Vec<char> = ('A'..='Z').chain('a'..='z').collect();
        for (i, k) in keys.iter().enumerate() {
            s += &format!("set {k} {i}\n");
        }
        s += "after 300{\nsplit part1 Able,Baker,Charlie,Delta\n}\nafter 1000{\n";
        for (i, k) in keys.iter().enumerate() {
            s += &format!("get {} {k}\n", NODES[4 + i % 4]);
        }
        s + "}\n"
    }

    /// Listing 2, cut down: its comments, its split, a write on each side, the block.
    const PARTITION_MERGE_PART: &str = "\
start Alpha --peer-names Beta,Gamma,Omega,Able,Baker,Charlie,Delta
start Able --peer-names Alpha,Beta,Gamma,Omega,Baker,Charlie,Delta
split part1 Alpha,Beta,Gamma,Delta
#split part2 Able,Baker,Charlie,Omega # set the values on one half of the network
set Alpha a 11
set Able a 21
join part1
after 200 {
get a
}
";

    fn ok(src: &str) -> Script {
        parse(src).unwrap_or_else(|e| panic!("{e}\n--- in ---\n{src}"))
    }

    /// The first error of parsing and then checking names, as displayed.
    fn err(src: &str) -> String {
        match parse(src).and_then(|s| s.check_names()) {
            Ok(()) => panic!("expected an error from:\n{src}"),
            Err(e) => e.to_string(),
        }
    }

    fn step(line: usize, cmd: Command) -> Step {
        Step { line, cmd }
    }

    fn get(node: Option<&str>, key: &str) -> Command {
        Command::Get {
            node: node.map(String::from),
            key: key.into(),
        }
    }

    fn after(ms: u64, body: Vec<Step>) -> Command {
        Command::After { ms, body }
    }

    /// The same steps with every line number zeroed.
    fn unlined(steps: &[Step]) -> Vec<Step> {
        let strip = |s: &Step| match &s.cmd {
            Command::After { ms, body } => after(*ms, unlined(body)),
            cmd => cmd.clone(),
        };
        steps.iter().map(|s| step(0, strip(s))).collect()
    }

    #[test]
    fn fail_stop_has_8_starts_52_sets_and_52_gets_in_a_block() {
        let script = ok(&fail_stop_copy());
        let top: Vec<&Command> = script.steps.iter().map(|s| &s.cmd).collect();
        let starts = top
            .iter()
            .filter(|c| matches!(c, Command::Start { peers, .. } if peers.len() == 7));
        assert_eq!(starts.count(), 8);
        assert_eq!(
            top.iter()
                .filter(|c| matches!(c, Command::Set { node: None, .. }))
                .count(),
            52
        );
        let [.., split, reads] = &script.steps[..] else {
            panic!("too short")
        };
        let quarter = ["Able", "Baker", "Charlie", "Delta"]
            .map(String::from)
            .to_vec();
        let cut = Command::Split {
            name: "part1".into(),
            nodes: quarter,
        };
        assert_eq!(*split, step(64, after(300, vec![step(65, cut)])));
        let Command::After { ms: 1000, body } = &reads.cmd else {
            panic!("{reads:?}")
        };
        assert_eq!((reads.line, body.len()), (67, 52));
        assert!(body
            .iter()
            .all(|s| matches!(&s.cmd, Command::Get { node: Some(_), .. })));
        assert_eq!(body[51], step(119, get(Some("Delta"), "z")));
        assert_eq!(script.node_names().len(), 8);
        assert_eq!(script.check_names(), Ok(()));
    }

    #[test]
    fn partition_merge_part_parses() {
        let script = ok(PARTITION_MERGE_PART);
        assert_eq!(script.steps.len(), 7, "the commented-out split is no step");
        let set = Command::Set {
            node: Some("Alpha".into()),
            key: "a".into(),
            value: "11".into(),
        };
        assert_eq!(script.steps[3], step(5, set));
        assert_eq!(script.steps[5], step(7, Command::Join("part1".into())));
        assert_eq!(
            script.steps[6],
            step(8, after(200, vec![step(9, get(None, "a"))]))
        );
        assert_eq!(err(PARTITION_MERGE_PART), "line 1: unknown node `Beta`");
    }

    #[test]
    fn braces_may_be_glued_spaced_or_on_one_line() {
        let block = |line| vec![step(1, after(100, vec![step(line, get(None, "a"))]))];
        assert_eq!(ok("after 100{\nget a\n}").steps, block(2));
        assert_eq!(ok("after 100 {\nget a\n  }  # done").steps, block(2));
        assert_eq!(ok("after 100 { get a }").steps, block(1));
        assert_eq!(ok("after 100{get a}").steps, block(1));
        assert_eq!(ok("after 100 { get a\n}").steps, block(1));
        assert_eq!(
            ok("after 100 {\n}").steps,
            vec![step(1, after(100, vec![]))]
        );
    }

    #[test]
    fn after_blocks_nest() {
        let src = "start n1\nafter 10 {\n  get n1 a\n  after 20 {\n    after 30 { wait 5 }\n    \
                   del b\n  }\n}\nwait 1\n";
        let innermost = step(5, after(30, vec![step(5, Command::Wait(5))]));
        let del = step(
            6,
            Command::Del {
                node: None,
                key: "b".into(),
            },
        );
        let middle = step(4, after(20, vec![innermost, del]));
        let outer = step(2, after(10, vec![step(3, get(Some("n1"), "a")), middle]));
        assert_eq!(ok(src).steps[1..], [outer, step(9, Command::Wait(1))]);
    }

    #[test]
    fn optional_words_are_told_apart_by_count() {
        let some = |s: &str| Some(s.to_string());
        let cmds: Vec<Command> = ok("set A B C\nset B C\ndel X Y\ndel Y\ndrop 5\ndrop 5 n1\n\
                                     drop 5 from n1\nstart n2 --peer-names n1, n3 ,n4")
        .steps
        .into_iter()
        .map(|s| s.cmd)
        .collect();
        let expect = vec![
            Command::Set {
                node: some("A"),
                key: "B".into(),
                value: "C".into(),
            },
            Command::Set {
                node: None,
                key: "B".into(),
                value: "C".into(),
            },
            Command::Del {
                node: some("X"),
                key: "Y".into(),
            },
            Command::Del {
                node: None,
                key: "Y".into(),
            },
            Command::Drop {
                count: 5,
                dir: Direction::Any,
                node: None,
            },
            Command::Drop {
                count: 5,
                dir: Direction::To,
                node: some("n1"),
            },
            Command::Drop {
                count: 5,
                dir: Direction::From,
                node: some("n1"),
            },
            Command::Start {
                name: "n2".into(),
                peers: ["n1", "n3", "n4"].map(String::from).to_vec(),
            },
        ];
        assert_eq!(cmds, expect);
        // The rest by their canonical text, which `display_writes_what_parse_reads` ties to the tree.
        for (src, canonical) in [
            ("get X Y", "get X Y"),
            ("get Y", "get Y"),
            ("drop 7 to n1", "drop 7 to n1"),
            ("delay 3 by 250", "delay 3 by 250"),
            ("wait 40", "wait 40"),
            ("stop n1", "stop n1"),
            ("kill n1", "kill n1"),
            ("restart n1", "restart n1"),
            ("join p", "join p"),
            ("start n1", "start n1"),
            ("split p n1 , n2,", "split p n1,n2"),
        ] {
            assert_eq!(ok(src).to_string(), format!("{canonical}\n"), "{src}");
        }
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let script = ok("# top\n\nset a 1 # trailing\r\nget a#glued\n   # indented\n\t\n");
        assert_eq!(script.steps.len(), 2);
        assert_eq!(script.steps[1], step(4, get(None, "a")));
        assert_eq!(ok("").steps, vec![]);
    }

    #[test]
    fn each_error_names_its_line_and_what_is_needed() {
        let cases: &[(&str, &str)] = &[
            ("start n1\n\nfrob n1", "line 3: unknown command `frob`; expected start, stop"),
            ("\nsplit part1", "line 2: `split` needs a name and a node list"),
            ("split part1 ,", "line 1: `split` needs a name and a node list"),
            ("set a", "line 1: `set` needs a key and a value"),
            ("set n a b c", "line 1: `set` needs a key and a value, optionally after a node: `set [NODE] KEY VALUE`; `c` is one word too many"),
            ("get n a b", "line 1: `get` needs a key, optionally after a node: `get [NODE] KEY`; `b` is one word too many"),
            ("del", "line 1: `del` needs a key"),
            ("set a-b 1", "line 1: `set` key `a-b` must be made of letters and digits only"),
            ("set a 1.5", "line 1: `set` value `1.5` must be made of letters and digits only"),
            ("stop n!", "line 1: `stop` node name `n!` must be letters, digits"),
            ("stop", "line 1: `stop` needs one node name"),
            ("kill a b", "line 1: `kill` needs one node name; `b` is one word too many"),
            ("join", "line 1: `join` needs the name of a split"),
            ("drop many", "line 1: `drop` needs a whole number as its count, not `many`"),
            ("drop -1", "line 1: `drop` needs a whole number as its count, not `-1`"),
            ("drop 99999999999999999999", "line 1: `drop` count `99999999999999999999` is too large"),
            ("drop 2 to", "line 1: `drop` needs a node after `to`"),
            ("drop 2 towards n1", "line 1: `drop` needs `to` or `from` before the node, not `towards`"),
            ("drop", "line 1: `drop` needs a count"),
            ("delay 3 250", "line 1: `delay` needs a count, `by` and a time in milliseconds"),
            ("delay 3 to n1 by 2", "line 1: `delay` holds every node-to-node message, so it names no node"),
            ("delay 3 by soon", "line 1: `delay` needs a whole number as its time in milliseconds, not `soon`"),
            ("wait", "line 1: `wait` needs a time in milliseconds"),
            ("start", "line 1: `start` needs a node name"),
            ("start n1 --peers n2", "line 1: `start` takes only `--peer-names A,B,...` after the name, not `--peers`"),
            ("start n1 --peer-names", "line 1: `--peer-names` needs a comma-separated list of nodes"),
            ("start --peer-names n1", "line 1: `start` node name `--peer-names` must be letters"),
            ("get a\n}", "line 2: `}` without a matching `after ... {`"),
            ("after 300\n{\nget a\n}", "line 1: `after` needs a time in milliseconds followed by `{` on the same line"),
            ("after {\n}", "line 1: `after` needs a time in milliseconds"),
            ("after soon {\n}", "line 1: `after` needs a whole number as its time in milliseconds, not `soon`"),
            ("get a {\n}", "line 1: `get` takes no block; only `after MS` opens one"),
            ("wait 1\nafter 5 {\nget a\nafter 6 {\n}\n", "line 2: `after 5` is never closed by a `}`"),
            ("start n1\nafter 1 {\nget Nobody a\n}", "line 3: unknown node `Nobody`"),
            ("start n1\njoin part9", "line 2: unknown split `part9`"),
        ];
        for (src, want) in cases {
            let got = err(src);
            assert!(
                got.starts_with(want),
                "{src:?}\n  got:  {got}\n  want: {want}"
            );
        }
    }

    #[test]
    fn nesting_is_capped_without_overflowing_the_stack() {
        let nest = |n| "after 1 {\n".repeat(n) + &"}\n".repeat(n);
        let want = format!(
            "line {}: `after` blocks nest at most {MAX_DEPTH} deep",
            MAX_DEPTH + 1
        );
        assert_eq!(err(&nest(MAX_DEPTH + 1)), want);
        assert_eq!(ok(&nest(MAX_DEPTH)).all_steps().len(), MAX_DEPTH);
    }

    #[test]
    fn check_names_catches_every_kind_of_unknown_node() {
        let base = "start Able --peer-names Baker\nstart Baker\n";
        for tail in [
            "set Zed a 1",
            "del Zed a",
            "split p Able,Zed",
            "drop 1 from Zed",
            "restart Zed",
            "start Carl --peer-names Able,Zed",
        ] {
            assert_eq!(
                err(&format!("{base}{tail}")),
                "line 3: unknown node `Zed`",
                "{tail}"
            );
        }
        let later = ok("get Carl a\nafter 5 {\nstart Carl\n}");
        assert_eq!(later.check_names(), Ok(()), "started somewhere is enough");
        assert_eq!(later.node_names(), BTreeSet::from(["Carl".to_string()]));
    }

    #[test]
    fn display_writes_what_parse_reads() {
        let script = ok(&fail_stop_copy());
        assert_eq!(
            unlined(&ok(&script.to_string()).steps),
            unlined(&script.steps)
        );
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        let name =
            || prop::sample::select(vec!["n1", "Alpha", "b-2", "c_3"]).prop_map(String::from);
        let names = |min| prop::collection::vec(name(), min..4);
        let word = || "[a-zA-Z0-9]{1,5}";
        let node = || prop::option::of(name());
        let leaf = prop_oneof![
            (name(), names(0)).prop_map(|(name, peers)| Command::Start { name, peers }),
            name().prop_map(Command::Kill),
            (node(), word(), word()).prop_map(|(node, key, value)| Command::Set {
                node,
                key,
                value
            }),
            (node(), word()).prop_map(|(node, key)| Command::Del { node, key }),
            (name(), names(1)).prop_map(|(name, nodes)| Command::Split { name, nodes }),
            (any::<u64>(), name(), any::<bool>()).prop_map(|(count, n, from)| {
                let dir = if from { Direction::From } else { Direction::To };
                Command::Drop {
                    count,
                    dir,
                    node: Some(n),
                }
            }),
            any::<u64>().prop_map(|count| Command::Drop {
                count,
                dir: Direction::Any,
                node: None
            }),
            (any::<u64>(), any::<u64>()).prop_map(|(count, ms)| Command::Delay { count, ms }),
            any::<u64>().prop_map(Command::Wait),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            (any::<u64>(), prop::collection::vec(inner, 0..4)).prop_map(|(ms, cmds)| {
                after(ms, cmds.into_iter().map(|cmd| step(0, cmd)).collect())
            })
        })
    }

    proptest! {
        #[test]
        fn any_text_gives_a_script_or_an_error(src in "(?s)[a-z0-9 {}#,\n\t-]{0,200}|\\PC{0,200}") {
            if let Ok(script) = parse(&src) {
                let _ = script.check_names();
            }
        }

        #[test]
        fn generated_scripts_round_trip(cmds in prop::collection::vec(arb_command(), 0..8)) {
            let script = Script { steps: cmds.into_iter().map(|cmd| step(0, cmd)).collect() };
            let text = script.to_string();
            let again = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(unlined(&again.steps), script.steps);
        }
    }
}
