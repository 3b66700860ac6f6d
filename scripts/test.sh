#!/usr/bin/env bash
# The test command (README and .ci/run both use it).
# Installs what the tests need outside Cargo, then runs the whole test suite.
# - python-smpplib: an SMPP client nobody here wrote, for the interop test.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import smpplib" 2>/dev/null; then
    echo "installing python smpplib (interop test client)..."
    python3 -m pip install --quiet --disable-pip-version-check smpplib==2.2.4
fi
export OTPGW_REQUIRE_INTEROP=1

cargo test --workspace --release "$@"
