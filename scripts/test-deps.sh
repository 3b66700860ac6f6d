#!/usr/bin/env bash
# Installs what the tests need outside Cargo (used by scripts/test.sh and .ci/run):
# - cargo-nextest: the test runner (per-test processes and times);
# - python-smpplib: an SMPP client nobody here wrote, for the interop tests;
# - node-smpp (npm, into tests/interop/node_modules): a second such client, bound
#   at the same time as smpplib;
# - prometheus and promtool (Debian package): a real Prometheus scrapes otpgw and
#   checks the shipped dashboard and alert rules;
# - redis-sentinel (Debian package): the Sentinel failover test and scripts/failover.sh
#   start their own Sentinels.
# - redis-server (Debian package): the Redis store tests start their own durable
#   servers (appendonly yes, appendfsync always) on free ports of 127.0.0.1;
# - schemathesis (PyPI): generates requests from the HTTP API's OpenAPI document;
# - haproxy (Debian package): a real PROXY protocol sender in front of the SMPP door.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest (the test runner: a process per test, per-test times)..."
    cargo install --locked --quiet cargo-nextest
fi

if ! python3 -c "import smpplib" 2>/dev/null; then
    echo "installing python smpplib (interop test client)..."
    python3 -m pip install --quiet --disable-pip-version-check smpplib==2.2.4
fi

if [ ! -d tests/interop/node_modules/smpp ]; then
    echo "installing node smpp (second interop test client, npm)..."
    (cd tests/interop && npm ci --no-audit --no-fund --silent)
fi

if ! command -v schemathesis >/dev/null 2>&1; then
    echo "installing schemathesis (the OpenAPI-driven API tester)..."
    python3 -m pip install --quiet --disable-pip-version-check schemathesis==4.32.5
fi

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    echo "installing prometheus (Debian package) for the monitoring test..."
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # The package's own service is not wanted: the test starts its own server.
    $SUDO pkill -x prometheus 2>/dev/null || true
fi

if ! command -v haproxy >/dev/null 2>&1; then
    echo "installing haproxy (Debian package): a real PROXY protocol sender for the SMPP door's test..."
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends haproxy >/dev/null
    # The package's own service is not wanted: the test starts its own.
    $SUDO pkill -x haproxy 2>/dev/null || true
fi

if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing redis-server (Debian package) for the Redis store tests..."
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi

if ! command -v redis-sentinel >/dev/null 2>&1; then
    echo "installing redis-sentinel (Debian package) for the Sentinel failover tests and scripts/failover.sh..."
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-sentinel >/dev/null
    # The package's own service is not wanted: the tests start their own.
    $SUDO pkill -x redis-sentinel 2>/dev/null || true
fi
