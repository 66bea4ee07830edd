//! `ringkv scenario FILE`: read, check, and run a scenario script.
//!
//! The script is parsed and its names checked before anything starts, so a
//! mistake costs nothing and exits with status 2 and one line naming the
//! script line. Then [`crate::scenario::run()`] starts the cluster, runs the
//! script and stops every node; a cluster failure exits with status 1.

use std::process::ExitCode;

use crate::cli::ScenarioArgs;
use crate::scenario::cluster::TIMINGS;
use crate::scenario::{parse, Options, RunError};

/// The timings section of `ringkv scenario --help`.
pub const TIMINGS_HELP: &str = "\
Node timings: every node runs `ringkv node --fault-injection` with
heartbeat_interval_ms=25, failure_timeout_ms=300 and request_timeout_ms=1000:
a healed partition is seen within one heartbeat and converges well within
200 ms (measured: every read right from 25 ms after the join), and a cut-off
node is declared down after 300 ms. Override with `-- --set KEY=VALUE`.
The runner waits at most 3000 ms for any answer.

Exit status: 0 when the script ran to its end, whatever the reads returned;
2 for a script error (nothing started); 1 when a node failed to start, died
unasked, or refused a fault command.";

/// Runs the subcommand; returns the process exit status.
pub async fn run(args: ScenarioArgs) -> ExitCode {
    match run_file(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringkv scenario: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run_file(args: ScenarioArgs) -> Result<(), RunError> {
    let path = args.file.display().to_string();
    let text =
        std::fs::read_to_string(&args.file).map_err(|e| RunError::Setup(format!("{path}: {e}")))?;
    let script = parse::parse(&text).map_err(|e| RunError::Setup(format!("{path}: {e}")))?;
    script
        .check_names()
        .map_err(|e| RunError::Setup(format!("{path}: {e}")))?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let opts = Options {
        json: args.json,
        base_port: args.base_port,
        data_dir: args.data_dir,
        seed,
        node_flags: args.node_flags,
        timings: TIMINGS,
    };
    crate::scenario::run(&script, opts).await
}
