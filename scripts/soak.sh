#!/usr/bin/env bash
# The fault campaign (docs/delivery.md, "Fault campaign"): `otpgw soak` in each
# store mode, the decoder fuzz target, and the live-server fuzz. Not part of the
# default test run; scripts/test.sh runs its smoke (`scripts/soak.sh --smoke`).
#
#   scripts/soak.sh                 # full: 30 min per mode at 700/s, 10M fuzz inputs,
#                                   # 1M live PDUs (about 1 h 45 min on 2 cores)
#   scripts/soak.sh --smoke         # 1 min each of log and redis, 20k live PDUs
#
# Environment: MINUTES, RATE, MODES ("embedded log redis"), FUZZ_INPUTS, FUZZ_PDUS,
# OUT (reports, default target/soak), OTPGW_BIN (the gateway binary to use). Needs root for the disk-full fault (a tmpfs);
# without it that fault is skipped and the report says so. The redis mode needs
# redis-server (scripts/test-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--smoke" ]; then
    MINUTES=${MINUTES:-1}
    RATE=${RATE:-300}
    MODES=${MODES:-"log redis"}
    FUZZ_INPUTS=${FUZZ_INPUTS:-0}
    FUZZ_PDUS=${FUZZ_PDUS:-20000}
fi
MINUTES=${MINUTES:-30}
RATE=${RATE:-700}
MODES=${MODES:-"embedded log redis"}
FUZZ_INPUTS=${FUZZ_INPUTS:-10000000}
FUZZ_PDUS=${FUZZ_PDUS:-1000000}
OUT=${OUT:-target/soak}
mkdir -p "$OUT"

# OTPGW_BIN: a gateway binary built already (scripts/test.sh passes the one its
# test build made); otherwise the release build.
BIN=${OTPGW_BIN:-}
if [ -z "$BIN" ]; then
    cargo build --release -q -p otpgw
    BIN=target/release/otpgw
fi

for mode in $MODES; do
    echo "== soak: $mode, $MINUTES min at $RATE/s"
    "$BIN" soak --mode "$mode" --minutes "$MINUTES" --rate "$RATE" \
        --report "$OUT/soak-$mode.json" 2>"$OUT/soak-$mode.stderr" | tee "$OUT/soak-$mode.txt"
done

if [ "$FUZZ_INPUTS" -gt 0 ]; then
    # Coverage-guided when a nightly toolchain is there (the flags cargo-fuzz passes,
    # without a sanitizer); otherwise the stable build, which feeds random inputs.
    # An explicit --target keeps these flags off build scripts (as cargo-fuzz does).
    HOST=$(rustc -vV | sed -n 's/^host: //p')
    if rustup run nightly rustc --version >/dev/null 2>&1; then
        echo "== decoder fuzz: $FUZZ_INPUTS inputs, nightly, coverage-guided"
        RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
            cargo +nightly build -q --release --manifest-path fuzz/Cargo.toml \
            --target-dir fuzz/target-cov --target "$HOST"
        DECODE=fuzz/target-cov/$HOST/release/decode
    else
        echo "== decoder fuzz: $FUZZ_INPUTS inputs, stable (random inputs)"
        cargo build -q --release --manifest-path fuzz/Cargo.toml
        DECODE=fuzz/target/release/decode
    fi
    mkdir -p "$OUT/corpus"
    "$DECODE" "$OUT/corpus" -runs="$FUZZ_INPUTS" -max_len=2048 -print_final_stats=1 \
        2>"$OUT/fuzz-decode.log"
    grep -E "^stat::number_of_executed_units|^stat::peak_rss|cov:|Done" "$OUT/fuzz-decode.log" | tail -5
fi

echo "== live-server fuzz: $FUZZ_PDUS mutated PDUs"
"$BIN" fuzz-live --pdus "$FUZZ_PDUS" --report "$OUT/fuzz-live.json" 2>"$OUT/fuzz-live.stderr" \
    | tee "$OUT/fuzz-live.txt"
echo "soak: all clean (reports in $OUT)"
