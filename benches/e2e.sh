#!/usr/bin/env bash
# End-to-end benchmark on loopback: the simulated carrier, `otpgw serve` and the
# brand load generator `otpgw bench`, each its own process on this machine.
# Prints the load generator's summary and the gateway's own CPU time per message
# (utime+stime of the otpgw serve process from /proc, over the run).
#
#   COUNT=200000 BINDS=2 WINDOW=500 CARRIER_BINDS=2 CARRIER_WINDOW=500 benches/e2e.sh
#   STORE=memory benches/e2e.sh          # the non-durable store, for comparison
#   RATE=10000 COUNT=100000 benches/e2e.sh   # offered rate instead of flat out
#   FINISHED_RETENTION=10 COUNT=1000000 benches/e2e.sh   # store size over a long run
#   BENCH_ARGS="--otp-percent 80 --encoding ucs2 --chart run.svg" benches/e2e.sh
#                                        # any further `otpgw bench` options
#   PERF_OUT=gw.perf benches/e2e.sh      # also sample the gateway with `perf record -g`
#   ENCRYPT=1 benches/e2e.sh             # records sealed at rest ([store.encryption])
#   OTPGW_BIN=old/otpgw LOAD_BIN=new/otpgw benches/e2e.sh   # one gateway build, another load generator
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
COUNT=${COUNT:-200000}
BINDS=${BINDS:-2}
WINDOW=${WINDOW:-500}
CARRIER_BINDS=${CARRIER_BINDS:-2}
CARRIER_WINDOW=${CARRIER_WINDOW:-500}
RATE=${RATE:-}
STORE=${STORE:-embedded}
FINISHED_RETENTION=${FINISHED_RETENTION:-3600}
SIM_PORT=${SIM_PORT:-27760}
GW_PORT=${GW_PORT:-27750}
OPS_PORT=${OPS_PORT:-27764}

BIN=$(gateway_bin)
# The simulator and load generator (another build than the gateway: to compare two
# gateway builds under the same load).
LOAD_BIN=${LOAD_BIN:-$BIN}
tmp=$(mktemp -d)
cleanup() { kill "${GW:-}" "${SIM:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

sed -e "s/127.0.0.1:2776\"/127.0.0.1:${SIM_PORT}\"/" \
    -e "s/127.0.0.1:2775\"/127.0.0.1:${GW_PORT}\"/" \
    -e "s/127.0.0.1:9464\"/127.0.0.1:${OPS_PORT}\"/" \
    -e "s/^binds = 2$/binds = ${CARRIER_BINDS}/" \
    -e "s/^window = 100 .*/window = ${CARRIER_WINDOW}/" \
    -e "s|^backend = \"embedded\"|backend = \"${STORE}\"|" \
    -e "s|^path = \"data/otpgw.redb\"|path = \"$tmp/otpgw.redb\"|" \
    -e "s/^finished_retention_secs = 3600 .*/finished_retention_secs = ${FINISHED_RETENTION}/" \
    deploy/otpgw.toml > "$tmp/otpgw.toml"
if [ -n "${ENCRYPT:-}" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$tmp/k1.key"
    printf '\n[store.encryption]\nactive = "k1"\n[[store.encryption.keys]]\nid = "k1"\nkey_file = "%s"\n' "$tmp/k1.key" >> "$tmp/otpgw.toml"
fi

"$LOAD_BIN" sim --listen "127.0.0.1:${SIM_PORT}" --credentials otpgw:secret --receipt-delay-ms 10 >"$tmp/sim.log" 2>&1 &
SIM=$!
RUST_LOG=warn "$BIN" serve --config "$tmp/otpgw.toml" >"$tmp/gw.log" 2>&1 &
GW=$!
wait_port "$GW_PORT"
sleep 0.5

# Sample the store file's size every 2 s.
( while sleep 2; do
    [ -f "$tmp/otpgw.redb" ] && echo "  store file after $SECONDS s: $(( $(stat -c %s "$tmp/otpgw.redb") / 1048576 )) MiB" >> "$tmp/sizes"
  done ) &
SAMPLER=$!
g0=$(cpu "$GW"); s0=$(cpu "$SIM")
if [ -n "${PERF_OUT:-}" ]; then
    perf record -q -F 299 --call-graph dwarf,16384 -p "$GW" -o "$PERF_OUT" 2>"$tmp/perf.log" &
    PERF=$!
fi
rate_arg=()
[ -n "$RATE" ] && rate_arg=(--rate "$RATE")
/usr/bin/time -f "%e %U %S" -o "$tmp/time" \
    "$LOAD_BIN" bench --host "127.0.0.1:${GW_PORT}" --binds "$BINDS" --window "$WINDOW" --count "$COUNT" "${rate_arg[@]}" ${BENCH_ARGS:-} | tee "$tmp/bench.txt"
g1=$(cpu "$GW"); s1=$(cpu "$SIM")
if [ -n "${PERF:-}" ]; then kill -INT "$PERF"; wait "$PERF" || true; echo "perf data: $PERF_OUT"; fi
kill "$SAMPLER" 2>/dev/null || true
[ -f "$tmp/sizes" ] && cat "$tmp/sizes"
[ -f "$tmp/otpgw.redb" ] && echo "store file at the end: $(( $(stat -c %s "$tmp/otpgw.redb") / 1048576 )) MiB"
echo "store: $STORE${ENCRYPT:+ (encrypted at rest)}"
# The gateway's own count of receipts it gave up on (must be 0).
curl -s "http://127.0.0.1:${OPS_PORT}/metrics" | awk '/^otpgw_receipts_dropped_total / {d = $2} /^otpgw_receipts_expired_total / {e = $2}
    END {printf "gateway: receipts dropped %d, expired %d (otpgw_receipts_dropped_total, otpgw_receipts_expired_total)\n", d, e}'
echo "gateway resident memory: $(awk '/VmRSS/ {print $2}' "/proc/$GW/status") KiB now, peak $(awk '/VmHWM/ {print $2}' "/proc/$GW/status") KiB"
read -r wall lu ls < "$tmp/time"
awk -v g=$((g1 - g0)) -v s=$((s1 - s0)) -v t="$ticks" -v n="$COUNT" -v lu="$lu" -v ls="$ls" -v w="$wall" 'BEGIN {
    printf "machine: %s\n", "'"$(machine)"'"
    printf "gateway (otpgw serve) CPU: %.2f s for %d messages = %.4f ms/message\n", g/t, n, g/t/n*1000
    printf "simulator CPU: %.2f s; load generator CPU: %.2f s; wall %.2f s\n", s/t, lu+ls, w
}'
