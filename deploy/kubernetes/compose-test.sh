#!/usr/bin/env bash
# The StatefulSet of deploy/kubernetes, booted with Docker (compose.yml
# beside this file) and checked against the manifests:
#
#   validate   the manifests (validate.sh);
#   boot       ringkv-0..2 as the StatefulSet gives them: each container's
#              environment, arguments, mounts, user and DNS names are
#              compared with the StatefulSet's (k8s.py check-pods), and all
#              three see all three up;
#   write      300 keys through ringkv-0, read back through ringkv-2;
#   reschedule docker kill ringkv-1, remove its container, hold an address
#              on the network with another container, start ringkv-1 again
#              on its volume: it gets a new IP;
#   rejoin     the others see ringkv-1 up under the same name, the same
#              DNS address, its old data directory and a new generation,
#              with their links to it connected (to the new IP); it holds
#              its keys, serves them, and receives new writes;
#   scale up   ringkv-3 joins through the seeds and gets its share;
#   rolling    every pod, ringkv-3 down to ringkv-0 as the StatefulSet's
#   restart    rolling update goes, stopped with SIGTERM, removed and
#              started again: it comes back with its keys, and no entry is
#              sent by hand-off or anti-entropy meanwhile (no data moves);
#   scale down `ringkv leave` in ringkv-3 (as `kubectl exec` would run it)
#              hands its data over; it stops, its volume is removed, and
#              the others show it left and hold every key again.
#
# Every step is asserted, with a deadline; times are printed. Containers,
# network and volumes are removed on exit, also after a failure (set
# K8S_TEST_KEEP=1 to keep a failed cluster for a look). Needs Docker with
# docker-compose or `docker compose`, cargo (the image is built by
# docker/cluster.sh image; K8S_TEST_SKIP_BUILD=1 uses ringkv:local as it
# is), python3, and redis-cli (installed with apt-get when missing).

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PROJECT=ringkv-k8s
NAMESPACE=default
SQUATTER=$PROJECT-squatter
IMAGE=${RINGKV_IMAGE:-ringkv:local}
export RINGKV_IMAGE=$IMAGE
KEYS=${K8S_TEST_KEYS:-300}
WAIT_S=${K8S_TEST_WAIT_S:-60}
VENV=${K8S_VENV:-$ROOT/target/k8s-venv}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringkv-k8s.XXXXXX")
# compose.yml needs both to be set for any command, `down` included; they
# get their real values once the venv can read the manifests.
export K8S_CONFIG_DIR=$WORK/config K8S_CLUSTER_SECRET=unset
T_START=$(date +%s%3N)
SUMMARY=()
CURRENT_STEP=setup

# --- reporting -------------------------------------------------------------

now_ms() {
    date +%s%3N
}


# shellcheck source=docker/report.sh
source "$ROOT/docker/report.sh"

note() {
    echo "compose-test.sh: $*" >&2
}

# --- compose ---------------------------------------------------------------

COMPOSE=()
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
fi

kcompose() {
    "${COMPOSE[@]}" -p "$PROJECT" -f "$HERE/compose.yml" "$@"
}

teardown() {
    docker rm -fv "$SQUATTER" >/dev/null 2>&1 || true
    kcompose --profile scale down -v --remove-orphans --timeout 5 >"$WORK/down.log" 2>&1 ||
        { cat "$WORK/down.log" >&2; return 1; }
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ $rc -ne 0 ]]; then
        for pod in ringkv-0 ringkv-1 ringkv-2 ringkv-3; do
            docker inspect "$pod" >/dev/null 2>&1 || continue
            echo "--- last log lines of $pod" >&2
            docker logs --tail 8 "$pod" 2>&1 | sed 's/^/    /' >&2
        done
    fi
    if [[ $rc -ne 0 && ${K8S_TEST_KEEP:-0} == 1 ]]; then
        echo "K8S_TEST_KEEP=1: leaving the containers; remove them with" >&2
        echo "  K8S_CONFIG_DIR=$WORK/config K8S_CLUSTER_SECRET=x ${COMPOSE[*]} -p $PROJECT -f $HERE/compose.yml --profile scale down -v; docker rm -fv $SQUATTER" >&2
    else
        printf '\n== cleanup\n'
        teardown && echo "removed containers, network and volumes" ||
            echo "compose-test.sh: cleanup failed" >&2
        rm -rf "$WORK"
    fi
    printf '\n== summary (%s in all)\n' "$(secs $(($(now_ms) - T_START)))"
    printf '%s\n' "${SUMMARY[@]}"
    if [[ $rc -eq 0 ]]; then
        echo "compose-test.sh: all steps passed"
    else
        echo "compose-test.sh: FAILED in step: $CURRENT_STEP" >&2
    fi
    exit "$rc"
}

