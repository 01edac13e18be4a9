#!/usr/bin/env bash
# Agent memory under hostile guests, through the binary: starts `tern up`
# in a temporary directory, deploys the grow guest (memory grown one
# 64 KiB page at a time to its 64 MiB cap) and the recurse guest (a call
# stack grown until it overflows), sends REQUESTS requests to each,
# PARALLEL at a time, and prints the agent's resident memory before and
# after, its peak, and the requests' times:
#
#   ./scripts/bench-guest-memory.sh
#   REQUESTS=20 PARALLEL=4 ./scripts/bench-guest-memory.sh
#
# Needs curl.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-100}
PARALLEL=${PARALLEL:-4}

tmp=$(mktemp -d)
pid=
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/tern" ./cmd/tern
"$tmp/tern" up -data "$tmp/data" -listen 127.0.0.1:0 -admin 127.0.0.1:0 -hub-listen 127.0.0.1:0 >"$tmp/out" 2>"$tmp/log" &
pid=$!
for _ in $(seq 1 100); do
  grep -q 'Tern is up' "$tmp/out" 2>/dev/null && break
  sleep 0.1
done
base=$(awk '/apps \(HTTPS/ {sub("/hello$", "", $NF); print $NF}' "$tmp/out")
[ -n "$base" ] || { echo "tern up did not start:"; cat "$tmp/log"; exit 1; }
ca="$tmp/data/ca.pem"

app() { # name wasm
  mkdir -p "$tmp/$1"
  cp "guests/faults/$2" "$tmp/$1/"
  printf 'name = "%s"\nversion = "1.0.0"\nwasm = "%s"\n\n[[routes]]\npath = "/%s"\n\n[limits]\nmemory = "64MiB"\ntimeout = "10s"\n' \
    "$1" "$2" "$1" >"$tmp/$1/tern.toml"
  "$tmp/tern" deploy -data "$tmp/data" "$tmp/$1" >/dev/null
  for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" "$base/$1")" = 500 ] && return
    sleep 0.1
  done
  echo "app $1 did not install:"; tail "$tmp/log"; exit 1
}
rss() { awk '/^VmRSS:/ {printf "%d", $2 / 1024}' "/proc/$pid/status"; }
hwm() { awk '/^VmHWM:/ {printf "%d", $2 / 1024}' "/proc/$pid/status"; }

echo "machine: $(nproc) cores, $(uname -m), $(go version | cut -d' ' -f3); $REQUESTS requests per guest, $PARALLEL at a time"
echo "agent RSS at start: $(rss) MB"
for name in grow recurse; do
  app "$name" "$name.wasm" # one request, to see it installed
  before=$(rss)
  start=$(date +%s.%N)
  seq 1 "$REQUESTS" | xargs -P "$PARALLEL" -I{} curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --cacert "$ca" "$base/$name" >"$tmp/times"
  end=$(date +%s.%N)
  codes=$(awk '{print $1}' "$tmp/times" | sort | uniq -c | awk '{printf "%s x%s ", $2, $1}')
  times=$(awk '{print $2}' "$tmp/times" | sort -n | awk '{t[NR] = $1} END {printf "p50 %.0f ms, max %.0f ms", t[int(NR / 2) + 1] * 1000, t[NR] * 1000}')
  printf '%-8s answers: %s; %s; %.1f s in all; RSS %d MB before, %d MB after (peak so far %d MB)\n' \
    "$name" "$codes" "$times" "$(echo "$end - $start" | bc)" "$before" "$(rss)" "$(hwm)"
done
