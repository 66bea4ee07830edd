#!/usr/bin/env bash
# Soak test: 20 connections send SOAK_COMMANDS (default 20000) random valid
# and invalid commands at a 3-node cluster while junk goes to every port;
# checks afterwards that no node died, memory settled near its start, and
# keys written before the soak read back intact. Prints the numbers.
#
#   tests/soak.sh [COMMANDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_COMMANDS=${1:-${SOAK_COMMANDS:-20000}}
cargo test --release --test soak -- --ignored --nocapture
