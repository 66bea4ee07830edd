//! `ringkv leave` and `ringkv forget`: the operations that remove a node
//! for good (see `node::departure`), driven through a node's admin port.

use std::time::Duration;

use crate::cli::http;
use crate::error::{Error, Result};
use crate::node::departure::{ForgetReport, LeaveReport, Progress};

/// `ringkv leave --admin HOST:PORT`: asks that node to leave, prints its
/// progress while it streams, and its report once it has left (it then
/// stops). Fails, with the node's reason, if it could not leave.
pub async fn leave(admin: &str) -> Result<()> {
    let (status, _) = crate::cli::status::fetch(admin).await?;
    let name = status.name;
    println!("{name} is leaving: every node writes around it while it hands over what it holds");
    let addr = admin.to_string();
    // A leave takes as long as its data takes to stream.
    let call = tokio::spawn(async move {
        http::request(
            &addr,
            "POST",
            "/leave",
            None,
            Duration::from_secs(24 * 3600),
        )
        .await
    });
    let mut last: Option<Progress> = None;
    while !call.is_finished() {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Ok((status, _)) = crate::cli::status::fetch(admin).await else {
            continue;
        };
        let Some(p) = status.leaving else { continue };
        if p.phase == "streaming" && last.as_ref().is_none_or(|l| l.pass != p.pass) {
            println!(
                "pass {}: streaming what it holds to its ranges' new replicas",
                p.pass
            );
        }
        last = Some(p);
    }
    let answer = call
        .await
        .map_err(|e| Error::Protocol(format!("leave: {e}")))??;
    let report: LeaveReport = report(admin, "/leave", answer, |why| {
        format!("{name} could not leave: {why} (it stays, taking no writes; run leave again)")
    })?;
    let p = &report.progress;
    println!(
        "{name} left: {} entries ({} bytes) handed to [{}], {} offered were already held; {} of {} nodes confirmed; it has stopped",
        p.entries_sent,
        p.bytes_sent,
        report.to.join(", "),
        p.entries_offered,
        report.confirmed.0,
        report.confirmed.1
    );
    Ok(())
}

/// `ringkv forget NAME --admin HOST:PORT`: asks the cluster, through that
/// node, to forget NAME, which must be down.
pub async fn forget(admin: &str, name: &str) -> Result<()> {
    let body = serde_json::json!({ "name": name }).to_string();
    let answer = http::request(
        admin,
        "POST",
        "/forget",
        Some(&body),
        Duration::from_secs(10),
    )
    .await?;
    let report: ForgetReport = report(admin, "/forget", answer, |why| {
        format!("{name} not forgotten: {why}")
    })?;
    println!(
        "forgot {} (data directory {}): {} of {} nodes up confirmed; its ranges are re-replicated from the others",
        report.node, report.data_id, report.confirmed.0, report.confirmed.1
    );
    Ok(())
}

/// The JSON report a node answered a `POST` to `path` with, or, when it
/// refused (any status but 200), an error `refused` words from its reason.
fn report<T: serde::de::DeserializeOwned>(
    admin: &str,
    path: &str,
    (code, body): (u16, String),
    refused: impl FnOnce(&str) -> String,
) -> Result<T> {
    if code == 403 {
        // Refused before it started (a client certificate missing, fault
        // injection off): nothing happened on the node.
        return Err(Error::invalid(format!(
            "{admin}{path} refused the request, nothing was done: {}",
            body.trim()
        )));
    }
    if code != 200 {
        return Err(Error::invalid(refused(body.trim())));
    }
    serde_json::from_str(&body).map_err(|e| Error::Protocol(format!("{admin}{path}: {e}: {body}")))
}
