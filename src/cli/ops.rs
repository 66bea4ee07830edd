//! `ringkv leave` and `ringkv forget`: the operations that remove a node
//! for good (see `node::departure`), driven through a node's admin port.

use std::time::Duration;

use crate::cli::http;
use crate::error::{Error, Result};
use crate::node::departure::{ForgetReport, Progress};

/// `ringkv leave --admin HOST:PORT`: asks that node to leave, prints its
/// progress, and returns once it has stopped. Fails if it reports that
/// the leave failed.
pub async fn leave(admin: &str) -> Result<()> {
    let (status, _) = crate::cli::status::fetch(admin).await?;
    let name = status.name;
    let (code, body) = http::request(admin, "POST", "/leave", None, Duration::from_secs(5)).await?;
    if code != 202 {
        return Err(Error::invalid(format!(
            "{name} did not start leaving: {}",
            body.trim()
        )));
    }
    println!("{name} is leaving: every node writes around it while it hands over what it holds");
    let mut last: Option<Progress> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Ok((status, _)) = crate::cli::status::fetch(admin).await else {
            // The node stopped: it left.
            let p = last.unwrap_or_default();
            println!(
                "{name} left: {} entries ({} bytes) handed over, {} already held by their new replicas; it has stopped",
                p.entries_sent, p.bytes_sent, p.entries_offered
            );
            return Ok(());
        };
        let Some(p) = status.leaving else { continue };
        if let Some(why) = p.phase.strip_prefix("failed: ") {
            return Err(Error::invalid(format!(
                "{name} could not leave: {why} (it stays, taking no writes; run leave again)"
            )));
        }
        if last
            .as_ref()
            .is_none_or(|l| l.phase != p.phase || l.pass != p.pass)
        {
            match p.phase.as_str() {
                "streaming" => println!(
                    "pass {}: streaming what it holds to its ranges' new replicas",
                    p.pass
                ),
                "done" => println!("handed over; telling every node it left"),
                _ => {}
            }
        }
        last = Some(p);
    }
}

/// `ringkv forget NAME --admin HOST:PORT`: asks the cluster, through that
/// node, to forget NAME, which must be down.
pub async fn forget(admin: &str, name: &str) -> Result<()> {
    let body = serde_json::json!({ "name": name }).to_string();
    let (code, text) = http::request(
        admin,
        "POST",
        "/forget",
        Some(&body),
        Duration::from_secs(10),
    )
    .await?;
    if code != 200 {
        return Err(Error::invalid(format!(
            "{name} not forgotten: {}",
            text.trim()
        )));
    }
    let report: ForgetReport = serde_json::from_str(&text)
        .map_err(|e| Error::Protocol(format!("{admin}/forget: {e}: {text}")))?;
    println!(
        "forgot {} (data directory {}): {} of {} nodes up confirmed; its ranges are re-replicated from the others",
        report.node, report.data_id, report.confirmed.0, report.confirmed.1
    );
    Ok(())
}
