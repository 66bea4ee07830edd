//! Server commands: INFO, CONFIG, TIME, LOLWUT and WAIT.
//!
//! INFO has Redis's sections and field names (tools parse them) with
//! ringkv's numbers, plus a `# Ringkv` section; `redis_version` is the
//! Redis release ringkv answers as, `ringkv_version` its own. CONFIG GET
//! answers every parameter Redis 7.0 has, with Redis's default where
//! ringkv has no such setting and ringkv's value where it has one (see
//! [`config_value`]), under the names Redis 7.0 answers with (see
//! [`config_get`]); CONFIG SET is refused for every parameter, naming
//! it, since ringkv reads its settings at start. WAIT counts the replicas
//! that hold the connection's last write (see [`wait`]).

use std::time::Duration;

use bytes::Bytes;

use super::{help, meta, parse_int, subcommand, Call, Run};
use crate::config::Config;
use crate::node::shared::Shared;
use crate::resp::codec::Reply;
use crate::resp::glob;

/// INFO [section ...]
pub fn info(call: Call<'_>) -> Run {
    let sections: Vec<String> = call.args[1..]
        .iter()
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .collect();
    Run::Now(Reply::Verbatim(Bytes::from(info_text(
        call.shared,
        &sections,
    ))))
}

/// The sections INFO shows without arguments (Redis's "default").
const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "keyspace",
    "ringkv",
];

/// INFO's text for the `asked` sections (none: the default ones).
pub fn info_text(shared: &Shared, asked: &[String]) -> String {
    let all = asked
        .iter()
        .any(|s| matches!(s.as_str(), "all" | "everything"));
    let wanted = |name: &str| {
        if asked.is_empty() || asked.iter().any(|s| s == "default") {
            DEFAULT_SECTIONS.contains(&name)
        } else {
            all || asked.iter().any(|s| s == name)
        }
    };
    let mut out = String::new();
    for name in DEFAULT_SECTIONS.iter().chain(["commandstats"].iter()) {
        if !wanted(name) {
            continue;
        }
        let body = section(shared, name);
        if body.is_empty() && *name == "keyspace" {
            // Redis shows the heading of an empty keyspace.
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            out.push_str("# Keyspace\r\n");
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        out.push_str(&body);
    }
    out
}

fn human(bytes: u64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.2}{}", units[unit])
    }
}

