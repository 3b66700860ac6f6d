#!/usr/bin/env bash
# Redis failover campaign (docs/delivery.md, "Redis failover"): `otpgw failover`
# starts a Redis primary, two replicas and three Sentinels (redis-server and
# redis-sentinel from Debian: scripts/test-deps.sh), two `otpgw serve` nodes that
# follow the Sentinels with redis_min_replicas = 1, two simulated carriers and an
# independent ledger of what the brand was told; under load it kills (SIGKILL) or
# stops (SIGSTOP, past the Sentinels' down-after: a stale primary comes back) the
# primary each round, kills a replica every third round, and at the end checks
# every acknowledged message against the carriers. Exits non-zero when anything
# acknowledged was lost, a receipt is missing, a duplicate was not counted by the
# nodes, or a refused message was sent.
#
#   scripts/failover.sh                    # 10 failovers at 5,000 msg/s (about 4 min)
#   scripts/failover.sh --smoke            # 1 failover (about 30 s); the test suite runs it
#   scripts/failover.sh --cluster          # the same on a Redis Cluster: three shards
#                                          # of a primary and a replica; each round
#                                          # fails one shard's primary over
#   scripts/failover.sh --json out.json    # also write the report:
#       {"failovers", "acked", "lost", "duplicates", "duplicates_counted",
#        "max_unavailable_ms", ...}
#
# Environment: ROUNDS (10), RATE (5000), OTPGW_BIN (the gateway binary to use;
# otherwise the release build is made).
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --smoke) args+=(--smoke) ;;
        --cluster) args+=(--cluster) ;;
        --json) args+=(--json "$2"); shift ;;
        *) echo "usage: scripts/failover.sh [--smoke] [--cluster] [--json FILE]" >&2; exit 2 ;;
    esac
    shift
done

BIN=${OTPGW_BIN:-}
if [ -z "$BIN" ]; then
    cargo build --release -q -p otpgw
    BIN=target/release/otpgw
fi
exec "$BIN" failover --rounds "${ROUNDS:-10}" --rate "${RATE:-5000}" "${args[@]}"
