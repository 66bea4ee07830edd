#!/usr/bin/env bash
# Issue 20: what TLS on the client port costs. redis-benchmark SET and GET, plaintext and with --tls, against
# one ringkv node (no replicas: the request path and TLS alone) and one redis-server, in the same run.
#
#   bench/tls.sh                     # 3 repetitions of runs of about 4 s (about 4 minutes on 2 cores)
#   REPS=1 SECS=0.5 bench/tls.sh     # a smoke test
#
# Makes a CA and a server certificate for 127.0.0.1 with openssl, starts redis-server (no persistence) on a
# plaintext port and a TLS port (tls-auth-clients no), and two single-node ringkv clusters with `ringkv up`
# (one plaintext, one with tls_client = true and tls_auth_clients = no), and drives each with redis-benchmark
# -c 50 -d 64 -r 100000 -t set,get -P P [--tls --cacert CA] for P in $PIPELINES (default "16 1").
# Then the same through node 1 of two 3-node clusters (N = 3, W = R = 2): one plaintext, one with TLS on the
# client port and between nodes (tls_peers, every node presenting the same CA's certificate), which is what
# mutual TLS between nodes costs a replicated request. Medians of REPS repetitions, then TLS/plaintext.
source "$(dirname "$0")/lib.sh"
need redis-server redis-server
need redis-cli redis-tools
need redis-benchmark redis-tools
need openssl openssl
build_release

WORK=${WORK:-/tmp/ringkv-bench-tls}
REPS=${REPS:-3}
SECS=${SECS:-4}
REDIS_PORT=${REDIS_PORT:-16489}
REDIS_TLS_PORT=${REDIS_TLS_PORT:-16490}
PLAIN_BASE=${PLAIN_BASE:-18400}
TLS_BASE=${TLS_BASE:-18800}
CLUSTER_PLAIN_BASE=${CLUSTER_PLAIN_BASE:-19100}
CLUSTER_TLS_BASE=${CLUSTER_TLS_BASE:-19400}
PIPELINES=${PIPELINES:-"16 1"}
COMMON=(-c 50 -d 64 -r 100000)
rm -rf "$WORK"; mkdir -p "$WORK/certs"
RESULTS="$WORK/results.txt"
: >"$RESULTS"

C="$WORK/certs"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ringkv bench CA" \
  -keyout "$C/ca.key" -out "$C/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$C/node.key" -out "$C/node.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$C/ext"
openssl x509 -req -in "$C/node.csr" -CA "$C/ca.crt" -CAkey "$C/ca.key" -CAcreateserial -days 2 \
  -extfile "$C/ext" -out "$C/node.crt" 2>/dev/null

machine_long
echo "load: redis-benchmark ${COMMON[*]} -t set,get -P {$PIPELINES} -n N --csv [--tls --cacert ca.crt]"
echo "certificates: RSA 2048, made by openssl; TLS 1.3 is what both servers settle on with redis-benchmark"

port_free "$REDIS_TLS_PORT"
start_redis "$REDIS_PORT" "$WORK/redis" --tls-port "$REDIS_TLS_PORT" --tls-cert-file "$C/node.crt" \
  --tls-key-file "$C/node.key" --tls-ca-cert-file "$C/ca.crt" --tls-auth-clients no
ringkv_ports_free "$PLAIN_BASE" 1
ringkv_ports_free "$TLS_BASE" 1
start_ringkv "$PLAIN_BASE" "$WORK/ringkv-plain" 1
start_ringkv "$TLS_BASE" "$WORK/ringkv-tls" 1 --set tls_client=true --set "tls_cert_file=$C/node.crt" \
  --set "tls_key_file=$C/node.key" --set tls_auth_clients=no
ringkv_ports_free "$CLUSTER_PLAIN_BASE" 3
ringkv_ports_free "$CLUSTER_TLS_BASE" 3
start_ringkv "$CLUSTER_PLAIN_BASE" "$WORK/ringkv3-plain" 3
start_ringkv "$CLUSTER_TLS_BASE" "$WORK/ringkv3-tls" 3 --set tls_client=true --set tls_peers=true \
  --set "tls_cert_file=$C/node.crt" --set "tls_key_file=$C/node.key" --set "tls_ca_cert_file=$C/ca.crt" \
  --set tls_auth_clients=no

