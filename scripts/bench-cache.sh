#!/usr/bin/env bash
# Cache benchmark: Tern's cache against nginx (proxy_cache) and Varnish,
# all in front of the same test origin on loopback, loaded by wrk in the
# same run. Tern runs twice: as the cache handler alone behind net/http
# (internal/cachebench, "tern") and as the agent a user runs ("agent":
# tern up with an [[origins]] route, through its router, metrics and
# listeners, over its plain listener and its TLS port).
#
# Hits: requests/s and p50/p99 latency for 1 KB and 100 KB objects over
# plain HTTP and over HTTPS, with one certificate for all (a self-signed
# ECDSA P-256 certificate made here; the agent serves its own local CA's,
# also ECDSA P-256) and TLS 1.3 with AES-128-GCM for all.
# Varnish has no TLS: over HTTPS it sits behind hitch (Varnish's TLS
# proxy), which passes connections on with the PROXY protocol. Servers are
# measured in turn, ROUNDS times, the order rotating each round; ratios
# to nginx are taken within each round, then the median is reported.
#
# Misses: wrk with one connection and a unique URL per request (each one
# a miss), through each cache and straight to the origin, after a sync;
# the added latency is the cache's percentile minus the origin's.
#
# The origin (a Go static handler, part of internal/cachebench) is also
# measured directly over HTTP: the ceiling of a Go server on this machine.
#
#   DURATION=5s ROUNDS=3 THREADS=2 CONNS=32 ./scripts/bench-cache.sh
#
# Needs wrk, curl, openssl and python3; nginx, varnishd and hitch are each
# optional: a missing one is reported with the package to install and its
# comparison skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
MISS_DURATION=${MISS_DURATION:-5s}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
PATHS=${PATHS:-"/1k /100k"}
PROTOS=${PROTOS:-"http https"}

for tool in wrk curl openssl python3; do
  command -v "$tool" >/dev/null || { echo "bench-cache: $tool is required (Debian: apt-get install -y $tool)" >&2; exit 1; }
done
find_bin() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }
NGINX=$(find_bin nginx)
VARNISHD=$(find_bin varnishd)
HITCH=$(find_bin hitch)
[ -n "$NGINX" ] || echo "nginx not found: skipping nginx (Debian: apt-get install -y nginx-light)" >&2
[ -n "$VARNISHD" ] || echo "varnishd not found: skipping Varnish (Debian: apt-get install -y varnish hitch)" >&2
if [ -n "$VARNISHD" ] && [ -z "$HITCH" ]; then
  echo "hitch not found: skipping Varnish over HTTPS (Debian: apt-get install -y hitch)" >&2
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_for URL: poll until URL answers 200, for at most 10 s.
wait_for() {
  for _ in $(seq 1 100); do
    curl -skf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  return 1
}

# One certificate for every server.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
cat "$tmp/cert.pem" "$tmp/key.pem" >"$tmp/combined.pem"

go build -o "$tmp/cachebench" ./internal/cachebench
"$tmp/cachebench" -data "$tmp/tern-data" -cert "$tmp/cert.pem" -key "$tmp/key.pem" \
  ${CPUPROFILE:+-cpuprofile "$CPUPROFILE"} >"$tmp/addr" 2>"$tmp/tern.log" &
pids+=($!)
for _ in $(seq 1 100); do
  [ -f "$tmp/addr" ] && [ "$(wc -l <"$tmp/addr")" -ge 3 ] && break
  sleep 0.1
done
origin=$(awk '$1 == "origin" {print $2}' "$tmp/addr")
tern=$(awk '$1 == "cache" {print $2}' "$tmp/addr")
tern_tls=$(awk '$1 == "cache-tls" {print $2}' "$tmp/addr")
[ -n "$tern_tls" ] || { echo "cachebench did not start:"; cat "$tmp/tern.log"; exit 1; }

# declare -A url: server,proto -> base URL
declare -A url
url[tern,http]="http://$tern"
url[tern,https]="https://$tern_tls"
url[origin,http]="http://$origin"
servers="tern"

# serve_or_skip NAME HTTP-URL HTTPS-URL LOG...: once NAME answers over
# HTTP, records its base URLs and measures it; else shows its logs and
# leaves it out.
serve_or_skip() {
  local name=$1 http=$2 https=$3
  shift 3
  if wait_for "$http/1k"; then
    url[$name,http]=$http
    url[$name,https]=$https
    servers+=" $name"
  else
    echo "$name did not start: skipping it" >&2
    cat "$@" >&2 || true
  fi
}

# The agent, as `tern up` runs it, in front of the same origin.
go build -o "$tmp/tern" ./cmd/tern
aport=$(freeport) aplain=$(freeport) aadmin=$(freeport) ahub=$(freeport)
cat >"$tmp/agent.conf" <<CONF
version = 1
[acme]
http_listen = "127.0.0.1:$aplain"
[cache]
max_size = "1GiB"
[[origins]]
name = "bench"
upstreams = ["http://$origin"]
CONF
"$tmp/tern" up --config "$tmp/agent.conf" --data "$tmp/agent" --listen "127.0.0.1:$aport" \
  --admin "127.0.0.1:$aadmin" --hub-listen "127.0.0.1:$ahub" --log-level warn >"$tmp/agent.log" 2>&1 &
