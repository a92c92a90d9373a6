#!/usr/bin/env bash
# bench/hey.sh — does examples/hey.lua measure what wrk measures?
#
#   bench/hey.sh            (make bench-hey)
#
# Both load generators run against the same server, one after the other,
# BENCH_RUNS times each, alternating; the table shows the medians of
# requests/s, p50 and p99 latency, and the ratio hey.lua/wrk.  The servers
# are examples/httpd.lua (serving examples/www/index.html) and Go's net/http
# "hello" server of bench/go (build/bench_go -serve http), at once and
# after a delay of 10 ms per request ("/?delay=10ms": the rate is then set
# by the latency, 50 connections / 10 ms = 5,000 req/s at most).
#
# The server is pinned to CPU 0 and the load to CPU 1 (taskset), so that
# neither takes the other's CPU; httpd.lua and hey.lua run with
# GORO_MAXPROCS=1, wrk with one thread.  Where the server is what limits
# the rate, the two generators must agree; where the generator is (Go's
# server is faster than one CPU of Lua can load), the table shows how much
# a Lua load generator falls short of a C one.
#
# Environment: BENCH_RUNS (default 3), BENCH_NET_SECS (default 5),
# BENCH_NET_CONNS (default 50), BENCH_GO (default build/bench_go),
# BENCH_LUA_MOD (default build/release/goro.so).

set -u
cd "$(dirname "$0")/.." || exit 1
. bench/table.sh

RUNS=${BENCH_RUNS:-3}
SECS=${BENCH_NET_SECS:-5}
CONNS=${BENCH_NET_CONNS:-50}
GO_BIN=${BENCH_GO:-build/bench_go}
LUA_MOD=${BENCH_LUA_MOD:-build/release/goro.so}
export LUA_CPATH="$(dirname "$LUA_MOD")/?.so;;"

LOAD_CPU=1
SERVER_CPU=0
if [ "$(nproc)" -lt 2 ]; then LOAD_CPU=0; fi

OUT=$(mktemp -d "${TMPDIR:-/tmp}/goro-hey.XXXXXX") || exit 1
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then
    kill "$SERVER" 2>/dev/null
    wait "$SERVER" 2>/dev/null
  fi
  rm -rf "$OUT"
}
trap cleanup EXIT
trap 'echo "bench/hey.sh: interrupted" >&2; exit 130' INT TERM HUP

# start_server regex cmd...: start it, wait for a line of its output that
# matches `regex` (sed's, with one group: host:port); sets ADDR.
start_server() {
  local pattern=$1; shift
  timeout -k 2 $((RUNS * SECS * 3 + 60)) taskset -c "$SERVER_CPU" "$@" >"$OUT/server" 2>&1 &
  SERVER=$!
  ADDR=""
  for _ in $(seq 100); do
    ADDR=$(sed -n "s/$pattern/\\1/p" "$OUT/server")
    [ -n "$ADDR" ] && return 0
    sleep 0.1
  done
  echo "bench/hey.sh: the server did not start: $*" >&2
  cat "$OUT/server" >&2
  exit 1
}
stop_server() {
  kill "$SERVER" 2>/dev/null
  wait "$SERVER" 2>/dev/null
  SERVER=""
}

# A latency of wrk's ("1.38ms", "912.00us", "1.02s") in ms.
wrk_ms() {
  awk -v v="$1" 'BEGIN { n = v + 0;
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000;
    print n }'
}

# run_wrk url / run_hey url: append "req/s p50 p99" to $OUT/<name>
run_wrk() {
  local out
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$1" 2>&1)
  local rps p50 p99
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  p50=$(wrk_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
  p99=$(wrk_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  echo "$rps $p50 $p99" >>"$OUT/$2"
}
run_hey() {
  local out
  out=$(GORO_MAXPROCS=1 taskset -c "$LOAD_CPU" lua5.4 examples/hey.lua -q -c "$CONNS" -z "${SECS}s" "$1" 2>&1)
  local rps p50 p99
  rps=$(awk -F'\t' '/^  Requests\/sec:/ { print $2 }' <<<"$out")
  p50=$(awk -F'\t' '/^  p50 / { print $2 + 0 }' <<<"$out")
  p99=$(awk -F'\t' '/^  p99 / { print $2 + 0 }' <<<"$out")
  echo "$rps $p50 $p99" >>"$OUT/$2"
}

col() { awk -v c="$2" '{ print $c }' "$OUT/$1" | median; }

LINES=("$(join_cells "server" "load" "req/s" "p50 ms" "p99 ms" "hey/wrk req/s")")
measure() {   # label url
  local label=$1 url=$2 r
  rm -f "$OUT/wrk" "$OUT/hey"
  for ((r = 1; r <= RUNS; r++)); do
    printf '\r%s: run %d of %d ' "$label" "$r" "$RUNS" >&2
    run_wrk "$url" wrk
    run_hey "$url" hey
  done
  printf '\r\033[K' >&2
  local w h
  w=$(col wrk 1)
  h=$(col hey 1)
  LINES+=("$(join_cells "$label" "wrk" "$(fmt_value "$w")" "$(fmt_value "$(col wrk 2)")" "$(fmt_value "$(col wrk 3)")" "")")
  LINES+=("$(join_cells "$label" "hey.lua" "$(fmt_value "$h")" "$(fmt_value "$(col hey 2)")" "$(fmt_value "$(col hey 3)")" \
    "$(fmt_value "$(awk -v a="$h" -v b="$w" 'BEGIN { print a / b }')")")")
}

GORO_MAXPROCS=1 start_server '^httpd: serving .* on http:\/\/\([^/]*\)\/$' lua5.4 examples/httpd.lua -a 127.0.0.1:0 -r examples/www
measure "httpd.lua" "http://$ADDR/index.html"
stop_server

if [ -x "$GO_BIN" ]; then
  GOMAXPROCS=1 start_server '^LISTEN \(.*\)$' "$GO_BIN" -serve http
  measure "Go net/http" "http://$ADDR/"
  measure "Go, 10 ms each" "http://$ADDR/?delay=10ms"
  stop_server
else
  echo "bench/hey.sh: no $GO_BIN (make bench-go); the Go server is skipped" >&2
fi

echo "hey.lua against wrk: -c $CONNS for ${SECS} s, medians of $RUNS runs; server on CPU $SERVER_CPU, load on CPU $LOAD_CPU"
echo
print_table "${LINES[@]}"
