#!/usr/bin/env bash
# Scale-out on Redis: end-to-end throughput with 1, 2 and 3 `otpgw serve` nodes on
# one durable redis-server (appendonly yes, appendfsync always, started here on a
# side port), one simulated carrier, and one `otpgw bench` per node (each node's
# share of the messages, all at once). Prints per run the aggregate accepted and
# end-to-end rates and the CPU seconds of the nodes, redis-server, the simulator and
# the load generators (utime + stime from /proc), so where the limit lies shows.
#
#   benches/redis-nodes.sh              # 1, 2, 3 nodes, 120,000 messages each run
#   COUNT=60000 NODES="1 3" benches/redis-nodes.sh
#   REPLICAS=1 NODES=1 benches/redis-nodes.sh   # a durable replica, and
#                                       # redis_min_replicas = 1 (WAIT per batch);
#                                       # MIN_REPLICAS=0: the replica without WAIT
#   SHARDS=3 NODES=1 benches/redis-nodes.sh     # a Redis Cluster of 3 durable
#                                       # primaries (redis_cluster; SHARDS=1: a
#                                       # one-shard cluster); PARTITIONS=16
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
COUNT=${COUNT:-120000}
NODES=${NODES:-"1 2 3"}
REDIS_PORT=${REDIS_PORT:-26390}
SIM_PORT=${SIM_PORT:-27770}
BASE_PORT=${BASE_PORT:-27780}
REPLICAS=${REPLICAS:-0}
MIN_REPLICAS=${MIN_REPLICAS:-$REPLICAS}
REPLICA_PORT=${REPLICA_PORT:-26391}
SHARDS=${SHARDS:-0}
PARTITIONS=${PARTITIONS:-16}

BIN=$(gateway_bin)
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

