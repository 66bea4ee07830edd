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
//! This file reads lines, words and blocks; `command.rs` turns one line's
//! words into a [`Command`].
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

mod command;
#[cfg(test)]
mod tests;

use command::{command, needs, number};

/// How deep `after` blocks may nest.
pub const MAX_DEPTH: usize = 32;

/// A parsed scenario: its top-level steps in script order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    /// The top-level steps; `after` bodies hold their own.
    pub steps: Vec<Step>,
}

/// One command and the 1-based line it was written on (for `after`, the
/// line of its `{`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The 1-based line number in the script text.
    pub line: usize,
    /// What the line asks for.
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
    Start {
        /// The new node's name.
        name: String,
        /// Nodes it contacts first (`--peer-names`), possibly none.
        peers: Vec<String>,
    },
    /// SIGTERM: a clean shutdown.
    Stop(String),
    /// SIGKILL: no warning.
    Kill(String),
    /// Start a stopped or killed node again, on its own data.
    Restart(String),
    /// Write `key` = `value` through `node`.
    Set {
        /// The node to send the write to, or `None` for a random running one.
        node: Option<String>,
        /// The key to write.
        key: String,
        /// The value to write.
        value: String,
    },
    /// Read `key` through `node`.
    Get {
        /// The node to read through, or `None` for a random running one.
        node: Option<String>,
        /// The key to read.
        key: String,
    },
    /// Delete `key` through `node`.
    Del {
        /// The node to delete through, or `None` for a random running one.
        node: Option<String>,
        /// The key to delete.
        key: String,
    },
    /// Cut node-to-node traffic between `nodes` and all others until `join`.
    Split {
        /// The split's name, which `join` uses to heal it.
        name: String,
        /// The nodes on one side; every other node is on the other.
        nodes: Vec<String>,
    },
    /// Remove the split of that name.
    Join(String),
    /// Drop the next `count` node-to-node messages that match `dir` and `node`.
    Drop {
        /// How many matching messages to drop.
        count: u64,
        /// Whether `node` is the receiver, the sender, or ignored.
        dir: Direction,
        /// The node whose messages match, or `None` for any message.
        node: Option<String>,
    },
    /// Hold each of the next `count` node-to-node messages for `ms` milliseconds.
    Delay {
        /// How many messages to hold.
        count: u64,
        /// How long to hold each, in milliseconds.
        ms: u64,
    },
    /// Run `body` `ms` milliseconds from now, while the script goes on.
    After {
        /// Milliseconds from reaching the `after` to running the body.
        ms: u64,
        /// The steps inside the block, in script order.
        body: Vec<Step>,
    },
    /// Pause the script for this many milliseconds.
    Wait(u64),
    /// Pause the script until the cluster has settled: every running node
    /// sees up every running node no split separates from it, and has
    /// finished the anti-entropy round of its latest view change.
    Settle,
}

/// A script that cannot run, and the line that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The 1-based line the error is on.
    pub line: usize,
    /// What is wrong, naming the command and what it needs.
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
            Command::Join(_)
            | Command::Delay { .. }
            | Command::After { .. }
            | Command::Wait(_)
            | Command::Settle => Vec::new(),
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
            Command::Settle => write!(f, "settle"),
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