fn section(shared: &Shared, name: &str) -> String {
    let cfg = &shared.cfg;
    let view = shared.view.load();
    let uptime = crate::clock::since(shared.started).as_secs();
    let line = |k: &str, v: &dyn std::fmt::Display| format!("{k}:{v}\r\n");
    let mut s = String::new();
    match name {
        "server" => {
            s.push_str("# Server\r\n");
            s += &line("redis_version", &super::connection::REDIS_VERSION);
            s += &line("ringkv_version", &env!("CARGO_PKG_VERSION"));
            s += &line("redis_git_sha1", &"00000000");
            s += &line("redis_git_dirty", &0);
            s += &line("redis_mode", &"standalone");
            s += &line(
                "os",
                &format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            );
            s += &line("arch_bits", &(usize::BITS));
            s += &line("multiplexing_api", &"epoll");
            s += &line("process_id", &std::process::id());
            s += &line("run_id", &run_id(shared));
            s += &line("tcp_port", &port_of(&cfg.client));
            s += &line("server_time_usec", &crate::clock::wall_micros());
            s += &line("uptime_in_seconds", &uptime);
            s += &line("uptime_in_days", &(uptime / 86_400));
            s += &line("hz", &10);
            s += &line("configured_hz", &10);
            s += &line(
                "executable",
                &std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
            s += &line("config_file", &"");
        }
        "clients" => {
            s.push_str("# Clients\r\n");
            s += &line("connected_clients", &shared.clients.len());
            s += &line("maxclients", &cfg.max_clients);
            s += &line("blocked_clients", &0);
            s += &line("tracking_clients", &0);
        }
        "memory" => {
            let used = shared.store.bytes() as u64;
            s.push_str("# Memory\r\n");
            s += &line("used_memory", &used);
            s += &line("used_memory_human", &human(used));
            s += &line("maxmemory", &cfg.maxmemory);
            s += &line("maxmemory_human", &human(cfg.maxmemory));
            s += &line("maxmemory_policy", &"noeviction");
        }
        "persistence" => {
            s.push_str("# Persistence\r\n");
            s += &line("loading", &0);
            s += &line("async_loading", &0);
            s += &line("rdb_changes_since_last_save", &0);
            s += &line("rdb_bgsave_in_progress", &0);
            s += &line("aof_enabled", &1);
            s += &line("aof_rewrite_in_progress", &0);
        }
        "stats" => {
            use std::sync::atomic::Ordering::Relaxed;
            let m = &shared.metrics;
            s.push_str("# Stats\r\n");
            s += &line(
                "total_connections_received",
                &m.client_connections.load(Relaxed),
            );
            s += &line("total_commands_processed", &m.commands.load(Relaxed));
            s += &line("instantaneous_ops_per_sec", &0);
            s += &line("rejected_connections", &0);
            s += &line("expired_keys", &0);
            s += &line("evicted_keys", &0);
            s += &line("keyspace_hits", &0);
            s += &line("keyspace_misses", &0);
            s += &line("total_error_replies", &m.command_errors.load(Relaxed));
            s += &line("rmw_conflicts", &m.rmw_conflicts.load(Relaxed));
        }
        "replication" => {
            s.push_str("# Replication\r\n");
            s += &line("role", &"master");
            s += &line("connected_slaves", &0);
        }
        "cpu" => {
            let (user, sys) = cpu_seconds();
            s.push_str("# CPU\r\n");
            s += &line("used_cpu_sys", &format!("{sys:.6}"));
            s += &line("used_cpu_user", &format!("{user:.6}"));
        }
        "keyspace" => {
            // What this node holds, as Redis reports its own keyspace;
            // `expires` counts keys with a deadline, expired ones not yet
            // reclaimed included (as Redis counts those not yet evicted).
            let keys = shared.store.live_len();
            if keys > 0 {
                let expires = shared.store.expiring().min(keys);
                s.push_str("# Keyspace\r\n");
                s += &line("db0", &format!("keys={keys},expires={expires},avg_ttl=0"));
            }
        }
        "ringkv" => {
            s.push_str("# Ringkv\r\n");
            s += &line("node", &shared.me);
            s += &line("generation", &shared.generation);
            s += &line("nodes_up", &view.ring.nodes().len());
            s += &line("replication", &cfg.replication);
            s += &line("read_quorum", &cfg.read_quorum);
            s += &line("write_quorum", &cfg.write_quorum);
            s += &line("entries_held", &shared.store.len());
        }
        "commandstats" => {
            s.push_str("# Commandstats\r\n");
            for spec in super::TABLE {
                let calls = shared.metrics.command_calls(spec.index);
                if calls > 0 {
                    s += &line(
                        &format!("cmdstat_{}", spec.name),
                        &format!(
                            "calls={calls},rejected_calls=0,failed_calls={}",
                            shared.metrics.command_failures(spec.index)
                        ),
                    );
                }
            }
        }
        _ => {}
    }
    s
}

/// A stable 40-hex-digit id for this run of this node (Redis's `run_id`).
fn run_id(shared: &Shared) -> String {
    let seed = format!("{}/{}", shared.me, shared.generation);
    hex::encode(crate::ring::Token::of(seed.as_bytes()).0)
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// This process's user and system CPU time, in seconds.
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

pub(super) const CONFIG_SUBS: &[(&str, i32)] = &[
    ("HELP", 2),
    ("GET", -3),
    ("SET", -4),
    ("RESETSTAT", 2),
    ("REWRITE", 2),
];

const CONFIG_HELP: &[&str] = &[
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
    "HELP",
    "    Print this help.",
];

/// CONFIG GET|SET|RESETSTAT|REWRITE|HELP
pub fn config(call: Call<'_>) -> Run {
    let sub = match subcommand(&call.args, "CONFIG", CONFIG_SUBS) {
        Ok(sub) => sub,
        Err(reply) => return Run::Now(reply),
    };
    let (shared, args) = (call.shared, &call.args);
    Run::Now(match sub {
        "HELP" => help(CONFIG_HELP),
        "GET" => config_get(&shared.cfg, &args[2..]),
        "SET" => {
            if args.len() % 2 != 0 {
                return Run::Now(super::wrong_args("config|set"));
            }
            let name = String::from_utf8_lossy(&args[2]).to_ascii_lowercase();
            if meta::config_defaults().iter().any(|(n, _)| *n == name) {
                Reply::err(format!(
                    "CONFIG SET failed (possibly related to argument '{name}') - ringkv reads its settings at start: set them in its TOML file, RINGKV_* variables or --set, and restart"
                ))
            } else {
                Reply::err(format!(
                    "Unknown option or number of arguments for CONFIG SET - '{name}'"
                ))
            }
        }
        "RESETSTAT" => Reply::ok(),
        "REWRITE" => {
            Reply::err("CONFIG REWRITE is not supported: ringkv's settings live in its TOML file")
        }
        _ => super::syntax_error(),
    })
}

/// CONFIG GET parameter...: as Redis 7.0's `configGetCommand` answers it.
/// A name without glob characters (`*?[`) is looked up in any case and
/// answered under the name as typed; a glob is matched in any case against
/// every parameter CONFIG GET * lists, each answered under its own name. A
/// parameter is answered once, under the first name that matched it.
/// (Redis answers in its hash order; ringkv in the order matched.)
fn config_get(cfg: &Config, patterns: &[Bytes]) -> Reply {
    let params = meta::config_defaults();
    let mut matched: Vec<(Bytes, &(String, String))> = Vec::new();
    let seen = |matched: &[(Bytes, &(String, String))], name: &str| {
        matched.iter().any(|(_, (n, _))| n == name)
    };
    for pattern in patterns {
        let lower = pattern.to_ascii_lowercase();
        if !pattern.iter().any(|b| matches!(b, b'*' | b'?' | b'[')) {
            let found = params.binary_search_by(|(n, _)| n.as_bytes().cmp(&lower[..]));
            if let Ok(i) = found {
                if !seen(&matched, &params[i].0) {
                    matched.push((pattern.clone(), &params[i]));
                }
            }
            continue;
        }
        for param in params {
            if !seen(&matched, &param.0) && glob::matches(&lower, param.0.as_bytes()) {
                matched.push((Bytes::from(param.0.clone()), param));
            }
        }
    }
    Reply::Map(
        matched
            .into_iter()
            .map(|(key, (name, default))| {
                let value = config_value(cfg, name).unwrap_or_else(|| default.clone());
                (Reply::Bulk(key), Reply::bulk(value))
            })
            .collect(),
    )
}

/// What ringkv answers for a Redis parameter it has an equivalent of, or
/// that would mislead with Redis's default.
fn config_value(cfg: &Config, name: &str) -> Option<String> {
    Some(match name {
        "port" => port_of(&cfg.client).to_string(),
        "bind" => cfg
            .client
            .rsplit_once(':')
            .map_or("", |(h, _)| h)
            .to_string(),
        "maxclients" => cfg.max_clients.to_string(),
        "maxmemory" => cfg.maxmemory.to_string(),
        "databases" => "1".to_string(),
        "dir" => cfg.data_dir.display().to_string(),
        "requirepass" => cfg.requirepass.clone().unwrap_or_default(),
        "appendonly" => "yes".to_string(),
        "appendfsync" => match cfg.fsync {
            crate::config::FsyncMode::Always => "always",
            crate::config::FsyncMode::Interval => "everysec",
            crate::config::FsyncMode::Never => "no",
        }
        .to_string(),
        "save" => String::new(),
        "proto-max-bulk-len" => cfg.max_bulk_bytes.to_string(),
        "daemonize" => "no".to_string(),
        "protected-mode" => "no".to_string(),
        "cluster-enabled" => "no".to_string(),
        "timeout" => "0".to_string(),
        _ => return None,
    })
}

/// TIME: the node's wall clock, seconds and microseconds.
pub fn time(_call: Call<'_>) -> Run {
    let micros = crate::clock::wall_micros();
    Run::Now(Reply::bulks([
        (micros / 1_000_000).to_string(),
        (micros % 1_000_000).to_string(),
    ]))
}

/// LOLWUT [VERSION v]: ringkv's version, and the Redis version it answers as.
pub fn lolwut(_call: Call<'_>) -> Run {
    Run::Now(Reply::Verbatim(Bytes::from(format!(
        "ringkv ver. {} (answering as Redis ver. {})\n",
        env!("CARGO_PKG_VERSION"),
        super::connection::REDIS_VERSION
    ))))
}

/// WAIT numreplicas timeout: how many replicas of the key this connection
/// wrote last hold its newest version (the write itself, or a later one
/// of the key by anyone), polled until `numreplicas` do or `timeout`
/// milliseconds pass (0: no limit, as in Redis). 0 when the connection
/// has written nothing.
pub fn wait(call: Call<'_>) -> Run {
    let timeout = match parse_int(&call.args[2]) {
        None => return Run::Now(Reply::err("timeout is not an integer or out of range")),
        Some(t) if t < 0 => return Run::Now(Reply::err("timeout is negative")),
        Some(t) => t as u64,
    };
    let Some(wanted) = parse_int(&call.args[1]) else {
        return Run::Now(super::not_an_integer());
    };
    let Some(key) = call.conn.last_write.clone() else {
        return Run::Now(Reply::Integer(0));
    };
    let shared = call.shared.clone();
    Run::later(async move {
        let deadline =
            (timeout > 0).then(|| crate::clock::instant() + Duration::from_millis(timeout));
        loop {
            let held = shared.replicas_holding_newest(&key).await;
            let out_of_time = deadline.is_some_and(|d| crate::clock::instant() >= d);
            if held as i64 >= wanted || out_of_time {
                return Reply::Integer(held as i64);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(patterns: &[&str]) -> Vec<(String, String)> {
        let patterns: Vec<Bytes> = patterns
            .iter()
            .map(|p| Bytes::from(p.to_string()))
            .collect();
        let Reply::Map(pairs) = config_get(&Config::default(), &patterns) else {
            panic!("CONFIG GET answers a map");
        };
        let text = |r: &Reply| match r {
            Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("{other:?}"),
        };
        pairs.iter().map(|(k, v)| (text(k), text(v))).collect()
    }

    #[test]
    fn config_get_names_a_parameter_as_typed_and_a_glob_match_by_its_name() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(get(&["MAXMEMORY"]), [pair("MAXMEMORY", "0")]);
        assert_eq!(get(&["maxmemory", "MAXMEMORY"]), [pair("maxmemory", "0")]);
        assert_eq!(get(&["MAXMEMORY", "max*"]).len(), 6);
        assert_eq!(get(&["MAXMEMORY", "max*"])[0], pair("MAXMEMORY", "0"));
        assert_eq!(
            get(&["Maxmemory-P*"]),
            [pair("maxmemory-policy", "noeviction")]
        );
        assert_eq!(get(&["nosuchparam"]), []);
        assert_eq!(get(&["slave-priority", "replica-priority"]).len(), 2);
        assert_eq!(get(&["*"]).len(), meta::config_defaults().len());
    }

    #[test]
    fn ringkv_answers_every_parameter_whose_recorded_default_is_not_measured() {
        for name in meta::config_normalized() {
            assert!(
                config_value(&Config::default(), name).is_some(),
                "{name}: the generator's server chose its value, so ringkv must answer its own"
            );
        }
    }
}
