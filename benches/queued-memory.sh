#!/usr/bin/env bash
# Resident memory per queued message: `otpgw serve` with its carrier paused (nothing
# listens at the carrier's address, and `refuse_after_down_ms = 0` so brands are not
# refused), then `otpgw bench` submits COUNT messages without receipts. Every one
# stays queued. Prints the gateway's resident set (VmRSS from /proc) before and after,
# and the difference per queued message.
#
#   benches/queued-memory.sh                    # 1,000,000 messages, durable store
#   STORE=memory COUNT=200000 benches/queued-memory.sh
#   STORE=log benches/queued-memory.sh        # the log store
# It then kills the gateway (SIGKILL) and times its restart with everything queued.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
COUNT=${COUNT:-1000000}
STORE=${STORE:-embedded}
TEXT_LEN=${TEXT_LEN:-20}
GW_PORT=${GW_PORT:-27751}
DEAD_PORT=${DEAD_PORT:-27761}
METRICS_PORT=${METRICS_PORT:-29464}

BIN=$(gateway_bin)
tmp=$(mktemp -d)
cleanup() { kill "${GW:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

sed -e "s/127.0.0.1:2776\"/127.0.0.1:${DEAD_PORT}\"/" \
    -e "s/127.0.0.1:2775\"/127.0.0.1:${GW_PORT}\"/" \
    -e "s|^backend = \"embedded\"|backend = \"${STORE}\"|" \
    -e "s|^path = \"data/otpgw.redb\"|path = \"$tmp/otpgw.redb\"|" \
    -e "s/127.0.0.1:9464/127.0.0.1:${METRICS_PORT}/" \
    -e "s/^refuse_after_down_ms = .*/refuse_after_down_ms = 0/" \
    -e "s/^capacity = 1000000 .*/capacity = $((COUNT + 1000))/" \
    deploy/otpgw.toml > "$tmp/otpgw.toml"
grep -q "^refuse_after_down_ms = 0$" "$tmp/otpgw.toml"

RUST_LOG=error "$BIN" serve --config "$tmp/otpgw.toml" >"$tmp/gw.log" 2>&1 &
GW=$!
wait_port "$GW_PORT"
sleep 1
rss() { awk '/VmRSS/ {print $2}' "/proc/$GW/status"; }
before=$(rss)
"$BIN" bench --host "127.0.0.1:${GW_PORT}" --binds 2 --window 500 --count "$COUNT" \
    --no-receipts --text-len "$TEXT_LEN" --no-progress | tee "$tmp/bench.txt"
sleep 2
after=$(rss)
queued=$(curl -s "http://127.0.0.1:${METRICS_PORT}/metrics" \
    | awk '/^otpgw_queue_depth_messages/ {s += $2} END {print s + 0}')
echo "store: $STORE; text: $TEXT_LEN octets"
echo "queued (otpgw_queue_depth_messages): $queued"
echo "gateway resident memory: before $before KiB, after $after KiB, peak $(awk '/VmHWM/ {print $2}' "/proc/$GW/status") KiB"
awk -v b="$before" -v a="$after" -v n="$queued" 'BEGIN {
    if (n > 0) printf "resident memory per queued message: %.0f bytes\n", (a - b) * 1024 / n
}'

# Recovery: SIGKILL, start again, and time until the gateway listens with every
# queued message taken back (the store's replay and the requeue).
kill -9 "$GW"; wait "$GW" 2>/dev/null || true
t0=$(date +%s%N)
RUST_LOG=info "$BIN" serve --config "$tmp/otpgw.toml" >"$tmp/gw2.log" 2>&1 &
GW=$!
until grep -q "otpgw started" "$tmp/gw2.log"; do
    kill -0 "$GW" 2>/dev/null || { cat "$tmp/gw2.log"; exit 1; }
    sleep 0.02
done
t1=$(date +%s%N)
echo "restart after SIGKILL with $queued queued: $(( (t1 - t0) / 1000000 )) ms until listening; $(grep -o 'requeued=[0-9]*' "$tmp/gw2.log" | head -1)"
echo "gateway resident memory after the restart: $(rss) KiB"
