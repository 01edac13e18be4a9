#!/usr/bin/env bash
# Memory and miss latency of Tern's cache under a sustained stream of
# misses: one wrk connection requesting unique 1 KB URLs (each a miss
# that is fetched and stored) for ROUNDS runs of DURATION back to back,
# with the agent's collector target. Prints each run's p99 and the
# process's peak and final memory, so that runs with and without a soft
# memory limit can be compared:
#
#   ./scripts/bench-cache-memory.sh
#   GOMEMLIMIT=768MiB ./scripts/bench-cache-memory.sh    # as the agent's default in a 1 GiB cgroup
#
# Needs wrk.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
PATH_PREFIX=${PATH_PREFIX:-/1k}
command -v wrk >/dev/null || { echo "bench-cache-memory: wrk is required (Debian: apt-get install -y wrk)" >&2; exit 1; }

tmp=$(mktemp -d)
pid=
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/cachebench" ./internal/cachebench
"$tmp/cachebench" -data "$tmp/data" >"$tmp/addr" 2>"$tmp/log" &
pid=$!
for _ in $(seq 1 100); do
  [ -f "$tmp/addr" ] && [ "$(wc -l <"$tmp/addr")" -ge 2 ] && break
  sleep 0.1
done
cache=$(awk '$1 == "cache" {print $2}' "$tmp/addr")
[ -n "$cache" ] || { echo "cachebench did not start:"; cat "$tmp/log"; exit 1; }

mem() { awk '/^(VmHWM|RssAnon):/ {printf "%s %d MB  ", $1, $2 / 1024}' "/proc/$pid/status"; }
echo "misses of unique $PATH_PREFIX URLs, one connection, $ROUNDS runs of $DURATION; GOMEMLIMIT=${GOMEMLIMIT:-unset}"
for r in $(seq 1 "$ROUNDS"); do
  sync
  wrk -t1 -c1 -d"$DURATION" --latency -s scripts/unique-urls.lua "http://$cache" -- "$PATH_PREFIX/r$r-" >"$tmp/wrk.out"
  printf 'run %d: %8s req/s  p99 %8s  %s\n' "$r" \
    "$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.out")" \
    "$(awk '$1 == "99%" {print $2}' "$tmp/wrk.out")" "$(mem)"
done
