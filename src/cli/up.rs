//! `ringkv up`: a local cluster of node processes, for trying ringkv out.
//!
//! Node i (1-based) listens on client port P+i, peer P+100+i and admin
//! P+200+i on 127.0.0.1, keeps its data in DIR/NAME and its log in
//! DIR/NAME.log, and seeds from every other node. Once all are started,
//! `up` writes DIR/cluster.json, waits until every node's routing table
//! holds all N nodes up, prints a line starting with `ready`, and stays in
//! the foreground. Ctrl-C (or SIGTERM) stops every node it started with
//! SIGTERM, then SIGKILL after 10 s. A node that dies meanwhile (killed to
//! watch failover, say) is reported, not restarted.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use crate::cli::status::fetch;
use crate::error::{Error, Result};
use crate::membership::State;
use crate::ring::Token;

/// What `up` needs.
#[derive(Clone, Debug)]
pub struct UpPlan {
    /// Node names, in port order.
    pub names: Vec<String>,
    /// Base port P.
    pub base_port: u16,
    /// Data root.
    pub data_dir: PathBuf,
    /// Extra flags for every node.
    pub node_flags: Vec<String>,
}

/// One node of the local cluster, as written to cluster.json.
#[derive(Clone, Debug, Serialize)]
pub struct LocalNode {
    /// Name.
    pub name: String,
    /// SHA-1(name), 40 hex digits.
    pub token: String,
    /// Every token of the node, 40 hex digits each, in ring order, as its
    /// data directory's `placement` file says (empty until it wrote one).
    pub tokens: Vec<String>,
    /// RESP address.
    pub client: String,
    /// Peer address.
    pub peer: String,
    /// Admin address.
    pub admin: String,
    /// Process id.
    pub pid: u32,
}

impl UpPlan {
    fn addr(&self, offset: u16, i: usize) -> Result<String> {
        let port = u32::from(self.base_port) + u32::from(offset) + i as u32 + 1;
        if port > 65_535 {
            return Err(Error::config(
                "base-port",
                format!("port {port} is out of range"),
            ));
        }
        Ok(format!("127.0.0.1:{port}"))
    }
}

/// Runtime threads for each of `nodes` local nodes: the machine's cores
/// shared out, at least one. (Measured on 2 cores with 3 nodes: one thread
/// each served 42k unpipelined SETs/s against 31k with two.)
pub fn threads_per_node(nodes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / nodes.max(1)).max(1)
}

/// Starts one node process of the plan.
pub fn spawn_node(plan: &UpPlan, i: usize) -> Result<(Child, LocalNode)> {
    let name = &plan.names[i];
    let (client, peer, admin) = (plan.addr(0, i)?, plan.addr(100, i)?, plan.addr(200, i)?);
    let seeds: Vec<String> = (0..plan.names.len())
        .filter(|&j| j != i)
        .map(|j| plan.addr(100, j))
        .collect::<Result<_>>()?;
    std::fs::create_dir_all(&plan.data_dir)?;
    let log_path = plan.data_dir.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("node")
        .args([
            "--name", name, "--client", &client, "--peer", &peer, "--admin", &admin,
        ])
        .arg("--data-dir")
        .arg(plan.data_dir.join(name))
        .args([
            "--set",
            &format!("worker_threads={}", threads_per_node(plan.names.len())),
        ])
        .args(&plan.node_flags)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    if !seeds.is_empty() {
        cmd.args(["--seeds", &seeds.join(",")]);
    }
    let child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    let token = Token::of(name.as_bytes()).hex();
    Ok((
        child,
        LocalNode {
            name: name.clone(),
            token,
            tokens: Vec::new(),
            client,
            peer,
            admin,
            pid,
        },
    ))
}

/// The flags redis-cli and `ringkv status` need to reach nodes started
/// with `node_flags` (empty when they speak plaintext).
fn tls_hints(node_flags: &[String]) -> Result<(String, String)> {
    let cfg = super::node_flags_config(node_flags)?;
    let ca = cfg
        .tls_ca_cert_file
        .as_ref()
        .map(|p| p.display().to_string());
    let pair = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
        (Some(c), Some(k)) => format!(" --cert {} --key {}", c.display(), k.display()),
        _ => String::new(),
    };
    let with = |on: bool, client_cert: bool| match (&ca, on) {
        (Some(ca), true) => {
            let cert = if client_cert { pair.as_str() } else { "" };
            format!(" --tls --cacert {ca}{cert}")
        }
        _ => String::new(),
    };
    let client_cert = cfg.tls_auth_clients != "no";
    Ok((
        with(cfg.tls_client, client_cert),
        with(cfg.tls_admin, false),
    ))
}

