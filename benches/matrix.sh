#!/usr/bin/env bash
# The figures of docs/benchmarks.md in one command: runs benches/e2e.sh over the
# matrix (durable stores embedded and log, and the memory store; 1 versus 4 brand
# binds, windows 10/100/1000, one PDU per write, an offered 10,000 msg/s) and
# benches/queued-memory.sh, and prints one markdown table. About seven minutes on a
# 2-core machine.
#
#   benches/matrix.sh                 # everything
#   OTPGW_BIN=/path/to/otpgw benches/matrix.sh   # another build of the gateway
#   COUNT=50000 benches/matrix.sh     # shorter flat-out runs
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
COUNT=${COUNT:-200000}
export OTPGW_BIN=$(gateway_bin)

row() {
    local name=$1; shift
    local out
    out=$(env EXTRA= "$@" sh -c 'BENCH_ARGS="--no-progress $EXTRA" exec benches/e2e.sh' 2>&1)
    echo "$out" | awk -v name="$name" '
        /^sent .* accepted/ { for (i = 1; i <= NF; i++) if ($i == "msg/s,") acc = $(i - 1) }
        /^receipts .* end to end/ { for (i = 1; i <= NF; i++) if ($i == "msg/s") e2e = $(i - 1) }
        /^submit -> resp/ { p50 = $4; p99 = $6; p999 = $7 }
        /^submit -> receipt/ { r50 = $4; r99 = $6 }
        /^gateway \(otpgw serve\) CPU/ { cpu = $(NF - 1) }
        /^gateway resident memory/ { for (i = 1; i <= NF; i++) if ($i == "peak") rss = $(i + 1) }
        END { printf "| %s | %s | %s | %s / %s / %s | %s / %s | %s | %.0f |\n", name, acc, e2e, p50, p99, p999, r50, r99, cpu, rss / 1024 }'
}

echo "| run | accepted msg/s | end to end msg/s | submit->resp ms p50 / p99 / p99.9 | submit->receipt ms p50 / p99 | gateway CPU ms/msg | gateway peak RSS MiB |"
echo "|---|---|---|---|---|---|---|"
row "durable, 2 binds x 500, flat out, $COUNT msgs" COUNT="$COUNT" BINDS=2 WINDOW=500
row "memory, 2 binds x 500, flat out, $COUNT msgs" COUNT="$COUNT" BINDS=2 WINDOW=500 STORE=memory
row "durable, 1 bind x 1000, flat out" COUNT="$COUNT" BINDS=1 WINDOW=1000
row "durable, 4 binds x 250, flat out" COUNT="$COUNT" BINDS=4 WINDOW=250
row "durable, 2 binds x 10, flat out" COUNT=$((COUNT / 4)) BINDS=2 WINDOW=10
row "durable, 2 binds x 100, flat out" COUNT="$COUNT" BINDS=2 WINDOW=100
row "durable, 2 binds x 1000, flat out" COUNT="$COUNT" BINDS=2 WINDOW=1000
row "durable, 10,000 msg/s offered, 1 bind x 100" COUNT=100000 BINDS=1 WINDOW=100 RATE=10000
row "memory, 10,000 msg/s offered, 1 bind x 100" COUNT=100000 BINDS=1 WINDOW=100 RATE=10000 STORE=memory
row "durable, 4 binds x 100, one PDU per write" COUNT="$COUNT" BINDS=4 WINDOW=100 EXTRA="--flush-each"
row "log, 2 binds x 500, flat out" COUNT="$COUNT" BINDS=2 WINDOW=500 STORE=log
row "log, 4 binds x 100, one PDU per write" COUNT="$COUNT" BINDS=4 WINDOW=100 STORE=log EXTRA="--flush-each"
row "log, 10,000 msg/s offered, 1 bind x 100" COUNT=100000 BINDS=1 WINDOW=100 RATE=10000 STORE=log
echo
for store in embedded log memory; do
    echo "queued with the carrier paused, store $store:"
    STORE=$store benches/queued-memory.sh 2>&1 | grep -E "^(queued|gateway resident|resident memory per|restart)"
done
