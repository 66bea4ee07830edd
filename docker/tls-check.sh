#!/usr/bin/env bash
# The Docker cluster over TLS (issue 20, "TLS everywhere"), asserted step by step:
#
#   cluster.sh up --tls: five nodes, certificates made on the host, healthy
#   through the TLS healthcheck of docker/compose.tls.yml;
#   a SET through n1 over TLS reads back through n3;
#   plaintext redis-cli, a TLS client without a certificate, and plain HTTP
#   to the admin port are all refused (connection closed, no reply);
#   `cluster.sh status` (HTTPS, the mode found from the containers) and
#   `ringkv status --tls` show five up;
#   kill n2 -> down everywhere; start n2 -> up everywhere, the key through it;
#   down.
#
# Removes the containers, network and volumes on exit, also after a failure
# (TLS_CHECK_KEEP=1 keeps a failed cluster for a look). Refuses to start
# while containers of the cluster exist. Needs what docker/e2e.sh needs, and
# openssl. Takes about 20 s once the image is built.

set -euo pipefail
export LC_ALL=C

CHECK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CLUSTER_TLS=1
# shellcheck source=docker/cluster.sh
source "$CHECK_DIR/cluster.sh"

WAIT_S=${TLS_CHECK_WAIT_S:-30}
T_START=$(now_ms)
SUMMARY=()
CURRENT_STEP=setup
STARTED=0

# shellcheck source=docker/report.sh
source "$CHECK_DIR/report.sh"


cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if ((STARTED)); then
        if [[ $rc -ne 0 && ${TLS_CHECK_KEEP:-0} == 1 ]]; then
            echo "TLS_CHECK_KEEP=1: leaving the cluster up; 'docker/cluster.sh down' removes it" >&2
        else
            printf '\n== cleanup\n'
            (cmd_down) || echo "tls-check: cleanup failed; run docker/cluster.sh down" >&2
        fi
    fi
    printf '\n== summary (%s in all)\n' "$(secs $(($(now_ms) - T_START)))"
    printf '%s\n' "${SUMMARY[@]}"
    if [[ $rc -eq 0 ]]; then
        echo "tls-check: all steps passed"
    else
        echo "tls-check: FAILED in step: $CURRENT_STEP" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Polls the command until it succeeds or WAIT_S pass; prints the
# milliseconds it took.
poll() {
    local t0
    t0=$(now_ms)
    until "$@"; do
        (($(now_ms) - t0 <= WAIT_S * 1000)) || return 1
        sleep 0.1
    done
    echo $(($(now_ms) - t0))
}

# True when every running container reports healthy.
all_healthy() {
    local n
    for n in $(running_nodes); do
        [[ $(docker inspect -f '{{.State.Health.Status}}' "$(container "$n")") == healthy ]] || return 1
    done
}

# `cluster.sh status` as an operator runs it: a new process, CLUSTER_TLS
# unset, so it must find TLS from the containers.
status_cmd() {
    env -u CLUSTER_TLS "$CHECK_DIR/cluster.sh" status
}

# The UP cells of the status table's node rows.
count_up() {
    awk '$1 ~ /^n[1-6]$/ { for (i = 2; i <= NF; i++) if ($i == "UP") up++ } END { print up + 0 }' <<<"$1"
}

# --- the steps ---------------------------------------------------------------

step "preconditions"
need_docker
command -v redis-cli >/dev/null 2>&1 || die "redis-cli is missing (package redis-tools)"
command -v curl >/dev/null 2>&1 || die "curl is missing"
command -v openssl >/dev/null 2>&1 || die "openssl is missing"
if [[ -n $(docker ps -aq --filter "name=^$PROJECT-n[1-6]\$") ]]; then
    die "containers of the cluster exist already (another run?); 'docker/cluster.sh down' removes them"
fi
pass "no cluster running; docker, redis-cli, curl and openssl at hand"