echo "machine: $(machine)"
echo "| nodes | accepted msg/s | end to end msg/s | CPU s: nodes / redis / sim / load generators |"
echo "|---|---|---|---|"
for n in $NODES; do
    run="$tmp/run$n"
    where="redis_url = \"redis://127.0.0.1:${REDIS_PORT}/\""
    shards=()
    if [ "$SHARDS" -gt 0 ]; then
        addrs=()
        for i in $(seq 0 $((SHARDS - 1))); do
            p=$((REDIS_PORT + 100 + i)); mkdir -p "$run/shard$i"
            redis-server --port "$p" --bind 127.0.0.1 --appendonly yes --appendfsync always \
                --save "" --dir "$run/shard$i" --cluster-enabled yes --cluster-config-file nodes.conf \
                --daemonize no >"$run/shard$i.log" 2>&1 &
            shards+=($!); pids+=($!)
            wait_port "$p"; addrs+=("127.0.0.1:$p")
        done
        if [ "$SHARDS" -ge 3 ]; then
            redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$run/create.log"
        else
            redis-cli -p $((REDIS_PORT + 100)) CLUSTER ADDSLOTSRANGE 0 16383 >/dev/null
        fi
        for a in "${addrs[@]}"; do
            until redis-cli -p "${a##*:}" CLUSTER INFO | grep -q "cluster_state:ok"; do sleep 0.1; done
        done
        list=$(printf '"%s", ' "${addrs[@]}")
        where="redis_cluster = [${list%, }]\nredis_partitions = ${PARTITIONS}"
        REDIS=${shards[0]}
    else
    mkdir -p "$run/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --appendonly yes --appendfsync always \
        --save "" --dir "$run/redis" --daemonize no >"$run/redis.log" 2>&1 &
    REDIS=$!; pids+=("$REDIS"); shards=("$REDIS")
    wait_port "$REDIS_PORT"
    fi
    if [ "$REPLICAS" -gt 0 ]; then
        mkdir -p "$run/replica"
        redis-server --port "$REPLICA_PORT" --bind 127.0.0.1 --appendonly yes --appendfsync always \
            --save "" --dir "$run/replica" --replicaof 127.0.0.1 "$REDIS_PORT" --daemonize no >"$run/replica.log" 2>&1 &
        REPLICA=$!; pids+=("$REPLICA")
        wait_port "$REPLICA_PORT"
        until redis-cli -p "$REPLICA_PORT" INFO replication | grep -q "master_link_status:up"; do sleep 0.1; done
    fi
    "$BIN" sim --listen "127.0.0.1:${SIM_PORT}" --credentials otpgw:secret --receipt-delay-ms 10 >"$run/sim.log" 2>&1 &
    SIM=$!; pids+=("$SIM")
    gws=()
    for k in $(seq 1 "$n"); do
        port=$((BASE_PORT + k)); ops=$((BASE_PORT + 10 + k))
        sed -e "s/127.0.0.1:2776\"/127.0.0.1:${SIM_PORT}\"/" \
            -e "s/127.0.0.1:2775\"/127.0.0.1:${port}\"/" \
            -e "s/127.0.0.1:9464\"/127.0.0.1:${ops}\"/" \
            -e "s/127.0.0.1:8080\"/127.0.0.1:$((BASE_PORT + 20 + k))\"/" \
            -e "s|^backend = \"embedded\"|backend = \"redis\"\n${where}\nnode_id = \"node${k}\"\nredis_prefix = \"bench\"\nredis_min_replicas = ${MIN_REPLICAS}|" \
            -e "s/^receipt_ids = \"auto\"/receipt_ids = \"hex_to_decimal\"/" \
            -e "s/^window = 100 .*/window = 500/" \
            deploy/otpgw.toml > "$run/node$k.toml"
        RUST_LOG=warn "$BIN" serve --config "$run/node$k.toml" >"$run/node$k.log" 2>&1 &
        gws+=($!); pids+=($!)
        wait_port "$port"
    done
    sleep 1
    r0=0; for r in "${shards[@]}"; do r0=$((r0 + $(cpu "$r"))); done
    s0=$(cpu "$SIM"); g0=0
    for g in "${gws[@]}"; do g0=$((g0 + $(cpu "$g"))); done
    start=$(date +%s.%N)
    benches=()
    for k in $(seq 1 "$n"); do
        /usr/bin/time -f "%U %S" -o "$run/time$k" "$BIN" bench --host "127.0.0.1:$((BASE_PORT + k))" \
            --binds 2 --window 250 --count $((COUNT / n)) --no-progress --json >"$run/bench$k.json" &
        benches+=($!)
    done
    for b in "${benches[@]}"; do wait "$b"; done
    r1=0; for r in "${shards[@]}"; do r1=$((r1 + $(cpu "$r"))); done
    s1=$(cpu "$SIM"); g1=0
    for g in "${gws[@]}"; do g1=$((g1 + $(cpu "$g"))); done
    lg=$(cat "$run"/time* | awk '{s += $1 + $2} END {print s}')
    # Aggregate: messages over the longest run of the nodes.
    jq -s --arg n "$n" --argjson t "$ticks" --argjson g "$((g1 - g0))" --argjson r "$((r1 - r0))" \
        --argjson s "$((s1 - s0))" --argjson lg "$lg" '
        (map(.accepted) | add) as $acc | (map(.receipts) | add) as $rc |
        (map(.submit_seconds) | max) as $ts | (map(.total_seconds) | max) as $tt |
        "| \($n) | \($acc / $ts | floor) | \($rc / $tt | floor) | \($g / $t) / \($r / $t) / \($s / $t) / \($lg) |"' \
        "$run"/bench*.json | tr -d '"'
    missing=$(jq -s 'map(.missing_receipts) | add' "$run"/bench*.json)
    [ "$missing" = 0 ] || echo "  ($missing receipts missing)"
    for p in "${gws[@]}" "$SIM" "${shards[@]}" ${REPLICA:-}; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
done
