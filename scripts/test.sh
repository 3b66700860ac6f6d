#!/usr/bin/env bash
# The test command (README). .ci/run runs the same two steps.
# Installs what the tests need outside Cargo, then runs the whole test suite with
# the interop, Prometheus and Redis tests required (not skipped).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-deps.sh
OTPGW_REQUIRE_INTEROP=1 OTPGW_REQUIRE_PROMETHEUS=1 OTPGW_REQUIRE_REDIS=1 cargo test --workspace --release "$@"
