#!/usr/bin/env bash
# HTTP API benchmark on loopback: the simulated carrier, `otpgw serve` (embedded
# durable store, HTTP API on) and the HTTP load generator `otpgw bench-http`, each
# its own process on this machine. Prints the load generator's summary and the
# gateway's own CPU time per request.
#
#   benches/http.sh                        # messages, flat out, 64 connections
#   KIND=verifications benches/http.sh     # POST /v1/verifications
#   RATE=5000 COUNT=50000 benches/http.sh  # offered rate instead of flat out
#   CONNECTIONS=16 benches/http.sh
#   STORE=memory benches/http.sh           # the non-durable store, for comparison
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
COUNT=${COUNT:-200000}
CONNECTIONS=${CONNECTIONS:-64}
RATE=${RATE:-}
KIND=${KIND:-messages}
STORE=${STORE:-embedded}
SIM_PORT=${SIM_PORT:-27860}
GW_PORT=${GW_PORT:-27850}
HTTP_PORT=${HTTP_PORT:-27880}

BIN=$(gateway_bin)
tmp=$(mktemp -d)
cleanup() { kill "${GW:-}" "${SIM:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

# The example config with this run's ports, store, and caps high enough for a
# benchmark's million destinations.
sed -e "s/127.0.0.1:2776\"/127.0.0.1:${SIM_PORT}\"/" \
    -e "s/127.0.0.1:2775\"/127.0.0.1:${GW_PORT}\"/" \
    -e "s/127.0.0.1:8080\"/127.0.0.1:${HTTP_PORT}\"/" \
    -e "s/127.0.0.1:9464\"/127.0.0.1:0\"/" \
    -e "s/^window = 100 .*/window = 500/" \
    -e "s|^backend = \"embedded\"|backend = \"${STORE}\"|" \
    -e "s|^path = \"data/otpgw.redb\"|path = \"$tmp/otpgw.redb\"|" \
    -e "s/^max_per_number_per_hour = .*/max_per_number_per_hour = 1000000/" \
    -e "s/^max_per_prefix_per_hour = .*/max_per_prefix_per_hour = 100000000/" \
    deploy/otpgw.toml > "$tmp/otpgw.toml"

"$BIN" sim --listen "127.0.0.1:${SIM_PORT}" --credentials otpgw:secret --receipt-delay-ms 10 >"$tmp/sim.log" 2>&1 &
SIM=$!
RUST_LOG=warn "$BIN" serve --config "$tmp/otpgw.toml" >"$tmp/gw.log" 2>&1 &
GW=$!
wait_port "$HTTP_PORT"
sleep 0.5

g0=$(cpu "$GW"); s0=$(cpu "$SIM")
args=(--host "127.0.0.1:${HTTP_PORT}" --key demo-key --connections "$CONNECTIONS" --count "$COUNT")
[ -n "$RATE" ] && args+=(--rate "$RATE")
[ "$KIND" = verifications ] && args+=(--verifications)
/usr/bin/time -f "%e %U %S" -o "$tmp/time" "$BIN" bench-http "${args[@]}" ${BENCH_ARGS:-} | tee "$tmp/bench.txt"
sleep 1
g1=$(cpu "$GW"); s1=$(cpu "$SIM")
echo "store: $STORE; kind: $KIND"
echo "gateway resident memory: $(awk '/VmRSS/ {print $2}' "/proc/$GW/status") KiB"
read -r wall lu ls < "$tmp/time"
awk -v g=$((g1 - g0)) -v s=$((s1 - s0)) -v t="$ticks" -v n="$COUNT" -v lu="$lu" -v ls="$ls" -v w="$wall" 'BEGIN {
    printf "machine: %s\n", "'"$(machine)"'"
    printf "gateway (otpgw serve) CPU: %.2f s for %d requests = %.4f ms/request (includes sending them on and their receipts)\n", g/t, n, g/t/n*1000
    printf "simulator CPU: %.2f s; load generator CPU: %.2f s; wall %.2f s\n", s/t, lu+ls, w
}'
