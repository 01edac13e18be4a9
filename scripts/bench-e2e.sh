#!/usr/bin/env bash
# End-to-end load benchmark: requests/s and latency over HTTPS keep-alive
# for the hello guest, against a static Go handler on the same listener
# (the ceiling), measured in the same run. Uses wrk on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >/dev/null; else sudo apt-get install -y wrk >/dev/null; fi
fi

tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/benchserver" ./internal/benchserver
"$tmp/benchserver" -data "$tmp/data" >"$tmp/addr" 2>"$tmp/log" &
pid=$!
for _ in $(seq 1 100); do
  [ -s "$tmp/addr" ] && break
  sleep 0.1
done
addr=$(head -1 "$tmp/addr")
[ -n "$addr" ] || { echo "benchserver did not start:"; cat "$tmp/log"; exit 1; }

echo "machine: $(nproc) cores, $(uname -m), $(go version | cut -d' ' -f3); wrk -t$THREADS -c$CONNS -d$DURATION, server and wrk on the same machine"
for path in /static /hello; do
  # Warm up, then measure.
  wrk -t"$THREADS" -c"$CONNS" -d2s "https://$addr$path" >/dev/null
  echo "== $path"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "https://$addr$path" | tee "$tmp/wrk$(echo $path | tr / _)"
done
rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
s=$(rps "$tmp/wrk_static"); h=$(rps "$tmp/wrk_hello")
echo "hello/static requests/s ratio: $(awk -v h="$h" -v s="$s" 'BEGIN {printf "%.2f", h/s}')"
