#!/usr/bin/env bash
# Starts (or stops) a local three-master Redis Cluster for the session-cache tests.
#
#   urls=$(.ci/redis-cluster.sh start)   # prints redis://127.0.0.1:P1,redis://...:P2,...:P3
#   SESSION_TEST_REDIS_CLUSTER_URLS=$urls cargo test -p session-cache --all-features -- --include-ignored
#   .ci/redis-cluster.sh stop            # shuts down what `start` started, removes its files
#
# The nodes listen on spare loopback ports (each with its cluster bus port, +10000), keep
# their files in a temporary directory, persist nothing, and are recorded in a state file
# (REDIS_CLUSTER_STATE, default ${TMPDIR:-/tmp}/session-redis-cluster.state) so that `stop`
# touches only them. Needs redis-server and redis-cli (Redis >= 6.2) on PATH.
set -euo pipefail

STATE=${REDIS_CLUSTER_STATE:-${TMPDIR:-/tmp}/session-redis-cluster.state}
NODES=3

log() { echo "redis-cluster: $*" >&2; }

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints $NODES ports p such that p and p+10000 (its cluster bus) are both free.
spare_ports() {
    local found=() p=$((20000 + RANDOM % 9000))
    local tries=0
    while [ "${#found[@]}" -lt "$NODES" ]; do
        tries=$((tries + 1))
        [ "$tries" -lt 2000 ] || { log "no spare ports found"; return 1; }
        p=$((p + 1))
        [ "$p" -lt 29990 ] || p=20000
        if ! port_in_use "$p" && ! port_in_use $((p + 10000)); then
            found+=("$p")
        fi
    done
    echo "${found[@]}"
}

wait_for() { # wait_for <seconds> <command...>
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

cluster_ok() {
    redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok'
}

start() {
    command -v redis-server >/dev/null || { log "redis-server is not on PATH"; exit 1; }
    command -v redis-cli >/dev/null || { log "redis-cli is not on PATH"; exit 1; }
    if [ -s "$STATE" ]; then
        log "a cluster from $STATE is still recorded; stopping it first"
        stop
    fi
    local dir ports port addrs=() urls=()
    dir=$(mktemp -d "${TMPDIR:-/tmp}/session-redis-cluster.XXXXXX")
    read -r -a ports <<<"$(spare_ports)"
    : >"$STATE"
    for port in "${ports[@]}"; do
        mkdir -p "$dir/$port"
        echo "$port $dir" >>"$STATE"
        redis-server --port "$port" --bind 127.0.0.1 \
            --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
            --save "" --appendonly no --dir "$dir/$port" \
            --daemonize yes --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log"
        addrs+=("127.0.0.1:$port")
        urls+=("redis://127.0.0.1:$port")
    done
    for port in "${ports[@]}"; do
        wait_for 10 redis-cli -h 127.0.0.1 -p "$port" ping || { log "node $port did not start"; stop; exit 1; }
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >&2 \
        || { log "cluster create failed"; stop; exit 1; }
    for port in "${ports[@]}"; do
        wait_for 30 cluster_ok "$port" || { log "node $port never reached cluster_state:ok"; stop; exit 1; }
    done
    log "cluster ready on ports ${ports[*]}"
    (IFS=,; echo "${urls[*]}")
}

stop() {
    [ -f "$STATE" ] || { log "nothing to stop"; return 0; }
    local port dir dirs=()
    while read -r port dir; do
        [ -n "$port" ] || continue
        redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
        if [ -f "$dir/$port/redis.pid" ]; then
            local pid; pid=$(cat "$dir/$port/redis.pid")
            wait_for 5 bash -c "! kill -0 $pid" || kill "$pid" 2>/dev/null || true
        fi
        dirs+=("$dir")
    done <"$STATE"
    for dir in $(printf '%s\n' "${dirs[@]}" | sort -u); do
        case "$dir" in
            */session-redis-cluster.*) rm -rf -- "$dir" ;;
        esac
    done
    rm -f -- "$STATE"
    log "stopped"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