# target SYSTEM MODE: the port and flags redis-benchmark needs.
target() {
  case "$1 $2" in
    "redis plain") echo "-p $REDIS_PORT" ;;
    "redis tls") echo "-p $REDIS_TLS_PORT --tls --cacert $C/ca.crt" ;;
    "ringkv plain") echo "-p $((PLAIN_BASE + 1))" ;;
    "ringkv tls") echo "-p $((TLS_BASE + 1)) --tls --cacert $C/ca.crt" ;;
    "ringkv3 plain") echo "-p $((CLUSTER_PLAIN_BASE + 1))" ;;
    "ringkv3 tls") echo "-p $((CLUSTER_TLS_BASE + 1)) --tls --cacert $C/ca.crt" ;;
  esac
}

# Calibration (also a warm-up): -n for runs of at least SECS seconds per test.
declare -A N
for p in $PIPELINES; do
  for sys in redis ringkv ringkv3; do
    for mode in plain tls; do
      cal=$(( p == 1 ? 10000 : 100000 ))
      # shellcheck disable=SC2046
      rps=$(rb $(target "$sys" "$mode") "${COMMON[@]}" -t set,get -P "$p" -n "$cal" | awk '$2 > m {m = $2} END {print m}')
      N[$sys,$mode,$p]=$(awk -v r="$rps" -v s="$SECS" -v p="$p" 'BEGIN {n = int(r * s / 1000) * 1000; min = p * 1000; print (n < min ? min : n)}')
      echo "calibration: $sys $mode -P $p: $rps ops/s => -n ${N[$sys,$mode,$p]}"
    done
  done
done

for rep in $(seq "$REPS"); do
  for p in $PIPELINES; do
    for sys in redis ringkv ringkv3; do
      for mode in plain tls; do
        # shellcheck disable=SC2046
        rb $(target "$sys" "$mode") "${COMMON[@]}" -t set,get -P "$p" -n "${N[$sys,$mode,$p]}" |
          while read -r t rps p50 p99; do
            echo "$rep $sys $p $mode $t $rps $p50 $p99" | tee -a "$RESULTS"
          done
      done
    done
  done
done

echo
echo "medians of $REPS repetitions (ops/s, p50 / p99 ms)"
python3 - "$RESULTS" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = {}
for key in {tuple(r[1:5]) for r in rows}:
    sel = [r for r in rows if tuple(r[1:5]) == key]
    med[key] = tuple(st.median(float(r[i]) for r in sel) for i in (5, 6, 7))
def cell(k):
    if k not in med: return "-"
    r, p50, p99 = med[k]
    return f"{r:,.0f} ({p50:.2f} / {p99:.2f})"
def ratio(a, b):
    return f"{med[a][0] / med[b][0]:.2f}x" if a in med and b in med and med[b][0] else "-"
print("| test | -P | Redis plaintext | Redis TLS | ringkv plaintext | ringkv TLS | ringkv TLS/plaintext | Redis TLS/plaintext | ringkv/Redis, TLS |")
print("|---|---|---|---|---|---|---|---|---|")
for p in sorted({r[2] for r in rows}, key=int, reverse=True):
    for t in ("SET", "GET"):
        k = lambda s, m: (s, p, m, t)
        print(f"| {t} | {p} | {cell(k('redis','plain'))} | {cell(k('redis','tls'))} | {cell(k('ringkv','plain'))} | "
              f"{cell(k('ringkv','tls'))} | {ratio(k('ringkv','tls'), k('ringkv','plain'))} | "
              f"{ratio(k('redis','tls'), k('redis','plain'))} | {ratio(k('ringkv','tls'), k('redis','tls'))} |")
print()
print("3-node cluster, through node 1: plaintext, and TLS on the client port and between nodes")
print("| test | -P | plaintext | TLS client + peers | TLS/plaintext |")
print("|---|---|---|---|---|")
for p in sorted({r[2] for r in rows}, key=int, reverse=True):
    for t in ("SET", "GET"):
        k = lambda m: ('ringkv3', p, m, t)
        print(f"| {t} | {p} | {cell(k('plain'))} | {cell(k('tls'))} | {ratio(k('tls'), k('plain'))} |")
PY
echo "raw results: $RESULTS"
