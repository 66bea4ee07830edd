//! `ringkv status`: the routing table as one node sees it.

use std::time::Duration;

use crate::admin::Status;
use crate::cli::http;
use crate::error::{Error, Result};

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

/// Renders the table; rows whose state differs from `previous` are marked.
pub fn render(status: &Status, previous: Option<&Status>) -> String {
    let mut out = format!(
        "routing table of {} (generation {}, {} live keys)\n{:<2}{:<5} {:<12} {:<22} {:<10} {:>6} {:>8} {:>10}\n",
        status.name, status.generation, status.keys, "", "STATE", "NAME", "PEER", "TOKEN", "SHARE", "KEYS", "HEARTBEAT"
    );
    for n in &status.nodes {
        let changed = previous
            .and_then(|p| p.nodes.iter().find(|x| x.name == n.name))
            .is_none_or(|p| p.state != n.state);
        let mark = if previous.is_some() && changed {
            "* "
        } else {
            "  "
        };
        let state = format!("{:?}", n.state).to_uppercase();
        let hb = n
            .last_heartbeat_ms
            .map_or("never".to_string(), |ms| format!("{ms} ms"));
        out.push_str(&format!(
            "{mark}{:<5} {:<12} {:<22} {:<10} {:>5.1}% {:>8} {:>10}\n",
            state,
            n.name,
            n.peer,
            &n.token[..n.token.len().min(10)],
            n.share * 100.0,
            n.keys,
            hb
        ));
    }
    out
}

/// Runs the subcommand.
pub async fn run(admin: &str, json: bool, watch: bool) -> Result<()> {
    let mut previous = None;
    loop {
        match fetch(admin).await {
            Ok((status, body)) => {
                if json {
                    println!("{}", body.trim());
                } else {
                    if watch {
                        print!("\x1b[2J\x1b[H");
                    }
                    print!("{}", render(&status, previous.as_ref()));
                }
                previous = Some(status);
            }
            Err(e) if watch => println!("\x1b[2J\x1b[H{admin}: {e}"),
            Err(e) => return Err(e),
        }
        if !watch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
