#!/usr/bin/env bash
# Issue 18: later writes lost to a wrong clock, before and after peers announce their clocks.
#
# Runs tests/clock.rs on real node processes (5 nodes, heartbeat 100 ms): one node's wall clock set
# 30 s ahead, then 30 s behind, through the fault API; a write through one node, a second write of
# the same key 250 ms (two heartbeats and a margin) later through another, neither of them the
# other's replica; a write is lost when a read of all three replicas does not return the second.
#   before: every node at peer_protocol_max=7 (links carry no clocks), 30 keys each way, counted
#   after:  protocol 8, 15 keys each way, asserted 0 (the test itself)
#
#   bench/clock-skew.sh
source "$(dirname "$0")/lib.sh"
machine_long
cd "$BENCH_ROOT"
echo "== before: protocol 7"
cargo test --release -q --test clock -- --ignored --nocapture measure_later_writes_lost_at_protocol_7 2>&1 \
  | grep -E "^protocol 7|test result"
echo "== after: protocol 8"
cargo test --release -q --test clock -- --nocapture --test-threads 1 2>&1 \
  | grep -E "^protocol 8|^test |taken back|test result"
