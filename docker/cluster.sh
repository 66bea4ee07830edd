#!/usr/bin/env bash
# Drive the five-node ringkv cluster of docker/compose.yml.
#
#   cluster.sh up [--tls]          build the static binary and image, start n1..n5,
#                                  wait until every node sees five up; --tls (or
#                                  CLUSTER_TLS=1): TLS on every port, certificates made here
#   cluster.sh down                remove containers, network, volumes, partition rules
#   cluster.sh kill NODE           docker kill (SIGKILL) one node
#   cluster.sh stop NODE           docker stop (SIGTERM, clean shutdown)
#   cluster.sh start NODE          start a killed or stopped node again, on its volume
#   cluster.sh partition G G...    cut the network between groups, e.g. n1,n2 n3,n4,n5; a node in
#                                  no group keeps its links to all (n1,n2 n4,n5: n3 is a bridge)
#   cluster.sh pause NODE          docker pause (SIGSTOP-like freeze); unpause NODE resumes it
#   cluster.sh heal                remove exactly the rules `partition` added
#   cluster.sh status              every node's routing table, side by side
#   cluster.sh logs NODE [ARGS]    docker logs of one node (ARGS e.g. -f, --tail 20)
#   cluster.sh wait [SECONDS]      wait until every running node sees every running node up
#   cluster.sh image               build the static binary and the image only
#   cluster.sh add n6              start the sixth node (compose profile "extra"); it joins
#   cluster.sh leave NODE          `ringkv leave` on NODE: it hands its data over and stops
#   cluster.sh forget NODE         `ringkv forget NODE` through a running node (NODE must be down)
#   cluster.sh cli NODE [ARGS]     redis-cli to NODE's client port (with the TLS flags under TLS)
#   cluster.sh certs               make the TLS certificates only (`up --tls` makes them)
#
# TLS (docs/docker.md, "TLS"): `up --tls` makes a CA, a certificate for each
# of n1..n6 and one for the operator with the host's openssl (into
# target/docker/tls, or $CLUSTER_TLS_DIR), and adds docker/compose.tls.yml:
# TLS on client ports, mutual TLS between nodes, HTTPS on admin ports. The
# other commands see from the containers that the cluster runs TLS and speak
# it (CLUSTER_TLS=1 or 0 overrides that).
#
# Partitions are iptables DROP rules inside the containers' network
# namespaces, added from the host with nsenter, so the image needs no
# iptables; this needs root (or sudo) on the host. The rules added are
# remembered in a state file, so `heal` removes exactly those.
#
# This file can also be sourced (docker/e2e.sh does) to reuse its functions.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
PROJECT=ringkv
NODES=(n1 n2 n3 n4 n5)
# The sixth node counts once its container exists (`add n6`).
if command -v docker >/dev/null 2>&1 &&
    docker inspect ringkv-n6 >/dev/null 2>&1; then
    NODES+=(n6)