/// The tokens of node `name` whose data directory is `dir`, as hex, in
/// ring order; empty if it has no readable `placement` file.
fn placed_tokens(dir: &Path, name: &str) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(dir.join(crate::placement::FILE)) else {
        return Vec::new();
    };
    let Ok((p, _)) = crate::placement::Placement::from_text(&text) else {
        return Vec::new();
    };
    let mut tokens = crate::ring::node_tokens(name, p.tokens);
    tokens.sort();
    tokens.iter().map(Token::hex).collect()
}

/// Writes DIR/cluster.json.
pub fn write_cluster_json(dir: &Path, nodes: &[LocalNode]) -> Result<()> {
    let json = serde_json::json!({ "nodes": nodes });
    let tmp = dir.join("cluster.json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_string_pretty(&json).unwrap_or_default() + "\n",
    )?;
    std::fs::rename(tmp, dir.join("cluster.json"))?;
    Ok(())
}

/// Polls every node's `/status` until each sees all `n` nodes up.
pub async fn wait_all_up(
    nodes: &[LocalNode],
    children: &mut [Child],
    deadline: Duration,
) -> Result<()> {
    let until = Instant::now() + deadline;
    loop {
        let mut ready = 0;
        for (node, child) in nodes.iter().zip(children.iter_mut()) {
            if let Some(status) = child.try_wait()? {
                return Err(Error::Protocol(format!(
                    "node {} exited during start-up ({status})",
                    node.name
                )));
            }
            if let Ok((s, _)) = fetch(&node.admin).await {
                let up = s.nodes.iter().filter(|x| x.state == State::Up).count();
                ready += usize::from(up == nodes.len());
            }
        }
        if ready == nodes.len() {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(Error::Timeout(format!(
                "only {ready} of {} nodes see everyone up",
                nodes.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends SIGTERM to every child still running, then SIGKILL after `grace`.
pub async fn stop_all(children: &mut [Child], grace: Duration) {
    for child in children.iter() {
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) with a pid we spawned and still own; no memory is touched.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
    }
    let until = Instant::now() + grace;
    for child in children.iter_mut() {
        let left = until.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, child.wait()).await.is_err() {
            if let Err(e) = child.kill().await {
                eprintln!("could not kill a node: {e}");
            }
        }
    }
}

/// Runs `ringkv up`.
pub async fn run(plan: UpPlan) -> Result<()> {
    let mut children = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..plan.names.len() {
        let (child, node) = spawn_node(&plan, i)?;
        eprintln!(
            "started {} (pid {}): client {} peer {} admin {}",
            node.name, node.pid, node.client, node.peer, node.admin
        );
        children.push(child);
        nodes.push(node);
    }
    write_cluster_json(&plan.data_dir, &nodes)?;
    eprintln!(
        "logs: {}/NAME.log; cluster: {}/cluster.json",
        plan.data_dir.display(),
        plan.data_dir.display()
    );
    if let Err(e) = wait_all_up(&nodes, &mut children, Duration::from_secs(30)).await {
        stop_all(&mut children, Duration::from_secs(5)).await;
        return Err(e);
    }
    // Every node has written its placement by now: cluster.json gets
    // their tokens.
    for node in &mut nodes {
        node.tokens = placed_tokens(&plan.data_dir.join(&node.name), &node.name);
    }
    write_cluster_json(&plan.data_dir, &nodes)?;
    // Signals are caught from before `ready`, so a SIGINT sent as soon as
    // it is read stops the nodes instead of killing this process.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (cli_tls, status_tls) = tls_hints(&plan.node_flags)?;
    println!(
        "ready: {} nodes up; try `redis-cli{cli_tls} -p {}` or `ringkv status{status_tls} --admin {}`",
        nodes.len(),
        nodes[0].client.rsplit(':').next().unwrap_or("7001"),
        nodes[0].admin
    );
    let mut exited = vec![false; children.len()];
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        for (i, child) in children.iter_mut().enumerate() {
            if !exited[i] {
                if let Some(status) = child.try_wait()? {
                    exited[i] = true;
                    eprintln!("node {} exited ({status}); the others go on", nodes[i].name);
                }
            }
        }
    }
    eprintln!("stopping {} nodes", children.len());
    stop_all(&mut children, Duration::from_secs(10)).await;
    Ok(())
}
