#!/usr/bin/env bash
# TLS front-door benchmark: Tern against Caddy, configured equivalently, in
# the same run on the same machine. Both serve a small static response
# ("Hello from Tern!\n", text/plain) over HTTPS on loopback with HTTP/1.1,
# HTTP/2 and HTTP/3 on one port, with a certificate from a local CA
# (Tern's local CA; Caddy's `tls internal`), access logs off.
#
# Measures requests/s and p99 latency over HTTP/1.1 (wrk), HTTP/2 and
# HTTP/3 (internal/loadgen), and full TLS handshakes per second on new
# connections (internal/loadgen -proto handshake), then prints Tern/Caddy
# ratios. wrk sends no SNI (the URL's host is an IP literal); loadgen sends
# "localhost", which Caddy needs to pick a certificate for QUIC. Needs wrk and caddy (Debian packages; installed when missing
# and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}        # wrk connections (HTTP/1.1)
STREAMS=${STREAMS:-64}    # concurrent requests (HTTP/2, HTTP/3)
MUXCONNS=${MUXCONNS:-4}   # connections those requests share
HANDSHAKERS=${HANDSHAKERS:-16}
ROUNDS=${ROUNDS:-3}

need() {
  command -v "$1" >/dev/null && return
  echo "installing $1 (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y "$1" >/dev/null; else sudo apt-get install -y "$1" >/dev/null; fi
}
need wrk
need caddy

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/benchserver" ./internal/benchserver
go build -o "$tmp/loadgen" ./internal/loadgen

# Tern: the same front door, router and metrics middleware as the agent.
"$tmp/benchserver" -data "$tmp/tern" >"$tmp/tern.addr" 2>"$tmp/tern.log" &
pids+=($!)

# Caddy on a free port (TCP and UDP).
port=$(python3 -c 'import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        t.close(); u.close()')
cat >"$tmp/Caddyfile" <<CADDY
{
	admin off
	auto_https disable_redirects
	skip_install_trust
	storage file_system $tmp/caddy-data
	servers {
		protocols h1 h2 h3
	}
	log {
		level ERROR
	}
}
https://localhost:$port, https://127.0.0.1:$port {
	tls internal
	header Content-Type text/plain
	respond /static "Hello from Tern!
" 200
}
CADDY
HOME="$tmp" XDG_CONFIG_HOME="$tmp/caddy-config" XDG_DATA_HOME="$tmp/caddy-data" \
  caddy run --adapter caddyfile --config "$tmp/Caddyfile" >"$tmp/caddy.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  [ -s "$tmp/tern.addr" ] && curl -skf "https://127.0.0.1:$port/static" >/dev/null 2>&1 && break
  sleep 0.1
done
tern="https://$(head -1 "$tmp/tern.addr")"
caddy="https://127.0.0.1:$port"
curl -skf "$tern/static" >/dev/null || { echo "tern did not start:"; cat "$tmp/tern.log"; exit 1; }
curl -skf "$caddy/static" >/dev/null || { echo "caddy did not start:"; cat "$tmp/caddy.log"; exit 1; }

echo "machine: $(nproc) cores, $(uname -m), $(go version | cut -d' ' -f3), $(caddy version | cut -d' ' -f1) (Debian); servers and load generators share the machine"
echo "wrk -t$THREADS -c$CONNS; loadgen -c $STREAMS -conns $MUXCONNS; handshakes -c $HANDSHAKERS; $DURATION each, $ROUNDS rounds"

# wrk prints the 99th percentile as e.g. "99%    3.21ms"; normalise to µs.
to_us() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); print v} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v*1000} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000000}}'; }

# measure SERVER METRIC prints "per-second p99-in-µs" for one run.
measure() {
  local url=${!1} out
  case $2 in
    h1)
      out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$url/static")
      echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1 == "99%" {print $2}' <<<"$out" | to_us)" ;;
    h2|h3)
      out=$("$tmp/loadgen" -sni localhost -proto "$2" -c "$STREAMS" -conns "$MUXCONNS" -d "$DURATION" "$url/static")
      echo "$(sed -E 's/.*requests\/s=([0-9.]+).*/\1/' <<<"$out") $(sed -E 's/.*p99=([^ ]+).*/\1/' <<<"$out" | to_us)" ;;
    hs|hs-x25519)
      # Go 1.24+ offers and accepts the X25519MLKEM768 hybrid by default,
      # so Tern does post-quantum key exchange where an older Caddy does
      # X25519: measure that default, and X25519 alone (like for like).
      local flag=; [ "$2" = hs-x25519 ] && flag=-x25519
      out=$("$tmp/loadgen" -sni localhost -proto handshake $flag -c "$HANDSHAKERS" -d "$DURATION" "$url/")
      echo "$(sed -E 's/.*handshakes\/s=([0-9.]+).*/\1/' <<<"$out") $(sed -E 's/.*p99=([^ ]+).*/\1/' <<<"$out" | to_us)" ;;
  esac
}

# Warm both up, then alternate them measurement by measurement, ROUNDS
# times, swapping who goes first each round, and report medians: on a
# small machine, runs minutes apart differ more than the servers do.
for name in tern caddy; do
  wrk -t"$THREADS" -c"$CONNS" -d2s "${!name}/static" >/dev/null
  for proto in h2 h3; do "$tmp/loadgen" -sni localhost -proto $proto -c "$STREAMS" -conns "$MUXCONNS" -d 1s "${!name}/static" >/dev/null; done
done
metrics="h1 h2 h3 hs hs-x25519"
declare -A runs
for round in $(seq 1 "$ROUNDS"); do
  order="tern caddy"; [ $((round % 2)) = 0 ] && order="caddy tern"
  for m in $metrics; do
    for name in $order; do
      r=$(measure "$name" "$m")
      echo "round $round $m $name: $r"
      runs[$name,$m]+="$r"$'\n'
    done
  done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
printf '%-22s %12s %12s %8s %12s %12s\n' "median of $ROUNDS" "tern /s" "caddy /s" "ratio" "tern p99" "caddy p99"
for k in h1:"HTTP/1.1+TLS (wrk)" h2:"HTTP/2" h3:"HTTP/3" hs:"handshakes, default" hs-x25519:"handshakes, X25519"; do
  m=${k%%:*}; label=${k#*:}
  tr=$(awk 'NF {print $1}' <<<"${runs[tern,$m]}" | median); cr=$(awk 'NF {print $1}' <<<"${runs[caddy,$m]}" | median)
  tp=$(awk 'NF {print $2}' <<<"${runs[tern,$m]}" | median); cp=$(awk 'NF {print $2}' <<<"${runs[caddy,$m]}" | median)
  printf '%-22s %12.0f %12.0f %8.2f %10.0fus %10.0fus\n' "$label" "$tr" "$cr" "$(awk -v a="$tr" -v b="$cr" 'BEGIN {print a/b}')" "$tp" "$cp"
done
