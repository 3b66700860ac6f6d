#!/usr/bin/env bash
# Delivery assurance benchmark: two simulated carriers, A losing 30 % of its
# receipts for numbers starting 44 (the load generator sends to 4474...), B
# delivering everything; OTPs through `otpgw serve`, once without receipt
# timeouts (a lost receipt means the brand waits for ever) and once with them (the
# OTP goes out again through B). Prints, for each, the share of OTPs DELIVERED
# within 10 s at the brand, and submit -> DELIVERED receipt percentiles.
#
#   benches/fallback.sh                    # 20,000 OTPs at 1,000/s, carrier latency 1 s
#   COUNT=5000 RATE=500 DELAY_MS=2000 TIMEOUT_MS=5000 benches/fallback.sh
#   SELECT=quality benches/fallback.sh     # quality routing on the route [A, B]
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
COUNT=${COUNT:-20000}
RATE=${RATE:-1000}
DELAY_MS=${DELAY_MS:-1000}        # the carriers' receipt delay
TIMEOUT_MS=${TIMEOUT_MS:-4000}    # receipt_timeout_ms in the run with fallback
SELECT=${SELECT:-ordered}
DROP=${DROP:-30}
BASE=${BASE:-27900}

BIN=$(gateway_bin)
tmp=$(mktemp -d)
cleanup() { kill "${GW:-}" "${SA:-}" "${SB:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

run() { # $1: label, $2: carrier lines (receipt timeout or nothing)
    local a=$((BASE + 1)) b=$((BASE + 2)) gw=$((BASE + 3))
    "$BIN" sim --listen "127.0.0.1:$a" --credentials otpgw:secret --receipt-delay-ms "$DELAY_MS" --rule "44:${DROP}:drop" >"$tmp/a.log" 2>&1 &
    SA=$!
    "$BIN" sim --listen "127.0.0.1:$b" --credentials otpgw:secret --receipt-delay-ms "$DELAY_MS" >"$tmp/b.log" 2>&1 &
    SB=$!
    cat > "$tmp/otpgw.toml" <<TOML
[server]
listen = "127.0.0.1:$gw"
[store]
path = "$tmp/otpgw-$1.redb"
[ops]
enabled = false
[[brand]]
system_id = "demo"
password_hash = "\$argon2id\$v=19\$m=19456,t=2,p=1\$anGSFxH6/AWb3F6Kk0Mbsw\$IWAPpx5SQ2/McJPwYGogMh0oLQBCwWT3oCcKM2NX5Gg"
[[carrier]]
name = "a"
address = "127.0.0.1:$a"
system_id = "otpgw"
password = "secret"
binds = 2
window = 500
receipt_ids = "hex_to_decimal"
$2
[[carrier]]
name = "b"
address = "127.0.0.1:$b"
system_id = "otpgw"
password = "secret"
binds = 2
window = 500
receipt_ids = "hex_to_decimal"
$2
[routes]
default = ["a", "b"]
select = "$SELECT"
TOML
    RUST_LOG=warn "$BIN" serve --config "$tmp/otpgw.toml" >"$tmp/gw.log" 2>&1 &
    GW=$!
    wait_port "$gw"
    sleep 0.5
    echo "== $1"
    "$BIN" bench --host "127.0.0.1:$gw" --binds 2 --window 200 --count "$COUNT" --rate "$RATE" \
        --receipt-timeout-secs 12 --no-progress | grep -E "accepted|receipts|DELIVRD|delivered within|submit -> resp"
    kill "$GW" "$SA" "$SB" 2>/dev/null || true
    wait "$GW" "$SA" "$SB" 2>/dev/null || true
}

echo "A loses ${DROP} % of receipts for 44...; carrier receipt delay ${DELAY_MS} ms; $COUNT OTPs at $RATE/s; route [a, b] select=$SELECT"
run "without-fallback" ""
run "with-fallback" "receipt_timeout_ms = $TIMEOUT_MS"
echo "machine: $(machine)"
