//! The dashboard end to end: headless Chromium loads the page of a live
//! 3-node cluster, sees the three nodes drawn up, looks up a key's
//! preference list, watches a killed node turn down within the failure
//! timeout plus one second, and leaves a screenshot in
//! `target/dashboard.png`.
//!
//! Needs Debian's `chromium` package (`.ci/run` installs it).

#[path = "support/cdp.rs"]
mod cdp;
mod common;

use std::time::{Duration, Instant};

use common::{http_get, wait_until, Cluster, FAILURE_MS};
use serde_json::Value;

const DRAWN: &str = "JSON.stringify([...document.querySelectorAll('#ring g.node')].map(g => [g.dataset.name, g.dataset.state]))";

fn drawn(b: &mut cdp::Browser) -> Vec<(String, String)> {
    match b.eval(DRAWN) {
        Value::String(s) => serde_json::from_str(&s).unwrap(),
        _ => Vec::new(),
    }
}

fn screenshot_path() -> std::path::PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard.png")
}

#[test]
fn dashboard_shows_the_ring_and_a_node_going_down() {
    let chromium = cdp::find_chromium()
        .unwrap_or_else(|| panic!("this test needs headless Chromium: {}", cdp::INSTALL));
    let mut c = Cluster::start(&["alpha", "bravo", "charlie"], &[]);
    let mut cl = c.client(0);
    for i in 0..30 {
        cl.cmd(&["SET", &format!("key{i}"), "v"]);
    }
    // The page and its assets come from the binary.
    let admin = c.nodes[0].admin.clone();
    assert!(http_get(&admin, "/").unwrap().contains("/dashboard.js"));
    assert!(http_get(&admin, "/dashboard.js")
        .unwrap()
        .contains("/api/cluster"));
    let pl: Value =
        serde_json::from_str(&http_get(&admin, "/preflist?key=hello").unwrap()).unwrap();
    assert_eq!(pl["nodes"].as_array().unwrap().len(), 3);

    let mut b = cdp::Browser::start(&chromium, 1280, 760);
    b.navigate(&format!("http://{admin}/"));
    let all_up = |d: &[(String, String)]| d.len() == 3 && d.iter().all(|(_, s)| s == "up");
    let mut last = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            last = drawn(&mut b);
            all_up(&last)
        }),
        "the page did not draw three nodes up: {last:?}"
    );
    // One arc per token: each ends at a token of the node drawn on it.
    let tokens: usize = c
        .status(0)
        .unwrap()
        .nodes
        .iter()
        .map(|n| n.tokens.len())
        .sum();
    assert_eq!(tokens, 3 * ringkv::placement::DEFAULT_TOKENS);
    let arcs = b.eval("document.querySelectorAll('#ring path.arc').length");
    assert_eq!(arcs, Value::from(tokens));

    // A key typed into the box shows its preference list, owner first.
    b.eval("const k = document.getElementById('key'); k.value = 'hello'; k.dispatchEvent(new Event('input')); 1");
    let expected: Vec<String> = pl["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let mut shown = Value::Null;
    assert!(
        wait_until(Duration::from_secs(5), || {
            shown = b.eval("JSON.stringify([...document.querySelectorAll('#preflist li')].map(li => li.textContent))");
            shown.as_str().is_some_and(|s| {
                s.contains(&format!("\"{} (owner)\"", expected[0]))
                    && expected.iter().all(|n| s.contains(n.as_str()))
            })
        }),
        "preference list not shown: {shown}"
    );

    // Kill charlie: the page turns it down within the failure timeout + 1 s.
    let victim = c.index("charlie");
    c.kill(victim);
    let killed = Instant::now();
    let limit = Duration::from_millis(FAILURE_MS + 1000);
    let is_down = |d: &[(String, String)]| d.iter().any(|(n, s)| n == "charlie" && s == "down");
    assert!(
        wait_until(limit + Duration::from_secs(5), || {
            last = drawn(&mut b);
            is_down(&last)
        }),
        "charlie never drawn down: {last:?}"
    );
    let took = killed.elapsed();
    assert!(
        took <= limit,
        "charlie drawn down after {took:?}, more than {limit:?}"
    );
    assert_eq!(last.len(), 3, "a down node stays drawn: {last:?}");
    let mut feed = Value::Null;
    assert!(
        wait_until(Duration::from_secs(3), || {
            feed = b.eval("document.getElementById('events').textContent");
            feed.as_str().is_some_and(|f| f.contains("charlie is down"))
        }),
        "event feed: {feed}"
    );

    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let path = screenshot_path();
    std::fs::write(&path, png).unwrap();
    eprintln!("dashboard screenshot: {}", path.display());
}
