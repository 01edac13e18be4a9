#!/usr/bin/env bash
# Fleet benchmark (docs/FLEET.md): one `tern hub` and AGENTS `tern agent`
# processes on loopback, each agent a leaf node with its own NATS server,
# badger store and local CA. Measures deploy convergence (deploy.Push
# returning → every agent serves the new version over HTTPS), purge
# acknowledgement by every agent, and the hub's memory per agent and CPU
# with every agent heartbeating. Needs only Go; Linux for /proc.
#
# Knobs (environment): AGENTS (100), ROUNDS (10), PURGES (50),
# MODULE_SIZE (1MiB), HEARTBEAT (5s), CPU_WINDOW (1m). Other flags of
# internal/fleetbench go after the script's arguments, e.g.
#   scripts/bench-fleet.sh -agents 3 -rounds 1 -cpu-window 5s
set -euo pipefail
cd "$(dirname "$0")/.."

AGENTS=${AGENTS:-100}
ROUNDS=${ROUNDS:-10}
PURGES=${PURGES:-50}
MODULE_SIZE=${MODULE_SIZE:-1MiB}
HEARTBEAT=${HEARTBEAT:-5s}
CPU_WINDOW=${CPU_WINDOW:-1m}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

go build -o "$tmp/tern" ./cmd/tern
go build -o "$tmp/fleetbench" ./internal/fleetbench

echo "# $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); $(go version)" >&2
# Every agent holds a few sockets and pipes; the benchmark holds one
# connection per agent.
ulimit -n 65536 2>/dev/null || true

"$tmp/fleetbench" -tern "$tmp/tern" -data "$tmp/run" \
  -agents "$AGENTS" -rounds "$ROUNDS" -purges "$PURGES" \
  -module-size "$MODULE_SIZE" -heartbeat "$HEARTBEAT" -cpu-window "$CPU_WINDOW" \
  -clk-tck "$(getconf CLK_TCK)" "$@"
