#!/usr/bin/env bash
# Dispatch measurements (issue 4's figures), in one process on 127.0.0.1 with the
# embedded store: throttle settling under a carrier cap, one of two carriers dying
# under load, and OTP latency behind a 100,000-message bulk backlog. Each prints its
# figures; see docs/benchmarks.md for the last results.
#
#   benches/dispatch.sh                       # all three
#   benches/dispatch.sh bench_throttle        # only those whose name contains this
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -q -p otpgw --test it dispatch_bench:: -- --ignored --nocapture --test-threads 1 "$@"
