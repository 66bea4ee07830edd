//! The `ringkv` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

/// mimalloc instead of glibc malloc (see `ringkv::alloc`).
#[global_allocator]
static GLOBAL: ringkv::alloc::MiAlloc = ringkv::alloc::MiAlloc;

use clap::Parser;
use ringkv::cli::{Cli, Cmd};
use ringkv::config::LogFormat;
use ringkv::error::Error;
use ringkv::node::Node;

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The runtime: with one worker, a current-thread runtime (every task on
/// the main thread: no cross-thread wake-ups, and a task woken by another
/// waits its turn instead of jumping the queue, so peer links batch);
/// otherwise a multi-threaded one with `workers` threads (0: one per core).
fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all();
    if workers > 1 {
        builder.worker_threads(workers);
    }
    builder.build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cli.install_tls() {
        return exit_with(Err(e));
    }
    // A node's config decides the size of its runtime, so it is read first.
    let node_cfg = match &cli.cmd {
        Cmd::Node(args) => match args.config() {
            Ok(cfg) => Some(cfg),
            Err(e) => return exit_with(Err(e)),
        },
        _ => None,
    };
    let runtime = match runtime(node_cfg.as_ref().map_or(0, |c| c.worker_threads)) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringkv: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cmd = match cli.cmd {
        Cmd::Scenario(args) => return runtime.block_on(ringkv::cli::scenario::run(args)),
        other => other,
    };
    let result = runtime.block_on(async {
        match cmd {
            Cmd::Node(_) => {
                let cfg = node_cfg.expect("read above");
                init_logging(cfg.log_format);
                run_node(cfg).await
            }
            Cmd::Up(args) => {
                let names = args
                    .names
                    .unwrap_or_else(|| (1..=args.nodes).map(|i| format!("n{i}")).collect());
                ringkv::cli::up::run(ringkv::cli::up::UpPlan {
                    names,
                    base_port: args.base_port,
                    data_dir: args.data_dir,
                    node_flags: args.node_flags,
                })
                .await
            }
            Cmd::Status(args) => ringkv::cli::status::run(&args.admin, args.json, args.watch).await,
            Cmd::Leave(args) => ringkv::cli::ops::leave(&args.admin).await,
            Cmd::Forget(args) => ringkv::cli::ops::forget(&args.admin, &args.name).await,
            Cmd::Backup(args) => ringkv::cli::backup::backup(&args.admin, &args.dir).await,
            Cmd::Restore(args) => {
                use ringkv::cli::backup::{restore, Target};
                let target = match &args.admin {
                    Some(admin) => Target::Running(admin),
                    None => Target::WholeCluster,
                };
                restore(&args.dir, &args.data_dir, target).await
            }
            Cmd::Scenario(_) => unreachable!("handled above"),
        }
    });
    exit_with(result)
}

fn exit_with(result: ringkv::error::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ Error::Config { .. }) => {
            eprintln!("ringkv: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("ringkv: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_node(cfg: ringkv::config::Config) -> ringkv::error::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let node = Node::start(cfg).await?;
    let left = node.shared.stop_requested.clone();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = left.cancelled() => tracing::info!("left the cluster: stopping"),
    }
    node.shutdown().await;
    Ok(())
}
