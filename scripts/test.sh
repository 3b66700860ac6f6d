#!/usr/bin/env bash
# The test command (README). .ci/run runs the same steps.
# Installs what the tests need outside Cargo, builds every test once with the `ci`
# profile (optimised, no LTO, no debug info: Cargo.toml), runs the whole suite with
# cargo-nextest (each test its own process, two at a time) with the interop,
# Prometheus and Redis tests required (not skipped), prints the 15 slowest tests,
# then runs the fault campaign's smoke (scripts/soak.sh --smoke, about 3 minutes)
# on the gateway binary the test build made. Arguments go to `cargo nextest run`
# (a filter, say); with arguments the smoke is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/steps.sh

step test-deps bash scripts/test-deps.sh
export OTPGW_REQUIRE_INTEROP=1 OTPGW_REQUIRE_PROMETHEUS=1 OTPGW_REQUIRE_REDIS=1 OTPGW_REQUIRE_HAPROXY=1 OTPGW_REQUIRE_SCHEMATHESIS=1
# nextest builds with `cargo test --no-run`; the same command first, as its own step.
step test-build cargo test --workspace --profile ci --no-run -q
rc=0
step test-run cargo nextest run --workspace --cargo-profile ci "$@" || rc=$?
python3 scripts/lib/slowest.py target/nextest/default/junit.xml 15
[ "$rc" -eq 0 ] || exit "$rc"
if [ "$#" -eq 0 ]; then
    step soak-smoke env OTPGW_BIN=target/ci/otpgw bash scripts/soak.sh --smoke
fi
