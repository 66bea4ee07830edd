#!/usr/bin/env bash
# Fuzzes the RESP decoder, the peer frame decoder and commit-log recovery
# with cargo-fuzz (libFuzzer), SECONDS per target (default 60), then
# minimises each corpus in place and prints the executions and coverage
# each target reached. Crashes land in fuzz/artifacts/TARGET/; commit them
# with the corpus: `cargo test --test fuzz_corpus` replays both, no fuzzer
# needed.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (installed from crates.io if missing) and a nightly
# toolchain for the sanitizer flags; without nightly it falls back to the
# stable compiler with RUSTC_BOOTSTRAP=1 and no sanitizer.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(resp_decoder peer_frame log_recover)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
  build_flags=()
else
  echo "no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1, no sanitizer" >&2
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
  build_flags=(--sanitizer none)
fi

mkdir -p logs
summary=logs/summary.txt
: >"$summary"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== $t: fuzzing for ${secs}s" >&2
  # -rss_limit_mb: fail on runaway memory; -max_len: inputs up to 64 KiB.
  "${fuzz[@]}" run "${build_flags[@]}" -O "$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=1024 -max_len=65536 -print_final_stats=1 \
    >"logs/$t.log" 2>&1 || { echo "$t FAILED: see fuzz/logs/$t.log and fuzz/artifacts/$t/" >&2; tail -30 "logs/$t.log" >&2; exit 1; }
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo '?')
  last=$(grep -E '^#[0-9]+' "logs/$t.log" | tail -1)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo '?')
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo '?')
  # Minimise: keep only inputs that add coverage.
  "${fuzz[@]}" cmin "${build_flags[@]}" -O "$t" "corpus/$t" >"logs/$t.cmin.log" 2>&1
  kept=$(ls "corpus/$t" | wc -l)
  echo "$t: ${secs}s, $execs execs, cov $cov edges, ft $ft features, corpus $kept files" | tee -a "$summary"
done
