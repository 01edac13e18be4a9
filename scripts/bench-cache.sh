#!/usr/bin/env bash
# Cache-hit benchmark: Tern's cache and, when Debian's nginx is available,
# nginx with proxy_cache, both in front of the same test origin on
# loopback over plain HTTP, loaded by wrk in the same run. Reports
# requests/s and p50/p99 latency for 1 KB and 100 KB objects, and the
# Tern/nginx ratios.
#
#   DURATION=10s THREADS=2 CONNS=32 ./scripts/bench-cache.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  as_root apt-get install -y wrk >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ]; then
  echo "installing nginx (Debian package)" >&2
  as_root apt-get install -y nginx-light >/dev/null 2>&1 || as_root apt-get install -y nginx >/dev/null 2>&1 || true
fi
[ -x "$NGINX" ] || NGINX=""

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/cachebench" ./internal/cachebench
"$tmp/cachebench" -data "$tmp/data" >"$tmp/addr" 2>"$tmp/log" &
pids+=($!)
for _ in $(seq 1 100); do
  [ -f "$tmp/addr" ] && [ "$(wc -l <"$tmp/addr")" -ge 2 ] && break
  sleep 0.1
done
origin=$(awk '$1 == "origin" {print $2}' "$tmp/addr")
tern=$(awk '$1 == "cache" {print $2}' "$tmp/addr")
[ -n "$tern" ] || { echo "cachebench did not start:"; cat "$tmp/log"; exit 1; }

# The origin itself is a static net/http handler: the ceiling for any Go
# server on this machine, measured as a reference.
targets=("tern $tern" "origin $origin")
if [ -n "$NGINX" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$tmp/nginx/cache" "$tmp/nginx/logs"
  # Equivalent to Tern's setup: a 1 GiB disk cache, one origin request
  # per key at a time (proxy_cache_lock), keep-alive to the origin, and
  # as many workers as cores (Go uses every core too).
  cat >"$tmp/nginx/nginx.conf" <<CONF
user root;
worker_processes auto;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile ${NGINX_SENDFILE:-on};
  keepalive_requests 1000000;
  proxy_cache_path $tmp/nginx/cache levels=1:2 keys_zone=bench:16m max_size=1g inactive=1d use_temp_path=off;
  upstream origin { server $origin; keepalive 32; }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_cache bench;
      proxy_cache_lock on;
      proxy_cache_revalidate on;
      proxy_cache_use_stale error timeout updating;
      add_header Cache-Status "nginx; \$upstream_cache_status";
    }
  }
}
CONF
  "$NGINX" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' 2>"$tmp/nginx/logs/stderr" &
  pids+=($!)
  for _ in $(seq 1 50); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/1k" && break
    sleep 0.1
  done
  targets+=("nginx 127.0.0.1:$port")
else
  echo "nginx not available: measuring Tern alone" >&2
fi

echo "machine: $(nproc) cores, $(uname -m), $(go version | cut -d' ' -f3), nginx: ${NGINX:+$("$NGINX" -v 2>&1 | cut -d/ -f2)}, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency, HTTP/1.1 keep-alive, servers and wrk on the same machine"
printf '%-6s %-6s %12s %10s %10s %s\n' server object 'requests/s' p50 p99 cache-status
for t in "${targets[@]}"; do
  set -- $t
  name=$1 addr=$2
  for path in /1k /100k; do
    # Fill, check it is a hit, warm up, then measure.
    curl -fs -o /dev/null "http://$addr$path"
    status=$(curl -fs -o /dev/null -D - "http://$addr$path" | awk -F': ' 'tolower($1) == "cache-status" {print $2}' | tr -d '\r')
    wrk -t"$THREADS" -c"$CONNS" -d2s "http://$addr$path" >/dev/null
    out="$tmp/wrk-$name${path//\//-}"
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://$addr$path" >"$out"
    rps=$(awk '/Requests\/sec/ {print $2}' "$out")
    p50=$(awk '$1 == "50%" {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    errs=$(awk '/Non-2xx|Socket errors/' "$out")
    printf '%-6s %-6s %12s %10s %10s %s\n' "$name" "$path" "$rps" "$p50" "$p99" "$status"
    [ -z "$errs" ] || echo "  $errs"
    echo "$rps" >"$out.rps"
  done
done
ratio() { awk -v a="$(cat "$tmp/wrk-$1${3//\//-}.rps")" -v b="$(cat "$tmp/wrk-$2${3//\//-}.rps")" 'BEGIN {printf "%.2f", a/b}'; }
for path in /1k /100k; do
  echo "tern/origin (Go static handler) requests/s ratio $path: $(ratio tern origin $path)"
  [ -z "$NGINX" ] || echo "tern/nginx requests/s ratio $path: $(ratio tern nginx $path)"
done