# --- the nodes -------------------------------------------------------------

# The /status JSON of POD, asked inside it (as `kubectl exec POD -- /ringkv
# status --json` asks); nothing and status 1 when it does not answer.
status_json() {
    docker exec "$1" /ringkv status --json --admin 127.0.0.1:7201 2>/dev/null
}

# One line per node POD lists: NAME STATE PEER GENERATION DATA_ID LINK KEYS,
# LINK "linked" when POD's own link to it is connected (its own row too).
view() {
    local json
    json=$(status_json "$1") || return 1
    python3 -c '
import json, sys
status = json.loads(sys.argv[1])
for n in status["nodes"]:
    link = "linked" if n.get("protocol") is not None else "unlinked"
    print(n["name"], n["state"], n["peer"], n["generation"], n.get("data_id"), link, n["keys"])
' "$json"
}

# The row POD's view has for NODE, or nothing.
row() {
    view "$1" 2>/dev/null | awk -v n="$2" '$1 == n' || true
}

# Whether every VIEWER sees every TARGET in STATE (comma lists); with
# "linked" as a fourth argument, also with the viewer's link connected.
all_see() {
    local viewers=$1 targets=$2 state=$3 linked=${4:-} v t r rows
    for v in ${viewers//,/ }; do
        rows=$(view "$v" 2>/dev/null) || return 1
        for t in ${targets//,/ }; do
            r=$(awk -v n="$t" '$1 == n' <<<"$rows")
            [[ -n $r ]] || return 1
            [[ $(awk '{print $2}' <<<"$r") == "$state" ]] || return 1
            if [[ -n $linked && $v != "$t" ]]; then
                [[ $(awk '{print $6}' <<<"$r") == linked ]] || return 1
            fi
        done
    done
}

# Polls a command until it succeeds or WAIT_S pass; prints the milliseconds.
wait_for() {
    local t0
    t0=$(now_ms)
    until "$@"; do
        (($(now_ms) - t0 < WAIT_S * 1000)) || return 1
        sleep 0.1
    done
    echo $(($(now_ms) - t0))
}

show_views() {
    local pod
    for pod in "$@"; do
        echo "--- routing table of $pod (name state peer generation data_id link keys)" >&2
        view "$pod" 2>/dev/null | sed 's/^/    /' >&2 || echo "    (no answer)" >&2
    done
}

# The live keys NODE reports for itself.
own_keys() {
    row "$1" "$1" | awk '{print $7}'
}

holds() {
    [[ $(own_keys "$1") == "$2" ]]
}

container_ip() {
    docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"
}

running() {
    [[ $(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null) == true ]]
}

stopped() {
    ! running "$1"
}

# Entries POD has sent to other nodes since it started: by hand-off
# (ring changes, writes handed back, leave streams) and by anti-entropy.
# Its /metrics is read on its published admin port.
entries_sent() {
    python3 - "$(docker port "$1" 7201/tcp | head -1)" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode()
names = ("ringkv_handoff_sent_total", "ringkv_anti_entropy_keys_sent_total")
print(sum(int(float(l.split()[-1])) for l in text.splitlines() if l.startswith(names)))
PY
}

# "NODE COUNT" lines: how many of the expected keys each node up in
# ringkv-0's view should hold, from every node's tokens as /status lists
# them (owner: the first token >= SHA-1(key), then the next distinct nodes).
shares() {
    status_json ringkv-0 | python3 -c '
import bisect, hashlib, json, sys
nodes = [n for n in json.load(sys.stdin)["nodes"] if n["state"] == "up"]
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
for n in sorted(count):
    print(n, count[n])
' "$WORK/expected"
}

# --- clients ---------------------------------------------------------------

client_port() {
    docker port "$1" 7001/tcp | head -1 | sed 's/.*://'
}

# Sends the commands of FILE to POD's client port; the replies, one a line.
rcli() {
    redis-cli -h 127.0.0.1 -p "$(client_port "$1")" <"$2" 2>&1 || true
}

# SETs the "KEY VALUE" lines of FILE through POD; fails unless all are OK.
write_pairs() {
    local ok n
    n=$(wc -l <"$2")
    ok=$(rcli "$1" <(sed 's/^/SET /' "$2") | grep -cx OK || true)
    [[ $ok -eq $n ]] || fail "only $ok of $n writes through $1 were acknowledged"
    cat "$2" >>"$WORK/expected"
}

# Fails unless every expected key reads back right through each POD.
assert_reads() {
    local pod
    for pod in "$@"; do
        cut -d' ' -f1 "$WORK/expected" | sed 's/^/GET /' >"$WORK/gets"
        paste -d' ' <(cut -d' ' -f1 "$WORK/expected") <(rcli "$pod" "$WORK/gets") >"$WORK/got"
        if ! diff -q "$WORK/expected" "$WORK/got" >/dev/null; then
            diff "$WORK/expected" "$WORK/got" | head -6 >&2
            fail "$(diff "$WORK/expected" "$WORK/got" | grep -c '^>') of $(wc -l <"$WORK/expected") keys read wrong through $pod"
        fi
    done
}

# --- the steps -------------------------------------------------------------

trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    fail "the Docker engine does not answer"
fi
[[ ${#COMPOSE[@]} -gt 0 ]] || fail "neither 'docker compose' nor 'docker-compose' is installed"
command -v python3 >/dev/null 2>&1 || fail "python3 is missing"
if ! command -v redis-cli >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || fail "redis-cli is missing; install redis-tools"
    note "installing redis-tools (redis-cli) with apt-get"
    apt-get install -y -qq redis-tools >/dev/null || fail "could not install redis-tools"
fi
: >"$WORK/expected"

step "validate the manifests"
"$HERE/validate.sh" || fail "validate.sh failed"
pass "the manifests are valid (validate.sh)"

step "image"
if [[ ${K8S_TEST_SKIP_BUILD:-0} == 1 ]]; then
    docker image inspect "$IMAGE" >/dev/null 2>&1 || fail "K8S_TEST_SKIP_BUILD=1, but there is no image $IMAGE"
    pass "using the image $IMAGE as it is (K8S_TEST_SKIP_BUILD=1)"
else
    t0=$(now_ms)
    "$ROOT/docker/cluster.sh" image || fail "docker/cluster.sh image failed"
    pass "image $IMAGE built in $(secs $(($(now_ms) - t0)))"
fi
T_BOOTED=$(now_ms)

# The ConfigMap, as the volume Kubernetes would mount (readable by the
# node's user), and the Secret's value.
mkdir -p "$WORK/config"
"$VENV/bin/python" "$HERE/k8s.py" toml >"$WORK/config/ringkv.toml"
chmod 755 "$WORK" "$WORK/config"
chmod 644 "$WORK/config/ringkv.toml"
K8S_CLUSTER_SECRET=$("$VENV/bin/python" "$HERE/k8s.py" secret)
if docker ps -aq --filter "name=^ringkv-[0-3]\$" | grep -q . || docker inspect "$SQUATTER" >/dev/null 2>&1; then
    note "containers of an earlier run exist; removing them first"
    teardown || fail "could not remove the earlier run's containers"
fi

step "boot ringkv-0..2 as the StatefulSet gives them"
t0=$(now_ms)
kcompose up -d ringkv-0 ringkv-1 ringkv-2 >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "compose up failed"; }
"$VENV/bin/python" "$HERE/k8s.py" check-pods "$NAMESPACE" ringkv-0 ringkv-1 ringkv-2 ||
    fail "the containers differ from the StatefulSet's pods"
pass "ringkv-0..2 have the StatefulSet's environment, arguments, mounts, user and DNS names"
if ! ms=$(wait_for all_see ringkv-0,ringkv-1,ringkv-2 ringkv-0,ringkv-1,ringkv-2 up); then
    show_views ringkv-0 ringkv-1 ringkv-2
    fail "not every pod sees all three up within ${WAIT_S}s"
fi
pass "every pod sees all three up, $(secs $(($(now_ms) - t0))) after compose up"
PEER1=$(row ringkv-0 ringkv-1 | awk '{print $3}')
[[ $PEER1 == ringkv-1.ringkv-peers.$NAMESPACE.svc.cluster.local:7101 ]] ||
    fail "ringkv-0 lists ringkv-1 at '$PEER1', not at its DNS name"
pass "ringkv-0 lists ringkv-1 at its DNS name, $PEER1"

step "write $KEYS keys through ringkv-0"
seq -f 'key%04g' 1 "$KEYS" | awk '{ print $1, "v1-" $1 }' >"$WORK/batch1"
write_pairs ringkv-0 "$WORK/batch1"
assert_reads ringkv-2
# N = 3 on three pods: every pod holds every key.
wait_for holds ringkv-1 "$KEYS" >/dev/null || { show_views ringkv-1; fail "ringkv-1 does not hold all $KEYS keys"; }
pass "$KEYS writes acknowledged, read back through ringkv-2; ringkv-1 holds all $KEYS"

step "reschedule ringkv-1: kill it, remove it, start it again with a new IP"
OLD_IP=$(container_ip ringkv-1)
read -r _ _ _ OLD_GEN OLD_DATA_ID _ _ <<<"$(row ringkv-0 ringkv-1)"
NETWORK=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' ringkv-1)
docker kill ringkv-1 >/dev/null
t0=$(now_ms)
if ! ms=$(wait_for all_see ringkv-0,ringkv-2 ringkv-1 down); then
    show_views ringkv-0 ringkv-2
    fail "ringkv-1 not marked down by ringkv-0 and ringkv-2"
fi
pass "ringkv-1 killed (it had $OLD_IP); marked down by the others in $(secs "$ms")"
docker rm ringkv-1 >/dev/null
# Another container takes an address on the network first: Docker may
# hand a freed address straight back, Kubernetes makes no promise either.
docker run -d --name "$SQUATTER" --network "$NETWORK" "$IMAGE" node --name squatter \
    --client 127.0.0.1:7001 --peer 127.0.0.1:7101 --admin 127.0.0.1:7201 >/dev/null ||
    fail "could not start the container that holds an address"
t0=$(now_ms)
kcompose up -d --no-deps ringkv-1 >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "compose up ringkv-1 failed"; }
NEW_IP=$(container_ip ringkv-1)
[[ -n $NEW_IP && $NEW_IP != "$OLD_IP" ]] || fail "ringkv-1 came back with the address $NEW_IP, not a new one (old: $OLD_IP)"
"$VENV/bin/python" "$HERE/k8s.py" check-pods "$NAMESPACE" ringkv-1 || fail "the new ringkv-1 differs from the StatefulSet's pod"
pass "ringkv-1 started again on its volume with a new IP: $OLD_IP -> $NEW_IP (the squatter has $(container_ip "$SQUATTER"))"

step "rejoin: ringkv-1 up again under its name, reached at its new IP"
if ! ms=$(wait_for all_see ringkv-0,ringkv-1,ringkv-2 ringkv-0,ringkv-1,ringkv-2 up linked); then
    show_views ringkv-0 ringkv-1 ringkv-2
    fail "ringkv-1 not up, with every link to it connected, within ${WAIT_S}s"
fi
pass "all three see all three up, every link connected (so to $NEW_IP), $(secs $(($(now_ms) - t0))) after the start"
for pod in ringkv-0 ringkv-2; do
    rows=$(view "$pod" | awk '$1 == "ringkv-1"' | wc -l)
    [[ $rows -eq 1 ]] || fail "$pod lists ringkv-1 $rows times"
    read -r _ _ peer gen data_id _ _ <<<"$(row "$pod" ringkv-1)"
    [[ $peer == "$PEER1" ]] || fail "$pod lists ringkv-1 at $peer, not $PEER1"
    [[ $data_id == "$OLD_DATA_ID" ]] ||
        fail "$pod sees ringkv-1 with data directory $data_id, not its own $OLD_DATA_ID (a replacement, not the pod back)"
    ((gen > OLD_GEN)) || fail "$pod sees ringkv-1 at generation $gen, not past $OLD_GEN"
done
pass "ringkv-0 and ringkv-2 list ringkv-1 once, at $PEER1, data directory $OLD_DATA_ID, generation $OLD_GEN -> $gen"
holds ringkv-1 "$KEYS" || fail "ringkv-1 holds $(own_keys ringkv-1) keys after its restart, not its $KEYS"
assert_reads ringkv-1
pass "ringkv-1 holds its $KEYS keys from its volume and serves all of them"
seq -f 'key%04g' $((KEYS + 1)) $((KEYS + 100)) | awk '{ print $1, "v1-" $1 }' >"$WORK/batch2"
write_pairs ringkv-0 "$WORK/batch2"
if ! ms=$(wait_for holds ringkv-1 $((KEYS + 100))); then
    show_views ringkv-1
    fail "100 new keys written through ringkv-0 did not reach ringkv-1"
fi
KEYS=$((KEYS + 100))
pass "100 keys written through ringkv-0 reached ringkv-1 at its new address ($(secs "$ms"))"

step "scale to four: ringkv-3 joins through the seeds"
t0=$(now_ms)
kcompose --profile scale up -d --no-deps ringkv-3 >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "compose up ringkv-3 failed"; }
"$VENV/bin/python" "$HERE/k8s.py" check-pods "$NAMESPACE" ringkv-3 || fail "ringkv-3 differs from the StatefulSet's pod"
ALL4=ringkv-0,ringkv-1,ringkv-2,ringkv-3
if ! ms=$(wait_for all_see "$ALL4" "$ALL4" up linked); then
    show_views ringkv-0 ringkv-3
    fail "ringkv-3 not up everywhere within ${WAIT_S}s"
fi
pass "ringkv-3, seeded with ringkv-0..2 only, is up on all four $(secs "$ms") after its start"
SHARE3=$(shares | awk '$1 == "ringkv-3" {print $2}')
[[ -n $SHARE3 && $SHARE3 -gt 0 ]] || fail "ringkv-3 has no share of the ring in ringkv-0's view"
if ! ms=$(wait_for holds ringkv-3 "$SHARE3"); then
    show_views ringkv-3
    fail "ringkv-3 does not hold its share, $SHARE3 of the $KEYS keys"
fi
pass "ringkv-3 holds its share, $SHARE3 of the $KEYS keys, $(secs $(($(now_ms) - t0))) after its start"

step "rolling restart, ringkv-3 down to ringkv-0: no data moves"
# Every counter of entries sent, at the start and just before each pod
# stops (a restarted pod counts from 0 again): what was sent meanwhile.
declare -A SENT_AT
for pod in ${ALL4//,/ }; do
    SENT_AT[$pod]=$(entries_sent "$pod") || fail "no /metrics from $pod"
done
# The same counters saw ringkv-3 being filled when it joined: they do
# count moved data.
joined=0
for pod in ${ALL4//,/ }; do
    joined=$((joined + SENT_AT[$pod]))
done
((joined >= SHARE3)) || fail "the counters saw $joined entries sent when ringkv-3 joined, under its share $SHARE3"
echo "(when ringkv-3 joined, the same counters saw $joined entries sent)"
moved=0
t_roll=$(now_ms)
for pod in ringkv-3 ringkv-2 ringkv-1 ringkv-0; do
    held=$(own_keys "$pod")
    moved=$((moved + $(entries_sent "$pod") - SENT_AT[$pod]))
    t0=$(now_ms)
    # What the kubelet does once preStop has passed: SIGTERM, and SIGKILL
    # only after the grace period (terminationGracePeriodSeconds).
    docker stop -t 30 "$pod" >/dev/null
    t_stop=$(($(now_ms) - t0))
    [[ $(docker inspect -f '{{.State.ExitCode}}' "$pod") == 0 ]] ||
        fail "$pod exited with status $(docker inspect -f '{{.State.ExitCode}}' "$pod") on SIGTERM"
    docker rm "$pod" >/dev/null
    kcompose --profile scale up -d --no-deps "$pod" >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "compose up $pod failed"; }
    SENT_AT[$pod]=0
    if ! ms=$(wait_for all_see "$ALL4" "$ALL4" up linked); then
        show_views ringkv-0 ringkv-3
        fail "$pod not up everywhere within ${WAIT_S}s of its restart"
    fi
    holds "$pod" "$held" || fail "$pod holds $(own_keys "$pod") keys after its restart, not its $held"
    echo "$pod: stopped by SIGTERM in $(secs "$t_stop") (exit 0), up everywhere $(secs $(($(now_ms) - t0))) after, holding its $held keys"
done
for pod in ${ALL4//,/ }; do
    moved=$((moved + $(entries_sent "$pod") - SENT_AT[$pod]))
done
[[ $moved -eq 0 ]] || fail "$moved entries were sent by hand-off or anti-entropy during the rolling restart"
pass "all four restarted one at a time in $(secs $(($(now_ms) - t_roll))); each came back with its keys, and 0 entries moved"
assert_reads ringkv-0

step "scale down to three: ringkv leave in ringkv-3, then remove it and its volume"
t0=$(now_ms)
# Run from ringkv-0, not inside ringkv-3: the node stops right after it
# answers, its container with it, and a client exec'd in that container is
# killed with it before it can print the report and exit 0 (seen in CI).
docker exec ringkv-0 /ringkv leave --admin "ringkv-3.ringkv-peers.$NAMESPACE.svc.cluster.local:7201" \
    >"$WORK/leave.log" 2>&1 ||
    { cat "$WORK/leave.log" >&2; fail "ringkv leave failed"; }
sed 's/^/    /' "$WORK/leave.log"
wait_for stopped ringkv-3 >/dev/null || fail "ringkv-3 still runs after it left"
for pod in ringkv-0 ringkv-1 ringkv-2; do
    state=$(row "$pod" ringkv-3 | awk '{print $2}')
    [[ $state == left ]] || fail "$pod shows ringkv-3 as '${state:-absent}', not left"
done
pass "ringkv-3 left and stopped in $(secs $(($(now_ms) - t0))); the others show it left"
# The kubelet starts a container that exited again, until the StatefulSet
# is scaled down. The node that left must not come back: started on the
# data directory that left, it refuses to start (exit status 2, saying
# why), so it never serves clients alone, and no other pod lists it up.
docker start ringkv-3 >/dev/null
wait_for stopped ringkv-3 >/dev/null || fail "ringkv-3, started again after leaving, keeps running"
code=$(docker inspect -f '{{.State.ExitCode}}' ringkv-3)
[[ $code == 2 ]] || fail "ringkv-3, started again after leaving, exited with $code, not 2"
docker logs ringkv-3 2>&1 | grep -q "this data directory left the cluster" ||
    fail "ringkv-3 did not say why it refused to start"
for pod in ringkv-0 ringkv-1 ringkv-2; do
    state=$(row "$pod" ringkv-3 | awk '{print $2}')
    [[ $state != up ]] || fail "$pod lists ringkv-3 up again after it left and was restarted"
done
pass "ringkv-3 started again on its old volume (as the kubelet would) refuses to start (exit 2), and no pod lists it up"
kcompose --profile scale rm -f -v ringkv-3 >/dev/null 2>&1 || fail "could not remove ringkv-3"
docker volume rm "$(docker volume ls -q --filter "name=${PROJECT}_data-ringkv-3" | head -1)" >/dev/null ||
    fail "could not remove ringkv-3's volume (its claim)"
for pod in ringkv-0 ringkv-1 ringkv-2; do
    if ! wait_for holds "$pod" "$KEYS" >/dev/null; then
        show_views "$pod"
        fail "$pod does not hold all $KEYS keys again after ringkv-3 left"
    fi
done
assert_reads ringkv-0 ringkv-1 ringkv-2
pass "each of ringkv-0..2 holds all $KEYS keys again, and all read back through each"

CURRENT_STEP="done"
pass "the cluster part took $(secs $(($(now_ms) - T_BOOTED))) (after the image)"