pids+=($!)
serve_or_skip agent "http://127.0.0.1:$aplain" "https://127.0.0.1:$aport" "$tmp/agent.log"

if [ -n "$NGINX" ]; then
  port=$(freeport) tport=$(freeport)
  mkdir -p "$tmp/nginx/cache" "$tmp/nginx/logs"
  # Equivalent to Tern's setup: a 1 GiB disk cache, one origin request
  # per key at a time (proxy_cache_lock), keep-alive to the origin, and
  # as many workers as cores (Go uses every core too). tcp_nopush stays
  # off: with it nginx stalled 40 ms per 100 KB response on loopback.
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
  ssl_protocols TLSv1.3;
  ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
  proxy_cache_path $tmp/nginx/cache levels=1:2 keys_zone=bench:16m max_size=1g inactive=1d use_temp_path=off;
  upstream origin { server $origin; keepalive 32; }
  server {
    listen 127.0.0.1:$port;
    listen 127.0.0.1:$tport ssl;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
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
  serve_or_skip nginx "http://127.0.0.1:$port" "https://127.0.0.1:$tport" "$tmp/nginx/logs/stderr" "$tmp/nginx/logs/error.log"
fi

if [ -n "$VARNISHD" ]; then
  vport=$(freeport) pport=$(freeport)
  oport=${origin##*:}
  # Varnish's own storage for hot objects, in memory (malloc, 1 GiB);
  # thread pools at their defaults (2 pools). -j none: no privilege
  # separation, so it runs from a private directory as root.
  cat >"$tmp/varnish.vcl" <<VCL
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$oport"; }
sub vcl_deliver {
  if (obj.hits > 0) {
    set resp.http.Cache-Status = "varnish; hit";
  } else {
    set resp.http.Cache-Status = "varnish; miss";
  }
}
VCL
  "$VARNISHD" -F -j none -n "$tmp/varnish" -f "$tmp/varnish.vcl" -s malloc,1G \
    -a "127.0.0.1:$vport" -a "127.0.0.1:$pport,PROXY" >"$tmp/varnish.log" 2>&1 &
  pids+=($!)
  if wait_for "http://127.0.0.1:$vport/1k"; then
    url[varnish,http]="http://127.0.0.1:$vport"
    servers+=" varnish"
    if [ -n "$HITCH" ]; then
      hport=$(freeport)
      cat >"$tmp/hitch.conf" <<HITCH
frontend = "[127.0.0.1]:$hport"
backend = "[127.0.0.1]:$pport"
pem-file = "$tmp/combined.pem"
tls-protos = TLSv1.3
ciphersuites = "TLS_AES_128_GCM_SHA256"
workers = $(nproc)
write-proxy-v2 = on
daemon = off
HITCH
      # hitch refuses to run its workers as root.
      if [ "$(id -u)" = 0 ]; then
        hu=$(id -u _hitch >/dev/null 2>&1 && echo _hitch || echo nobody)
        echo "user = \"$hu\"" >>"$tmp/hitch.conf"
      fi
      "$HITCH" --config="$tmp/hitch.conf" >"$tmp/hitch.log" 2>&1 &
      pids+=($!)
      if wait_for "https://127.0.0.1:$hport/1k"; then
        url[varnish,https]="https://127.0.0.1:$hport"
      else
        echo "hitch did not start: skipping Varnish over HTTPS" >&2
        cat "$tmp/hitch.log" >&2
      fi
    fi
  else
    echo "varnishd did not start: skipping Varnish" >&2
    cat "$tmp/varnish.log" >&2
  fi
fi

versions="$(go version | cut -d' ' -f3)"
[ -z "${url[nginx,http]:-}" ] || versions+=", nginx $("$NGINX" -v 2>&1 | cut -d/ -f2)"
[ -z "${url[varnish,http]:-}" ] || versions+=", varnish $("$VARNISHD" -V 2>&1 | sed -n 's/.*varnish-\([0-9.]*\).*/\1/p' | head -1)"
[ -z "${url[varnish,https]:-}" ] || versions+=", hitch $("$HITCH" --version 2>&1 | awk '{print $2; exit}')"
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(uname -m); $versions"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "hits: wrk -t$THREADS -c$CONNS -d$DURATION --latency, HTTP/1.1 keep-alive, $ROUNDS rounds; servers and wrk share the machine"

# to_us converts wrk's latency ("812.00us", "1.20ms", "1.01s") to µs.
to_us() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); print v+0} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v*1000} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000000}}'; }

