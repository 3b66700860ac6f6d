#!/usr/bin/env bash
# The test command (README). .ci/run runs the same steps.
# Installs what the tests need outside Cargo, then runs the whole test suite with
# the interop, Prometheus and Redis tests required (not skipped), then the fault
# campaign's smoke (scripts/soak.sh --smoke: about 3 minutes). Arguments go to
# cargo test (a filter, say); with arguments the smoke is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/steps.sh

step test-deps bash scripts/test-deps.sh
export OTPGW_REQUIRE_INTEROP=1 OTPGW_REQUIRE_PROMETHEUS=1 OTPGW_REQUIRE_REDIS=1
step test-build cargo test --workspace --release --no-run "$@"
step test-run cargo test --workspace --release "$@"
if [ "$#" -eq 0 ]; then
    step soak-smoke bash scripts/soak.sh --smoke
fi