fi
IMAGE=${RINGKV_IMAGE:-ringkv:local}
export RINGKV_IMAGE=$IMAGE
TARGET=x86_64-unknown-linux-gnu
STATIC_TARGET_DIR=${RINGKV_STATIC_TARGET_DIR:-$ROOT/target/static}
STATIC_BIN=$STATIC_TARGET_DIR/$TARGET/release/ringkv
STATE_DIR=${RINGKV_DOCKER_STATE:-$ROOT/target/docker}
RULES_FILE=$STATE_DIR/partition.rules
UP_TIMEOUT=${RINGKV_UP_TIMEOUT:-90}
TLS_DIR=${CLUSTER_TLS_DIR:-$STATE_DIR/tls}
[[ $TLS_DIR == /* ]] || TLS_DIR=$PWD/$TLS_DIR

die() {
    echo "cluster.sh: $*" >&2
    exit 1
}

note() {
    echo "cluster.sh: $*" >&2
}

# Milliseconds since the epoch.
now_ms() {
    date +%s%3N
}

# --- preconditions ---------------------------------------------------------

need_docker() {
    command -v docker >/dev/null 2>&1 ||
        die "docker is not installed (https://docs.docker.com/engine/install/)"
    docker info >/dev/null 2>&1 ||
        die "the Docker engine does not answer (is dockerd running, and may $(id -un) use it?)"
}

COMPOSE=()
need_compose() {
    need_docker
    if [[ ${#COMPOSE[@]} -gt 0 ]]; then
        return
    fi
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    else
        die "neither 'docker compose' nor 'docker-compose' is installed"
    fi
}

compose() {
    need_compose
    if tls_on; then
        CLUSTER_TLS_DIR=$TLS_DIR "${COMPOSE[@]}" -p "$PROJECT" -f "$HERE/compose.yml" \
            -f "$HERE/compose.tls.yml" "$@"
    else
        "${COMPOSE[@]}" -p "$PROJECT" -f "$HERE/compose.yml" "$@"
    fi
}

# Root for nsenter and iptables: ourselves, or sudo.
SUDO=()
need_root() {
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 ||
            die "partitions need root (nsenter into the containers' network namespaces); run as root or install sudo"
        SUDO=(sudo)
    fi
    command -v nsenter >/dev/null 2>&1 || die "nsenter is missing (package util-linux)"
    if ! command -v iptables >/dev/null 2>&1; then
        command -v apt-get >/dev/null 2>&1 || die "iptables is missing on the host; install it"
        note "installing iptables on the host (apt-get)"
        "${SUDO[@]}" apt-get install -y -qq iptables >/dev/null ||
            die "could not install iptables; install it by hand"
    fi
}

check_node() {
    local n
    for n in "${NODES[@]}"; do
        [[ $1 == "$n" ]] && return 0
    done
    die "unknown node '$1': the nodes are ${NODES[*]}"
}

container() {
    echo "$PROJECT-$1"
}

node_index() {
    echo "${1#n}"
}

admin_addr() {
    echo "127.0.0.1:$((7200 + $(node_index "$1")))"
}

client_port() {
    echo "$((7000 + $(node_index "$1")))"
}

# "running", "exited", ... or "absent".
container_state() {
    local s
    s=$(docker inspect -f '{{.State.Status}}' "$(container "$1")" 2>/dev/null) || s=absent
    echo "${s:-absent}"
}

container_pid() {
    docker inspect -f '{{.State.Pid}}' "$(container "$1")"
}

container_ip() {
    docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(container "$1")"
}

running_nodes() {
    local n
    for n in "${NODES[@]}"; do
        [[ $(container_state "$n") == running ]] && echo "$n"
    done
    return 0
}

# --- TLS -------------------------------------------------------------------

# TLS_MODE is 1 when the cluster speaks TLS: as CLUSTER_TLS says (or `up
# --tls`), else as its containers were started (their RINGKV_TLS_ADMIN).
# Decided once, when this file is read, not in the subshells that poll.
tls_detect() {
    local n env
    case ${CLUSTER_TLS:-} in
    1 | true | yes) tls_mode 1 ;;
    0 | false | no) tls_mode 0 ;;
    '')
        tls_mode 0
        command -v docker >/dev/null 2>&1 || return 0
        for n in n1 n2 n3 n4 n5 n6; do
            env=$(docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' \
                "$(container "$n")" 2>/dev/null) || continue
            if grep -qx 'RINGKV_TLS_ADMIN=true' <<<"$env"; then
                tls_mode 1
            fi
            return 0
        done
        ;;
    *) die "CLUSTER_TLS is '$CLUSTER_TLS': set it to 1 (TLS) or 0 (plaintext)" ;;
    esac
}

# tls_mode 0|1 sets TLS_MODE and the flags that go with it: ringkv
# status's (TLS_STATUS_FLAGS: the cluster's CA) and redis-cli's and the
# acting admin commands' (TLS_CLIENT_FLAGS: the operator's certificate too,
# as the nodes run with tls_auth_clients = yes).
TLS_STATUS_FLAGS=()
TLS_CLIENT_FLAGS=()
tls_mode() {
    TLS_MODE=$1
    TLS_STATUS_FLAGS=()
    TLS_CLIENT_FLAGS=()
    if tls_on; then
        TLS_STATUS_FLAGS=(--tls --cacert "$TLS_DIR/ca.crt")
        TLS_CLIENT_FLAGS=(--tls --cacert "$TLS_DIR/ca.crt"
            --cert "$TLS_DIR/client.crt" --key "$TLS_DIR/client.key")
    fi
}

tls_on() {
    [[ $TLS_MODE == 1 ]]
}

tls_detect

# True when every certificate is there, signed by the CA there, and good
# for at least another day.
certs_fresh() {
    local f
    for f in ca client n1/tls n2/tls n3/tls n4/tls n5/tls n6/tls; do
        [[ -s $TLS_DIR/$f.crt && -s $TLS_DIR/$f.key ]] || return 1
        openssl x509 -checkend 86400 -noout -in "$TLS_DIR/$f.crt" >/dev/null 2>&1 || return 1
        openssl verify -CAfile "$TLS_DIR/ca.crt" "$TLS_DIR/$f.crt" >/dev/null 2>&1 || return 1
    done
}

# leaf_cert NAME CN USAGES [SANS]: a P-256 key and a certificate the CA
# signs, as NAME.key and NAME.crt under $TLS_DIR.
leaf_cert() {
    local name=$1 cn=$2 usages=$3 sans=${4:-} d=$TLS_DIR
    {
        echo "basicConstraints = critical, CA:FALSE"
        echo "keyUsage = critical, digitalSignature"
        echo "authorityKeyIdentifier = keyid"
        echo "extendedKeyUsage = $usages"
        [[ -z $sans ]] || echo "subjectAltName = $sans"
    } >"$d/$name.ext"
    if ! {
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$name.key" 2>/dev/null &&
            openssl req -new -key "$d/$name.key" -subj "/CN=$cn" -out "$d/$name.csr" &&
            openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
                -set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 \
                -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
    }; then
        die "openssl could not make the certificate of $cn"
    fi
    rm -f "$d/$name.csr" "$d/$name.ext"
}

# The cluster's own CA, a certificate for each node (n1..n6: its service
# and container names, localhost and 127.0.0.1; server and client use, for
# the ports it serves and the peers it dials) and one for the operator
# (client use), unless the ones in $TLS_DIR will still do. Made on the host:
# the image has nothing but ringkv.
make_certs() {
    command -v openssl >/dev/null 2>&1 ||
        die "openssl is missing (package openssl): the TLS certificates are made on the host"
    if certs_fresh; then
        return 0
    fi
    note "making a CA and certificates for n1..n6 and the operator in $TLS_DIR"
    mkdir -p "$TLS_DIR"
    # Only the operator reaches the keys on the host. Each node's directory
    # is bind-mounted alone, so the node (uid 10001) reads its files
    # without passing through this one.
    chmod 700 "$TLS_DIR"
    local d=$TLS_DIR n
    printf '%s\n' '[req]' 'distinguished_name = dn' 'x509_extensions = ca' '[dn]' '[ca]' \
        'basicConstraints = critical, CA:TRUE' 'keyUsage = critical, keyCertSign, cRLSign' \
        'subjectKeyIdentifier = hash' >"$d/ca.cnf"
    if ! {
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" 2>/dev/null &&
            openssl req -x509 -new -key "$d/ca.key" -config "$d/ca.cnf" -subj "/CN=ringkv docker CA" \
                -days 3650 -sha256 -out "$d/ca.crt"
    }; then
        die "openssl could not make the CA"
    fi
    rm -f "$d/ca.cnf"
    for n in n1 n2 n3 n4 n5 n6; do
        mkdir -p "$d/$n"
        leaf_cert "$n/tls" "$n" serverAuth,clientAuth \
            "DNS:$n,DNS:$PROJECT-$n,DNS:localhost,IP:127.0.0.1"
        cp "$d/ca.crt" "$d/$n/ca.crt"
        chmod 755 "$d/$n"
        chmod 644 "$d/$n/tls.crt" "$d/$n/tls.key" "$d/$n/ca.crt"
    done
    leaf_cert client operator clientAuth
    chmod 600 "$d/ca.key" "$d/client.key"
    chmod 644 "$d/ca.crt" "$d/client.crt"
}

# How to reach a TLS cluster from the host, printed after `up`.
tls_hints() {
    local d=$TLS_DIR
    note "TLS on every port; the CA and the operator's certificate are in $d"
    note "  redis-cli --tls --cacert $d/ca.crt --cert $d/client.crt --key $d/client.key -p 7001"
    note "  ringkv status --admin 127.0.0.1:7201 --tls --cacert $d/ca.crt"
    note "  $HERE/cluster.sh cli n1 [ARGS]   (redis-cli with those flags)"
}

# --- building --------------------------------------------------------------

build_binary() {
    command -v cargo >/dev/null 2>&1 || die "cargo is missing: the image wraps a binary built on this host"
    note "building the static binary ($STATIC_BIN)"
    (cd "$ROOT" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$STATIC_TARGET_DIR" \
        cargo build --release --quiet --target "$TARGET") || die "cargo build failed"
}

build_image() {
    need_docker
    build_binary
    local ctx=$STATE_DIR/context
    rm -rf "$ctx"
    mkdir -p "$ctx/data"
    # The release profile keeps debug info (for backtraces on the host);
    # the image does without it.
    if command -v strip >/dev/null 2>&1; then
        strip -o "$ctx/ringkv" "$STATIC_BIN"
    else
        cp "$STATIC_BIN" "$ctx/ringkv"
    fi
    note "building image $IMAGE"
    # The legacy builder needs nothing beyond the engine; the context holds
    # only the binary and an empty data directory.
    # Its deprecation notice is kept out of sight unless the build fails.
    if ! DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" -f "$HERE/Dockerfile" "$ctx" \
        >"$STATE_DIR/build.log" 2>&1; then
        cat "$STATE_DIR/build.log" >&2
        die "docker build failed"
    fi
    note "image $IMAGE: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.1f MB", $1/1e6}')"
}

# --- status ----------------------------------------------------------------

# The raw /status JSON of one node, or nothing (and status 1) if it does not answer.
status_json() {
    local addr
    addr=$(admin_addr "$1")
    if command -v curl >/dev/null 2>&1; then
        if tls_on; then
            curl -fsS --max-time 2 --cacert "$TLS_DIR/ca.crt" "https://$addr/status" 2>/dev/null
        else
            curl -fsS --max-time 2 "http://$addr/status" 2>/dev/null
        fi
    elif [[ -x $STATIC_BIN ]]; then
        "$STATIC_BIN" status --json --admin "$addr" "${TLS_STATUS_FLAGS[@]}" 2>/dev/null
    else
        die "need curl, or the binary at $STATIC_BIN, to read /status"
    fi
}

# "NAME STATE" lines (state up/down) of the routing table of one node. Parsed
# without jq: every node object of /status holds a name, then a state.
node_view() {
    local json
    json=$(status_json "$1") || return 1
    tr '{' '\n' <<<"$json" | grep '"state"' |
        sed -E 's/.*"name":"([^"]*)".*"state":"([a-z]+)".*/\1 \2/'
}

# The live key count a node reports for itself.
node_keys() {
    local json
    json=$(status_json "$1") || return 1
    # sed reads all its input: with `head`, tr could die of SIGPIPE on a
    # long document, and the pipeline fail.
    tr '{' '\n' <<<"$json" | sed -nE '2s/.*"keys":([0-9]+).*/\1/p'
}

# True when VIEWER sees TARGET in STATE (up or down).
sees() {
    local view
    view=$(node_view "$1") || return 1
    grep -qx "$2 $3" <<<"$view"
}

# True when every node of the list VIEWERS sees every node of TARGETS in STATE.
all_see() {
    local viewers=$1 targets=$2 state=$3 v t view
    for v in ${viewers//,/ }; do
        view=$(node_view "$v") || return 1
        for t in ${targets//,/ }; do
            [[ $v == "$t" ]] && continue
            grep -qx "$t $state" <<<"$view" || return 1
        done
    done
}

# Polls `all_see` until it holds or SECONDS pass; prints the milliseconds it took.
wait_all_see() {
    local viewers=$1 targets=$2 state=$3 timeout=$4 t0
    t0=$(now_ms)
    while ! all_see "$viewers" "$targets" "$state"; do
        if (($(now_ms) - t0 > timeout * 1000)); then
            return 1
        fi
        sleep 0.1
    done
    echo $(($(now_ms) - t0))
}

wait_up() {
    local timeout=${1:-$UP_TIMEOUT} running ms
    running=$(running_nodes | paste -sd, -)
    [[ -n $running ]] || die "no node is running"
    if ! ms=$(wait_all_see "$running" "$running" up "$timeout"); then
        cmd_status >&2 || true
        die "after ${timeout}s not every running node ($running) sees the others up"
    fi
    note "every running node ($running) sees the others up (${ms} ms)"
}

cmd_status() {
    need_docker
    status_table | sed 's/[[:space:]]*$//'
}

status_table() {
    local v t views=() keys=() line
    [[ -n $(docker ps -aq --filter "name=^$PROJECT-n[1-6]\$") ]] ||
        die "no cluster: no container $PROJECT-n1..n5 exists (start one with '$0 up')"
    echo "routing tables: one column per node asked, one row per node it lists"
    printf '%-10s' "asked ->"
    for v in "${NODES[@]}"; do printf '%-9s' "$v"; done
    printf '\n'
    for v in "${NODES[@]}"; do
        views+=("$(node_view "$v" 2>/dev/null || echo '?')")
        keys+=("$(node_keys "$v" 2>/dev/null || echo -)")
    done
    for t in "${NODES[@]}"; do
        printf '%-10s' "$t"
        for i in "${!NODES[@]}"; do
            line=$(grep "^$t " <<<"${views[$i]}" | awk '{print toupper($2)}' || true)
            if [[ ${views[$i]} == '?' ]]; then
                line='-'
            fi
            printf '%-9s' "${line:-unknown}"
        done
        printf '\n'
    done
    printf '%-10s' "keys"
    for i in "${!NODES[@]}"; do printf '%-9s' "${keys[$i]}"; done
    printf '\n%-10s' "container"
    for v in "${NODES[@]}"; do printf '%-9s' "$(container_state "$v")"; done
    printf '\n'
    if [[ -s $RULES_FILE ]]; then
        echo "partitioned: $(head -1 "$RULES_FILE" | sed 's/^# groups: //') ($(grep -vc '^#' "$RULES_FILE") rules; 'heal' removes them)"
    fi
}

# --- faults ----------------------------------------------------------------

cmd_partition() {
    [[ $# -ge 2 ]] || die "partition needs at least two groups, e.g. 'partition n1,n2 n3,n4,n5'"
    need_docker
    need_root
    [[ ! -s $RULES_FILE ]] || die "a partition is already in place; 'heal' first"
    local -A group_of=()
    local g n i=0
    for g in "$@"; do
        i=$((i + 1))
        for n in ${g//,/ }; do
            check_node "$n"
            [[ -z ${group_of[$n]:-} ]] || die "node $n is named in two groups"
            [[ $(container_state "$n") == running ]] || die "node $n is not running"
            group_of[$n]=$i
        done
    done
    local -A ip=() pid=()
    for n in "${!group_of[@]}"; do
        ip[$n]=$(container_ip "$n")
        pid[$n]=$(container_pid "$n")
    done
    mkdir -p "$STATE_DIR"
    echo "# groups: $*" >"$RULES_FILE"
    local a b
    for a in "${!group_of[@]}"; do
        for b in "${!group_of[@]}"; do
            [[ ${group_of[$a]} == "${group_of[$b]}" ]] && continue
            # Both directions, inside a's namespace: nothing from b comes in,
            # nothing to b goes out. b's namespace gets the mirror image.
            add_rule "$a" "${pid[$a]}" INPUT -s "${ip[$b]}" -j DROP
            add_rule "$a" "${pid[$a]}" OUTPUT -d "${ip[$b]}" -j DROP
        done
    done
    note "partitioned $* ($(grep -vc '^#' "$RULES_FILE") DROP rules)"
}

add_rule() {
    local node=$1 pid=$2
    shift 2
    "${SUDO[@]}" nsenter -t "$pid" -n iptables -I "$@" ||
        die "iptables failed in $node's network namespace"
    echo "$node $pid $*" >>"$RULES_FILE"
}

cmd_heal() {
    if [[ ! -s $RULES_FILE ]]; then
        note "no partition to heal"
        return 0
    fi
    need_docker
    need_root
    local node pid rule removed=0 gone=0
    while read -r node pid rule; do
        [[ $node == '#' ]] && continue
        # A restarted container has a new namespace; its old rules died with
        # the old one, and deleting by a stale pid could hit another process.
        if [[ $(container_state "$node") == running && $(container_pid "$node") == "$pid" ]]; then
            # shellcheck disable=SC2086
            "${SUDO[@]}" nsenter -t "$pid" -n iptables -D $rule ||
                note "could not remove '$rule' from $node (already gone?)"
            removed=$((removed + 1))
        else
            gone=$((gone + 1))
        fi
    done <"$RULES_FILE"
    rm -f "$RULES_FILE"
    if ((gone > 0)); then
        note "healed: removed $removed rules; $gone went away with restarted or stopped containers"
    else
        note "healed: removed $removed rules"
    fi
}

# docker_each VERB DONE NODE...: `docker VERB` on each node's container,
# noting "DONE NODE" (kill, stop, pause and unpause differ in nothing else).
docker_each() {
    local verb=$1 done=$2
    shift 2
    [[ $# -ge 1 ]] || die "$verb needs a node name (${NODES[*]})"
    need_docker
    local n
    for n in "$@"; do
        check_node "$n"
        docker "$verb" "$(container "$n")" >/dev/null || die "could not $verb $n"
        note "$done $n"
    done
}

cmd_kill() { docker_each kill killed "$@"; }
cmd_stop() { docker_each stop stopped "$@"; }
cmd_pause() { docker_each pause paused "$@"; }
cmd_unpause() { docker_each unpause unpaused "$@"; }

cmd_start() {
    [[ $# -ge 1 ]] || die "start needs a node name (${NODES[*]})"
    need_docker
    local n
    for n in "$@"; do
        check_node "$n"
        [[ $(container_state "$n") != absent ]] || die "node $n has no container; run 'up' first"
        docker start "$(container "$n")" >/dev/null || die "could not start $n"
        note "started $n"
    done
    if [[ -s $RULES_FILE ]]; then
        note "warning: a partition is in place, but a started container comes back without rules"
    fi
}

cmd_add() {
    [[ ${1:-} == n6 ]] || die "add takes n6, the compose file's sixth node"
    need_compose
    compose --profile extra up -d --no-build n6 || die "could not start n6"
    [[ " ${NODES[*]} " == *" n6 "* ]] || NODES+=(n6)
    note "started n6"
    wait_up "$UP_TIMEOUT"
}

# The ringkv binary on the host, for the admin commands.
host_ringkv() {
    [[ -x $STATIC_BIN ]] || build_binary
    "$STATIC_BIN" "$@"
}

cmd_leave() {
    [[ $# -eq 1 ]] || die "leave needs one node name (${NODES[*]})"
    check_node "$1"
    host_ringkv leave --admin "$(admin_addr "$1")" "${TLS_CLIENT_FLAGS[@]}"
}

cmd_forget() {
    [[ $# -eq 1 ]] || die "forget needs one node name (${NODES[*]})"
    check_node "$1"
    local via
    via=$(running_nodes | grep -vx "$1" | head -1)
    [[ -n $via ]] || die "no running node to ask"
    host_ringkv forget "$1" --admin "$(admin_addr "$via")" "${TLS_CLIENT_FLAGS[@]}"
}

# redis-cli to NODE's client port, with the TLS flags when the cluster runs TLS.
redis_cli() {
    local n=$1
    shift
    redis-cli -h 127.0.0.1 -p "$(client_port "$n")" "${TLS_CLIENT_FLAGS[@]}" "$@"
}

cmd_cli() {
    [[ $# -ge 1 ]] || die "cli needs a node name (${NODES[*]})"
    check_node "$1"
    command -v redis-cli >/dev/null 2>&1 || die "redis-cli is missing (package redis-tools)"
    redis_cli "$@"
}

cmd_logs() {
    [[ $# -ge 1 ]] || die "logs needs a node name (${NODES[*]})"
    need_docker
    check_node "$1"
    local n=$1
    shift
    docker logs "$@" "$(container "$n")"
}

# --- lifecycle -------------------------------------------------------------

# Fails clearly when a published port is taken by something other than us.
check_ports() {
    command -v ss >/dev/null 2>&1 || return 0
    [[ -z $(running_nodes) ]] || return 0
    local n port busy=()
    for n in "${NODES[@]}"; do
        for port in "$(client_port "$n")" "$((7200 + $(node_index "$n")))"; do
            if ss -Hltn "sport = :$port" | grep -q .; then
                busy+=("$port")
            fi
        done
    done
    [[ ${#busy[@]} -eq 0 ]] ||
        die "port(s) ${busy[*]} on this host are taken (a local 'ringkv up'?); the cluster publishes 127.0.0.1:7001-7005 and 7201-7205"
}

cmd_up() {
    case ${1:-} in
    --tls) tls_mode 1 ;;
    '') ;;
    *) die "up takes only --tls" ;;
    esac
    need_compose
    check_ports
    tls_on && make_certs
    build_image
    compose up -d --no-build || die "compose up failed"
    wait_up "$UP_TIMEOUT"
    tls_on && tls_hints
    return 0
}

cmd_down() {
    need_compose
    cmd_heal || note "heal failed; the rules go away with the containers anyway"
    compose --profile extra down -v --remove-orphans --timeout 5 || die "compose down failed"
    rm -f "$RULES_FILE"
    note "removed containers, network and volumes"
}

usage() {
    sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed -E 's/^# ?//'
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    image) build_image ;;
    kill) cmd_kill "$@" ;;
    stop) cmd_stop "$@" ;;
    start) cmd_start "$@" ;;
    pause) cmd_pause "$@" ;;
    unpause) cmd_unpause "$@" ;;
    partition) cmd_partition "$@" ;;
    heal) cmd_heal ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    wait) need_docker && wait_up "${1:-$UP_TIMEOUT}" ;;
    add) cmd_add "$@" ;;
    leave) cmd_leave "$@" ;;
    forget) cmd_forget "$@" ;;
    cli) cmd_cli "$@" ;;
    certs) make_certs && note "certificates in $TLS_DIR" ;;
    help | -h | --help) usage ;;
    '') usage >&2 && exit 2 ;;
    *) die "unknown command '$cmd' (try: $(basename "$0") help)" ;;
    esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