results="$tmp/results"
: >"$results"
# record KIND ROUND PROTO PATH SERVER WRK-OUTPUT-FILE
record() {
  local rps p50 p99 errs
  rps=$(awk '/Requests\/sec/ {print $2}' "$6")
  p50=$(awk '$1 == "50%" {print $2}' "$6" | to_us)
  p99=$(awk '$1 == "99%" {print $2}' "$6" | to_us)
  errs=$(awk '/Non-2xx|Socket errors/' "$6")
  echo "$1 $2 $3 $4 $5 $rps $p50 $p99" >>"$results"
  printf '%-4s %s %-5s %-6s %-8s %10s req/s  p50 %8sus  p99 %8sus %s\n' "$1" "$2" "$3" "$4" "$5" "$rps" "$p50" "$p99" "$errs"
}

# Prime every cache and check the second request is a hit.
for s in $servers; do
  for proto in $PROTOS; do
    [ -n "${url[$s,$proto]:-}" ] || continue
    for path in $PATHS; do
      curl -skf -o /dev/null "${url[$s,$proto]}$path"
      status=$(curl -skf -o /dev/null -D - "${url[$s,$proto]}$path" | awk -F': ' 'tolower($1) == "cache-status" {print $2}' | tr -d '\r')
      echo "primed $s $proto $path: $status"
      wrk -t"$THREADS" -c"$CONNS" -d1s "${url[$s,$proto]}$path" >/dev/null
    done
  done
done

hit_servers="$servers origin"
for round in $(seq 1 "$ROUNDS"); do
  # Rotate the order each round, so no server always runs first.
  all=($hit_servers)
  k=$(( (round - 1) % ${#all[@]} ))
  order="${all[*]:k} ${all[*]:0:k}"
  for proto in $PROTOS; do
    for path in $PATHS; do
      for s in $order; do
        [ -n "${url[$s,$proto]:-}" ] || continue
        out="$tmp/wrk.out"
        wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${url[$s,$proto]}$path" >"$out"
        record hit "$round" "$proto" "$path" "$s" "$out"
      done
    done
  done
done

# Misses: one connection, unique URLs, 1 KB and 100 KB bodies.
miss_servers="origin $servers"
for round in $(seq 1 "$ROUNDS"); do
  for path in $PATHS; do
    for s in $miss_servers; do
      out="$tmp/wrk.out"
      # Each server starts with no other's cache writes waiting to reach
      # the disk: without this, a server's round paid for the writeback
      # of the gigabyte the server before it wrote.
      sync
      wrk -t1 -c1 -d"$MISS_DURATION" --latency -s scripts/unique-urls.lua "${url[$s,http]}" -- "$path/r$round-$s-$RANDOM$RANDOM-" >"$out"
      record miss "$round" http "$path" "$s" "$out"
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" <<'PY'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)      # (kind, proto, path, server) -> [(round, rps, p50, p99)]
for line in open(sys.argv[1]):
    kind, rnd, proto, path, server, rps, p50, p99 = line.split()
    rows[kind, proto, path, server].append((int(rnd), float(rps), float(p50), float(p99)))
med = statistics.median

def ratio(kind, proto, path, a, b):
    """Median over rounds of a's requests/s over b's, within each round."""
    ra = {r[0]: r[1] for r in rows.get((kind, proto, path, a), [])}
    rb = {r[0]: r[1] for r in rows.get((kind, proto, path, b), [])}
    rs = [ra[k] / rb[k] for k in ra if k in rb and rb[k] > 0]
    return (med(rs), min(rs), max(rs)) if rs else None

print("\nHits (median of rounds; ratio = requests/s over nginx's in the same round, median [min-max])")
print(f"{'proto':6} {'object':7} {'server':8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  vs nginx")
for (kind, proto, path, server), rs in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][2] != "/1k", kv[0][2], ["tern", "agent", "nginx", "varnish", "origin"].index(kv[0][3]))):
    if kind != "hit":
        continue
    r = ratio("hit", proto, path, server, "nginx")
    rtxt = f"{r[0]:.2f} [{r[1]:.2f}-{r[2]:.2f}]" if r and server != "nginx" else ""
    print(f"{proto:6} {path:7} {server:8} {med(x[1] for x in rs):9.0f} {med(x[2] for x in rs)/1000:8.2f} {med(x[3] for x in rs)/1000:8.2f}  {rtxt}")

print("\nMisses (one connection, unique URLs over HTTP; added = cache's percentile minus the origin's, medians of rounds)")
print(f"{'object':7} {'server':8} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10} {'added p99':>10}")
for path in sorted({k[2] for k in rows if k[0] == "miss"}, key=lambda p: (p != "/1k", p)):
    base = rows.get(("miss", "http", path, "origin"))
    if not base:
        continue
    b50, b99 = med(x[2] for x in base), med(x[3] for x in base)
    for server in ["origin", "tern", "agent", "nginx", "varnish"]:
        rs = rows.get(("miss", "http", path, server))
        if not rs:
            continue
        p50, p99 = med(x[2] for x in rs), med(x[3] for x in rs)
        add = "" if server == "origin" else f"{(p50-b50)/1000:10.3f} {(p99-b99)/1000:10.3f}"
        print(f"{path:7} {server:8} {p50/1000:8.3f} {p99/1000:8.3f} {add}")
PY