step "up --tls"
STARTED=1
t0=$(now_ms)
cmd_up --tls
pass "five TLS nodes up in $(secs $(($(now_ms) - t0))) (build included)"
for n in "${NODES[@]}"; do
    env=$(docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$(container "$n")")
    for key in CLIENT PEERS ADMIN; do
        grep -qx "RINGKV_TLS_$key=true" <<<"$env" || fail "$n does not run with RINGKV_TLS_$key=true"
    done
done
pass "every node runs with tls_client, tls_peers and tls_admin (certificates from $TLS_DIR)"

step "a write through n1 over TLS, read through n3"
value="tls-$(now_ms)"
got=$(redis_cli n1 set tls:check "$value" 2>&1) || true
[[ $got == OK ]] || fail "SET through n1 over TLS answered '$got'"
got=$(redis_cli n3 get tls:check 2>&1) || true
[[ $got == "$value" ]] || fail "GET through n3 over TLS answered '$got', not '$value'"
pass "SET tls:check through n1, read back through n3, over TLS with the operator's certificate"

step "plaintext and certificate-less clients are refused"
got=$(redis-cli -h 127.0.0.1 -p "$(client_port n1)" get tls:check 2>&1) && rc=0 || rc=$?
((rc != 0)) || fail "plaintext redis-cli exited 0: '$got'"
[[ $got != *"$value"* && ($got == *"closed the connection"* || $got == *"reset by peer"*) ]] ||
    fail "plaintext redis-cli was answered: '$got'"
pass "plaintext redis-cli to n1: connection closed, no reply ('$got')"
got=$(redis-cli -h 127.0.0.1 -p "$(client_port n1)" --tls --cacert "$TLS_DIR/ca.crt" \
    get tls:check 2>&1) && rc=0 || rc=$?
[[ $rc -ne 0 && $got != *"$value"* ]] || fail "a TLS client without a certificate was answered: '$got'"
pass "TLS redis-cli without a client certificate refused ('$got')"
if got=$(curl -sS --max-time 5 "http://$(admin_addr n1)/status" 2>&1); then
    fail "plain HTTP to n1's admin port was answered: '${got:0:80}'"
fi
pass "plain HTTP to n1's admin port refused ('$got')"

step "status over HTTPS"
table=$(status_cmd) || fail "cluster.sh status failed: $table"
echo "$table"
[[ $(count_up "$table") -eq 25 ]] || fail "cluster.sh status does not show five nodes up in five tables"
pass "cluster.sh status (TLS found from the containers) shows five up in every routing table"
[[ -x $STATIC_BIN ]] || fail "no binary at $STATIC_BIN"
out=$("$STATIC_BIN" status --admin "$(admin_addr n4)" "${TLS_STATUS_FLAGS[@]}" 2>&1) ||
    fail "ringkv status --tls failed: $out"
[[ $(grep -cE '^ +UP +n[1-5] ' <<<"$out") -eq 5 ]] || fail "ringkv status --tls on n4: $out"
pass "ringkv status --tls --cacert on n4 shows five up"
if out=$("$STATIC_BIN" status --admin "$(admin_addr n4)" 2>&1); then
    fail "ringkv status without --tls was answered: $out"
fi
pass "ringkv status without --tls refused"
ms=$(poll all_healthy) || fail "not every container is healthy after ${WAIT_S}s: $(docker ps --format '{{.Names}} {{.Status}}')"
pass "every container healthy through the HTTPS healthcheck ($(secs "$ms") more)"

step "kill n2, start it again"
cmd_kill n2
ms=$(wait_all_see n1,n3,n4,n5 n2 down "$WAIT_S") || fail "n2 not marked down everywhere after ${WAIT_S}s"
pass "n2 marked down by n1, n3, n4, n5 $(secs "$ms") after docker kill"
table=$(status_cmd) || fail "cluster.sh status failed: $table"
grep -Eq '^n2 +DOWN +- +DOWN +DOWN +DOWN' <<<"$table" || fail "cluster.sh status does not show n2 down: $table"
pass "cluster.sh status shows n2 down"
cmd_start n2
ms=$(wait_all_see n1,n2,n3,n4,n5 n1,n2,n3,n4,n5 up "$WAIT_S") ||
    fail "n2 not up everywhere after ${WAIT_S}s"
pass "n2 up in every routing table $(secs "$ms") after docker start (peer TLS again)"
table=$(status_cmd) || fail "cluster.sh status failed: $table"
[[ $(count_up "$table") -eq 25 ]] || fail "cluster.sh status does not show five up: $table"
got=$(redis_cli n2 get tls:check 2>&1) || true
[[ $got == "$value" ]] || fail "GET through n2 over TLS answered '$got', not '$value'"
pass "cluster.sh status shows five up; tls:check reads back through n2"

step "down"
cmd_down
STARTED=0
[[ -z $(docker ps -aq --filter "name=^$PROJECT-n[1-6]\$") ]] || fail "containers left after down"
pass "down removed every container"
