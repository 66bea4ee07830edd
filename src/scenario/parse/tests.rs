//! Tests for the scenario language: the 2014 listings, every error message,
//! name checks, and property tests that text round-trips through `Display`.

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
        ("settle", "settle"),
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
        (
            "settle 5",
            "line 1: `settle` needs nothing after it; `5` is one word too many",
        ),
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
    let name = || prop::sample::select(vec!["n1", "Alpha", "b-2", "c_3"]).prop_map(String::from);
    let names = |min| prop::collection::vec(name(), min..4);
    let word = || "[a-zA-Z0-9]{1,5}";
    let node = || prop::option::of(name());
    let leaf = prop_oneof![
        (name(), names(0)).prop_map(|(name, peers)| Command::Start { name, peers }),
        name().prop_map(Command::Kill),
        (node(), word(), word()).prop_map(|(node, key, value)| Command::Set { node, key, value }),
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
        Just(Command::Settle),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        (any::<u64>(), prop::collection::vec(inner, 0..4))
            .prop_map(|(ms, cmds)| after(ms, cmds.into_iter().map(|cmd| step(0, cmd)).collect()))
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
