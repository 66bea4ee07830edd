//! `ringkv status`: the routing table as one node sees it.

use std::time::Duration;

use crate::admin::{NodeStatus, Status};
use crate::cli::http;
use crate::error::{Error, Result};
use crate::membership::State as MemberState;

/// Fetches and decodes `/status` from an admin address.
pub async fn fetch(admin: &str) -> Result<(Status, String)> {
    let (code, body) = http::get(admin, "/status", Duration::from_secs(3)).await?;
    if code != 200 {
        return Err(Error::Protocol(format!(
            "{admin}/status answered {code}: {body}"
        )));
    }
    let status =
        serde_json::from_str(&body).map_err(|e| Error::Protocol(format!("{admin}/status: {e}")))?;
    Ok((status, body))
}

/// The state shown for a row: UP, SUSPECT (up but silent for more than two
/// heartbeat intervals), DOWN, LEAVING or LEFT.
fn shown_state(n: &NodeStatus) -> &'static str {
    match (n.state, n.suspect) {
        (MemberState::Down, _) => "DOWN",
        (MemberState::Up, true) => "SUSPECT",
        (MemberState::Up, false) => "UP",
        (MemberState::Leaving, _) => "LEAVING",
        (MemberState::Left, _) => "LEFT",
    }
}

/// Renders the table. With `previous`, rows whose state, share or key count
/// changed since it are marked `*` and, with `color`, shown in reverse video.
pub fn render(status: &Status, previous: Option<&Status>, color: bool) -> String {
    let mut out = format!(
        "routing table of {} (generation {}, {} live keys)\n{:<2}{:<7} {:<12} {:<22} {:<10} {:>6} {:>6} {:>8} {:>8} {:>10}\n",
        status.name, status.generation, status.keys, "", "STATE", "NAME", "PEER", "TOKEN", "TOKENS", "SHARE", "REPLICAS", "KEYS", "HEARTBEAT"
    );
    for n in &status.nodes {
        let changed = previous.is_some_and(|p| {
            p.nodes.iter().find(|x| x.name == n.name).is_none_or(|p| {
                shown_state(p) != shown_state(n) || p.keys != n.keys || p.share != n.share
            })
        });
        let mark = if changed { "* " } else { "  " };
        let hb = n
            .last_heartbeat_ms
            .map_or("never".to_string(), |ms| format!("{ms} ms"));
        let row = format!(
            "{mark}{:<7} {:<12} {:<22} {:<10} {:>6} {:>5.1}% {:>7.2}x {:>8} {:>10}",
            shown_state(n),
            n.name,
            n.peer,
            &n.token[..n.token.len().min(10)],
            n.tokens.len(),
            n.share * 100.0,
            n.balance,
            n.keys,
            hb
        );
        let paint = match shown_state(n) {
            "DOWN" => "31",
            "SUSPECT" => "33",
            _ => "32",
        };
        match (color, changed) {
            (true, true) => out.push_str(&format!("\x1b[7;{paint}m{row}\x1b[0m\n")),
            (true, false) => out.push_str(&format!("\x1b[{paint}m{row}\x1b[0m\n")),
            (false, _) => out.push_str(&format!("{row}\n")),
        }
    }
    for n in &status.nodes {
        if let Some(why) = &n.write_fenced {
            let line = format!(
                "WRITE-FENCED {}: takes no writes, serves reads: {why}",
                n.name
            );
            match color {
                true => out.push_str(&format!("\x1b[33m{line}\x1b[0m\n")),
                false => out.push_str(&format!("{line}\n")),
            }
        }
    }
    for (peer, clock) in &status.clocks {
        if clock.standing != "ok" {
            let way = if clock.offset_ms >= 0.0 {
                "ahead of"
            } else {
                "behind"
            };
            let line = format!(
                "CLOCK {}: {peer}'s wall clock is {:.0} ms {way} {}'s",
                clock.standing.to_uppercase(),
                clock.offset_ms.abs(),
                status.name
            );
            match color {
                true => out.push_str(&format!("\x1b[33m{line}\x1b[0m\n")),
                false => out.push_str(&format!("{line}\n")),
            }
        }
    }
    if status.clock_injected_offset_ms != 0 {
        out.push_str(&format!(
            "CLOCK INJECTED: this node's wall clock is set {} ms off (fault injection)\n",
            status.clock_injected_offset_ms
        ));
    }
    out
}

/// Runs the subcommand.
///
/// With `watch`, the table is redrawn every 0.5 s (the screen cleared
/// first), rows that changed since the last draw highlighted; with `json`,
/// each fetch prints `/status` as one line of JSON.
pub async fn run(admin: &str, json: bool, watch: bool) -> Result<()> {
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut previous = None;
    loop {
        match fetch(admin).await {
            Ok((status, body)) => {
                if json {
                    println!("{}", body.trim());
                } else {
                    if watch {
                        println!("\x1b[2J\x1b[H{admin} every 0.5 s; * = changed");
                    }
                    print!("{}", render(&status, previous.as_ref(), color));
                }
                previous = Some(status);
            }
            Err(e) if watch => println!("\x1b[2J\x1b[H{admin}: {e}"),
            Err(e) => return Err(e),
        }
        if !watch {
            return Ok(());
        }
        // A closed pipe ends the watch like Ctrl-C would.
        if std::io::Write::flush(&mut std::io::stdout()).is_err() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::PeerClock;

    fn node(name: &str, fenced: Option<&str>) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            token: "0123456789abcdef".into(),
            tokens: vec!["0123456789abcdef".into(); 128],
            balance: 1.02,
            peer: "127.0.0.1:7101".into(),
            client: "127.0.0.1:7001".into(),
            admin: "127.0.0.1:7201".into(),
            state: MemberState::Up,
            last_heartbeat_ms: Some(12),
            generation: 1,
            data_id: None,
            share: 0.5,
            keys: 3,
            suspect: false,
            protocol: Some(8),
            write_fenced: fenced.map(str::to_string),
        }
    }

    #[test]
    fn a_fenced_node_and_a_skewed_clock_get_a_line_each() {
        let status = Status {
            name: "n1".into(),
            release: "0.3.0".into(),
            token: "0123456789abcdef".into(),
            generation: 1,
            keys: 3,
            nodes: vec![
                node("n1", None),
                node(
                    "n2",
                    Some("commit log cannot be written: No space left on device"),
                ),
            ],
            anti_entropy: Default::default(),
            heartbeat_interval_ms: 200,
            failure_timeout_ms: 1000,
            protocol_min: 5,
            protocol_max: 8,
            clocks: [(
                "n2".to_string(),
                PeerClock {
                    offset_ms: -1500.0,
                    standing: "skewed".into(),
                },
            )]
            .into(),
            clock_injected_offset_ms: 0,
            leaving: None,
            handoff_backlog: 0,
            view_epoch: 4,
            view_epoch_reconciled: 4,
        };
        let out = render(&status, None, false);
        assert!(out.contains(
            "WRITE-FENCED n2: takes no writes, serves reads: commit log cannot be written: \
             No space left on device\n"
        ));
        assert!(
            out.contains("CLOCK SKEWED: n2's wall clock is 1500 ms behind n1's\n"),
            "{out}"
        );
        assert!(!out.contains("WRITE-FENCED n1"));
        // Each row: its tokens and its share of the replicas.
        assert!(
            out.contains("n1           127.0.0.1:7101         0123456789    128  50.0%    1.02x"),
            "{out}"
        );
    }
}
