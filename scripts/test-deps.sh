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

# Install Debian package $1 (a reason follows in $2); with $3, stop the process of
# that name the package's own service started: the tests start their own.
apt_install() {
    echo "installing $1 (Debian package) $2..."
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$1" >/dev/null
    if [ -n "${3:-}" ]; then
        $sudo pkill -x "$3" 2>/dev/null || true
    fi
}

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    apt_install prometheus "for the monitoring test" prometheus
fi
command -v haproxy >/dev/null 2>&1 ||
    apt_install haproxy "(a real PROXY protocol sender) for the SMPP door's test" haproxy
command -v redis-server >/dev/null 2>&1 ||
    apt_install redis-server "for the Redis store tests"
command -v redis-sentinel >/dev/null 2>&1 ||
    apt_install redis-sentinel "for the Sentinel failover tests and scripts/failover.sh" redis-sentinel
