#!/usr/bin/env bash
# End-to-end test of the five-node Docker cluster (issue 6, "Tests"):
#
#   up; 1000 keys written;
#   kill n2  -> marked down by all, all 1000 keys read back through two other nodes;
#   start n2 -> up everywhere, its keys back;
#   partition n1,n2 n3,n4,n5 -> each side marks the other down;
#   conflicting writes on both sides;
#   heal -> every node reads the later write for every key;
#   kill all five and start them again -> no acknowledged write lost.
#
# Every step is asserted; detection and convergence times are printed.
# Containers, network, volumes and iptables rules are removed on exit, also
# when a step fails (set E2E_KEEP=1 to leave a failed cluster for a look).
# Needs Docker, root (for the partition), cargo, and redis-cli (installed
# with apt-get when missing). Exit status 0 only when every step passed.
# CLUSTER_TLS=1 runs it all against a TLS cluster (cluster.sh up --tls).

set -euo pipefail
export LC_ALL=C

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=docker/cluster.sh
source "$E2E_DIR/cluster.sh"

KEYS=${E2E_KEYS:-1000}
CONFLICT_KEYS=${E2E_CONFLICT_KEYS:-200}
WAIT_S=${E2E_WAIT_S:-30}
CONVERGE_S=${E2E_CONVERGE_S:-60}
FAILURE_TIMEOUT_MS=${RINGKV_FAILURE_TIMEOUT_MS:-1000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringkv-e2e.XXXXXX")
T_START=$(now_ms)
SUMMARY=()
TIMINGS=()
CURRENT_STEP=setup

# --- reporting -------------------------------------------------------------

# shellcheck source=docker/report.sh
source "$E2E_DIR/report.sh"


# Records a measured time for the summary: timing "what" MILLISECONDS.
timing() {
    TIMINGS+=("$(printf '%-46s %s' "$1:" "$(secs "$2")")")
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ $rc -ne 0 && ${E2E_KEEP:-0} == 1 ]]; then
        echo "E2E_KEEP=1: leaving the cluster up; 'docker/cluster.sh down' removes it" >&2
    else
        printf '\n== cleanup\n'
        (cmd_down) || echo "e2e: cleanup failed; run docker/cluster.sh down" >&2
    fi
    rm -rf "$WORK"
    printf '\n== summary (%s in all)\n' "$(secs $(($(now_ms) - T_START)))"
    printf '%s\n' "${SUMMARY[@]}"
    if [[ ${#TIMINGS[@]} -gt 0 ]]; then
        printf '\n== timings\n'
        printf '%s\n' "${TIMINGS[@]}"
    fi
    if [[ $rc -eq 0 ]]; then
        echo "e2e: all steps passed"
    elif [[ $rc -eq 130 ]]; then
        echo "e2e: interrupted in step: $CURRENT_STEP" >&2
    else
        echo "e2e: FAILED in step: $CURRENT_STEP" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- client helpers --------------------------------------------------------

need_redis_cli() {
    if ! command -v redis-cli >/dev/null 2>&1; then
        command -v apt-get >/dev/null 2>&1 || die "redis-cli is missing; install redis-tools"
        note "installing redis-tools (redis-cli) with apt-get"
        apt-get install -y -qq redis-tools >/dev/null || die "could not install redis-tools"
    fi
}

# Sends the commands of FILE (one a line) to NODE; prints the replies, one a line.
rcli() {
    redis_cli "$1" <"$2" 2>&1 || true
}

# SETs "KEY VALUE" lines of FILE through NODE; fails unless every one is OK.
write_pairs() {
    local node=$1 file=$2 n ok
    n=$(wc -l <"$file")
    ok=$(rcli "$node" <(sed 's/^/SET /' "$file") | grep -cx OK || true)
    if [[ $ok -ne $n ]]; then
        rcli "$node" <(sed 's/^/SET /' "$file" | head -3) >&2
        fail "only $ok of $n writes through $node were acknowledged"
    fi
    # Acknowledged: from now on these are the values to expect.
    merge_expected "$file"
}

# The expected state: "KEY VALUE" lines, sorted by key.
EXPECTED=$WORK/expected
: >"$EXPECTED"
merge_expected() {
    # Stable and unique on the key: the first line of a key wins, so the new one.
    sort -k1,1 -s -u "$1" "$EXPECTED" >"$WORK/merged"
    mv "$WORK/merged" "$EXPECTED"
}

# Reads every expected key through NODE; prints how many answers differ and
# keeps the first differences in $WORK/diff.NODE.
mismatches() {
    local node=$1
    cut -d' ' -f1 "$EXPECTED" | sed 's/^/GET /' >"$WORK/gets"
    rcli "$node" "$WORK/gets" >"$WORK/got.$node"
    paste -d' ' <(cut -d' ' -f1 "$EXPECTED") "$WORK/got.$node" |
        diff "$EXPECTED" - >"$WORK/diff.$node" || true
    grep -c '^>' "$WORK/diff.$node" || true
}

# Fails unless every expected key reads back right through each NODE.
assert_reads() {
    local node bad
    for node in "$@"; do
        bad=$(mismatches "$node")
        if [[ $bad -ne 0 ]]; then
            head -6 "$WORK/diff.$node" >&2
            fail "$bad of $(wc -l <"$EXPECTED") keys read wrong through $node"
        fi
    done
}

# --- placement (CONTRACT "Placement", N = 3) --------------------------------

# Prints "NODE COUNT" for how many of the expected keys each node should
# hold, computed here from every node's tokens as n1's /status lists them
# (owner = first token >= SHA-1(key), then the next distinct nodes).
expected_holdings() {
    status_json n1 | python3 -c '
import bisect, hashlib, json, sys
nodes = json.load(sys.stdin)["nodes"]
points = sorted((t, n["name"]) for n in nodes for t in n["tokens"])
tokens = [t for t, _ in points]
count = {n["name"]: 0 for n in nodes}
for line in open(sys.argv[1]):
    key = line.split(" ", 1)[0]
    i = bisect.bisect_left(tokens, hashlib.sha1(key.encode()).hexdigest()) % len(points)
    pref = []
    while len(pref) < min(3, len(count)):
        if points[i][1] not in pref:
            pref.append(points[i][1])
        i = (i + 1) % len(points)
    for n in pref:
        count[n] += 1
for n in sys.argv[2:]:
    print(n, count.get(n, 0))
' "$EXPECTED" "${NODES[@]}"
}

# Waits until each NODE given (default: all) reports holding exactly its
# share ($WORK/holdings); prints the milliseconds it took.
wait_holdings() {
    local t0 n want ok only=" ${*:-${NODES[*]}} "
    t0=$(now_ms)
    while true; do
        ok=1
        while read -r n want; do
            [[ $only == *" $n "* ]] || continue
            [[ $(node_keys "$n" 2>/dev/null || echo -1) == "$want" ]] || ok=0
        done <"$WORK/holdings"
        ((ok)) && break
        if (($(now_ms) - t0 > WAIT_S * 1000)); then
            return 1
        fi
        sleep 0.2
    done
    echo $(($(now_ms) - t0))
}

show_holdings() {
    local n want
    while read -r n want; do
        printf '%s holds %s (expected %s)  ' "$n" "$(node_keys "$n" 2>/dev/null || echo '?')" "$want"
    done <"$WORK/holdings"
    echo
}

# --- the steps -------------------------------------------------------------

need_docker
need_compose
need_redis_cli
need_root

if [[ -n $(docker ps -aq --filter "name=^$PROJECT-n[1-5]\$") ]]; then
    note "a ringkv cluster exists already; removing it first"
    cmd_down
fi

step "up: build, start n1..n5, wait until every node sees five up"
t0=$(now_ms)
cmd_up
pass "cluster up in $(secs $(($(now_ms) - t0))) (build included)"

step "write $KEYS keys, spread over the five nodes"
seq -f 'k%04g' 1 "$KEYS" | awk '{ print $1, "v1-" $1 }' >"$WORK/all"
t0=$(now_ms)
for i in 1 2 3 4 5; do
    awk -v i="$i" 'NR % 5 == i % 5' "$WORK/all" >"$WORK/part$i"
    write_pairs "n$i" "$WORK/part$i"
done
pass "$KEYS writes acknowledged in $(secs $(($(now_ms) - t0)))"
expected_holdings >"$WORK/holdings"
if ! ms=$(wait_holdings); then
    show_holdings >&2
    fail "the nodes do not hold three copies of every key where the ring says"
fi
pass "every node holds its share of the $((3 * KEYS)) copies ($(tr ' ' '=' <"$WORK/holdings" | paste -sd' ')) $(secs "$ms") after the writes"

step "kill n2: marked down by all, every key readable through n3 and n4"
t0=$(now_ms)
cmd_kill n2
if ! ms=$(wait_all_see n1,n3,n4,n5 n2 down "$WAIT_S"); then
    cmd_status >&2
    fail "n2 not marked down by every other node within ${WAIT_S}s"
fi
T_DETECT_KILL=$(($(now_ms) - t0))
timing "detection, n2 killed -> down everywhere" "$T_DETECT_KILL"
pass "n2 marked down by n1, n3, n4, n5 $(secs "$T_DETECT_KILL") after docker kill (failure timeout ${FAILURE_TIMEOUT_MS} ms)"
t0=$(now_ms)
assert_reads n3 n4
pass "all $KEYS keys read back through n3 and through n4, zero errors ($(secs $(($(now_ms) - t0))))"
seq -f 'k%04g' $((KEYS - 99)) "$KEYS" | awk '{ print $1, "v2-" $1 }' >"$WORK/update"
write_pairs n5 "$WORK/update"
assert_reads n1
pass "100 updates written through n5 while n2 is down, read back through n1"

step "start n2: up everywhere, its keys back"
t0=$(now_ms)
cmd_start n2
if ! ms=$(wait_all_see n1,n2,n3,n4,n5 n1,n2,n3,n4,n5 up "$WAIT_S"); then
    cmd_status >&2
    fail "n2 not up everywhere within ${WAIT_S}s of its start"
fi
T_REJOIN=$(($(now_ms) - t0))
timing "rejoin, n2 started -> up everywhere" "$T_REJOIN"
pass "n2 up in every routing table $(secs "$T_REJOIN") after docker start"
if ! ms=$(wait_holdings n2); then
    show_holdings >&2
    fail "n2 did not get its keys back within ${WAIT_S}s"
fi
T_HANDBACK=$(($(now_ms) - t0))
timing "hand-back, n2 started -> holds its keys" "$T_HANDBACK"
pass "n2 holds its $(grep '^n2 ' "$WORK/holdings" | cut -d' ' -f2) keys again $(secs "$T_HANDBACK") after docker start"
# Not asserted: the others drop the copies they held for n2 on their next
# stray sweep, which may be tens of seconds away.
echo "(copies now: $(show_holdings))"
assert_reads n2
pass "all $KEYS keys (100 updated while it was down) read back through n2"

step "partition n1,n2 | n3,n4,n5: each side marks the other down"
t0=$(now_ms)
cmd_partition n1,n2 n3,n4,n5
if ! ms=$(wait_all_see n1,n2 n3,n4,n5 down "$WAIT_S") ||
    ! ms=$(wait_all_see n3,n4,n5 n1,n2 down "$WAIT_S"); then
    cmd_status >&2
    fail "the sides did not mark each other down within ${WAIT_S}s"
fi
T_DETECT_PART=$(($(now_ms) - t0))
timing "detection, cut -> each side sees other down" "$T_DETECT_PART"
pass "each side marks the other down $(secs "$T_DETECT_PART") after the cut"
all_see n1 n2 up && all_see n3 n4,n5 up && all_see n4 n3,n5 up ||
    fail "nodes on one side no longer see each other up"
pass "inside each side every node is still up"

step "conflicting writes on both sides of the partition"
# Every one of the first $CONFLICT_KEYS keys is written once on each side.
# Even keys: minority side first, majority side later; odd keys: the other
# way round. The later write must win everywhere after the heal.
seq -f 'k%04g' 1 "$CONFLICT_KEYS" >"$WORK/ckeys"
awk 'NR % 2 == 0 { print $1, "minority-early-" $1 }' "$WORK/ckeys" >"$WORK/c1a"
awk 'NR % 2 == 1 { print $1, "majority-early-" $1 }' "$WORK/ckeys" >"$WORK/c1b"
awk 'NR % 2 == 0 { print $1, "majority-late-" $1 }' "$WORK/ckeys" >"$WORK/c2b"
awk 'NR % 2 == 1 { print $1, "minority-late-" $1 }' "$WORK/ckeys" >"$WORK/c2a"
write_pairs n2 "$WORK/c1a"
write_pairs n4 "$WORK/c1b"
# Millisecond timestamps: make sure the late writes are stamped later.
sleep 0.05
write_pairs n5 "$WORK/c2b"
write_pairs n1 "$WORK/c2a"
pass "$((2 * CONFLICT_KEYS)) conflicting writes acknowledged, $CONFLICT_KEYS on each side"

step "heal: every node reads the later write for every key"
t0=$(now_ms)
cmd_heal
if ! ms=$(wait_all_see n1,n2,n3,n4,n5 n1,n2,n3,n4,n5 up "$WAIT_S"); then
    cmd_status >&2
    fail "the routing tables did not all show five up within ${WAIT_S}s of the heal"
fi
T_HEAL_UP=$(($(now_ms) - t0))
timing "heal -> five up everywhere" "$T_HEAL_UP"
pass "every node sees five up $(secs "$T_HEAL_UP") after the heal"
passes=0
while true; do
    passes=$((passes + 1))
    bad=0
    for n in "${NODES[@]}"; do
        b=$(mismatches "$n")
        bad=$((bad + b))
    done
    ((bad == 0)) && break
    if (($(now_ms) - t0 > CONVERGE_S * 1000)); then
        for n in "${NODES[@]}"; do head -4 "$WORK/diff.$n" >&2; done
        fail "$bad stale or wrong reads across the five nodes ${CONVERGE_S}s after the heal"
    fi
    sleep 0.5
done
T_CONVERGE=$(($(now_ms) - t0))
timing "convergence, heal -> later write everywhere" "$T_CONVERGE"
pass "every node reads the later write for all $KEYS keys $(secs "$T_CONVERGE") after the heal ($passes read passes)"
echo "(copies now: $(show_holdings))"

step "kill all five and start them again: no acknowledged write lost"
cmd_kill "${NODES[@]}"
t0=$(now_ms)
cmd_start "${NODES[@]}"
if ! ms=$(wait_all_see n1,n2,n3,n4,n5 n1,n2,n3,n4,n5 up "$WAIT_S"); then
    cmd_status >&2
    fail "the restarted cluster did not come up within ${WAIT_S}s"
fi
T_RESTART=$(($(now_ms) - t0))
timing "full restart -> five up everywhere" "$T_RESTART"
pass "all five restarted and see five up $(secs "$T_RESTART") after docker start"
lost=0
for n in "${NODES[@]}"; do
    b=$(mismatches "$n")
    if [[ $b -ne 0 ]]; then
        missing=$(grep -c '^> [^ ]* *$' "$WORK/diff.$n" || true)
        echo "through $n: $b of $KEYS keys wrong ($missing missing altogether)" >&2
        lost=$((lost > b ? lost : b))
    fi
done
if ((lost > 0)); then
    fail "acknowledged writes LOST across a full restart: up to $lost of $KEYS keys (every acknowledged write must survive kill -9: see the commit log)"
fi
pass "all $KEYS keys read back through every node after the full restart"

CURRENT_STEP=done
